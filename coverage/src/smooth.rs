//! Where along its matched drive a vehicle was at each fix: the fixes' own places along the
//! drive fused with the distance their reported speeds say it covered in between.
//!
//! A fix's place is off by its GPS error (metres, correlated for tens of seconds); the
//! Doppler speed a receiver reports is off by a fraction of a km/h. Between two fixes a
//! second apart the speeds therefore know the distance driven far better than the places
//! do, and over minutes the places keep the speeds from drifting. Least squares over both
//! (a tridiagonal system, solved directly), robust to fixes thrown off by multipath, then
//! never backwards: the drive is already in driving order.

/// One fix on the drive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlongFix {
    pub time_s: f64,
    /// Its own place along the drive (projected), metres from the drive's start.
    pub along_m: f64,
    /// Its expected GPS error.
    pub error_m: f64,
    pub speed_kmh: Option<f64>,
}

/// Reported speeds and the drive's length disagree by this share at most (the map's centre
/// line against the lane driven, curves cut).
const ODOMETRY_SHARE: f64 = 0.05;
/// And by this much, whatever the distance.
const ODOMETRY_FLOOR_M: f64 = 0.5;
/// Fixes further than about this many of their errors from the fused drive weigh less and
/// less (Cauchy weights), so a multipath throw cannot drag the drive.
const ROBUST_SIGMAS: f64 = 3.0;
/// Reweighting rounds for the robust fit.
const ROUNDS: usize = 4;

/// The places along a drive of `length_m` at each of `fixes` (in time order), with speeds
/// reported to within `speed_error_kmh` and GPS errors correlated over about
/// `error_correlation_s`: never decreasing, within `0..=length_m`.
pub fn along_drive(
    fixes: &[AlongFix],
    length_m: f64,
    speed_error_kmh: f64,
    error_correlation_s: f64,
) -> Vec<f64> {
    let n = fixes.len();
    if n == 0 {
        return Vec::new();
    }
    // Links between neighbours: the distance their speeds imply, and its weight.
    let links: Vec<Option<(f64, f64)>> = fixes
        .windows(2)
        .map(|w| {
            let (Some(va), Some(vb)) = (w[0].speed_kmh, w[1].speed_kmh) else {
                return None;
            };
            let dt = (w[1].time_s - w[0].time_s).max(0.0);
            let driven_m = (va + vb) / 2.0 / 3.6 * dt;
            let error_m = (speed_error_kmh / 3.6 * dt)
                .hypot(ODOMETRY_SHARE * driven_m)
                .hypot(ODOMETRY_FLOOR_M);
            Some((driven_m, 1.0 / (error_m * error_m)))
        })
        .collect();
    let shares = independent_shares(fixes, error_correlation_s);
    let mut weights: Vec<f64> = fixes
        .iter()
        .zip(&shares)
        .map(|(f, share)| share / (f.error_m * f.error_m).max(1e-6))
        .collect();
    let mut x = fixes.iter().map(|f| f.along_m).collect::<Vec<_>>();
    for round in 0..ROUNDS {
        x = solve(fixes, &weights, &links);
        if round + 1 < ROUNDS {
            for (((w, f), &xi), share) in weights.iter_mut().zip(fixes).zip(&x).zip(&shares) {
                let z = (xi - f.along_m) / f.error_m / ROBUST_SIGMAS;
                *w = share / (f.error_m * f.error_m).max(1e-6) / (1.0 + z * z);
            }
        }
    }
    let mut at_m: f64 = 0.0;
    for xi in &mut x {
        at_m = at_m.max(xi.clamp(0.0, length_m.max(0.0)));
        *xi = at_m;
    }
    x
}

/// How much independent evidence of place each fix adds. GPS errors are correlated over
/// tens of seconds (the same satellites, the same reflections), so forty fixes of a truck
/// standing at a corner are not forty looks at where it stands but about as many as there
/// are correlation times in those forty seconds; counted as independent they outweighed the
/// speeds of the drive that followed and put the corner metres into the street. For an AR(1)
/// error with correlation ρ = e^(−Δt/τ) between fixes Δt apart, n fixes are worth about
/// n (1 − ρ)/(1 + ρ) independent ones; a fix alone (or τ = 0) is worth one.
fn independent_shares(fixes: &[AlongFix], error_correlation_s: f64) -> Vec<f64> {
    let n = fixes.len();
    if error_correlation_s <= 0.0 {
        return vec![1.0; n];
    }
    (0..n)
        .map(|i| {
            let before_s = (i > 0).then(|| fixes[i].time_s - fixes[i - 1].time_s);
            let after_s = (i + 1 < n).then(|| fixes[i + 1].time_s - fixes[i].time_s);
            let spacing_s = match (before_s, after_s) {
                (Some(b), Some(a)) => (b + a) / 2.0,
                (Some(d), None) | (None, Some(d)) => d,
                (None, None) => return 1.0,
            };
            let rho = (-spacing_s.max(0.0) / error_correlation_s).exp();
            (1.0 - rho) / (1.0 + rho)
        })
        .collect()
}

/// Minimises Σ wᵢ (xᵢ − placeᵢ)² + Σ uᵢ (xᵢ₊₁ − xᵢ − dᵢ)² (Thomas algorithm).
fn solve(fixes: &[AlongFix], weights: &[f64], links: &[Option<(f64, f64)>]) -> Vec<f64> {
    let n = fixes.len();
    // Row i: lower[i] x[i-1] + diag[i] x[i] + upper[i] x[i+1] = rhs[i].
    let mut diag: Vec<f64> = weights.to_vec();
    let mut rhs: Vec<f64> = fixes
        .iter()
        .zip(weights)
        .map(|(f, w)| w * f.along_m)
        .collect();
    let mut upper = vec![0.0; n];
    for (i, link) in links.iter().enumerate() {
        let Some((d, u)) = *link else { continue };
        diag[i] += u;
        diag[i + 1] += u;
        upper[i] = -u;
        rhs[i] -= u * d;
        rhs[i + 1] += u * d;
    }
    // Forward sweep (the matrix is symmetric: lower[i] = upper[i - 1]).
    let mut c = vec![0.0; n];
    let mut r = vec![0.0; n];
    for i in 0..n {
        let lower = if i > 0 { upper[i - 1] } else { 0.0 };
        let (c_prev, r_prev) = if i > 0 {
            (c[i - 1], r[i - 1])
        } else {
            (0.0, 0.0)
        };
        let m = diag[i] - lower * c_prev;
        c[i] = upper[i] / m;
        r[i] = (rhs[i] - lower * r_prev) / m;
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = r[i] - if i + 1 < n { c[i] * x[i + 1] } else { 0.0 };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fix(time_s: f64, along_m: f64, speed_kmh: Option<f64>) -> AlongFix {
        AlongFix {
            time_s,
            along_m,
            error_m: 5.0,
            speed_kmh,
        }
    }

    /// The objective, for comparing against a brute-force minimum.
    fn cost(fixes: &[AlongFix], links: &[Option<(f64, f64)>], x: &[f64]) -> f64 {
        let places: f64 = fixes
            .iter()
            .zip(x)
            .map(|(f, xi)| (xi - f.along_m).powi(2) / f.error_m.powi(2))
            .sum();
        let moves: f64 = links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|(d, u)| u * (x[i + 1] - x[i] - d).powi(2)))
            .sum();
        places + moves
    }

    #[test]
    fn the_direct_solution_is_the_least_squares_minimum() {
        let fixes = [
            fix(0.0, 0.0, Some(7.2)),
            fix(1.0, 5.0, Some(7.2)),
            fix(2.0, 3.0, Some(7.2)),
            fix(3.0, 9.0, None),
            fix(4.0, 8.0, Some(3.6)),
        ];
        let weights: Vec<f64> = fixes.iter().map(|f| 1.0 / f.error_m.powi(2)).collect();
        let links: Vec<Option<(f64, f64)>> = vec![Some((2.0, 4.0)), Some((2.0, 4.0)), None, None];
        let x = solve(&fixes, &weights, &links);
        let best = cost(&fixes, &links, &x);
        // Any small step away costs more.
        for i in 0..x.len() {
            for step in [-0.01, 0.01] {
                let mut y = x.clone();
                y[i] += step;
                assert!(cost(&fixes, &links, &y) > best, "{i} {step}");
            }
        }
    }

    #[test]
    fn a_standing_truck_stays_where_it_stands_whatever_its_gps_does() {
        // Two minutes standing, the GPS wandering ±8 m along the street once a minute.
        let fixes: Vec<AlongFix> = (0..120)
            .map(|i| {
                let wander_m = 8.0 * (i as f64 / 60.0 * std::f64::consts::TAU).sin();
                fix(i as f64, 50.0 + wander_m, Some(0.0))
            })
            .collect();
        let x = along_drive(&fixes, 500.0, 0.5, 0.0);
        let spread = x[x.len() - 1] - x[0];
        assert!(spread < 6.0, "{x:?}");
    }

    #[test]
    fn a_steady_drive_follows_its_speed_through_noisy_places() {
        // 2 m/s for 100 s, places off by ±8 m alternately.
        let fixes: Vec<AlongFix> = (0..=100)
            .map(|i| {
                let noise = if i % 2 == 0 { 8.0 } else { -8.0 };
                fix(i as f64, 2.0 * i as f64 + noise, Some(7.2))
            })
            .collect();
        let x = along_drive(&fixes, 1000.0, 0.5, 0.0);
        for (i, xi) in x.iter().enumerate().skip(5).take(90) {
            assert!((xi - 2.0 * i as f64).abs() < 1.0, "{i}: {xi}");
        }
        for w in x.windows(2).skip(5).take(90) {
            assert!((w[1] - w[0] - 2.0).abs() < 0.2, "{w:?}");
        }
    }

    #[test]
    fn a_multipath_throw_does_not_drag_the_drive() {
        let mut fixes: Vec<AlongFix> = (0..60)
            .map(|i| fix(i as f64, 2.0 * i as f64, Some(7.2)))
            .collect();
        for f in &mut fixes[30..36] {
            f.along_m += 60.0;
        }
        let x = along_drive(&fixes, 1000.0, 0.5, 0.0);
        for (i, xi) in x.iter().enumerate() {
            assert!((xi - 2.0 * i as f64).abs() < 3.0, "{i}: {xi}");
        }
    }

    #[test]
    fn without_speeds_the_places_stand_but_never_go_back() {
        let fixes = [
            fix(0.0, 10.0, None),
            fix(1.0, 14.0, None),
            fix(2.0, 12.0, None),
            fix(3.0, 20.0, None),
        ];
        let x = along_drive(&fixes, 15.0, 0.5, 0.0);
        for (xi, expected) in x.iter().zip([10.0, 14.0, 14.0, 15.0]) {
            assert!((xi - expected).abs() < 1e-9, "{x:?}");
        }
    }

    /// A truck stands 40 s at a corner, its GPS off by +6 m all that while (one reflection),
    /// then drives on at 2 m/s with ordinary noise. Forty fixes counted as forty looks put
    /// the corner 5 m into the street; counted once per correlation time, the drive's
    /// speeds and places pull it back towards where the drive says it started (1 m).
    #[test]
    fn a_corner_off_by_one_correlated_error_counts_once_per_correlation_time() {
        let fixes: Vec<AlongFix> = (0..100)
            .map(|i| {
                let t = i as f64;
                if i < 40 {
                    fix(t, 6.0 + 0.3 * (t * 1.7).sin(), Some(0.0))
                } else {
                    let noise = 4.0 * (t * 2.3).sin();
                    fix(t, 2.0 * (t - 39.0) + noise, Some(7.2))
                }
            })
            .collect();
        let corner_m = |correlation_s| along_drive(&fixes, 500.0, 0.5, correlation_s)[20];
        let independent = corner_m(0.0);
        let correlated = corner_m(10.0);
        assert!(independent > 4.5, "{independent}");
        assert!(
            correlated < independent - 1.0,
            "{correlated} against {independent}"
        );
    }

    proptest! {
        #[test]
        fn places_never_go_back_and_stay_on_the_drive(
            places in prop::collection::vec((0.0..500.0f64, 0.5..40.0f64, prop::option::of(0.0..40.0f64)), 1..60),
            length_m in 1.0..600.0f64,
            correlation_s in 0.0..60.0f64,
        ) {
            let fixes: Vec<AlongFix> = places
                .iter()
                .enumerate()
                .map(|(i, &(along_m, error_m, speed_kmh))| AlongFix { time_s: i as f64, along_m, error_m, speed_kmh })
                .collect();
            let x = along_drive(&fixes, length_m, 0.5, correlation_s);
            prop_assert_eq!(x.len(), fixes.len());
            prop_assert!(x.iter().all(|&xi| (0.0..=length_m).contains(&xi)));
            prop_assert!(x.windows(2).all(|w| w[1] >= w[0]));
        }
    }
}

//! What a truck's GPS receiver reports of its true track (DOMAIN.md, "GPS quality"):
//! errors correlated over tens of seconds, multipath jumps of tens of metres, an HDOP that is a
//! geometry factor rather than an error in metres, Doppler speeds, and cellular drop-outs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::drive::TrackPoint;
use super::network::Geometry;
use super::GenFix;

/// Each receiver's user equivalent range error: horizontal error ≈ HDOP × UERE.
const UERE_M: (f64, f64) = (2.0, 4.0);
/// The error's scale drifts slowly (street canyons come and go): a log-normal factor with this
/// spread and correlation time, normalised so that the error's mean square stays σ².
const SCALE_LOG_SD: f64 = 0.3;
const SCALE_CORRELATION_S: f64 = 300.0;
/// HDOP follows the error's scale only loosely: a log-normal factor of its own.
const HDOP_LOG_SD: f64 = 0.25;
const HDOP_CORRELATION_S: f64 = 60.0;
const HDOP_RANGE: (f64, f64) = (0.6, 25.0);
/// Multipath episodes: this many consecutive fixes thrown this far off in one direction.
const MULTIPATH_FIXES: (u32, u32) = (3, 10);
const MULTIPATH_OFFSET_M: (f64, f64) = (30.0, 80.0);
/// Doppler speed error (km/h) and heading error (degrees); no heading below this speed.
const SPEED_NOISE_KMH: f64 = 0.3;
const HEADING_NOISE_DEG: f64 = 3.0;
const HEADING_MIN_KMH: f64 = 1.5;
/// Time between drop-outs is at least this, so that two gaps never run into one.
const MIN_UP_S: f64 = 30.0;

/// The noise a fleet's receivers share; each receiver draws its own UERE and correlation time.
pub(crate) struct Noise {
    pub sigma_m: f64,
    pub correlation_s: (f64, f64),
    pub dropout_share: f64,
    pub dropout_gap_s: (f64, f64),
    pub multipath_per_hour: f64,
}

/// The fixes a receiver delivers for `track` (one point per second).
pub(crate) fn observe(
    track: &[TrackPoint],
    geometry: &Geometry,
    noise: &Noise,
    rng: &mut ChaCha8Rng,
) -> Vec<GenFix> {
    let uere_m = rng.random_range(UERE_M.0..UERE_M.1);
    let correlation_s = rng.random_range(noise.correlation_s.0..=noise.correlation_s.1);
    let phi = (-1.0 / correlation_s).exp();
    let scale_phi = (-1.0 / SCALE_CORRELATION_S).exp();
    let hdop_phi = (-1.0 / HDOP_CORRELATION_S).exp();
    // E[exp(2X)] = 1 for X ~ N(−s², s²).
    let scale_mean = -SCALE_LOG_SD * SCALE_LOG_SD;
    let mut log_scale = scale_mean + SCALE_LOG_SD * normal(rng);
    let mut log_hdop = HDOP_LOG_SD * normal(rng);
    let mut error = [
        noise.sigma_m * log_scale.exp() * normal(rng),
        noise.sigma_m * log_scale.exp() * normal(rng),
    ];
    let mut multipath: Option<(u32, f64, f64)> = None;
    // Drop-outs draw from their own generator, so that their settings leave the noise alone.
    let mut gap_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let mut dropouts = Dropouts::new(noise, track.first().map_or(0.0, |p| p.time_s), &mut gap_rng);
    let mut fixes = Vec::with_capacity(track.len());
    for (k, p) in track.iter().enumerate() {
        // Every process moves on every second, delivered or not, so that a drop-out does not
        // change the noise after it.
        if k > 0 {
            log_scale = ar1(log_scale - scale_mean, scale_phi, SCALE_LOG_SD, rng) + scale_mean;
            log_hdop = ar1(log_hdop, hdop_phi, HDOP_LOG_SD, rng);
            let sigma_now_m = noise.sigma_m * log_scale.exp();
            for e in &mut error {
                *e = ar1(*e, phi, sigma_now_m, rng);
            }
        }
        let sigma_now_m = noise.sigma_m * log_scale.exp();
        if multipath.is_none() && rng.random_bool((noise.multipath_per_hour / 3600.0).min(1.0)) {
            let fixes = rng.random_range(MULTIPATH_FIXES.0..=MULTIPATH_FIXES.1);
            let direction = rng.random_range(0.0..std::f64::consts::TAU);
            let offset_m = rng.random_range(MULTIPATH_OFFSET_M.0..MULTIPATH_OFFSET_M.1);
            multipath = Some((fixes, direction, offset_m));
        }
        let jump = match multipath.as_mut() {
            Some((left, direction, offset_m)) => {
                let jump_m = *offset_m + normal(rng);
                let jump = [jump_m * direction.sin(), jump_m * direction.cos()];
                *left -= 1;
                if *left == 0 {
                    multipath = None;
                }
                jump
            }
            None => [0.0, 0.0],
        };
        // The horizontal error (RMS of both axes) is √2 σ; HDOP is that over the UERE.
        let horizontal_m = std::f64::consts::SQRT_2 * sigma_now_m;
        let hdop = (horizontal_m / uere_m * log_hdop.exp()).clamp(HDOP_RANGE.0, HDOP_RANGE.1);
        let satellites = (13.0 - 4.0 * hdop.ln() + normal(rng))
            .round()
            .clamp(5.0, 14.0) as u8;
        let speed_kmh = (p.speed_kmh + SPEED_NOISE_KMH * normal(rng)).max(0.0);
        let heading = (p.course_deg + HEADING_NOISE_DEG * normal(rng)).rem_euclid(360.0);
        if dropouts.drops(p.time_s, &mut gap_rng) {
            continue;
        }
        let (lon, lat) =
            geometry.lon_lat([p.xy[0] + error[0] + jump[0], p.xy[1] + error[1] + jump[1]]);
        fixes.push(GenFix {
            time_s: p.time_s,
            lon,
            lat,
            speed_kmh: Some(speed_kmh),
            heading_deg: (p.speed_kmh >= HEADING_MIN_KMH).then_some(heading),
            hdop: Some((hdop * 10.0).round() / 10.0),
            satellites: Some(satellites),
            tools_on: p.tools_on,
        });
    }
    fixes
}

/// One step of a stationary AR(1) process with standard deviation `sd`.
fn ar1(x: f64, phi: f64, sd: f64, rng: &mut ChaCha8Rng) -> f64 {
    phi * x + (1.0 - phi * phi).sqrt() * sd * normal(rng)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Cellular drop-outs: gaps of whole seconds in which nothing is delivered, separated by at
/// least [`MIN_UP_S`] and exponentially distributed beyond it, so that gaps take about
/// `dropout_share` of the time.
struct Dropouts {
    gap_s: (f64, f64),
    /// Mean time beyond [`MIN_UP_S`] between gaps; infinite without drop-outs.
    extra_up_s: f64,
    start_s: f64,
    end_s: f64,
}

impl Dropouts {
    fn new(noise: &Noise, first_s: f64, rng: &mut ChaCha8Rng) -> Dropouts {
        let share = noise.dropout_share.clamp(0.0, 0.9);
        let mean_gap_s = (noise.dropout_gap_s.0 + noise.dropout_gap_s.1) / 2.0;
        let extra_up_s = if share > 0.0 {
            (mean_gap_s * (1.0 - share) / share - MIN_UP_S).max(1.0)
        } else {
            f64::INFINITY
        };
        let mut d = Dropouts {
            gap_s: noise.dropout_gap_s,
            extra_up_s,
            start_s: 0.0,
            end_s: first_s,
        };
        d.schedule(rng);
        d
    }

    fn schedule(&mut self, rng: &mut ChaCha8Rng) {
        let up_s = MIN_UP_S - self.extra_up_s * (1.0 - rng.random::<f64>()).ln();
        self.start_s = self.end_s + up_s.round();
        self.end_s = self.start_s + rng.random_range(self.gap_s.0..=self.gap_s.1).round();
    }

    /// Whether the fix of `time_s` is lost; times must come in order.
    fn drops(&mut self, time_s: f64, rng: &mut ChaCha8Rng) -> bool {
        if time_s >= self.end_s {
            self.schedule(rng);
        }
        time_s >= self.start_s && time_s < self.end_s
    }
}

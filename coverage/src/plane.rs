//! The metric space the matcher measures in: a local equirectangular projection in metres.
//!
//! Within a city (tens of kilometres) it is off from the great circle by well under 1 %, and
//! only candidate distances and bearings use it; lengths along roads are the network's
//! Haversine lengths.

/// Mean Earth radius of geo's `Haversine`, so that both agree on a degree's length.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Projects (lon, lat) to metres east and north of an origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    lon0: f64,
    lat0: f64,
    m_per_deg_lon: f64,
    m_per_deg_lat: f64,
}

impl Plane {
    /// A projection true to scale at `(lon0, lat0)`.
    pub fn new(lon0: f64, lat0: f64) -> Plane {
        let m_per_deg_lat = EARTH_RADIUS_M.to_radians();
        Plane {
            lon0,
            lat0,
            m_per_deg_lon: m_per_deg_lat * lat0.to_radians().cos(),
            m_per_deg_lat,
        }
    }

    pub fn to_xy(&self, (lon, lat): (f64, f64)) -> [f64; 2] {
        [
            (lon - self.lon0) * self.m_per_deg_lon,
            (lat - self.lat0) * self.m_per_deg_lat,
        ]
    }

    pub fn to_lon_lat(&self, [x, y]: [f64; 2]) -> (f64, f64) {
        (
            self.lon0 + x / self.m_per_deg_lon,
            self.lat0 + y / self.m_per_deg_lat,
        )
    }
}

pub(crate) fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0]).hypot(b[1] - a[1])
}

/// Degrees clockwise from north of the direction from `a` to `b`.
pub(crate) fn bearing_deg(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0])
        .atan2(b[1] - a[1])
        .to_degrees()
        .rem_euclid(360.0)
}

/// The point of the line piece `a`–`b` nearest to `p`: the fraction along it (0..=1) and the
/// distance.
pub(crate) fn project_on_piece(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> (f64, f64) {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let length2 = dx * dx + dy * dy;
    let t = if length2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let q = [a[0] + t * dx, a[1] + t * dy];
    (t, distance(p, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degree_of_latitude_is_111_km_and_round_trips() {
        let plane = Plane::new(120.86, 32.0);
        let [x, y] = plane.to_xy((120.86, 33.0));
        assert!(x.abs() < 1e-9 && (y - 111_195.08).abs() < 0.01, "{y}");
        let p = (120.9, 31.95);
        let back = plane.to_lon_lat(plane.to_xy(p));
        assert!((back.0 - p.0).abs() < 1e-12 && (back.1 - p.1).abs() < 1e-12);
        // A degree of longitude shrinks with the cosine of the latitude.
        let [x, _] = plane.to_xy((121.86, 32.0));
        assert!((x - 111_195.08 * 32f64.to_radians().cos()).abs() < 0.01);
    }

    #[test]
    fn projection_onto_a_piece_clamps_to_its_ends() {
        let (a, b) = ([0.0, 0.0], [10.0, 0.0]);
        assert_eq!(project_on_piece([5.0, 3.0], a, b), (0.5, 3.0));
        assert_eq!(project_on_piece([-4.0, 3.0], a, b), (0.0, 5.0));
        assert_eq!(project_on_piece([14.0, -3.0], a, b), (1.0, 5.0));
        assert_eq!(project_on_piece([1.0, 1.0], a, a).0, 0.0);
        assert!((bearing_deg(a, b) - 90.0).abs() < 1e-9);
        assert!((bearing_deg(b, a) - 270.0).abs() < 1e-9);
    }
}

use std::path::PathBuf;

/// Why a road network could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RoadsError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with an OSM PBF header block.
    #[error("{} is not an OpenStreetMap PBF file: {reason}", path.display())]
    NotPbf { path: PathBuf, reason: String },
    /// The file is not a GeoJSON FeatureCollection of lines.
    #[error("{} is not a GeoJSON road network: {reason}", path.display())]
    NotGeoJson { path: PathBuf, reason: String },
    /// The file starts like a PBF file but is damaged further on.
    #[error("{} is a damaged OpenStreetMap PBF file: {source}", path.display())]
    Pbf {
        path: PathBuf,
        #[source]
        source: osmpbf::Error,
    },
    /// The file holds no way that is a road for cleaning (highway classes I–IV).
    #[error("{} contains no roads (no way with a highway tag of class I–IV and known node positions)", path.display())]
    NoRoads { path: PathBuf },
    /// Sections or grid cells that cannot be assigned.
    #[error("invalid sections or grid cells: {0}")]
    InvalidZones(String),
    /// Parts given to [`crate::RoadNetwork::new`] do not form a network.
    #[error("invalid road network: {0}")]
    InvalidNetwork(String),
}

#[cfg(test)]
mod tests {
    /// Callers wrap the error in `anyhow` and send it across threads.
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<super::RoadsError>();
    }
}

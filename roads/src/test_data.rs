//! The shared test extract, for tests and benchmarks: `../shared/data/monaco.osm.pbf` beside
//! the repository (© OpenStreetMap contributors, ODbL 1.0), never copied into it.

use std::path::PathBuf;

/// The Monaco extract's path when it is there. When it is not, says SKIPPED loudly and
/// returns `None`, or panics when `CLEANFLEET_REQUIRE_EXTERNAL=1` (as CI sets).
pub fn monaco_pbf() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/monaco.osm.pbf");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CLEANFLEET_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!(
            "{} not found and CLEANFLEET_REQUIRE_EXTERNAL=1",
            path.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: monaco.osm.pbf not found at {} ***\n",
        path.display()
    );
    None
}

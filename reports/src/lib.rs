//! What the city, its contractors and its inspectors read: a day's coverage of a scope, per
//! vehicle, per section and day by day, the segments' map, and who may see what. Pure
//! functions over stored segments' days (or passes) and the road network; the API parses a
//! request, authorises it, reads the store, calls these and serialises what they return.

mod access;
mod assessment;
mod context;
mod coverage;
mod days;
mod error;
mod inspections;
mod scope;
mod vehicles;

pub use access::{may_see, may_see_work, may_see_work_in, restrict};
pub use assessment::{
    assess_period, assessment_reads, DayState, DeviceEvidence, PeriodAssessment, PeriodDay,
    PeriodRecords,
};
pub use context::CoverageContext;
pub use coverage::{
    daily_coverage, day_bounds, day_coverage, engine_passes, section_days, segment_feature,
    status_features_json, zone_list, DailyCoverage, DayCoverage, DayShares, Missed, SectionDay,
    Share, ZoneList, ZoneView, MAX_RANGE_DAYS,
};
pub use days::{segment_day, DayStatus, SegmentWork};
pub use error::ReportError;
pub use inspections::{
    failed_sample_features, inspected_segments, road_inspections, sample_of, sample_view,
    InspectionPart, InspectionView, SampleView, ANOTHER_CONTRACTORS, CLEANING_LOOKBACK,
};
pub use scope::{Scope, ScopeSpec};
pub use vehicles::{
    merged_runs, overspeed_runs, section_of_row, vehicle_day_rows, vehicle_days, VehicleDay,
    OVERSPEED_EVENT_GAP_S,
};

//! A contractor's day and month in brief, from the functions the endpoints use: what the
//! demo logs, and what a contractor's dashboard would lead with.

use std::fmt;

use crate::bins::alerts_between;
use cleanfleet_reports::{Scope, ScopeSpec};

use crate::coverage::{context, day, day_status};
use crate::error::ApiError;
use crate::inspection::{assess_contractor, inspections_of_day};
use crate::ApiState;

/// Today in a contractor's sections, and its score for the month so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractorBrief {
    pub contractor: String,
    /// Today, in the city's time zone.
    pub date: String,
    pub length_m: f64,
    pub covered_share: f64,
    pub deep_cleaned_share: f64,
    /// Today's road inspections, and how many passed.
    pub inspections: usize,
    pub inspections_passed: usize,
    /// Today's samples that counted litter, and how many were cleared in time.
    pub litter_seen: usize,
    pub litter_cleared_in_time: usize,
    /// Today's overflow alerts of its bins, and how many were (or are already) late.
    pub overflows: usize,
    pub overflows_late: usize,
    /// `YYYY-MM`.
    pub month: String,
    pub score: f64,
    pub pay_factor: f64,
    pub deductions: usize,
}

impl fmt::Display for ContractorBrief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: covered {:.1} % of {:.1} km (deep-cleaned {:.1} %); {} road inspections, \
             {} passed; litter cleared in time {}/{}; {} bin overflows, {} late; {} score \
             {:.2}, pay factor {:.3} ({} deductions)",
            self.contractor,
            self.date,
            self.covered_share * 100.0,
            self.length_m / 1000.0,
            self.deep_cleaned_share * 100.0,
            self.inspections,
            self.inspections_passed,
            self.litter_cleared_in_time,
            self.litter_seen,
            self.overflows,
            self.overflows_late,
            self.month,
            self.score,
            self.pay_factor,
            self.deductions,
        )
    }
}

/// Today and this month for `contractor`, as its own token would see them.
pub async fn contractor_brief(
    state: &ApiState,
    contractor: &str,
) -> Result<ContractorBrief, ApiError> {
    let ctx = context(state)?;
    let scope = Scope::new(ctx, &ScopeSpec::contractor(contractor))?;
    let (date, status) = day_status(state, None).await?;
    let (_, from, to) = day(state, ctx, Some(date))?;
    let overflows = alerts_between(state, ctx, from, to, Some(contractor)).await?;
    let (summary, _) = status.summary(&ctx.network, |s| scope.contains(s));
    let (_, inspections, _) =
        inspections_of_day(state, ctx, Some(date), &scope, Some(contractor)).await?;
    let litter = inspections.iter().flat_map(|i| &i.litter_clearance);
    let month_start = date.first_of_month();
    let month_end = month_start
        .checked_add(jiff::Span::new().months(1))
        .map_err(|e| ApiError::invalid("date", e.to_string()))?;
    let assessment = assess_contractor(state, ctx, contractor, month_start, month_end)
        .await?
        .assessment;
    Ok(ContractorBrief {
        contractor: contractor.to_owned(),
        date: date.to_string(),
        length_m: summary.total_length_m,
        covered_share: summary.covered_share_by_length(),
        deep_cleaned_share: summary.deep_cleaned_share_by_length(),
        inspections: inspections.len(),
        inspections_passed: inspections.iter().filter(|i| i.result.passed).count(),
        litter_seen: litter.clone().count(),
        litter_cleared_in_time: litter.filter(|l| l.in_time == Some(true)).count(),
        overflows: overflows.len(),
        overflows_late: overflows
            .iter()
            .filter(|a| a.in_time == Some(false))
            .count(),
        month: month_start.strftime("%Y-%m").to_string(),
        score: assessment.score,
        pay_factor: assessment.pay_factor,
        deductions: assessment.deductions.len(),
    })
}

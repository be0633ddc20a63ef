//! Bin overflow alerts and how soon they were answered (DOMAIN.md "Bins"): a bin reading at or
//! above the overflow fill raises an alert; the first later reading at or below the emptied
//! fill (a collection shows as a sharp drop) answers it. A late answer costs the contractor
//! whose section lists the bin (`assessment`). **Pure: no I/O, no clock.**

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `[bins]`: when a bin overflows and how soon it must be emptied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinRules {
    /// A reading at or above this fill raises an alert (vendors use 0.8 or 0.9). Default 0.8.
    pub overflow_fill_ratio: f64,
    /// The first later reading at or below this answers it: the bin was emptied. Default 0.3.
    pub emptied_fill_ratio: f64,
    /// An alert should be answered within this. Default 7200 (2 h).
    pub max_response_s: f64,
}

impl Default for BinRules {
    fn default() -> Self {
        BinRules {
            overflow_fill_ratio: 0.8,
            emptied_fill_ratio: 0.3,
            max_response_s: 7200.0,
        }
    }
}

impl BinRules {
    /// A description of what is wrong, if anything.
    pub fn check(&self) -> Result<(), String> {
        let ratio = |r: f64| (0.0..=1.0).contains(&r);
        if !ratio(self.overflow_fill_ratio) || !ratio(self.emptied_fill_ratio) {
            return Err("fill ratios must be 0 to 1".into());
        }
        if self.emptied_fill_ratio >= self.overflow_fill_ratio {
            return Err("emptied_fill_ratio must be below overflow_fill_ratio".into());
        }
        cleanfleet_coverage::non_negative("max_response_s", self.max_response_s)
    }
}

/// One overflow of one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverflowAlert {
    pub device_id: String,
    /// The first reading at or above the overflow fill.
    pub raised: Timestamp,
    pub peak_fill_ratio: f64,
    /// The first later reading at or below the emptied fill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emptied: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_s: Option<f64>,
    /// Emptied within `max_response_s`: `false` also when not emptied and the limit has passed
    /// by `known_until`; `None` while it may still be answered in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_time: Option<bool>,
}

/// A bin's overflow alerts from its readings `(time, fill)`, in any order and with
/// duplicates. `known_until`: the readings are complete up to this time.
pub fn overflow_alerts(
    rules: &BinRules,
    device_id: &str,
    readings: &[(Timestamp, f64)],
    known_until: Timestamp,
) -> Vec<OverflowAlert> {
    let mut sorted = readings.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    sorted.dedup_by_key(|r| r.0);
    let mut alerts = Vec::new();
    let mut open: Option<OverflowAlert> = None;
    for (time, fill) in sorted {
        match open.as_mut() {
            None if fill >= rules.overflow_fill_ratio => {
                open = Some(OverflowAlert {
                    device_id: device_id.to_owned(),
                    raised: time,
                    peak_fill_ratio: fill,
                    emptied: None,
                    response_s: None,
                    in_time: None,
                });
            }
            None => {}
            Some(alert) if fill <= rules.emptied_fill_ratio => {
                let response_s = time.duration_since(alert.raised).as_secs_f64();
                alert.emptied = Some(time);
                alert.response_s = Some(response_s);
                alert.in_time = Some(response_s <= rules.max_response_s);
                alerts.extend(open.take());
            }
            Some(alert) => alert.peak_fill_ratio = alert.peak_fill_ratio.max(fill),
        }
    }
    if let Some(mut alert) = open {
        let waited_s = known_until.duration_since(alert.raised).as_secs_f64();
        alert.in_time = (waited_s > rules.max_response_s).then_some(false);
        alerts.push(alert);
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_795_000_000 + minutes * 60).unwrap()
    }

    #[test]
    fn an_alert_runs_from_the_first_full_reading_to_the_first_emptied_one() {
        let rules = BinRules::default();
        let readings = [
            (at(0), 0.5),
            (at(10), 0.8),
            (at(20), 0.95),
            // Noise below the overflow fill does not answer it; only emptying does.
            (at(30), 0.7),
            (at(40), 0.9),
            (at(130), 0.3),
            (at(140), 0.35),
            (at(200), 0.85),
            (at(330), 0.05),
            (at(400), 0.9),
        ];
        let alerts = overflow_alerts(&rules, "bin-1", &readings, at(480));
        assert_eq!(alerts.len(), 3, "{alerts:?}");
        let first = &alerts[0];
        assert_eq!((first.raised, first.emptied), (at(10), Some(at(130))));
        assert_eq!(first.peak_fill_ratio, 0.95);
        assert_eq!(
            (first.response_s, first.in_time),
            (Some(7200.0), Some(true)),
            "exactly the limit is in time"
        );
        assert_eq!(
            (alerts[1].response_s, alerts[1].in_time),
            (Some(7800.0), Some(false))
        );
        assert_eq!(
            (alerts[2].emptied, alerts[2].in_time),
            (None, None),
            "80 min open"
        );
        let later = overflow_alerts(&rules, "bin-1", &readings, at(521));
        assert_eq!(later[2].in_time, Some(false), "121 min open");

        // Any order, with duplicates, gives the same alerts.
        let mut shuffled: Vec<(Timestamp, f64)> = readings.iter().rev().copied().collect();
        shuffled.extend_from_slice(&readings[3..6]);
        assert_eq!(overflow_alerts(&rules, "bin-1", &shuffled, at(480)), alerts);
    }

    #[test]
    fn bad_rules_are_named() {
        assert!(BinRules::default().check().is_ok());
        let inverted = BinRules {
            emptied_fill_ratio: 0.9,
            ..BinRules::default()
        };
        assert!(inverted.check().unwrap_err().contains("below"));
        let negative = BinRules {
            max_response_s: -1.0,
            ..BinRules::default()
        };
        assert!(negative.check().is_err());
    }
}

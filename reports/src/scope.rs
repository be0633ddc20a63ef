//! Which segments a report is about.

use cleanfleet_roads::{RoadClass, Segment, Zone, ZoneConfig, Zones};

use crate::{CoverageContext, ReportError};

/// The filters a request gives; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeSpec {
    /// Only segments of this road class.
    pub class: Option<RoadClass>,
    /// Only this section's segments.
    pub section: Option<String>,
    /// Only the segments of this contractor's sections.
    pub contractor: Option<String>,
    /// Only this grid cell's segments.
    pub grid: Option<String>,
    /// Only segments whose midpoint lies in this polygon: `lon lat,lon lat,...` (WGS 84, at
    /// least 3 points).
    pub polygon: Option<String>,
}

impl ScopeSpec {
    /// A contractor's sections.
    pub fn contractor(contractor: &str) -> ScopeSpec {
        ScopeSpec {
            contractor: Some(contractor.to_owned()),
            ..ScopeSpec::default()
        }
    }
}

/// The segments a [`ScopeSpec`] selects, and its name (`city`, `class:I section:S1`, ...).
#[derive(Debug, Clone)]
pub struct Scope {
    class: Option<RoadClass>,
    sections: Option<Vec<bool>>,
    grid: Option<Vec<bool>>,
    polygon: Option<Vec<bool>>,
    name: String,
}

impl Scope {
    /// Every segment.
    pub fn city() -> Scope {
        Scope {
            class: None,
            sections: None,
            grid: None,
            polygon: None,
            name: "city".into(),
        }
    }

    /// The segments `spec` selects; a section, contractor or grid cell the city does not
    /// have is not found, a polygon that is not one is invalid.
    pub fn new(ctx: &CoverageContext, spec: &ScopeSpec) -> Result<Scope, ReportError> {
        let segments = ctx.network.segments().len();
        let member = |ids: &mut dyn Iterator<Item = u32>| {
            let mut m = vec![false; segments];
            for s in ids {
                m[s as usize] = true;
            }
            m
        };
        let mut names = Vec::new();
        let mut sections: Option<Vec<bool>> = None;
        if let Some(id) = &spec.section {
            let zone = ctx.zones.section(id).ok_or_else(|| ReportError::NotFound {
                resource: "section",
                id: id.clone(),
            })?;
            sections = Some(member(&mut zone.segments.iter().copied()));
            names.push(format!("section:{id}"));
        }
        if let Some(contractor) = &spec.contractor {
            let zones: Vec<_> = ctx
                .zones
                .sections()
                .iter()
                .filter(|z| z.contractor.as_deref() == Some(contractor.as_str()))
                .collect();
            if zones.is_empty() {
                return Err(ReportError::NotFound {
                    resource: "contractor",
                    id: contractor.clone(),
                });
            }
            let theirs = member(&mut zones.iter().flat_map(|z| z.segments.iter().copied()));
            sections = Some(match sections {
                Some(s) => s.iter().zip(&theirs).map(|(a, b)| *a && *b).collect(),
                None => theirs,
            });
            names.push(format!("contractor:{contractor}"));
        }
        let grid = match &spec.grid {
            Some(id) => {
                let zone = ctx.zones.grid(id).ok_or_else(|| ReportError::NotFound {
                    resource: "grid cell",
                    id: id.clone(),
                })?;
                names.push(format!("grid:{id}"));
                Some(member(&mut zone.segments.iter().copied()))
            }
            None => None,
        };
        let polygon = match &spec.polygon {
            Some(text) => {
                let ring = parse_ring(text)?;
                let zone = ZoneConfig {
                    id: "polygon".into(),
                    polygons: vec![ring],
                    ..ZoneConfig::default()
                };
                let zones = Zones::new(&ctx.network, &[zone], &[])
                    .map_err(|e| ReportError::invalid("polygon", e.to_string()))?;
                names.push("polygon".into());
                Some(member(&mut zones.sections()[0].segments.iter().copied()))
            }
            None => None,
        };
        if let Some(c) = spec.class {
            names.push(format!("class:{c}"));
        }
        Ok(Scope {
            class: spec.class,
            sections,
            grid,
            polygon,
            name: if names.is_empty() {
                "city".into()
            } else {
                names.join(" ")
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// No filter: the whole city.
    pub fn is_city(&self) -> bool {
        self.class.is_none()
            && self.sections.is_none()
            && self.grid.is_none()
            && self.polygon.is_none()
    }

    /// When the scope is whole sections and road classes (the city, a section, a
    /// contractor's, a class of either): whether work in `section` (`None`: outside every
    /// section) on roads of a class (`I`...) is in it. `None` when it cuts through sections
    /// (a grid cell, a polygon).
    pub fn row_filter(&self) -> Option<impl Fn(Option<&Zone>, &str) -> bool + '_> {
        if self.grid.is_some() || self.polygon.is_some() {
            return None;
        }
        Some(move |section: Option<&Zone>, class: &str| {
            self.class.is_none_or(|c| c.as_str() == class)
                && match &self.sections {
                    None => true,
                    // Section masks hold whole sections: one segment tells.
                    Some(mask) => section
                        .and_then(|z| z.segments.first())
                        .is_some_and(|&s| mask[s as usize]),
                }
        })
    }

    pub fn contains(&self, s: &Segment) -> bool {
        let i = s.id as usize;
        self.class.is_none_or(|c| s.class == c)
            && self.sections.as_ref().is_none_or(|m| m[i])
            && self.grid.as_ref().is_none_or(|m| m[i])
            && self.polygon.as_ref().is_none_or(|m| m[i])
    }
}

/// `lon lat,lon lat,...`: at least 3 points, each in range.
fn parse_ring(text: &str) -> Result<Vec<(f64, f64)>, ReportError> {
    let bad = || {
        ReportError::invalid(
            "polygon",
            "must be at least 3 points `lon lat` separated by commas",
        )
    };
    let ring: Vec<(f64, f64)> = text
        .split(',')
        .map(|point| {
            let mut numbers = point.split_whitespace().map(str::parse::<f64>);
            match (numbers.next(), numbers.next(), numbers.next()) {
                (Some(Ok(lon)), Some(Ok(lat)), None)
                    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) =>
                {
                    Ok((lon, lat))
                }
                _ => Err(bad()),
            }
        })
        .collect::<Result<_, _>>()?;
    if ring.len() < 3 {
        return Err(bad());
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::demo_context;

    #[test]
    fn filters_combine_and_name_the_scope() {
        let ctx = demo_context(None);
        let city = Scope::new(&ctx, &ScopeSpec::default()).unwrap();
        assert!(city.is_city() && city.name() == "city");
        assert!(ctx.network.segments().iter().all(|s| city.contains(s)));
        let section = ctx.zones.sections()[0].id.clone();
        let spec = ScopeSpec {
            class: Some(RoadClass::I),
            section: Some(section.clone()),
            ..ScopeSpec::default()
        };
        let scope = Scope::new(&ctx, &spec).unwrap();
        assert_eq!(scope.name(), format!("section:{section} class:I"));
        for s in ctx.network.segments() {
            let expected = s.class == RoadClass::I
                && ctx.zones.section_of(s.id).is_some_and(|z| z.id == section);
            assert_eq!(scope.contains(s), expected, "segment {}", s.id);
        }
    }

    #[test]
    fn what_the_city_does_not_have_is_not_found_and_a_bad_polygon_is_invalid() {
        let ctx = demo_context(None);
        let err = |spec: ScopeSpec| Scope::new(&ctx, &spec).unwrap_err();
        assert_eq!(
            err(ScopeSpec::contractor("nobody")),
            ReportError::NotFound {
                resource: "contractor",
                id: "nobody".into()
            }
        );
        assert!(matches!(
            err(ScopeSpec {
                grid: Some("Z9".into()),
                ..ScopeSpec::default()
            }),
            ReportError::NotFound {
                resource: "grid cell",
                ..
            }
        ));
        for polygon in ["1 2,3 4", "1 2 3,4 5,6 7", "200 0,0 0,1 1", "a b,c d,e f"] {
            assert!(
                matches!(
                    err(ScopeSpec {
                        polygon: Some(polygon.into()),
                        ..ScopeSpec::default()
                    }),
                    ReportError::Invalid {
                        field: "polygon",
                        ..
                    }
                ),
                "{polygon}"
            );
        }
    }
}

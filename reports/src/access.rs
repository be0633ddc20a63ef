//! Who may see what. A contractor (`viewer`) sees only its own: its sections, its devices'
//! work anywhere, and on its sections the work of devices under no contractor; never another
//! contractor's. City staff (`None`) see everything.

use cleanfleet_roads::{Zone, Zones};

use crate::{ReportError, ScopeSpec};

/// Narrows a contractor's request to its own sections: asking for another contractor, or a
/// section not its own, finds nothing.
pub fn restrict(
    mut spec: ScopeSpec,
    viewer: Option<&str>,
    zones: &Zones,
) -> Result<ScopeSpec, ReportError> {
    let Some(mine) = viewer else {
        return Ok(spec);
    };
    if let Some(other) = spec.contractor.as_deref().filter(|c| *c != mine) {
        return Err(ReportError::NotFound {
            resource: "contractor",
            id: other.to_owned(),
        });
    }
    if let Some(section) = &spec.section {
        if zones.section(section).and_then(|z| z.contractor.as_deref()) != Some(mine) {
            return Err(ReportError::NotFound {
                resource: "section",
                id: section.clone(),
            });
        }
    }
    spec.contractor = Some(mine.to_owned());
    Ok(spec)
}

/// Whether `viewer` may see a device's work on a segment.
pub fn may_see_work(zones: &Zones, viewer: Option<&str>, device_id: &str, segment: u32) -> bool {
    may_see_work_in(zones, viewer, device_id, zones.section_of(segment))
}

/// Whether `viewer` may see a device's work in a section (`None`: outside every section).
pub fn may_see_work_in(
    zones: &Zones,
    viewer: Option<&str>,
    device_id: &str,
    section: Option<&Zone>,
) -> bool {
    let Some(mine) = viewer else {
        return true;
    };
    match zones.contractor_of_device(device_id) {
        Some(owner) => owner == mine,
        None => section.and_then(|z| z.contractor.as_deref()) == Some(mine),
    }
}

/// Whether a segment lies in `viewer`'s sections (any segment for city staff).
pub fn may_see(zones: &Zones, viewer: Option<&str>, segment: u32) -> bool {
    match viewer {
        None => true,
        Some(mine) => {
            zones
                .section_of(segment)
                .and_then(|z| z.contractor.as_deref())
                == Some(mine)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::{demo_context, street_of};
    use cleanfleet_roads::{RoadNetwork, ZoneConfig};

    #[test]
    fn a_contractor_sees_its_own_devices_work_and_unowned_work_on_its_streets() {
        let (mut demo, _) = Zones::demo_configs(&RoadNetwork::demo());
        // A fifth section of no contractor, claiming one segment and listing sw-09.
        demo.insert(
            0,
            ZoneConfig {
                id: "X".into(),
                segments: vec![0],
                devices: vec!["sw-09".into()],
                ..Default::default()
            },
        );
        let ctx = demo_context(Some(demo));
        let zones = &ctx.zones;
        let (acme_street, green_street) = (
            street_of(&ctx, "acme-cleaning").id,
            street_of(&ctx, "green-city").id,
        );
        let acme = Some("acme-cleaning");
        // Its own vehicle, anywhere.
        assert!(may_see_work(zones, acme, "sw-01", acme_street));
        assert!(may_see_work(zones, acme, "sw-01", green_street));
        // Another contractor's, nowhere, not even on acme's streets.
        assert!(!may_see_work(zones, acme, "sw-02", acme_street));
        // Unlisted, or listed under a section of no contractor: on acme's streets only.
        for unowned in ["sw-05", "sw-09"] {
            assert!(may_see_work(zones, acme, unowned, acme_street), "{unowned}");
            assert!(
                !may_see_work(zones, acme, unowned, green_street),
                "{unowned}"
            );
            assert!(
                !may_see_work(zones, acme, unowned, 0),
                "{unowned}: X is nobody's"
            );
        }
        // City staff see everything.
        assert!(may_see_work(zones, None, "sw-02", acme_street));
    }

    #[test]
    fn a_contractor_is_narrowed_to_its_own_sections() {
        let ctx = demo_context(None);
        let zones = &ctx.zones;
        let acme = Some("acme-cleaning");
        let narrowed = restrict(ScopeSpec::default(), acme, zones).unwrap();
        assert_eq!(narrowed.contractor.as_deref(), Some("acme-cleaning"));
        assert_eq!(
            restrict(ScopeSpec::contractor("green-city"), acme, zones),
            Err(ReportError::NotFound {
                resource: "contractor",
                id: "green-city".into()
            })
        );
        let green_section = zones
            .sections()
            .iter()
            .find(|z| z.contractor.as_deref() == Some("green-city"))
            .unwrap()
            .id
            .clone();
        let theirs = ScopeSpec {
            section: Some(green_section),
            ..ScopeSpec::default()
        };
        assert!(matches!(
            restrict(theirs.clone(), acme, zones),
            Err(ReportError::NotFound {
                resource: "section",
                ..
            })
        ));
        // City staff ask for what they like.
        assert_eq!(restrict(theirs.clone(), None, zones), Ok(theirs));
    }
}

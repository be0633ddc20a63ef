//! MQTT topic names and filters (MQTT 3.1.1 §4.7).

/// A topic a client may publish to: not empty, no wildcard, no NUL.
pub fn is_valid_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A subscription filter: `+` alone in its level, `#` alone and last.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        l => !l.contains(['+', '#']),
    })
}

/// A shared subscription `$share/{group}/{filter}` split into its group and filter.
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    let (group, filter) = filter.strip_prefix("$share/")?.split_once('/')?;
    (!group.is_empty() && !group.contains(['+', '#'])).then_some((group, filter))
}

/// Whether `filter` (valid) matches `topic` (a valid name). Wildcards at the first level do
/// not match topics that start with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            l => {
                if topic_levels.next() != Some(l) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn filters_match_as_the_standard_says() {
        let cases = [
            ("cleanfleet/v1/#", "cleanfleet/v1/sweeper/sw-1/fixes", true),
            ("cleanfleet/v1/#", "cleanfleet/v1", true),
            (
                "cleanfleet/v1/+/+/fixes",
                "cleanfleet/v1/sweeper/sw-1/fixes",
                true,
            ),
            (
                "cleanfleet/v1/+/+/fixes",
                "cleanfleet/v1/sweeper/sw-1/status",
                false,
            ),
            ("cleanfleet/v1/+", "cleanfleet/v1/sweeper/sw-1", false),
            ("+/+", "/x", true),
            ("#", "a/b/c", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} {topic}");
        }
    }

    #[test]
    fn names_and_filters_are_checked() {
        assert!(is_valid_name("cleanfleet/v1/sweeper/sw-1/fixes"));
        for bad in ["", "a/+/b", "a/#", "a\0b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        for good in ["#", "+", "a/+/b", "a/#", "+/+/#"] {
            assert!(is_valid_filter(good), "{good}");
        }
        for bad in ["", "a/#/b", "a+/b", "a/b#", "#/a"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
        assert_eq!(
            shared("$share/g/cleanfleet/v1/#"),
            Some(("g", "cleanfleet/v1/#"))
        );
        assert_eq!(shared("$share//x"), None);
        assert_eq!(shared("$share/g"), None);
        assert_eq!(shared("cleanfleet/v1/#"), None);
    }

    /// Brute force: a filter matches a topic when each level is equal or `+`, and a final
    /// `#` takes the rest (and its parent).
    fn brute(filter: &[String], topic: &[String]) -> bool {
        match (filter.first().map(String::as_str), topic.first()) {
            (Some("#"), _) => true,
            (Some("+"), Some(_)) => brute(&filter[1..], &topic[1..]),
            (Some(f), Some(t)) => f == t && brute(&filter[1..], &topic[1..]),
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_brute_force(
            topic in prop::collection::vec(prop::sample::select(vec!["a", "b", ""]), 1..5),
            filter in prop::collection::vec(prop::sample::select(vec!["a", "b", "", "+"]), 0..5),
            hash in any::<bool>(),
        ) {
            let mut filter: Vec<String> = filter.into_iter().map(String::from).collect();
            if hash || filter.is_empty() {
                filter.push("#".into());
            }
            let topic: Vec<String> = topic.into_iter().map(String::from).collect();
            let (f, t) = (filter.join("/"), topic.join("/"));
            // A single empty level is the empty string, which is no filter.
            prop_assume!(!f.is_empty());
            prop_assert!(is_valid_filter(&f));
            prop_assert_eq!(matches(&f, &t), brute(&filter, &topic), "{} {}", f, t);
        }
    }
}

//! Validated topic filters (spec 4.7), including shared subscriptions
//! `$share/{group}/{filter}` (4.8.2).

use bytestring::ByteString;

/// Why a filter was refused; answered per entry in SUBACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("empty topic filter")]
    Empty,
    #[error("'#' must be the last level and alone in it")]
    MisplacedHash,
    #[error("'+' must be alone in its level")]
    MisplacedPlus,
    #[error(
        "shared subscription needs $share/<group>/<filter> with a group free of wildcards and '/'"
    )]
    BadShare,
    #[error("topic filter has {levels} levels, more than the limit of {max}")]
    TooManyLevels { levels: usize, max: usize },
}

/// A topic filter that passed validation. `filter` is the part matched
/// against topics; `share_group` is set for `$share/...` subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    /// The filter as the client sent it (key for UNSUBSCRIBE).
    pub raw: ByteString,
    pub share_group: Option<ByteString>,
    /// The filter matched against topic names (without `$share/group/`).
    pub filter: ByteString,
}

impl TopicFilter {
    /// The filter owns its bytes (a copy of `raw`): subscriptions live far
    /// longer than the SUBSCRIBE they came in, which may be a megabyte.
    pub fn parse(raw: ByteString, max_levels: usize) -> Result<TopicFilter, FilterError> {
        let raw = crate::codec::owned_string(&raw);
        let (share_group, filter) = if let Some(rest) = raw.strip_prefix("$share/") {
            let Some((group, filter)) = rest.split_once('/') else {
                return Err(FilterError::BadShare);
            };
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return Err(FilterError::BadShare);
            }
            (Some(ByteString::from(group)), ByteString::from(filter))
        } else {
            (None, raw.clone())
        };
        validate_filter(&filter, max_levels)?;
        Ok(TopicFilter {
            raw,
            share_group,
            filter,
        })
    }

    pub fn has_wildcard(&self) -> bool {
        self.filter.contains(['+', '#'])
    }
}

fn validate_filter(filter: &str, max_levels: usize) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    let levels = filter.split('/').count();
    if levels > max_levels {
        return Err(FilterError::TooManyLevels {
            levels,
            max: max_levels,
        });
    }
    let mut it = filter.split('/').peekable();
    while let Some(level) = it.next() {
        if level.contains('#') && (level != "#" || it.peek().is_some()) {
            return Err(FilterError::MisplacedHash);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::MisplacedPlus);
        }
    }
    Ok(())
}

/// Whether `filter` (already valid, without `$share`) matches topic name
/// `topic`. Topics starting with `$` are not matched by a leading wildcard.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &'static str) -> Result<TopicFilter, FilterError> {
        TopicFilter::parse(ByteString::from_static(s), 32)
    }

    #[test]
    fn valid_filters() {
        for f in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#", "sport/+",
        ] {
            assert!(parse(f).is_ok(), "{f}");
        }
    }

    #[test]
    fn invalid_filters() {
        assert_eq!(parse(""), Err(FilterError::Empty));
        assert_eq!(parse("a/#/b"), Err(FilterError::MisplacedHash));
        assert_eq!(parse("a#"), Err(FilterError::MisplacedHash));
        assert_eq!(parse("a/b+"), Err(FilterError::MisplacedPlus));
        assert_eq!(parse("+a"), Err(FilterError::MisplacedPlus));
        assert!(matches!(
            TopicFilter::parse("a/b/c".into(), 2),
            Err(FilterError::TooManyLevels { levels: 3, max: 2 })
        ));
    }

    #[test]
    fn shared_subscriptions_parse_group_and_filter() {
        let f = parse("$share/g1/a/+").unwrap();
        assert_eq!(f.share_group.as_deref(), Some("g1"));
        assert_eq!(&*f.filter, "a/+");
        for bad in [
            "$share/g1",
            "$share//a",
            "$share/g+/a",
            "$share/g#/a",
            "$share/g/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// A subscription lives far longer than its SUBSCRIBE: the filter must
    /// not point into (and keep alive) the packet it was decoded from.
    #[test]
    fn a_parsed_filter_owns_its_bytes() {
        let packet = bytes::Bytes::from(format!("{}a/+/c", "x".repeat(1000)));
        let inside = packet.as_ptr_range();
        let raw = ByteString::try_from(packet.slice(1000..)).expect("utf-8");
        assert!(inside.contains(&raw.as_ptr()));
        for source in [raw.clone(), ByteString::from(format!("$share/g/{raw}"))] {
            let f = TopicFilter::parse(source, 32).expect("valid");
            assert_eq!(&*f.filter, "a/+/c");
            for part in [&f.raw, &f.filter] {
                assert!(!inside.contains(&part.as_ptr()), "{part}");
            }
        }
    }

    #[test]
    fn matching_rules() {
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("sport/#", "sport/tennis/player1"));
        assert!(filter_matches("sport/+", "sport/"));
        assert!(!filter_matches("sport/+", "sport"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(filter_matches("#", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        assert!(!filter_matches("#", "$SYS/a"));
        assert!(!filter_matches("+/a", "$SYS/a"));
        assert!(filter_matches("$SYS/#", "$SYS/a"));
        assert!(filter_matches("$SYS/#", "$SYS"));
        assert!(filter_matches("$SYS/+", "$SYS/a"));
    }
}

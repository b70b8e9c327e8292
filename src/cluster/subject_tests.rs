use std::collections::HashMap;

use super::*;
use crate::topic::filter_matches;

fn space() -> SubjectSpace {
    SubjectSpace::new("sl.m").unwrap()
}

/// NATS subject matching (as nats-server's sublist does it): `*` is one
/// token, `>` one or more, everything else equal tokens.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let subject: Vec<&str> = subject.split('.').collect();
    for (i, token) in pattern.split('.').enumerate() {
        if token == ">" {
            return subject.len() > i;
        }
        match subject.get(i) {
            Some(s) if token == "*" || token == *s => {}
            _ => return false,
        }
    }
    pattern.split('.').count() == subject.len()
}

/// A literal NATS subject a client may publish to: non-empty tokens, no
/// whitespace or control characters, no wildcard characters.
fn is_literal_subject(subject: &str) -> bool {
    subject.split('.').all(|t| {
        !t.is_empty()
            && !t
                .chars()
                .any(|c| c.is_control() || c == ' ' || c == '*' || c == '>')
    })
}

#[test]
fn levels_map_as_the_nats_mqtt_gateway_maps_them() {
    for (topic, subject) in [
        ("foo", "sl.m.t.foo"),
        ("foo/bar", "sl.m.t.foo.bar"),
        ("foo//bar", "sl.m.t.foo./.bar"),
        ("/foo", "sl.m.t./.foo"),
        ("foo/", "sl.m.t.foo./"),
        ("/", "sl.m.t././"),
        ("//", "sl.m.t./././"),
        ("a.b/c", "sl.m.t.a//b.c"),
        ("...", "sl.m.t.//////"),
        ("$SYS/broker/uptime", "sl.m.s.$SYS.broker.uptime"),
        ("a$/b", "sl.m.t.a$.b"),
    ] {
        assert_eq!(space().topic_subject(topic).unwrap(), subject, "{topic}");
        assert_eq!(space().topic_of(subject).unwrap(), topic, "{subject}");
    }
}

#[test]
fn what_nats_cannot_carry_is_escaped() {
    for (topic, subject) in [
        ("a b", "sl.m.t.a/20b"),
        ("tab\there", "sl.m.t.tab/09here"),
        ("line\r\nend", "sl.m.t.line/0d/0aend"),
        ("del\u{7f}", "sl.m.t.del/7f"),
        ("*", "sl.m.t./2a"),
        ("a/>", "sl.m.t.a./3e"),
        ("x*y>z", "sl.m.t.x/2ay/3ez"),
        ("ünï/çødé", "sl.m.t.ünï.çødé"),
    ] {
        assert_eq!(space().topic_subject(topic).unwrap(), subject, "{topic}");
        assert!(is_literal_subject(subject), "{subject}");
        assert_eq!(space().topic_of(subject).unwrap(), topic, "{subject}");
    }
}

#[test]
fn filters_map_wildcards_and_the_parent_of_hash() {
    for (filter, subjects) in [
        ("a/b", &["sl.m.t.a.b"][..]),
        ("+", &["sl.m.t.*"]),
        ("#", &["sl.m.t.>"]),
        ("a/+/c", &["sl.m.t.a.*.c"]),
        ("a/#", &["sl.m.t.a", "sl.m.t.a.>"]),
        ("+/#", &["sl.m.t.*", "sl.m.t.*.>"]),
        ("a//#", &["sl.m.t.a./", "sl.m.t.a./.>"]),
        ("$SYS/#", &["sl.m.s.$SYS", "sl.m.s.$SYS.>"]),
        ("a.b/+", &["sl.m.t.a//b.*"]),
    ] {
        assert_eq!(space().filter_subjects(filter), subjects, "{filter}");
    }
}

#[test]
fn bad_topics_prefixes_and_subjects_are_refused() {
    for topic in ["", "a/+", "#", "a/#/b"] {
        assert_eq!(
            space().topic_subject(topic),
            Err(SubjectError::BadTopic(topic.into()))
        );
    }
    for prefix in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\tb"] {
        assert!(SubjectSpace::new(prefix).is_err(), "{prefix:?}");
    }
    for subject in [
        "other.t.a",
        "sl.m",
        "sl.m.t",
        "sl.mx.t.a",
        "sl.m.s.a",
        "sl.m.t.$a",
    ] {
        assert_eq!(
            space().topic_of(subject),
            Err(SubjectError::Foreign(subject.into())),
            "{subject}"
        );
    }
    for subject in [
        "sl.m.t.a..b",
        "sl.m.t.a/b",
        "sl.m.t.a/",
        "sl.m.t.a/x",
        "sl.m.t./41",
        "sl.m.t./2A",
        "sl.m.t./2",
        "sl.m.t.+",
        "sl.m.t.a.#",
    ] {
        assert_eq!(
            space().topic_of(subject),
            Err(SubjectError::BadToken(subject.into())),
            "{subject}"
        );
    }
}

/// A small deterministic generator (xorshift64*): the same cases on every
/// run, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// A topic of 1–4 levels from pieces that exercise every rule; few
    /// distinct pieces, so that filters made the same way often match.
    fn topic(&mut self) -> String {
        const PIECES: &[&str] = &[
            "", "a", "b", ".", "a.b", " ", "$", "$S", "*", ">", "\t", "é", "x*", "\u{7f}",
        ];
        loop {
            let levels = 1 + self.below(4);
            let topic = (0..levels)
                .map(|_| self.pick(PIECES).to_owned() + self.pick(&["", "a"]))
                .collect::<Vec<_>>()
                .join("/");
            // A topic name is never empty.
            if !topic.is_empty() {
                return topic;
            }
        }
    }

    /// A filter: a topic with some levels made `+`, maybe ending in `#`.
    fn filter(&mut self) -> String {
        let topic = self.topic();
        let mut levels: Vec<&str> = topic
            .split('/')
            .map(|l| if self.below(3) == 0 { "+" } else { l })
            .collect();
        match self.below(4) {
            0 => levels.push("#"),
            1 => {
                let keep = self.below(levels.len());
                levels.truncate(keep);
                levels.push("#");
            }
            _ => {}
        }
        levels.join("/")
    }
}

#[test]
fn every_topic_round_trips_to_its_own_literal_subject() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut seen: HashMap<String, String> = HashMap::new();
    for _ in 0..20_000 {
        let topic = rng.topic();
        let subject = space().topic_subject(&topic).unwrap();
        assert!(is_literal_subject(&subject), "{topic:?} -> {subject:?}");
        assert_eq!(space().topic_of(&subject).unwrap(), topic, "{subject:?}");
        if let Some(other) = seen.insert(subject.clone(), topic.clone()) {
            assert_eq!(other, topic, "two topics, one subject {subject:?}");
        }
    }
    assert!(
        seen.len() > 5_000,
        "too few distinct topics: {}",
        seen.len()
    );
}

#[test]
fn a_filter_matches_a_topic_iff_one_of_its_subjects_matches() {
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    let (mut matched, mut missed) = (0, 0);
    for _ in 0..20_000 {
        let filter = rng.filter();
        let topic = rng.topic();
        let subject = space().topic_subject(&topic).unwrap();
        let mqtt = filter_matches(&filter, &topic);
        let nats = space()
            .filter_subjects(&filter)
            .iter()
            .any(|pattern| nats_matches(pattern, &subject));
        assert_eq!(mqtt, nats, "filter {filter:?} topic {topic:?}");
        if mqtt {
            matched += 1;
        } else {
            missed += 1;
        }
    }
    // Both outcomes are well represented, or the test proves little.
    assert!(matched > 1_000 && missed > 1_000, "{matched} {missed}");
}

#[test]
fn leading_wildcards_do_not_reach_dollar_topics() {
    let subject = space().topic_subject("$SYS/x").unwrap();
    for filter in ["#", "+/x", "+/#"] {
        assert!(!space()
            .filter_subjects(filter)
            .iter()
            .any(|p| nats_matches(p, &subject)));
    }
    assert!(space()
        .filter_subjects("$SYS/+")
        .iter()
        .any(|p| nats_matches(p, &subject)));
}

#[test]
fn topics_and_filters_past_what_a_nats_protocol_line_holds_are_not_mapped() {
    let s = space();
    // `*` is escaped in three bytes: 1,300 of them pass 3,840.
    let long = format!("a/{}", "*".repeat(1300));
    assert_eq!(
        s.topic_subject(&long),
        Err(SubjectError::TooLong(long.len()))
    );
    assert!(s.filter_subjects(&format!("{long}/#")).is_empty());
    let fits = format!("a/{}", "*".repeat(1200));
    let subject = s.topic_subject(&fits).expect("fits");
    assert!(subject.len() <= MAX_SUBJECT_BYTES);
    assert_eq!(s.filter_subjects(&fits), vec![subject]);
}

#[test]
fn a_long_hash_filter_keeps_its_parent_subject_when_only_the_wildcard_one_is_too_long() {
    let s = space();
    let base = s.topic_subject("a/x").expect("short").len();
    // A topic whose subject is one byte under the bound: `.>` passes it.
    let topic = format!("a/{}", "x".repeat(MAX_SUBJECT_BYTES - base));
    let subject = s.topic_subject(&topic).expect("fits");
    assert_eq!(subject.len(), MAX_SUBJECT_BYTES - 1);
    assert_eq!(s.filter_subjects(&format!("{topic}/#")), vec![subject]);
}

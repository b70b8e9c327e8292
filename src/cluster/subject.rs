//! MQTT topic names and filters as NATS subjects, so that NATS carries a
//! message only to the nodes whose clients subscribed to it, and a node
//! gets back the exact MQTT topic a message was published to.
//!
//! Levels become tokens the way nats-server's own MQTT gateway converts
//! them, so a NATS user reading our subjects sees familiar names:
//! `/` separates tokens as `.` does, an empty level is the token `/`
//! (`a//b` → `a./.b`, `/a` → `/.a`, `a/` → `a./`) and a `.` inside a level
//! is escaped as `//` (`a.b` → `a//b`). The gateway refuses what it cannot
//! carry (spaces and other whitespace); a Sluice node must carry every
//! topic a single node accepts, so the rest is escaped as `/` and two hex
//! digits: ASCII control characters, space, and `*` and `>` (which NATS
//! would read as wildcards). A level's token never holds a lone `/`
//! otherwise, so the escapes cannot be confused and the mapping is
//! injective; [`SubjectSpace::topic_of`] inverts it.
//!
//! Every subject starts with the configured prefix and a class token:
//! [`PLAIN`] for ordinary topics and [`DOLLAR`] for topics whose first
//! level starts with `$`. MQTT never lets a leading wildcard match a `$`
//! topic (4.7.2), while NATS' `*` and `>` match any token; putting the two
//! kinds under different class tokens gives NATS that rule for free.
//!
//! In filters `+` becomes `*` and `#` becomes `>`. MQTT's `a/#` also
//! matches `a` itself while NATS' `a.>` needs one more token, so such a
//! filter maps to two subjects, `a` and `a.>` (as the gateway subscribes).

use std::fmt::Write;

/// The class token of topics whose first level does not start with `$`.
pub const PLAIN: &str = "t";
/// The class token of topics whose first level starts with `$` (`$SYS/…`).
pub const DOLLAR: &str = "s";

/// The longest subject a node publishes to or subscribes to. A NATS
/// server reads protocol lines of at most 4,096 bytes (its default
/// `max_control_line`) and closes a connection that sends a longer one;
/// a PUB or SUB line holds the subject, a reply inbox and sizes. One
/// publish to a long topic (escapes take three bytes a character) closed
/// a node's connection, and the link sent it again after every reconnect.
/// Topics and filters past this stay on their node.
pub const MAX_SUBJECT_BYTES: usize = 3_840;

/// Why a prefix, topic or subject could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject prefix {0:?} must be dot-separated non-empty tokens without spaces, control characters, '*' or '>'")]
    BadPrefix(String),
    #[error("topic name {0:?} is empty or holds a wildcard")]
    BadTopic(String),
    #[error("topic name of {0} bytes maps to a subject longer than NATS carries ({MAX_SUBJECT_BYTES} bytes)")]
    TooLong(usize),
    #[error("subject {0:?} is not under this node's subject prefix and class")]
    Foreign(String),
    #[error("subject {0:?} holds a token that no topic maps to")]
    BadToken(String),
}

/// The subjects of one cluster: a validated prefix they all start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSpace {
    prefix: String,
}

impl SubjectSpace {
    /// `prefix` is one or more literal NATS tokens (`sluice.msg`).
    pub fn new(prefix: &str) -> Result<SubjectSpace, SubjectError> {
        let literal_token = |t: &str| {
            !t.is_empty()
                && !t
                    .chars()
                    .any(|c| c.is_ascii_control() || c == ' ' || c == '*' || c == '>')
        };
        if !prefix.split('.').all(literal_token) {
            return Err(SubjectError::BadPrefix(prefix.to_owned()));
        }
        Ok(SubjectSpace {
            prefix: prefix.to_owned(),
        })
    }

    /// The subject a message published to `topic` goes to. The topic is
    /// checked as PUBLISH checks it: not empty, no wildcard.
    pub fn topic_subject(&self, topic: &str) -> Result<String, SubjectError> {
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(SubjectError::BadTopic(topic.to_owned()));
        }
        let mut subject = self.class_root(topic);
        for level in topic.split('/') {
            subject.push('.');
            push_level(&mut subject, level);
        }
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(SubjectError::TooLong(topic.len()));
        }
        Ok(subject)
    }

    /// The subjects that together receive what `filter` matches: one, or
    /// two when it ends in `/#` (the parent level and everything below);
    /// those longer than [`MAX_SUBJECT_BYTES`] left out (no topic that
    /// long crosses nodes either). `filter` is a valid filter
    /// without `$share/group/` ([`crate::topic::TopicFilter::filter`]).
    pub fn filter_subjects(&self, filter: &str) -> Vec<String> {
        let mut subject = self.class_root(filter);
        let mut parent = None;
        for (i, level) in filter.split('/').enumerate() {
            match level {
                "+" => subject.push_str(".*"),
                "#" => {
                    if i > 0 {
                        parent = Some(subject.clone());
                    }
                    subject.push_str(".>");
                }
                literal => {
                    subject.push('.');
                    push_level(&mut subject, literal);
                }
            }
        }
        // `a/#` whose `a.>` is too long may still have `a` short enough:
        // topic `a` crosses nodes, so its subject is kept.
        parent
            .into_iter()
            .chain([subject])
            .filter(|s| s.len() <= MAX_SUBJECT_BYTES)
            .collect()
    }

    /// The MQTT topic a subject of this space was mapped from.
    pub fn topic_of(&self, subject: &str) -> Result<String, SubjectError> {
        let foreign = || SubjectError::Foreign(subject.to_owned());
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(foreign)?;
        let (class, levels) = rest.split_once('.').ok_or_else(foreign)?;
        let mut topic = String::with_capacity(levels.len());
        for (i, token) in levels.split('.').enumerate() {
            if i > 0 {
                topic.push('/');
            }
            decode_token(token, &mut topic)
                .ok_or_else(|| SubjectError::BadToken(subject.to_owned()))?;
        }
        if class != class_of(&topic) {
            return Err(foreign());
        }
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(SubjectError::BadToken(subject.to_owned()));
        }
        Ok(topic)
    }

    /// `prefix.class` for a topic or filter: a filter starting with a
    /// wildcard is plain, as MQTT's `$` rule wants.
    fn class_root(&self, topic_or_filter: &str) -> String {
        let mut root = String::with_capacity(self.prefix.len() + topic_or_filter.len() + 8);
        root.push_str(&self.prefix);
        root.push('.');
        root.push_str(class_of(topic_or_filter));
        root
    }
}

fn class_of(topic: &str) -> &'static str {
    if topic.starts_with('$') {
        DOLLAR
    } else {
        PLAIN
    }
}

/// Whether `c` is written as `/` and two hex digits.
fn escaped(c: char) -> bool {
    c.is_ascii_control() || c == ' ' || c == '*' || c == '>'
}

/// Appends one level's token: `/` for an empty level, `//` for each `.`,
/// `/hh` for what [`escaped`] names, every other character as it is.
fn push_level(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push('/');
        return;
    }
    for c in level.chars() {
        match c {
            '.' => out.push_str("//"),
            c if escaped(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "/{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Appends the level a token stands for; `None` for a token no level maps
/// to (empty, a lone `/` inside a longer token, a bad escape).
fn decode_token(token: &str, out: &mut String) -> Option<()> {
    if token == "/" {
        return Some(());
    }
    if token.is_empty() {
        return None;
    }
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '/' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '/' => out.push('.'),
            high => {
                let low = chars.next()?;
                let code = hex_digit(high)? * 16 + hex_digit(low)?;
                let c = char::from_u32(code).filter(|&c| escaped(c))?;
                out.push(c);
            }
        }
    }
    Some(())
}

/// A lowercase hex digit's value: the one spelling [`push_level`] writes,
/// so every subject has one topic and every topic one subject.
fn hex_digit(c: char) -> Option<u32> {
    matches!(c, '0'..='9' | 'a'..='f')
        .then(|| c.to_digit(16))
        .flatten()
}

#[cfg(test)]
#[path = "subject_tests.rs"]
mod tests;

//! Mosquitto-compatible ACL files.
//!
//! ```text
//! # rules before any `user` line apply to anonymous clients
//! topic read public/#
//!
//! user dashboard
//! topic read sensors/#
//! topic deny sensors/+/secret
//!
//! # patterns apply to every client; %c = client id, %u = user name
//! pattern readwrite devices/%c/#
//! pattern write users/%u/status
//! ```
//!
//! `topic [read|write|readwrite|deny] <topic>`: the access word defaults to
//! `readwrite`; everything after it is the topic, spaces included. `user
//! <name>` starts the section of that user (the name may contain spaces).
//! `pattern` lines apply to every client wherever they appear; one that
//! uses `%u` never applies to anonymous clients.
//!
//! Decisions: nothing is allowed unless a rule grants it, and a matching
//! `deny` wins over every grant, whichever section or order it comes from
//! (mosquitto only orders denials first within one list; applying them
//! globally is stricter and does not depend on where a line was written).
//! A topic starting with `$` is only matched by rules whose first level is
//! that same literal level, so `topic read #` does not expose `$SYS`.
//!
//! Unlike mosquitto, which ignores lines it does not understand, unknown
//! keywords, unknown access types and invalid topic filters are errors
//! naming the file and line: a mistyped rule must not silently deny (or
//! grant) access.

use std::collections::HashMap;
use std::path::Path;

use super::AuthError;

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Receive messages (deliveries and subscriptions).
    Read,
    /// Publish messages.
    Write,
}

/// The access word of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn parse(word: &str) -> Option<Grant> {
        match word {
            "read" => Some(Grant::Read),
            "write" => Some(Grant::Write),
            "readwrite" => Some(Grant::ReadWrite),
            "deny" => Some(Grant::Deny),
            _ => None,
        }
    }

    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite, _) | (Grant::Read, Access::Read) | (Grant::Write, Access::Write)
        )
    }
}

/// A `topic` rule: a topic filter as written.
#[derive(Clone, Debug)]
struct TopicRule {
    grant: Grant,
    filter: String,
}

/// One piece of a `pattern` rule's topic.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    ClientId,
    Username,
}

/// A `pattern` rule, pre-split so a check only has to concatenate.
#[derive(Clone, Debug)]
struct PatternRule {
    grant: Grant,
    pieces: Vec<Piece>,
    uses_username: bool,
}

impl PatternRule {
    fn new(grant: Grant, topic: &str) -> PatternRule {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut uses_username = false;
        let mut chars = topic.chars().peekable();
        while let Some(c) = chars.next() {
            let piece = match (c, chars.peek()) {
                ('%', Some('c')) => Piece::ClientId,
                ('%', Some('u')) => {
                    uses_username = true;
                    Piece::Username
                }
                _ => {
                    text.push(c);
                    continue;
                }
            };
            chars.next();
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        PatternRule {
            grant,
            pieces,
            uses_username,
        }
    }

    /// The filter for this client, and whether a substituted value
    /// contained `+` or `#`. Such a value would turn into a wildcard (a
    /// client calling itself `#` would read every device's topics), so the
    /// caller lets a tainted rule deny but never grant. `None` when the rule
    /// needs a user name and the client has none.
    fn expand(&self, client_id: &str, username: Option<&str>) -> Option<(String, bool)> {
        if self.uses_username && username.is_none() {
            return None;
        }
        let mut out = String::new();
        let mut tainted = false;
        for piece in &self.pieces {
            let value = match piece {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::ClientId => client_id,
                Piece::Username => username.unwrap_or_default(),
            };
            tainted |= value.contains(['+', '#']);
            out.push_str(value);
        }
        Some((out, tainted))
    }
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default)]
pub struct Acl {
    /// Rules before the first `user` line: clients without a user name.
    anonymous: Vec<TopicRule>,
    /// Rules of each `user` section.
    users: HashMap<String, Vec<TopicRule>>,
    /// `pattern` rules, for every client.
    patterns: Vec<PatternRule>,
}

impl Acl {
    /// Whether some rules depend on the user name (`user` sections or
    /// `%u` patterns), i.e. whether claiming a name can gain access.
    pub fn has_user_rules(&self) -> bool {
        !self.users.is_empty() || self.patterns.iter().any(|p| p.uses_username)
    }

    /// Reads and parses `path`; messages name the path as given.
    pub fn load(path: &Path) -> Result<Acl, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_owned(),
            source,
        })?;
        Acl::parse(&text, &path.display().to_string())
    }

    /// Parses the text of an ACL file; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<Acl, AuthError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let err = |message: String| AuthError::syntax(source, line_no, message);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "topic" | "pattern" => {
                    if rest.is_empty() {
                        return Err(err(format!("`{keyword}` without a topic")));
                    }
                    let (first, after) = split_word(rest);
                    let (grant, topic) = if after.is_empty() {
                        // A lone access word is a forgotten topic far more
                        // often than a topic named `read`; mosquitto would
                        // grant readwrite on the topic `read`.
                        if Grant::parse(first).is_some() {
                            return Err(err(format!(
                                "`{keyword} {first}` without a topic (for a topic named \
                                 `{first}`, write `{keyword} readwrite {first}`)"
                            )));
                        }
                        (Grant::ReadWrite, first)
                    } else {
                        let grant = Grant::parse(first).ok_or_else(|| {
                            err(format!(
                                "unknown access type `{first}` (expected read, write, \
                                 readwrite or deny)"
                            ))
                        })?;
                        (grant, after)
                    };
                    if let Err(reason) = check_filter(topic) {
                        return Err(err(format!("invalid topic `{topic}`: {reason}")));
                    }
                    if keyword == "pattern" {
                        acl.patterns.push(PatternRule::new(grant, topic));
                    } else {
                        let rule = TopicRule {
                            grant,
                            filter: topic.to_owned(),
                        };
                        match &user {
                            None => acl.anonymous.push(rule),
                            Some(u) => acl.users.entry(u.clone()).or_default().push(rule),
                        }
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` without a user name".to_owned()));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword `{other}` (expected topic, user or pattern)"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// May this client publish to (Write) or receive a message on (Read) the
    /// topic NAME `topic`?
    ///
    /// A topic containing `+` or `#` is not a topic name and is refused.
    pub fn check_topic(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        if topic.is_empty() || topic.contains(['+', '#']) {
            return false;
        }
        self.decide(client_id, username, access, |rule| covers(rule, topic))
    }

    /// May this client subscribe with topic FILTER `filter` (may contain +
    /// and #; for shared subscriptions the caller passes the filter without
    /// the `$share/group/` prefix)? Mosquitto semantics: the ACL pattern
    /// must cover the filter (an ACL `+` covers a filter `+` or literal
    /// level, an ACL `#` covers anything below; a filter `#` is only covered
    /// by an ACL `#`; a filter `+` is not covered by a literal ACL level).
    ///
    /// Needs `read` access. A `deny` rule refuses the subscription only if it
    /// covers the whole filter: with `topic read sensors/#` and `topic deny
    /// sensors/+/secret`, `sensors/#` is accepted, so the broker must still
    /// check each delivery with [`Acl::check_topic`] and [`Access::Read`].
    /// An invalid filter is refused.
    pub fn check_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        if check_filter(filter).is_err() {
            return false;
        }
        self.decide(client_id, username, Access::Read, |rule| {
            covers(rule, filter)
        })
    }

    /// Walks the client's section and the patterns: any matching deny
    /// refuses, otherwise a matching grant for `access` allows.
    fn decide(
        &self,
        client_id: &str,
        username: Option<&str>,
        access: Access,
        matches: impl Fn(&str) -> bool,
    ) -> bool {
        let section = match username {
            None => Some(&self.anonymous),
            Some(u) => self.users.get(u),
        };
        let mut granted = false;
        for rule in section.into_iter().flatten() {
            if matches(&rule.filter) {
                if rule.grant == Grant::Deny {
                    return false;
                }
                granted |= rule.grant.allows(access);
            }
        }
        for rule in &self.patterns {
            let Some((filter, tainted)) = rule.expand(client_id, username) else {
                continue;
            };
            if matches(&filter) {
                if rule.grant == Grant::Deny {
                    return false;
                }
                granted |= !tainted && rule.grant.allows(access);
            }
        }
        granted
    }
}

/// Splits off the first white-space separated word; the rest is trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (s, ""),
    }
}

/// MQTT topic filter rules: `#` only as the whole last level, `+` only as
/// a whole level.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("empty topic");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("`#` must be a whole level and the last one");
        }
        if level.contains('+') && level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

/// Whether the ACL filter `rule` covers `filter` (every topic `filter`
/// matches is matched by `rule`). With a topic name as `filter` this is
/// plain MQTT matching. `#` also matches its parent level (`a/#` covers
/// `a`), and a rule starting with a wildcard never covers a `$` topic.
fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (rule_levels.next(), filter_levels.next()) {
            (Some("#"), _) => return true,
            (Some(r), Some(f)) => {
                // A filter `#` is only covered by a rule `#` (handled above);
                // a filter `+` only by a rule `+`.
                if f == "#" || (r != "+" && r != f) || (f == "+" && r != "+") {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;

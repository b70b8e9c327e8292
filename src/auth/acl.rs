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
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        match Acl::parse(text, "acl.conf") {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match Acl::parse(text, "acl.conf") {
            Ok(a) => panic!("expected an error, got {a:?}"),
            Err(e) => e.to_string(),
        }
    }

    const R: Access = Access::Read;
    const W: Access = Access::Write;

    #[test]
    fn empty_acl_denies_everything() {
        let a = acl("# nothing\n\n");
        assert!(!a.check_topic("c", None, "a", R));
        assert!(!a.check_topic("c", Some("u"), "a", W));
        assert!(!a.check_subscribe("c", None, "#"));
    }

    #[test]
    fn anonymous_section_is_for_clients_without_user_name() {
        let a = acl("topic read public/#\ntopic write inbox\nuser alice\ntopic read alice/#\n");
        assert!(a.check_topic("c", None, "public/news", R));
        assert!(!a.check_topic("c", None, "public/news", W));
        assert!(a.check_topic("c", None, "inbox", W));
        assert!(!a.check_topic("c", None, "inbox", R));
        assert!(!a.check_topic("c", None, "alice/x", R));
        // A client with a user name does not get the anonymous rules, even
        // when its user has no section of its own.
        assert!(!a.check_topic("c", Some("bob"), "public/news", R));
        assert!(!a.check_topic("c", Some("alice"), "public/news", R));
        // An empty user name is a user name, not anonymity.
        assert!(!a.check_topic("c", Some(""), "public/news", R));
    }

    #[test]
    fn user_sections() {
        let a = acl("user alice\ntopic readwrite alice/#\ntopic read shared/+\n\
             user bob\ntopic bob/#\n\
             user alice\ntopic write more/alice\n");
        assert!(a.check_topic("c1", Some("alice"), "alice/a/b", W));
        assert!(a.check_topic("c1", Some("alice"), "alice/a/b", R));
        assert!(a.check_topic("c1", Some("alice"), "shared/x", R));
        assert!(!a.check_topic("c1", Some("alice"), "shared/x", W));
        assert!(!a.check_topic("c1", Some("alice"), "shared/x/y", R));
        // A second section for the same user adds to the first.
        assert!(a.check_topic("c1", Some("alice"), "more/alice", W));
        // Access word omitted: readwrite.
        assert!(a.check_topic("c2", Some("bob"), "bob/1", R));
        assert!(a.check_topic("c2", Some("bob"), "bob/1", W));
        assert!(!a.check_topic("c2", Some("bob"), "alice/1", R));
        assert!(!a.check_topic("c2", None, "alice/1", R));
        assert!(!a.check_topic("c2", None, "bob/1", R));
    }

    #[test]
    fn hash_matches_parent_level() {
        let a = acl("topic read a/#\n");
        assert!(a.check_topic("c", None, "a", R));
        assert!(a.check_topic("c", None, "a/b/c", R));
        assert!(!a.check_topic("c", None, "ab", R));
        assert!(!a.check_topic("c", None, "b/a", R));
        assert!(a.check_subscribe("c", None, "a"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name() {
        let a = acl("user alice\ntopic read x\n\
             pattern readwrite devices/%c/#\n\
             pattern write users/%u/status\n\
             pattern read mix/%u-%c/%x\n");
        assert!(a.check_topic("dev1", None, "devices/dev1/temp", W));
        assert!(a.check_topic("dev1", Some("bob"), "devices/dev1", R));
        assert!(!a.check_topic("dev1", None, "devices/dev2/temp", W));
        assert!(a.check_topic("dev1", Some("alice"), "users/alice/status", W));
        assert!(!a.check_topic("dev1", Some("alice"), "users/alice/status", R));
        assert!(!a.check_topic("dev1", Some("alice"), "users/bob/status", W));
        // Substitution inside a level; `%x` is not a variable.
        assert!(a.check_topic("d", Some("u"), "mix/u-d/%x", R));
        assert!(!a.check_topic("d", Some("u"), "mix/u-d/x", R));
        // %u never applies to anonymous clients (not even as empty text).
        assert!(!a.check_topic("dev1", None, "users//status", W));
        assert!(!a.check_topic("dev1", None, "users/%u/status", W));
        // A client id with `/` spans levels, like in mosquitto.
        assert!(a.check_topic("site/7", None, "devices/site/7/x", R));
        // Patterns are global even though written inside alice's section.
        assert!(a.check_subscribe("dev9", Some("carol"), "devices/dev9/#"));
        assert!(!a.check_subscribe("dev9", Some("carol"), "devices/+/#"));
    }

    #[test]
    fn wildcard_in_substituted_value_grants_nothing() {
        let a = acl("pattern readwrite devices/%c/#\n\
             pattern read users/%u\n\
             pattern deny secret/%c\n\
             topic read secret/x\n");
        for id in ["#", "+", "a+b", "x#"] {
            assert!(!a.check_topic(id, None, "devices/other/t", R), "{id}");
            assert!(!a.check_subscribe(id, None, "devices/#"), "{id}");
            assert!(
                !a.check_subscribe(id, None, &format!("devices/{id}")),
                "{id}"
            );
        }
        assert!(!a.check_topic("c", Some("#"), "users/alice", R));
        assert!(!a.check_topic("c", Some("+"), "users/alice", R));
        assert!(a.check_topic("c", Some("alice"), "users/alice", R));
        // The anonymous grant on secret/x holds for ordinary clients...
        assert!(a.check_topic("c", None, "secret/x", R));
        assert!(!a.check_topic("x", None, "secret/x", R));
        // ...but a wildcard client id still triggers the deny pattern.
        assert!(!a.check_topic("#", None, "secret/x", R));
    }

    #[test]
    fn access_types() {
        let a = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n");
        assert!(a.check_topic("c", None, "r", R) && !a.check_topic("c", None, "r", W));
        assert!(!a.check_topic("c", None, "w", R) && a.check_topic("c", None, "w", W));
        assert!(a.check_topic("c", None, "rw", R) && a.check_topic("c", None, "rw", W));
        assert!(a.check_topic("c", None, "both", R) && a.check_topic("c", None, "both", W));
        assert!(!a.check_topic("c", None, "d", R) && !a.check_topic("c", None, "d", W));
        assert!(a.check_subscribe("c", None, "r"));
        assert!(!a.check_subscribe("c", None, "w"));
        assert!(!a.check_subscribe("c", None, "d"));
    }

    #[test]
    fn deny_wins_over_grants_in_any_order_and_section() {
        let a = acl("topic deny sensors/+/secret\ntopic read sensors/#\n\
             user alice\ntopic readwrite sensors/#\ntopic deny sensors/kitchen/#\n\
             user bob\ntopic readwrite sensors/#\ntopic readwrite private/bob\n\
             pattern deny private/%u\n\
             pattern read sensors/%c/#\n");
        // Deny before the grant.
        assert!(a.check_topic("c", None, "sensors/hall/temp", R));
        assert!(!a.check_topic("c", None, "sensors/hall/secret", R));
        // Deny after the grant.
        assert!(a.check_topic("c", Some("alice"), "sensors/hall/temp", W));
        assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen/temp", W));
        assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen", R));
        // A user's deny beats a pattern grant.
        assert!(!a.check_topic("kitchen", Some("alice"), "sensors/kitchen/temp", R));
        // A pattern deny beats a user grant.
        assert!(!a.check_topic("c", Some("bob"), "private/bob", W));
        assert!(a.check_topic("c", Some("bob"), "sensors/x", W));
        // Subscriptions: refused when a deny covers the filter...
        assert!(!a.check_subscribe("c", Some("alice"), "sensors/kitchen/#"));
        assert!(!a.check_subscribe("c", None, "sensors/+/secret"));
        assert!(!a.check_subscribe("c", None, "sensors/hall/secret"));
        // ...accepted when it only overlaps; deliveries are then checked.
        assert!(a.check_subscribe("c", None, "sensors/#"));
        assert!(a.check_subscribe("c", Some("alice"), "sensors/+/temp"));
        assert!(!a.check_topic("c", Some("alice"), "sensors/kitchen/temp", R));
    }

    #[test]
    fn dollar_topics_need_a_dollar_rule() {
        let a = acl("topic read #\ntopic read +/broker/#\ntopic write +/cmd\n\
             user admin\ntopic read $SYS/#\ntopic read $share-like/x\n");
        assert!(a.check_topic("c", None, "a/b", R));
        assert!(!a.check_topic("c", None, "$SYS/broker/uptime", R));
        assert!(!a.check_topic("c", None, "$SYS/cmd", W));
        assert!(!a.check_subscribe("c", None, "$SYS/#"));
        assert!(!a.check_subscribe("c", None, "$SYS/broker/uptime"));
        assert!(a.check_subscribe("c", None, "#"));
        assert!(a.check_topic("c", Some("admin"), "$SYS/broker/uptime", R));
        assert!(a.check_topic("c", Some("admin"), "$SYS", R));
        assert!(a.check_subscribe("c", Some("admin"), "$SYS/#"));
        assert!(a.check_subscribe("c", Some("admin"), "$SYS/+/uptime"));
        assert!(!a.check_topic("c", Some("admin"), "$OTHER/x", R));
        assert!(!a.check_subscribe("c", Some("admin"), "$OTHER/#"));
        assert!(a.check_topic("c", Some("admin"), "$share-like/x", R));
    }

    #[test]
    fn subscribe_coverage() {
        let a = acl("topic read sensors/#\n\
             user u\ntopic read sensors/+/temp\ntopic read +/temp\ntopic read a/b/c\n\
             user all\ntopic read #\n\
             user plus\ntopic read +\n");
        let anon = |f: &str| a.check_subscribe("c", None, f);
        assert!(anon("sensors/+/temp"));
        assert!(anon("sensors/#"));
        assert!(anon("sensors"));
        assert!(anon("sensors/+"));
        assert!(anon("sensors/a/b/c"));
        assert!(!anon("sensors2/#"));
        assert!(!anon("#"));
        assert!(!anon("+/temp"));

        let u = |f: &str| a.check_subscribe("c", Some("u"), f);
        assert!(u("sensors/kitchen/temp"));
        assert!(u("sensors/+/temp"));
        assert!(!u("sensors/#"));
        assert!(!u("sensors/+/#"));
        assert!(!u("sensors/+/+"));
        assert!(!u("sensors/kitchen/temp/x"));
        assert!(!u("sensors/kitchen"));
        assert!(u("+/temp"));
        assert!(u("room/temp"));
        assert!(!u("$SYS/temp"));
        // A literal rule level does not cover a filter `+`.
        assert!(u("a/b/c"));
        assert!(!u("a/+/c"));
        assert!(!u("a/b/#"));

        let all = |f: &str| a.check_subscribe("c", Some("all"), f);
        assert!(all("#"));
        assert!(all("+/+/+"));
        assert!(all("x/#"));
        assert!(!all("$SYS/#"));

        let plus = |f: &str| a.check_subscribe("c", Some("plus"), f);
        assert!(plus("+"));
        assert!(plus("x"));
        assert!(!plus("#"));
        assert!(!plus("x/y"));
        assert!(!plus("$SYS"));
    }

    #[test]
    fn invalid_topics_and_filters_are_refused() {
        let a = acl("user all\ntopic readwrite #\n");
        let u = Some("all");
        assert!(a.check_topic("c", u, "x/y", W));
        assert!(!a.check_topic("c", u, "x/+", W));
        assert!(!a.check_topic("c", u, "x/#", R));
        assert!(!a.check_topic("c", u, "", W));
        assert!(!a.check_subscribe("c", u, ""));
        assert!(!a.check_subscribe("c", u, "a/#/b"));
        assert!(!a.check_subscribe("c", u, "a/b#"));
        assert!(!a.check_subscribe("c", u, "a+/b"));
        assert!(a.check_subscribe("c", u, "a//b"));
    }

    #[test]
    fn topics_and_user_names_with_spaces() {
        let a = acl("  topic read   my topic/with spaces  \r\n\
             \tuser John Smith\r\n\
             topic write  home/living room/lamp\r\n\
             pattern read clients/%c/in box\n");
        assert!(a.check_topic("c", None, "my topic/with spaces", R));
        assert!(!a.check_topic("c", None, "my topic/with", R));
        assert!(a.check_topic("c", Some("John Smith"), "home/living room/lamp", W));
        assert!(!a.check_topic("c", Some("John"), "home/living room/lamp", W));
        assert!(a.check_topic("my id", None, "clients/my id/in box", R));
    }

    #[test]
    fn comments_and_blank_lines() {
        let a = acl("# header\n\n   # indented\n\t\ntopic read a\n#topic read b\n");
        assert!(a.check_topic("c", None, "a", R));
        assert!(!a.check_topic("c", None, "b", R));
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "topic read a\n\n# c\nuser x\n\ntopic read b\ntopic wirte c/d\n",
                "acl.conf line 7: unknown access type `wirte` (expected read, write, readwrite or deny)",
            ),
            ("topics read a\n", "acl.conf line 1: unknown keyword `topics`"),
            ("\nuser\n", "acl.conf line 2: `user` without a user name"),
            ("topic\n", "acl.conf line 1: `topic` without a topic"),
            ("pattern   \n", "acl.conf line 1: `pattern` without a topic"),
            ("topic deny\n", "acl.conf line 1: `topic deny` without a topic"),
            ("topic read a/#/b\n", "acl.conf line 1: invalid topic `a/#/b`: `#` must be"),
            (
                "topic read a/b # comment\n",
                "acl.conf line 1: invalid topic `a/b # comment`",
            ),
            ("pattern write x/%c+\n", "acl.conf line 1: invalid topic `x/%c+`: `+` must be"),
            ("topic my topic\n", "acl.conf line 1: unknown access type `my`"),
        ];
        for (text, expected) in cases {
            let msg = parse_err(text);
            assert!(
                msg.starts_with(expected),
                "for {text:?}: got `{msg}`, expected `{expected}`"
            );
        }
    }

    #[test]
    fn load_names_the_file() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("acl.conf");
        std::fs::write(&path, "topic read a\nuser x\ntopic wirte b\n").ok();
        match Acl::load(&path) {
            Ok(a) => panic!("accepted {a:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.ends_with("acl.conf line 3: unknown access type `wirte` (expected read, write, readwrite or deny)"), "{msg}");
                assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            }
        }
        std::fs::write(&path, "topic read a\n").ok();
        assert!(Acl::load(&path).is_ok_and(|a| a.check_topic("c", None, "a", R)));
        match Acl::load(&dir.path().join("missing.acl")) {
            Ok(_) => panic!("loaded a missing file"),
            Err(e) => assert!(e.to_string().contains("missing.acl"), "{e}"),
        }
    }

    #[test]
    fn covers_is_mqtt_matching_for_topic_names() {
        for (rule, topic, expected) in [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("+/+", "/b", true),
            ("#", "/", true),
            ("a/#", "a", true),
            ("a/b/#", "a", false),
            ("+", "$SYS", false),
            ("$SYS/#", "$SYS", true),
            ("a//b", "a//b", true),
            ("a//b", "a/b", false),
        ] {
            assert_eq!(covers(rule, topic), expected, "{rule} vs {topic}");
        }
    }
}

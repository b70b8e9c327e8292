//! Destination and key templates: `events.{topic.2}`,
//! `https://api.example/devices/{payload.device}`.
//!
//! Placeholders: `{topic}` (whole MQTT topic), `{topic.N}` (level N,
//! 1-based), `{topic.N..}` (levels N to the last, with their slashes: an
//! MQTT bridge strips a prefix with it), `{client_id}`, `{username}`, `{payload.a.b}` (a field of the
//! transformed payload; a numeric segment also indexes an array). Strings
//! are inserted as-is, `null` and anything missing as nothing, other values
//! as compact JSON. `{{` and `}}` are literal braces.
//!
//! Templates are parsed when the bridge starts so a typo fails there, not on
//! the first message.

use bytes::Bytes;
use jaq_json::Val;

use super::encode;

/// How substituted values are escaped. The template's literal text is never
/// escaped: it is trusted configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escape {
    /// Inserted as-is (Kafka topics and keys).
    #[default]
    None,
    /// Percent-encoded so that a value stays inside one URL path segment
    /// (everything but RFC 3986 unreserved characters, so `/` becomes `%2F`
    /// and a space `%20`). A value of `.` or `..` is refused at render
    /// time: URL parsers resolve it as a dot segment even when encoded.
    Url,
}

/// Why a template does not parse. Offsets are in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder `{{{name}}}` at offset {offset}; expected {{topic}}, {{topic.N}}, \
         {{topic.N..}} (N from 1), {{client_id}}, {{username}} or {{payload.field}}"
    )]
    UnknownPlaceholder { name: String, offset: usize },
    #[error("unclosed `{{` at offset {offset} (write `{{{{` for a literal brace)")]
    Unclosed { offset: usize },
    #[error("unmatched `}}` at offset {offset} (write `}}}}` for a literal brace)")]
    Unmatched { offset: usize },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    escape: Escape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Topic,
    /// 1-based.
    TopicLevel(usize),
    /// Levels from the 1-based index to the end, joined by `/`.
    TopicFrom(usize),
    ClientId,
    Username,
    /// Object keys / array indices, never empty.
    Payload(Vec<Bytes>),
}

/// What a template is rendered from.
pub(crate) struct Fields<'a> {
    pub(crate) topic: &'a str,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) username: Option<&'a str>,
    /// The transformed payload; `None` when it was passed through undecoded.
    pub(crate) payload: Option<&'a Val>,
}

impl Template {
    pub fn parse(s: &str, escape: Escape) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s.char_indices().peekable();
        while let Some((offset, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|&(_, c)| c) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|&(_, c)| c) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unmatched { offset }),
                '{' => {
                    let name_start = offset + 1;
                    let len = s[name_start..]
                        .find(['{', '}'])
                        .filter(|&len| s[name_start + len..].starts_with('}'))
                        .ok_or(TemplateError::Unclosed { offset })?;
                    let name = &s[name_start..name_start + len];
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(name).ok_or_else(|| {
                        TemplateError::UnknownPlaceholder {
                            name: name.to_owned(),
                            offset,
                        }
                    })?);
                    // Skip the name and the closing brace.
                    for _ in 0..name.chars().count() + 1 {
                        rest.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts, escape })
    }

    /// Whether rendering reads a field of the payload.
    pub(crate) fn reads_payload(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Payload(_)))
    }

    /// Renders the template over a topic alone (no client, no payload):
    /// an MQTT bridge's local topic for a message from the remote.
    pub fn render_topic(&self, topic: &str) -> Result<String, String> {
        self.render(&Fields {
            topic,
            client_id: None,
            username: None,
            payload: None,
        })
    }

    /// Renders the template. Fails only in [`Escape::Url`] mode, for a
    /// value that would be a dot segment.
    pub(crate) fn render(&self, fields: &Fields) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            let value: std::borrow::Cow<str> = match part {
                Part::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Part::Topic => fields.topic.into(),
                Part::TopicLevel(n) => fields.topic.split('/').nth(n - 1).unwrap_or("").into(),
                Part::TopicFrom(n) => topic_from(fields.topic, *n).into(),
                Part::ClientId => fields.client_id.unwrap_or("").into(),
                Part::Username => fields.username.unwrap_or("").into(),
                Part::Payload(path) => fields
                    .payload
                    .and_then(|p| lookup(p, path))
                    .map(encode::to_text)
                    .unwrap_or_default()
                    .into(),
            };
            match self.escape {
                Escape::None => out.push_str(&value),
                Escape::Url => {
                    if value == "." || value == ".." {
                        return Err(format!(
                            "substituted value `{value}` would be a URL dot segment"
                        ));
                    }
                    percent_encode(&mut out, &value);
                }
            }
        }
        Ok(out)
    }
}

fn placeholder(name: &str) -> Option<Part> {
    match name {
        "topic" => Some(Part::Topic),
        "client_id" => Some(Part::ClientId),
        "username" => Some(Part::Username),
        _ => {
            if let Some(level) = name.strip_prefix("topic.") {
                if let Some(from) = level.strip_suffix("..") {
                    if from.is_empty() || !from.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    return from.parse().ok().filter(|&n| n >= 1).map(Part::TopicFrom);
                }
                // Digits only: `usize::from_str` would also take `+1`.
                if !level.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                return level.parse().ok().filter(|&n| n >= 1).map(Part::TopicLevel);
            }
            let path = name.strip_prefix("payload.")?;
            let path: Vec<Bytes> = path.split('.').map(|k| Bytes::from(k.to_owned())).collect();
            if path.iter().any(|k| k.is_empty()) {
                return None;
            }
            Some(Part::Payload(path))
        }
    }
}

/// The topic from its 1-based level `n` on (`a/b/c`, 2 → `b/c`); empty
/// past the last level.
fn topic_from(topic: &str, n: usize) -> &str {
    let mut rest = topic;
    for _ in 1..n {
        match rest.split_once('/') {
            Some((_, after)) => rest = after,
            None => return "",
        }
    }
    rest
}

fn lookup<'v>(mut v: &'v Val, path: &[Bytes]) -> Option<&'v Val> {
    for key in path {
        v = match v {
            Val::Obj(fields) => fields.get(&Val::utf8_str(key.clone()))?,
            Val::Arr(items) => {
                let i: usize = std::str::from_utf8(key).ok()?.parse().ok()?;
                items.get(i)?
            }
            _ => return None,
        };
    }
    Some(v)
}

fn percent_encode(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jaq_json::Map;

    fn s(x: &str) -> Val {
        Val::utf8_str(x.to_owned())
    }

    fn payload() -> Val {
        let mut inner = Map::default();
        inner.insert(s("b"), Val::from(7isize));
        let mut m = Map::default();
        m.insert(s("device"), s("pump 1/a"));
        m.insert(s("on"), Val::Bool(true));
        m.insert(s("n"), Val::from(2.5));
        m.insert(s("none"), Val::Null);
        m.insert(s("a"), Val::obj(inner));
        m.insert(s("list"), [s("x"), s("y")].into_iter().collect());
        Val::obj(m)
    }

    fn render(t: &str, escape: Escape, payload: Option<&Val>) -> String {
        let fields = Fields {
            topic: "site/pump 1/temp",
            client_id: Some("c1"),
            username: None,
            payload,
        };
        Template::parse(t, escape).unwrap().render(&fields).unwrap()
    }

    #[test]
    fn topic_levels_and_identity() {
        let p = payload();
        assert_eq!(
            render(
                "{topic.1}.{topic.2}.{topic.9}|{client_id}|{username}|{topic}",
                Escape::None,
                Some(&p)
            ),
            "site.pump 1.|c1||site/pump 1/temp"
        );
    }

    #[test]
    fn topic_from_a_level_to_the_end_strips_a_prefix() {
        assert_eq!(
            render(
                "cloud/{topic.2..}|{topic.1..}|{topic.3..}|{topic.4..}",
                Escape::None,
                None
            ),
            "cloud/pump 1/temp|site/pump 1/temp|temp|"
        );
        for bad in ["{topic.0..}", "{topic...}", "{topic.x..}", "{topic.1...}"] {
            assert!(
                matches!(
                    Template::parse(bad, Escape::None),
                    Err(TemplateError::UnknownPlaceholder { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn payload_fields_by_type() {
        let p = payload();
        let t = "{payload.device},{payload.on},{payload.n},{payload.none},{payload.missing},{payload.a.b},{payload.a},{payload.list.1}";
        assert_eq!(
            render(t, Escape::None, Some(&p)),
            r#"pump 1/a,true,2.5,,,7,{"b":7},y"#
        );
        assert_eq!(render("d={payload.device}", Escape::None, None), "d=");
    }

    #[test]
    fn url_mode_escapes_values_not_literals() {
        let p = payload();
        assert_eq!(
            render(
                "https://h/x y/{payload.device}/{topic}?c={client_id}",
                Escape::Url,
                Some(&p)
            ),
            "https://h/x y/pump%201%2Fa/site%2Fpump%201%2Ftemp?c=c1"
        );
    }

    #[test]
    fn url_mode_refuses_dot_segments() {
        let t = Template::parse("https://h/{topic.2}/x", Escape::Url).unwrap();
        let fields = Fields {
            topic: "a/../b",
            client_id: None,
            username: None,
            payload: None,
        };
        assert!(t.render(&fields).unwrap_err().contains("dot segment"));
        let t = Template::parse("{topic.2}", Escape::None).unwrap();
        assert_eq!(t.render(&fields).unwrap(), "..");
    }

    #[test]
    fn literal_braces() {
        assert_eq!(
            render("{{x}}-{{{topic.1}}}", Escape::None, None),
            "{x}-{site}"
        );
        assert_eq!(render("{{}}", Escape::Url, None), "{}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = Template::parse("a.{topik}", Escape::None).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder {
                name: "topik".into(),
                offset: 2
            }
        );
        assert!(err.to_string().contains("`{topik}`"), "{err}");
        for bad in [
            "{topic.0}",
            "{topic.x}",
            "{topic.+1}",
            "{payload}",
            "{payload.}",
            "{payload.a..b}",
            "{}",
        ] {
            assert!(
                matches!(
                    Template::parse(bad, Escape::None),
                    Err(TemplateError::UnknownPlaceholder { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Template::parse("x{topic", Escape::None),
            Err(TemplateError::Unclosed { offset: 1 })
        );
        assert_eq!(
            Template::parse("{a{b}", Escape::None),
            Err(TemplateError::Unclosed { offset: 0 })
        );
        assert_eq!(
            Template::parse("a}b", Escape::None),
            Err(TemplateError::Unmatched { offset: 1 })
        );
    }

    #[test]
    fn non_ascii_literals_survive() {
        assert_eq!(render("é-{topic.1}-ü", Escape::None, None), "é-site-ü");
    }
}

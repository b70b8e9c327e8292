//! The in direction: messages of the bridge's subscriptions on the remote,
//! mapped to local topics and handed to the broker, which publishes them
//! as the bridge (a trusted client, or under the bridge's user name and
//! the ACL) and answers once they are durable; only then does the remote
//! get its PUBACK or PUBREC.

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::transform::{Escape, Template};

/// One `[[bridges.sink.inbound]]` table: a subscription on the remote and
/// where its messages go locally.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRoute {
    /// Topic filter on the remote (`+` and `#` allowed).
    pub filter: String,
    /// The subscription's QoS on the remote: 0, 1 (default) or 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Local topic template over the remote topic: `{topic}` (default),
    /// `{topic.N}`, `{topic.N..}`, literal text.
    #[serde(default = "default_topic")]
    pub topic: String,
}

fn default_qos() -> u8 {
    1
}

fn default_topic() -> String {
    "{topic}".to_owned()
}

impl InboundRoute {
    /// Why the route cannot work, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_filter(&self.filter).map_err(|e| format!("inbound filter `{}`: {e}", self.filter))?;
        if self.qos > 2 {
            return Err(format!("inbound `{}`: qos must be 0, 1 or 2", self.filter));
        }
        Template::parse(&self.topic, Escape::None)
            .map(|_| ())
            .map_err(|e| format!("inbound `{}`: topic: {e}", self.filter))
    }
}

/// A message from the remote for the broker to publish.
#[derive(Debug)]
pub struct Inbound {
    /// The local topic (mapped).
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 user properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Answered once the message is durable locally (QoS 1/2), or refused;
    /// `None` for QoS 0.
    pub done: Option<oneshot::Sender<InboundOutcome>>,
}

/// What became of an inbound message locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Published, and durable where the broker stores messages.
    Accepted,
    /// Not published, for good (the ACL, an invalid local topic): the
    /// remote is answered all the same (MQTT 5 with a reason code), so it
    /// does not resend it forever.
    Refused(String),
}

/// The compiled routes: the first whose filter matches a remote topic
/// maps it.
pub(crate) struct Routes {
    routes: Vec<(String, Template)>,
}

impl Routes {
    pub(crate) fn new(routes: &[InboundRoute]) -> Result<Routes, String> {
        let compiled = routes
            .iter()
            .map(|r| {
                r.check()?;
                let t = Template::parse(&r.topic, Escape::None).map_err(|e| e.to_string())?;
                Ok((r.filter.clone(), t))
            })
            .collect::<Result<_, String>>()?;
        Ok(Routes { routes: compiled })
    }

    /// The local topic for `remote_topic`, if a route takes it.
    pub(crate) fn map(&self, remote_topic: &str) -> Option<String> {
        let (_, template) = self
            .routes
            .iter()
            .find(|(f, _)| filter_matches(f, remote_topic))?;
        template.render_topic(remote_topic).ok()
    }
}

/// The syntax of a topic filter (4.7): `#` alone and last, `+` a whole
/// level, no NUL.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("empty");
    }
    if filter.contains('\0') {
        return Err("NUL in it");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("`#` must be a whole last level");
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` (no `$` rule: the remote only sends
/// what the filter matched there).
pub(crate) fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_by_level_and_routes_map_the_first_match() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("a/b", "a"));
        let route = |filter: &str, topic: &str| InboundRoute {
            filter: filter.into(),
            qos: 1,
            topic: topic.into(),
        };
        let r = Routes::new(&[
            route("cloud/cmd/#", "commands/{topic.3..}"),
            route("cloud/#", "{topic}"),
        ])
        .unwrap();
        assert_eq!(
            r.map("cloud/cmd/pump/on").as_deref(),
            Some("commands/pump/on")
        );
        assert_eq!(r.map("cloud/other").as_deref(), Some("cloud/other"));
        assert_eq!(r.map("elsewhere"), None);
        for bad in ["", "a/#/b", "a/b#", "a+/b"] {
            assert!(Routes::new(&[route(bad, "{topic}")]).is_err(), "{bad}");
        }
        assert!(Routes::new(&[route("a/#", "{nope}")]).is_err());
    }
}

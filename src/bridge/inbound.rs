//! The in direction of an MQTT bridge: messages from the remote published
//! into this broker as the bridge's own client (`$bridge/NAME`), through the
//! same router as any client's. A trusted bridge (no `username`) may
//! publish anywhere but `$` topics; one with a user name is held to the ACL
//! like a client logged in with it. Each QoS 1/2 message is answered once
//! durable here, and only then does the remote get its PUBACK/PUBREC.
//!
//! Messages are taken in rounds (all that wait, up to a bound) and the
//! round waits for one durability ticket: a stream from the remote costs
//! a group commit per round, not per message.

use std::sync::Arc;

use bytestring::ByteString;
use sluice_bridges::mqtt::{Inbound, InboundOutcome};
use tokio::sync::mpsc;

use super::running::Shared;
use crate::auth::Access;
use crate::broker::Broker;
use crate::codec::{check_topic_name, Properties, QoS};
use crate::session::Message;
use crate::store::{now_ms, Ticket};

/// Messages published per round before their common durability wait.
const ROUND: usize = 256;

/// Runs until the bridge stops or the link's end of the queue is gone.
pub async fn run(shared: Arc<Shared>, broker: Arc<Broker>, mut rx: mpsc::Receiver<Inbound>) {
    let mut stop = shared.stop.clone();
    let mut round: Vec<Inbound> = Vec::with_capacity(ROUND);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = stop.changed() => return,
        };
        let Some(first) = first else {
            return;
        };
        round.push(first);
        while round.len() < ROUND {
            match rx.try_recv() {
                Ok(m) => round.push(m),
                Err(_) => break,
            }
        }
        let mut ticket = Ticket::default();
        let mut answers = Vec::with_capacity(round.len());
        for m in round.drain(..) {
            let outcome = publish(&shared, &broker, &m, &mut ticket);
            answers.push((m.done, outcome));
        }
        broker.store().wait(ticket).await;
        for (done, outcome) in answers {
            if let Some(done) = done {
                let _ = done.send(outcome);
            }
        }
    }
}

/// Publishes one message as the bridge, or says why not.
fn publish(shared: &Shared, broker: &Broker, m: &Inbound, ticket: &mut Ticket) -> InboundOutcome {
    if let Err(e) = check_local_topic(&m.topic) {
        return InboundOutcome::Refused(format!("local topic `{}`: {e}", m.topic));
    }
    let client_id = shared.slot.client_id.clone();
    let username = shared.config.username.as_deref();
    if let Some(user) = username {
        let access = broker.access();
        let allowed = access
            .acl
            .as_ref()
            .is_none_or(|acl| acl.check_topic(&client_id, Some(user), &m.topic, Access::Write));
        if !allowed {
            return InboundOutcome::Refused(format!(
                "the ACL does not let `{user}` publish to `{}`",
                m.topic
            ));
        }
    }
    let qos = QoS::from_u8(m.qos).unwrap_or(QoS::AtLeastOnce);
    let mut message = Message::from_broker(
        ByteString::from(m.topic.as_str()),
        m.payload.clone(),
        qos,
        m.retain,
        now_ms(),
    );
    // The bridge is the publisher: its own out direction knows the message
    // by that and does not send it back.
    message.publisher = Some(client_id);
    message.username = username.map(ByteString::from);
    if !m.user_properties.is_empty() {
        let user_properties = m
            .user_properties
            .iter()
            .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
            .collect();
        message.properties = Some(Box::new(Properties {
            user_properties,
            ..Properties::default()
        }));
    }
    let published = broker.publish(message);
    *ticket = (*ticket).max(published.ticket);
    InboundOutcome::Accepted
}

/// A topic a message may be published to here: a valid name, not one of
/// the broker's (`$SYS/...`).
fn check_local_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty".into());
    }
    if topic.starts_with('$') {
        return Err("topics starting with '$' are the broker's".into());
    }
    check_topic_name(topic).map_err(|e| e.to_string())
}

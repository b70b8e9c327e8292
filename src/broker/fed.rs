//! Delivery of a message the cluster keeps for one persistent session (its
//! JetStream consumer's next message, see `crate::cluster::feed`): the
//! session's own subscriptions decide, as the router would have decided
//! for a local publish, and the cluster learns through `ack` when the
//! message is done with (acknowledged by the client, or never to be
//! delivered), so it keeps it until then.

use std::sync::Arc;
use std::time::Instant;

use super::{Broker, SessionSlot};
use crate::codec::QoS;
use crate::session::{Delivery, Enqueued, Message, SinkAck};
use crate::topic::filter_matches;

/// What `slot`'s subscriptions make of a message: QoS, RETAIN flag and
/// subscription identifiers, or `None` when none of them matches.
fn decide(slot: &SessionSlot, message: &Message) -> Option<(QoS, bool, Vec<u32>)> {
    let mut decided: Option<(QoS, bool, Vec<u32>)> = None;
    for sub in slot.subscriptions.lock().values() {
        let opts = &sub.options;
        if sub.filter.share_group.is_some()
            || !filter_matches(&sub.filter.filter, &message.topic)
            || (opts.no_local && message.publisher.as_ref() == Some(&slot.client_id))
        {
            continue;
        }
        let qos = message.qos.min(opts.qos);
        let retain = message.retain && opts.retain_as_published;
        let d = decided.get_or_insert_with(|| (qos, retain, Vec::new()));
        d.0 = d.0.max(qos);
        d.1 |= retain;
        d.2.extend(sub.identifier);
    }
    decided
}

/// Whether the message `ack` stands for continues a QoS 2 flow `slot`
/// resumed from another node.
fn resumes(slot: &SessionSlot, ack: &dyn SinkAck) -> bool {
    ack.position().is_some_and(|p| slot.state.lock().awaits(p))
}

impl Broker {
    /// Queues `message` for `slot` if its subscriptions (and read access)
    /// still want it; `ack` fires once the message needs no more keeping:
    /// at once when nothing here wants it, it expired or goes at QoS 0,
    /// else when the client acknowledges it. Whether it was queued.
    pub fn deliver_fed(
        &self,
        slot: &Arc<SessionSlot>,
        message: Message,
        ack: Arc<dyn SinkAck>,
    ) -> bool {
        let readable = match &self.access().acl {
            Some(acl) => slot.may_read(acl, &message.topic),
            None => true,
        };
        let decided = decide(slot, &message);
        let (qos, retain, subscription_ids) = match decided {
            // A QoS 2 flow the session resumed goes on at QoS 2 whatever
            // its subscriptions say now: the client may hold the message
            // under its packet id (4.4).
            d if resumes(slot, ack.as_ref()) => {
                let (_, retain, ids) = d.unwrap_or((QoS::ExactlyOnce, false, Vec::new()));
                (QoS::ExactlyOnce, retain, ids)
            }
            Some(d) if readable && !message.is_expired(Instant::now()) => d,
            _ => {
                ack.fire();
                return false;
            }
        };
        let delivery = Delivery {
            message: Arc::new(message),
            qos,
            retain,
            subscription_ids,
            seq: None,
            sink_ack: (qos != QoS::AtMostOnce).then(|| Arc::clone(&ack)),
            shared_group: None,
        };
        let queued = slot.deliver(delivery, &self.store) == Enqueued::Queued;
        if !queued {
            self.count_drop(slot);
        }
        if qos == QoS::AtMostOnce {
            ack.fire();
        }
        queued
    }
}

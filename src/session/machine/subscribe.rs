//! SUBSCRIBE and UNSUBSCRIBE (3.8, 3.10): filter validity and limits, the
//! ACL, the per-client subscription quota and the granted QoS.

use std::time::Instant;

use crate::codec::{Packet, Unsubscribe};
use crate::codec::{Properties, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck};
use crate::topic::TopicFilter;

use super::host::SUBSCRIPTION_RECORD_BYTES;
use super::{ConnectionHost, Exit, Machine, ProtocolLimits};

/// 3.1.1's one failure code in a SUBACK.
const FAILURE_V311: u8 = 0x80;

/// One filter of a SUBSCRIBE: subscribe with these, or refuse with a code.
type Admitted = Result<(TopicFilter, SubscriptionOptions), ReasonCode>;

/// What a bounded session record still holds during one SUBSCRIBE, asked
/// of the host once, on the first new filter.
#[derive(Default)]
struct SubscriptionRoom(Option<usize>);

impl SubscriptionRoom {
    /// Takes `bytes` for a new subscription if they fit.
    fn take<H: ConnectionHost>(&mut self, bytes: usize, host: &H) -> bool {
        let left = self.0.get_or_insert_with(|| host.subscription_room());
        if *left == usize::MAX {
            return true;
        }
        if bytes > *left {
            return false;
        }
        *left -= bytes;
        true
    }
}

impl Machine {
    pub(super) fn on_subscribe<H: ConnectionHost>(
        &mut self,
        s: Subscribe,
        now: Instant,
        host: &mut H,
    ) -> Result<(), Exit> {
        let limits = host.limits();
        let identifier = s.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut room = SubscriptionRoom::default();
        for (raw, options) in s.filters {
            let reason = match self.admit(raw, options, &limits, &mut room, host)? {
                Ok((filter, mut options)) => {
                    options.qos = options.qos.min(limits.maximum_qos);
                    let granted = options.qos;
                    host.subscribe(filter, options, identifier, now);
                    granted.as_u8()
                }
                Err(code) if self.version.is_v5() => code.as_u8(),
                Err(_) => FAILURE_V311,
            };
            reasons.push(reason);
        }
        host.subscriptions_changed();
        self.send(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            reasons,
        }));
        Ok(())
    }

    /// Decides one filter of a SUBSCRIBE: the parsed filter, a refusal
    /// code for its SUBACK entry, or the end of the connection.
    fn admit<H: ConnectionHost>(
        &mut self,
        raw: bytestring::ByteString,
        options: SubscriptionOptions,
        limits: &ProtocolLimits,
        room: &mut SubscriptionRoom,
        host: &H,
    ) -> Result<Admitted, Exit> {
        let filter = if raw.len() > limits.max_topic_length {
            None
        } else {
            TopicFilter::parse(raw.clone(), limits.max_topic_levels).ok()
        };
        let Some(filter) = filter else {
            tracing::debug!(filter = %raw, "invalid topic filter");
            return Ok(Err(ReasonCode::TopicFilterInvalid));
        };
        // No Local on a shared subscription is a protocol error (3.8.3.1).
        if self.version.is_v5() && filter.share_group.is_some() && options.no_local {
            return Err(self.violation(ReasonCode::ProtocolError));
        }
        let (client_id, username) = (&self.client_id, self.username.as_deref());
        let allowed = host.with_acl(|acl| {
            acl.is_none_or(|acl| acl.check_subscribe(client_id, username, &filter.filter))
        });
        if !allowed {
            tracing::debug!(filter = %raw, "SUBSCRIBE denied by the ACL");
            return Ok(Err(ReasonCode::NotAuthorized));
        }
        let (count, exists) = host.subscriptions(&filter.raw);
        if !exists && count >= limits.max_subscriptions_per_client {
            return Ok(Err(ReasonCode::QuotaExceeded));
        }
        if !exists && !room.take(filter.raw.len() + SUBSCRIPTION_RECORD_BYTES, host) {
            tracing::debug!(filter = %raw, "SUBSCRIBE over the session record's size");
            return Ok(Err(ReasonCode::QuotaExceeded));
        }
        Ok(Ok((filter, options)))
    }

    pub(super) fn on_unsubscribe<H: ConnectionHost>(&mut self, u: Unsubscribe, host: &mut H) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                if host.unsubscribe(f) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
                .as_u8()
            })
            .collect();
        host.subscriptions_changed();
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reasons,
        }));
    }
}

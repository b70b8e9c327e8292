//! Deliveries to the client: queued messages move into the output within
//! the inflight window and a per-wake-up byte budget, checked against the
//! ACL and the client's Maximum Packet Size as they go.

use std::cell::Cell;
use std::time::Instant;

use crate::auth::{Access, Acl};
use crate::codec::{Packet, QoS};
use crate::session::SessionState;

use super::{ConnectionHost, Count, Machine};

/// Bytes moved into the output per wake-up before the connection writes
/// and yields to reads.
pub const WRITE_BATCH: usize = 64 * 1024;

/// What became of one queued delivery.
#[derive(Debug, PartialEq, Eq)]
enum Outgoing {
    Written,
    /// Larger than the client's maximum packet size (3.1.2.11.4).
    TooLarge,
    /// The receiving identity may not read its topic (any more).
    Denied,
}

/// What one pass delivered, for the counters.
#[derive(Debug, Default)]
struct Tally {
    sent: [u64; 3],
    too_large: u64,
    denied: u64,
}

impl Machine {
    /// Whether an in-flight packet may be sent again on this connection
    /// (see [`SessionState::send_again`] for one that may not): it fits
    /// the client's Maximum Packet Size and, for a PUBLISH, this identity
    /// may still read its topic (the ACL may have changed since it was
    /// routed); `denied` counts the refusals.
    pub(super) fn sendable_again<'a>(
        &'a self,
        acl: Option<&'a Acl>,
        denied: &'a Cell<usize>,
    ) -> impl Fn(&Packet) -> bool + 'a {
        move |packet| {
            if let (Some(acl), Packet::Publish(p)) = (acl, packet) {
                let (client_id, username) = (&self.client_id, self.username.as_deref());
                if !acl.check_topic(client_id, username, &p.topic, Access::Read) {
                    denied.set(denied.get() + 1);
                    return false;
                }
            }
            self.outgoing.fits(packet)
        }
    }

    /// Moves queued messages into the output.
    pub fn drain<H: ConnectionHost>(&mut self, now: Instant, host: &mut H) {
        let tally = host.with_acl(|acl| {
            let mut state = host.state();
            // Flows of a session resumed from the cluster go first, under
            // their packet ids (their messages just came again).
            let denied = Cell::new(0);
            let resends = state.take_resends(now, &self.sendable_again(acl, &denied));
            for p in resends {
                self.send(p);
            }
            let (mut tally, budget_used) = self.deliver(&mut state, acl, now);
            tally.denied += denied.get() as u64;
            // Come back after writing; a full window waits for acks instead.
            host.drained(&state, budget_used && state.has_pending());
            tally
        });
        if tally.denied > 0 {
            tracing::debug!(
                denied = tally.denied,
                "queued messages the ACL does not allow dropped"
            );
        }
        for (qos, n) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .zip(tally.sent)
        {
            if n > 0 {
                host.count(Count::Sent(qos), n);
            }
        }
        if tally.too_large > 0 {
            host.count(Count::DroppedTooLarge, tally.too_large);
        }
        host.flush_journal();
    }

    /// The delivery loop, with the state locked; whether it stopped at
    /// the byte budget.
    fn deliver(
        &mut self,
        state: &mut SessionState,
        acl: Option<&Acl>,
        now: Instant,
    ) -> (Tally, bool) {
        let mut tally = Tally::default();
        // One allocation for this wake-up's batch, not a series of
        // doublings (and copies) from an idle connection's empty buffer.
        let wanted = state.pending_wire_bytes().min(WRITE_BATCH + 1024);
        self.out.reserve(wanted);
        loop {
            if self.out.len() >= WRITE_BATCH {
                return (tally, true);
            }
            let outgoing = &mut self.outgoing;
            let out = &mut self.out;
            let (client_id, username) = (&self.client_id, self.username.as_deref());
            // Checked again at delivery: queued and in-flight messages may
            // have been routed under older rules (a reload).
            let Some((id, qos, encoded)) = state.next_delivery(now, self.window, |d, id| {
                let allowed = acl.is_none_or(|acl| {
                    acl.check_topic(client_id, username, &d.message.topic, Access::Read)
                });
                let encoded = if allowed {
                    outgoing.encode_delivery(d, id, now, out).map(|fits| {
                        if fits {
                            Outgoing::Written
                        } else {
                            Outgoing::TooLarge
                        }
                    })
                } else {
                    Ok(Outgoing::Denied)
                };
                (id, d.qos, encoded)
            }) else {
                return (tally, false);
            };
            match encoded {
                Ok(Outgoing::Written) => tally.sent[usize::from(qos.as_u8())] += 1,
                Ok(skipped) => {
                    if skipped == Outgoing::TooLarge {
                        tracing::debug!(
                            "message larger than the client's maximum packet size dropped"
                        );
                        tally.too_large += 1;
                    } else {
                        tally.denied += 1;
                    }
                    if let Some(id) = id {
                        state.discard_inflight(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode PUBLISH"),
            }
        }
    }
}

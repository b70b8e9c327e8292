//! Parking idle connections in the idle table, and resuming them.
//!
//! A plain-TCP connection with nothing to read, write or wait for, for
//! `limits.park_after_idle_ms`, leaves its task: what it needs to go on
//! (the protocol machine, the session it serves, its place in the
//! connection counts) becomes a [`ParkedConnection`] in the process's
//! idle table, its socket waits in the table's epoll set, and its keep
//! alive in the table's wheel. Bytes from the client, a wake-up of its
//! session (a delivery, a kick, shutdown) or the keep-alive deadline turn
//! it back into a task on the runtime it came from, where the serving
//! loop carries on as if it had never stopped.

use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tracing::Instrument;

use super::connection::{serve_established, Connection, Resting};
use super::idle::{IdleTable, ParkToken, Resumed};
use super::listener::Permit;
use crate::broker::{set_parked_waker, Broker, ParkedWaker};
use crate::session::Exit;

/// What a parked connection is: its socket, its protocol state and its
/// hold on the session, its place in the connection counts.
pub(super) struct ParkedConnection {
    socket: std::net::TcpStream,
    resting: Resting,
    permit: Permit,
    /// The runtime to resume on (tests run several).
    runtime: tokio::runtime::Handle,
}

static TABLE: OnceLock<Option<IdleTable<ParkedConnection>>> = OnceLock::new();

/// The process's idle table, started on first use (None if its thread
/// could not start: connections then stay tasks).
fn table() -> Option<&'static IdleTable<ParkedConnection>> {
    TABLE
        .get_or_init(|| {
            let started = IdleTable::start("sluice-idle", |p: ParkedConnection, _why: Resumed| {
                let runtime = p.runtime.clone();
                runtime.spawn(resume(p));
            });
            match started {
                Ok(table) => {
                    set_parked_waker(Box::new(table.clone()));
                    Some(table)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "idle table not started; idle connections stay tasks");
                    None
                }
            }
        })
        .as_ref()
}

/// Whether idle connections can be parked (the idle table runs).
pub(super) fn parking_available() -> bool {
    table().is_some()
}

impl ParkedWaker for IdleTable<ParkedConnection> {
    fn wake(&self, token: u64) {
        if let Some(token) = ParkToken::from_u64(token) {
            IdleTable::wake(self, token);
        }
    }
}

/// Parks a connection whose serving loop found it idle. If it cannot be
/// parked, its socket is gone: the session goes on as after any lost
/// connection (the client reconnects and resumes).
pub(super) fn park(conn: Connection, socket: std::net::TcpStream, permit: Permit) {
    let (Some(table), Ok(runtime)) = (table(), tokio::runtime::Handle::try_current()) else {
        conn.finish(Exit::Closed);
        return;
    };
    let fd = socket.as_raw_fd();
    let deadline = conn.deadline();
    let slot = Arc::clone(conn.slot());
    let broker = Arc::clone(conn.broker());
    let parked = ParkedConnection {
        socket,
        resting: conn.rest(),
        permit,
        runtime,
    };
    let token = match table.park(fd, parked, deadline) {
        Ok(token) => token,
        Err((e, parked)) => {
            tracing::warn!(error = %e, "could not park an idle connection; closed");
            Connection::wake_up(broker, parked.resting).finish(Exit::Closed);
            return;
        }
    };
    broker
        .stats
        .connections_parked
        .fetch_add(1, Ordering::Relaxed);
    slot.set_parked(token.as_u64());
    // A wake-up that came before the token was visible (a delivery, a
    // kick) left a permit on the session's `notify`; shutdown may have
    // begun. Either way, straight back.
    let notified = pin!(slot.notify.notified());
    if notified.enable() || broker.is_shutting_down() {
        table.wake(token);
    }
}

/// Wakes every parked connection of `broker` (at shutdown: they say
/// goodbye as tasks do).
pub(super) fn wake_all(broker: &Arc<Broker>) {
    if let Some(table) = TABLE.get().and_then(Option::as_ref) {
        table.wake_where(|p| Arc::ptr_eq(p.permit.broker(), broker));
    }
}

/// Turns a parked connection back into a task.
async fn resume(p: ParkedConnection) {
    let ParkedConnection {
        socket,
        resting,
        permit,
        ..
    } = p;
    let broker = Arc::clone(permit.broker());
    broker
        .stats
        .connections_parked
        .fetch_sub(1, Ordering::Relaxed);
    resting.slot().set_parked(0);
    let conn = Connection::wake_up(broker, resting);
    // The address the session already holds: no system call per resume.
    let peer = conn.slot().control.lock().peer;
    let span = tracing::info_span!("conn", client_id = %conn.slot().client_id, peer = ?peer);
    match TcpStream::from_std(socket) {
        Ok(stream) => {
            serve_established(conn, stream, permit)
                .instrument(span)
                .await
        }
        Err(e) => {
            span.in_scope(|| tracing::debug!(error = %e, "could not resume a parked connection"));
            conn.finish(Exit::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    /// A parked connection is the unit a fleet of idle clients multiplies:
    /// it must stay a small record (issue 20: under 700 bytes per idle
    /// connection in all, session included).
    #[test]
    fn a_parked_connection_stays_a_small_record() {
        let size = std::mem::size_of::<super::ParkedConnection>();
        assert!(size <= 400, "ParkedConnection is {size} bytes");
    }
}

//! The write side of a connection: batches go out once what they
//! acknowledge is durable, every wait gives way to a kick, a takeover or
//! shutdown, and a client that stops reading cannot pin its task.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Connection, FINAL_WRITE_BUDGET, MAX_HELD_BYTES};
use crate::codec::ReasonCode;
use crate::session::Exit;

/// Why a write to the client did not complete.
#[derive(Debug)]
pub(super) enum WriteStop {
    /// The socket failed, or held acks can never be sent.
    Io,
    /// Told to leave (takeover, admin kick, shutdown) while waiting or
    /// writing.
    Kicked(ReasonCode),
    /// No progress within `limits.write_timeout_secs`: the client stopped
    /// reading.
    Stalled,
}

impl Connection {
    /// Writes the buffer once what it acknowledges is durable. Every wait
    /// in here gives way to a kick, a takeover or shutdown, and the socket
    /// write itself is bounded by `limits.write_timeout_secs`: a client
    /// that stops reading can neither pin its session nor its task.
    pub(super) async fn flush_out<S: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut S,
    ) -> Result<(), WriteStop> {
        if !self.machine.has_output() {
            return Ok(());
        }
        let write_timeout = self.write_timeout;
        let Connection {
            kick,
            held,
            store,
            machine,
            broker,
            ..
        } = self;
        let wbuf = machine.output();
        let work = async {
            let ticket = std::mem::take(&mut held.pending);
            store.wait(ticket).await;
            for wait in std::mem::take(&mut held.sink_waits) {
                held.sink_failed |= wait.await.is_err();
            }
            if held.sink_failed {
                // What the output waited for did not happen: a bridge lost
                // the message before its sink had it, or the cluster could
                // not store a message, a session record or QoS 2 flows. No
                // acknowledgement; the client resends after reconnecting.
                tracing::warn!(
                    "a bridge's sink or the cluster could not confirm what this connection's answer waits for; closing so the client resends"
                );
                wbuf.clear();
                return Err(WriteStop::Io);
            }
            broker
                .stats
                .bytes_sent
                .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
            match tokio::time::timeout(write_timeout, flush(writer, wbuf)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(WriteStop::Io),
                Err(_) => Err(WriteStop::Stalled),
            }
        };
        tokio::select! {
            biased;
            reason = kick => Err(WriteStop::Kicked(reason.unwrap_or(ReasonCode::SessionTakenOver))),
            done = work => done,
        }
    }

    /// The last write of a connection that is ending (DISCONNECT, acks of
    /// what was read): best effort, within [`FINAL_WRITE_BUDGET`]. Once it
    /// went out, `last_words` has the connection linger so it arrives.
    pub(super) async fn end<S: AsyncWrite + Unpin>(&mut self, writer: &mut S, exit: Exit) -> Exit {
        if !self.machine.has_output() {
            return exit;
        }
        let started = Instant::now();
        let Connection {
            held,
            store,
            machine,
            ..
        } = self;
        let wbuf = machine.output();
        let work = async {
            store.wait(std::mem::take(&mut held.pending)).await;
            for wait in std::mem::take(&mut held.sink_waits) {
                held.sink_failed |= wait.await.is_err();
            }
            !held.sink_failed && flush(writer, wbuf).await.is_ok()
        };
        match tokio::time::timeout(FINAL_WRITE_BUDGET, work).await {
            Ok(true) => self.last_words = Some(started),
            Ok(false) => {}
            Err(_) => tracing::debug!("last write to the client did not complete in time"),
        }
        self.machine.output().clear();
        exit
    }

    /// Ends the connection after a write that could not complete.
    pub(super) async fn stopped_writing<S: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut S,
        stop: WriteStop,
    ) -> Exit {
        match stop {
            WriteStop::Io => Exit::Closed,
            WriteStop::Kicked(reason) => {
                let exit = self.machine.kicked(reason);
                self.end(writer, exit).await
            }
            WriteStop::Stalled => {
                let total = self
                    .broker
                    .stats
                    .slow_consumers_disconnected
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                tracing::warn!(
                    timeout_secs = self.write_timeout.as_secs(),
                    total,
                    "client stopped reading; disconnected"
                );
                // Nothing more can reach a client that does not read.
                self.machine.output().clear();
                Exit::Closed
            }
        }
    }

    /// Whether the write buffer should go out now. What it acknowledges
    /// may still be on its way to disk, or to a bridge's sink (`ack =
    /// "sink"`): then the connection goes on reading (a group commit takes
    /// a few milliseconds, and a publisher read a kilobyte at a time would
    /// otherwise get a dozen messages into each commit, or each request to
    /// the sink), unless too much is held. `durable_now` is the caller's
    /// one reading of whether what the buffer acknowledges is on disk.
    pub(super) fn ready_to_write(&mut self, durable_now: bool) -> bool {
        if !self.machine.has_output() {
            return false;
        }
        let sinks_confirmed = self.held.sinks_confirmed();
        self.held.sink_failed
            || self.machine.output().len() >= MAX_HELD_BYTES
            || (sinks_confirmed && durable_now)
    }
}

async fn flush<S: AsyncWrite + Unpin>(writer: &mut S, wbuf: &mut BytesMut) -> std::io::Result<()> {
    let r = writer.write_all(wbuf).await;
    wbuf.clear();
    r?;
    // TLS and WebSocket buffer: push the batch out now.
    writer.flush().await
}

//! When the bridge's link is taken for dead: the remote leaves an
//! acknowledgement owed for `ack_timeout`, or sends nothing for one and a
//! half keep-alives; and when a PINGREQ is due (a keep-alive without a
//! write).

use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Liveness {
    keep_alive: Duration,
    ack_timeout: Duration,
    last_write: Instant,
    last_read: Instant,
    last_progress: Instant,
    ping_owed: bool,
}

impl Liveness {
    pub(crate) fn new(keep_alive: Duration, ack_timeout: Duration) -> Liveness {
        let now = Instant::now();
        Liveness {
            keep_alive,
            ack_timeout,
            last_write: now,
            last_read: now,
            last_progress: now,
            ping_owed: false,
        }
    }

    /// When [`Liveness::check`] must run next.
    pub(crate) fn deadline(&self) -> Instant {
        let mut deadline = self.last_progress + self.ack_timeout;
        if !self.keep_alive.is_zero() {
            deadline = deadline.min(self.last_write + self.keep_alive);
            deadline = deadline.min(self.last_read + self.keep_alive * 3 / 2);
        }
        deadline
    }

    pub(crate) fn read(&mut self) {
        self.last_read = Instant::now();
        self.ping_owed = false;
    }

    pub(crate) fn wrote(&mut self) {
        self.last_write = Instant::now();
    }

    /// A record moved on, or a new batch started.
    pub(crate) fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// At the deadline: the reason the link is dead, or whether a PINGREQ
    /// is due. `owed`: acknowledgements are awaited.
    pub(crate) fn check(&mut self, owed: bool) -> Result<bool, String> {
        let now = Instant::now();
        if owed && now >= self.last_progress + self.ack_timeout {
            return Err(format!(
                "no acknowledgement from the remote for {:?}",
                self.ack_timeout
            ));
        }
        if !owed {
            self.last_progress = now;
        }
        if self.keep_alive.is_zero() {
            return Ok(false);
        }
        if now >= self.last_read + self.keep_alive * 3 / 2 {
            return Err("the remote stopped answering (keep alive)".into());
        }
        let ping = now >= self.last_write + self.keep_alive && !self.ping_owed;
        self.ping_owed |= ping;
        Ok(ping)
    }
}

//! How a connection ends, and what its ending means for the will and the
//! session (3.1.2.5, 3.14.4): pure decisions the server carries out.

use std::time::Duration;

use crate::codec::ReasonCode;
use crate::session::{after_disconnect, AfterDisconnect};

/// Why a connection ended; decides the will and the session's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The client sent DISCONNECT; `with_will` for any v5 reason but 0x00.
    Disconnect {
        with_will: bool,
    },
    /// The socket closed or failed without DISCONNECT.
    Closed,
    /// We closed it for a protocol violation or keep alive timeout.
    Violation(ReasonCode),
    TakenOver,
    Shutdown,
}

impl Exit {
    /// The exit for being told to leave with `reason` (takeover, kick).
    pub fn kicked(reason: ReasonCode) -> Exit {
        match reason {
            ReasonCode::SessionTakenOver => Exit::TakenOver,
            // Shutdown reaches connections as a kick with this reason.
            ReasonCode::ServerShuttingDown => Exit::Shutdown,
            other => Exit::Violation(other),
        }
    }
}

/// What to do with the will and the session once the socket is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// Publish the will now.
    pub will_now: bool,
    /// Keep the will in the session until its delay has passed.
    pub keep_will: bool,
    /// The session goes offline under this plan; `None`: leave it as it
    /// is (shutdown keeps it as stored, a takeover hands it on).
    pub offline: Option<AfterDisconnect>,
}

/// Decides the will and the session's fate for a connection that ended
/// with `exit`.
pub fn ending(exit: Exit, has_will: bool, will_delay: u32, session_expiry: u32) -> Ending {
    match exit {
        // The store keeps the session as it was: a restart treats the
        // connection as lost then.
        Exit::Shutdown => Ending {
            will_now: false,
            keep_will: false,
            offline: None,
        },
        // The new connection opened before any will delay passed.
        Exit::TakenOver => Ending {
            will_now: has_will && will_delay == 0,
            keep_will: false,
            offline: None,
        },
        _ => {
            // Only a normal disconnection (0x00) discards the will.
            let send_will = !matches!(exit, Exit::Disconnect { with_will: false });
            let plan = after_disconnect(has_will, send_will, will_delay, session_expiry);
            let will_now = has_will && plan.will_after == Some(Duration::ZERO);
            Ending {
                will_now,
                keep_will: has_will && plan.will_after.is_some() && !will_now,
                offline: Some(plan),
            }
        }
    }
}

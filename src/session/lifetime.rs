//! When a disconnected session's will is published and when the session
//! ends (3.1.2.5, 3.1.3.2.2): pure decisions from the intervals, so the
//! timers in the broker only carry them out.

use std::time::Duration;

/// Session expiry interval meaning "never expires".
pub const NEVER: u32 = u32::MAX;

/// What happens after a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterDisconnect {
    /// Publish the will after this delay (`Some(ZERO)` = now).
    pub will_after: Option<Duration>,
    /// End the session after this delay (`Some(ZERO)` = now, `None` = never).
    pub session_ends_after: Option<Duration>,
}

/// Decides will and session end for a closed connection.
///
/// `send_will`: whether the closing calls for the will (no DISCONNECT, or v5
/// DISCONNECT 0x04). The will goes out at the earlier of its delay and the
/// session's end.
pub fn after_disconnect(
    has_will: bool,
    send_will: bool,
    will_delay: u32,
    session_expiry: u32,
) -> AfterDisconnect {
    let session_ends_after = if session_expiry == NEVER {
        None
    } else {
        Some(Duration::from_secs(u64::from(session_expiry)))
    };
    let will_after = if has_will && send_will {
        let delay = Duration::from_secs(u64::from(will_delay));
        Some(match session_ends_after {
            Some(end) => delay.min(end),
            None => delay,
        })
    } else {
        None
    };
    AfterDisconnect {
        will_after,
        session_ends_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn will_is_immediate_without_delay() {
        let a = after_disconnect(true, true, 0, 0);
        assert_eq!(
            a,
            AfterDisconnect {
                will_after: secs(0),
                session_ends_after: secs(0)
            }
        );
    }

    #[test]
    fn will_waits_for_its_delay_within_session_life() {
        assert_eq!(after_disconnect(true, true, 5, 60).will_after, secs(5));
    }

    #[test]
    fn session_end_brings_the_will_forward() {
        assert_eq!(after_disconnect(true, true, 30, 10).will_after, secs(10));
        assert_eq!(after_disconnect(true, true, 30, 0).will_after, secs(0));
    }

    #[test]
    fn normal_disconnect_sends_no_will() {
        assert_eq!(after_disconnect(true, false, 0, 0).will_after, None);
        assert_eq!(after_disconnect(false, true, 0, 0).will_after, None);
    }

    #[test]
    fn never_expiring_session() {
        let a = after_disconnect(true, true, 7, NEVER);
        assert_eq!(
            a,
            AfterDisconnect {
                will_after: secs(7),
                session_ends_after: None
            }
        );
    }
}

//! What an ending connection means for the will and the session.

use std::time::Duration;

use crate::codec::ReasonCode;
use crate::session::machine::{ending, Exit};

#[test]
fn shutdown_leaves_will_and_session_as_stored() {
    let e = ending(Exit::Shutdown, true, 0, 60);
    assert!(!e.will_now && !e.keep_will);
    assert_eq!(e.offline, None);
}

/// Shutdown reaches connections as a kick with 0x8B (one wake-up source
/// per connection): it must still mean shutdown, not a violation (which
/// would publish the will and end sessions).
#[test]
fn a_shutdown_kick_is_a_shutdown() {
    assert_eq!(Exit::kicked(ReasonCode::ServerShuttingDown), Exit::Shutdown);
    assert_eq!(Exit::kicked(ReasonCode::SessionTakenOver), Exit::TakenOver);
    assert_eq!(
        Exit::kicked(ReasonCode::AdministrativeAction),
        Exit::Violation(ReasonCode::AdministrativeAction)
    );
}

#[test]
fn a_takeover_publishes_a_will_without_delay_only() {
    assert!(ending(Exit::TakenOver, true, 0, 60).will_now);
    let delayed = ending(Exit::TakenOver, true, 5, 60);
    assert!(!delayed.will_now && !delayed.keep_will);
    assert_eq!(delayed.offline, None, "the session lives on");
}

#[test]
fn a_normal_disconnect_discards_the_will() {
    let e = ending(Exit::Disconnect { with_will: false }, true, 0, 60);
    assert!(!e.will_now && !e.keep_will);
    let plan = e.offline.unwrap_or_else(|| panic!("goes offline"));
    assert_eq!(plan.session_ends_after, Some(Duration::from_secs(60)));
}

#[test]
fn a_keep_alive_timeout_or_lost_socket_sends_the_will() {
    for exit in [
        Exit::Violation(ReasonCode::KeepAliveTimeout),
        Exit::Closed,
        Exit::Disconnect { with_will: true },
    ] {
        assert!(ending(exit, true, 0, 60).will_now, "{exit:?}");
        let delayed = ending(exit, true, 10, 60);
        assert!(!delayed.will_now && delayed.keep_will, "{exit:?}");
    }
    let none = ending(Exit::Closed, false, 0, 60);
    assert!(!none.will_now && !none.keep_will);
}

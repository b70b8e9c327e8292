//! The wheel on simulated time: every `now` is made up, nothing sleeps.

use std::time::{Duration, Instant};

use super::TimerWheel;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn fires_in_deadline_order_then_in_scheduling_order() {
    let t0 = Instant::now();
    let mut w = TimerWheel::default();
    w.schedule("late", t0 + secs(30), "late");
    w.schedule("will", t0 + secs(10), "will");
    w.schedule("expiry", t0 + secs(10), "expiry");
    assert_eq!(w.next_deadline(), Some(t0 + secs(10)));
    assert!(w.take_due(t0 + secs(9)).is_empty());
    assert_eq!(w.take_due(t0 + secs(10)), vec!["will", "expiry"]);
    assert_eq!(w.len(), 1);
    assert_eq!(w.take_due(t0 + secs(3600)), vec!["late"]);
    assert_eq!(w.len(), 0);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn scheduling_a_key_again_replaces_its_timer() {
    let t0 = Instant::now();
    let mut w = TimerWheel::default();
    assert!(w.schedule(1, t0 + secs(10), "first"));
    assert!(!w.schedule(2, t0 + secs(20), "other"));
    // Later than before: still one timer for key 1, no longer the earliest.
    assert!(!w.schedule(1, t0 + secs(60), "second"));
    assert_eq!(w.len(), 2);
    assert_eq!(w.take_due(t0 + secs(30)), vec!["other"]);
    assert_eq!(w.take_due(t0 + secs(60)), vec!["second"]);
}

#[test]
fn an_earlier_deadline_says_the_driver_must_wake() {
    let t0 = Instant::now();
    let mut w = TimerWheel::default();
    assert!(w.schedule(1, t0 + secs(60), ()));
    assert!(!w.schedule(2, t0 + secs(90), ()));
    assert!(w.schedule(3, t0 + secs(5), ()));
}

#[test]
fn cancel_removes_only_that_key() {
    let t0 = Instant::now();
    let mut w = TimerWheel::default();
    w.schedule(1, t0, "a");
    w.schedule(2, t0, "b");
    assert_eq!(w.cancel(&1), Some("a"));
    assert_eq!(w.cancel(&1), None);
    assert_eq!(w.take_due(t0), vec!["b"]);
}

/// A hundred thousand pending timers are entries in two maps: taking the
/// due ones visits only those.
#[test]
fn many_timers_cost_entries_not_work() {
    let t0 = Instant::now();
    let mut w = TimerWheel::default();
    for i in 0..100_000u64 {
        w.schedule(i, t0 + Duration::from_millis(i), i);
    }
    assert_eq!(w.len(), 100_000);
    let due = w.take_due(t0 + Duration::from_millis(9));
    assert_eq!(due, (0..10).collect::<Vec<_>>());
    assert_eq!(w.len(), 99_990);
}

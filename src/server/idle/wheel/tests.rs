use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;

/// Runs the wheel to `now`, keeping `positions` up to date; returns the
/// keys that fired, sorted.
fn advance(
    w: &mut KeepAliveWheel,
    now: Instant,
    positions: &mut HashMap<u32, Position>,
) -> Vec<u32> {
    let mut due = Vec::new();
    w.advance(now, |t| match t {
        Tick::Due(k) => {
            positions.remove(&k);
            due.push(k);
        }
        Tick::Moved(k, p) => {
            positions.insert(k, p);
        }
    });
    due.sort_unstable();
    due
}

#[test]
fn fires_at_or_after_the_deadline_never_before() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    pos.insert(1, w.schedule(1, t0 + Duration::from_millis(1500)));
    pos.insert(2, w.schedule(2, t0 + Duration::from_secs(3)));
    assert_eq!(w.next_tick(), Some(t0 + Duration::from_secs(1)));
    assert!(advance(&mut w, t0 + Duration::from_millis(1999), &mut pos).is_empty());
    assert_eq!(
        advance(&mut w, t0 + Duration::from_secs(2), &mut pos),
        vec![1]
    );
    assert!(advance(&mut w, t0 + Duration::from_millis(2999), &mut pos).is_empty());
    assert_eq!(
        advance(&mut w, t0 + Duration::from_secs(3), &mut pos),
        vec![2]
    );
    assert!(w.is_empty());
    assert_eq!(w.next_tick(), None);
}

#[test]
fn a_cancelled_timer_never_fires_and_the_moved_one_still_does() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    for k in 0..5 {
        pos.insert(k, w.schedule(k, t0 + Duration::from_secs(5)));
    }
    // Cancelling the first moves the last (4) into its place.
    let (moved, at) = w
        .cancel(pos.remove(&0).expect("scheduled"))
        .expect("the last timer moved");
    assert_eq!(moved, 4);
    pos.insert(moved, at);
    // Cancelling the moved one at its new place moves 3 there.
    let (moved, at) = w
        .cancel(pos.remove(&4).expect("scheduled"))
        .expect("3 moved");
    assert_eq!(moved, 3);
    pos.insert(moved, at);
    assert_eq!(w.len(), 3);
    assert_eq!(
        advance(&mut w, t0 + Duration::from_secs(5), &mut pos),
        vec![1, 2, 3]
    );
}

#[test]
fn cancelling_keeps_every_other_timer() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    for k in 0..100u32 {
        pos.insert(
            k,
            w.schedule(k, t0 + Duration::from_secs(u64::from(k % 7) + 1)),
        );
    }
    for k in (0..100u32).filter(|k| k % 3 == 0) {
        let p = pos.remove(&k).expect("scheduled");
        if let Some((moved, np)) = w.cancel(p) {
            pos.insert(moved, np);
        }
    }
    let fired = advance(&mut w, t0 + Duration::from_secs(10), &mut pos);
    let expected: Vec<u32> = (0..100).filter(|k| k % 3 != 0).collect();
    assert_eq!(fired, expected);
    assert!(w.is_empty());
}

#[test]
fn timers_further_than_a_turn_wait_for_their_turn() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    let far = BUCKETS as u64 + 10;
    pos.insert(7, w.schedule(7, t0 + Duration::from_secs(far)));
    pos.insert(8, w.schedule(8, t0 + Duration::from_secs(10)));
    // Tick second by second through the first turn.
    let mut fired = Vec::new();
    for s in 1..far {
        fired.extend(advance(&mut w, t0 + Duration::from_secs(s), &mut pos));
    }
    assert_eq!(fired, vec![8]);
    assert_eq!(
        advance(&mut w, t0 + Duration::from_secs(far), &mut pos),
        vec![7]
    );
}

#[test]
fn a_long_sleep_fires_everything_due_in_one_pass() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    for k in 0..50u32 {
        pos.insert(
            k,
            w.schedule(k, t0 + Duration::from_secs(u64::from(k) * 97)),
        );
    }
    let fired = advance(&mut w, t0 + Duration::from_secs(100_000), &mut pos);
    assert_eq!(fired, (0..50).collect::<Vec<_>>());
}

#[test]
fn a_deadline_in_the_past_fires_at_the_next_tick() {
    let t0 = Instant::now();
    let mut w = KeepAliveWheel::new(t0);
    let mut pos = HashMap::new();
    assert!(advance(&mut w, t0 + Duration::from_secs(5), &mut pos).is_empty());
    pos.insert(1, w.schedule(1, t0));
    assert_eq!(w.next_tick(), Some(t0 + Duration::from_secs(6)));
    assert_eq!(
        advance(&mut w, t0 + Duration::from_secs(6), &mut pos),
        vec![1]
    );
}

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// A parked value: its name and the socket it owns.
struct Parked {
    name: u32,
    _socket: UnixStream,
}

type Out = mpsc::Receiver<(u32, Resumed, Instant)>;

fn table() -> (IdleTable<Parked>, Out) {
    let (tx, rx) = mpsc::channel();
    let tx = parking_lot::Mutex::new(tx);
    let t = IdleTable::start("idle-test", move |p: Parked, why| {
        let _ = tx.lock().send((p.name, why, Instant::now()));
    })
    .expect("table starts");
    (t, rx)
}

fn park(t: &IdleTable<Parked>, name: u32, deadline: Option<Instant>) -> (ParkToken, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("non-blocking");
    let fd = ours.as_raw_fd();
    let token = t
        .park(
            fd,
            Parked {
                name,
                _socket: ours,
            },
            deadline,
        )
        .map_err(|(e, _)| e)
        .expect("parks");
    (token, theirs)
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_readable_socket_resumes_its_entry_and_no_other() {
    let (t, out) = table();
    let (_a, mut peer_a) = park(&t, 1, None);
    let (_b, _peer_b) = park(&t, 2, None);
    assert_eq!(t.len(), 2);
    peer_a.write_all(b"x").expect("write");
    let (name, why, _) = out.recv_timeout(WAIT).expect("resumed");
    assert_eq!((name, why), (1, Resumed::Readable));
    assert!(out.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(t.len(), 1);
}

#[test]
fn bytes_that_arrived_before_parking_resume_at_once() {
    let (t, out) = table();
    let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
    ours.set_nonblocking(true).expect("non-blocking");
    theirs.write_all(b"early").expect("write");
    let fd = ours.as_raw_fd();
    let _token = t
        .park(
            fd,
            Parked {
                name: 9,
                _socket: ours,
            },
            None,
        )
        .map_err(|(e, _)| e)
        .expect("parks");
    let (name, why, _) = out.recv_timeout(WAIT).expect("resumed");
    assert_eq!((name, why), (9, Resumed::Readable));
}

#[test]
fn waking_a_token_resumes_it_once_and_a_stale_token_does_nothing() {
    let (t, out) = table();
    let (token, _peer) = park(&t, 3, None);
    t.wake(token);
    let (name, why, _) = out.recv_timeout(WAIT).expect("resumed");
    assert_eq!((name, why), (3, Resumed::Woken));
    // The place is reused by the next entry: the old token must not wake it.
    let (token2, _peer2) = park(&t, 4, None);
    assert_ne!(token, token2);
    t.wake(token);
    assert!(out.recv_timeout(Duration::from_millis(200)).is_err());
    t.wake(token2);
    assert_eq!(out.recv_timeout(WAIT).expect("resumed").0, 4);
}

#[test]
fn a_deadline_resumes_at_or_after_it() {
    let (t, out) = table();
    let deadline = Instant::now() + Duration::from_millis(1200);
    let (_token, _peer) = park(&t, 5, Some(deadline));
    let (name, why, at) = out.recv_timeout(WAIT).expect("resumed");
    assert_eq!((name, why), (5, Resumed::Deadline));
    assert!(at >= deadline, "fired before its deadline");
}

#[test]
fn a_resumed_entry_leaves_its_deadline_behind() {
    let (t, out) = table();
    let (token, _peer) = park(&t, 6, Some(Instant::now() + Duration::from_millis(500)));
    t.wake(token);
    assert_eq!(out.recv_timeout(WAIT).expect("woken").1, Resumed::Woken);
    // Its timer was cancelled: nothing fires later.
    assert!(out.recv_timeout(Duration::from_millis(1800)).is_err());
}

#[test]
fn wake_where_wakes_exactly_the_chosen_entries() {
    let (t, out) = table();
    let mut keep = Vec::new();
    for name in 10..20 {
        keep.push(park(&t, name, None));
    }
    t.wake_where(|p| p.name % 2 == 0);
    let mut woken: Vec<u32> = (0..5)
        .map(|_| out.recv_timeout(WAIT).expect("woken").0)
        .collect();
    woken.sort_unstable();
    assert_eq!(woken, vec![10, 12, 14, 16, 18]);
    assert!(out.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(t.len(), 5);
}

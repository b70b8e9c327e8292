//! The idle-connection table (issue 20): what parking costs, and what its
//! keep-alive wheel costs with up to a million parked connections.
//!
//! - `wheel/reset/N`: a keep-alive reset (cancel the timer, schedule the
//!   next) among N timers, as each packet of a parked client does.
//! - `wheel/tick/N`: the wheel advanced 301 seconds at once with N timers
//!   spread over ten minutes (about half of them fire).
//! - `table/park_wake`: one full cycle of a real socket: park (register
//!   with the table's epoll set and wheel), wake, and hand-back from the
//!   table's thread (deregister, cross-thread hand-off).

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice::server::idle::{IdleTable, KeepAliveWheel, Position, Tick};

/// N timers spread over 600 s, with their positions (kept up to date as
/// the caller of the wheel does).
fn filled(n: u32, start: Instant) -> (KeepAliveWheel, Vec<Position>) {
    let mut wheel = KeepAliveWheel::new(start);
    let positions = (0..n)
        .map(|k| {
            wheel.schedule(
                k,
                start + Duration::from_millis(u64::from(k) * 600_000 / u64::from(n)),
            )
        })
        .collect();
    (wheel, positions)
}

fn wheel(c: &mut Criterion) {
    let mut group = c.benchmark_group("wheel");
    for n in [10_000u32, 100_000, 1_000_000] {
        let start = Instant::now();
        let (mut wheel, mut positions) = filled(n, start);
        let mut key = 0u32;
        group.bench_with_input(BenchmarkId::new("reset", n), &n, |b, &n| {
            b.iter(|| {
                key = (key + 7919) % n;
                if let Some((moved, at)) = wheel.cancel(positions[key as usize]) {
                    positions[moved as usize] = at;
                }
                positions[key as usize] = wheel.schedule(key, start + Duration::from_secs(900));
            })
        });
        group.bench_with_input(BenchmarkId::new("tick", n), &n, |b, &n| {
            b.iter_batched(
                || filled(n, start).0,
                |mut wheel| {
                    let mut fired = 0u32;
                    wheel.advance(start + Duration::from_secs(301), |t| {
                        if matches!(t, Tick::Due(_)) {
                            fired += 1;
                        }
                    });
                    black_box(fired)
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn table(c: &mut Criterion) {
    let (tx, rx) = mpsc::channel::<UnixStream>();
    let tx = parking_lot::Mutex::new(tx);
    let table = IdleTable::start("idle-bench", move |s: UnixStream, _| {
        let _ = tx.lock().send(s);
    })
    .expect("table starts");
    // Parked neighbours, as in a broker holding many idle connections
    // (two descriptors each: within the default open-file limit of 1,024).
    let mut neighbours = Vec::new();
    for _ in 0..400 {
        let (a, b) = UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("non-blocking");
        let fd = a.as_raw_fd();
        let deadline = Some(Instant::now() + Duration::from_secs(600));
        if table.park(fd, a, deadline).is_ok() {
            neighbours.push(b);
        }
    }
    let (ours, _peer) = UnixStream::pair().expect("pair");
    ours.set_nonblocking(true).expect("non-blocking");
    let mut ours = Some(ours);
    c.bench_function("table/park_wake", |b| {
        b.iter(|| {
            let socket = ours.take().expect("our socket is back");
            let fd = socket.as_raw_fd();
            let deadline = Some(Instant::now() + Duration::from_secs(90));
            let token = match table.park(fd, socket, deadline) {
                Ok(t) => t,
                Err((e, _)) => panic!("park failed: {e}"),
            };
            table.wake(token);
            ours = Some(rx.recv().expect("resumed"));
        })
    });
    black_box(neighbours.len());
}

criterion_group!(benches, wheel, table);
criterion_main!(benches);

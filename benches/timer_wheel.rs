//! The broker's `TimerWheel` at the sizes keep-alive deadlines will give
//! it (issue 20: up to a million idle connections, each with a deadline
//! that every packet pushes back).
//!
//! Three operations, each reported per timer (criterion's element
//! throughput): filling a wheel with N deadlines spread over 0..600 s;
//! a keep-alive reset (`schedule` of a key that already has a timer, so a
//! cancel and an insert) in a full wheel; and advancing the clock over the
//! 600 s in 10 ms steps, firing everything as it falls due. Before the
//! timings, the number of allocations each operation makes is printed
//! (a counting global allocator), since a per-packet allocation is what
//! a reset must not have.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::broker::TimerWheel;

/// Counts allocations so the bench can say how many each operation makes.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is a relaxed counter increment, which cannot allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Wheel sizes: idle connections held.
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
/// Deadlines are spread over this span (a keep alive of 300 s, times 1.5,
/// rounded up).
const SPAN_MS: u64 = 600_000;
/// How far the clock moves between two `take_due` calls when firing.
const STEP_MS: u64 = 10;

/// A connection id, as a keep-alive table would key its timers.
type Key = u64;

/// Deadline of connection `i` among `n`: an odd-multiplier permutation
/// spreads them evenly over the span without a random number generator.
fn deadline(t0: Instant, i: u64, n: u64) -> Instant {
    let slot = i.wrapping_mul(2_654_435_761) % n;
    t0 + Duration::from_millis(slot * SPAN_MS / n)
}

fn filled(t0: Instant, n: u64) -> TimerWheel<Key, Key> {
    let mut wheel = TimerWheel::default();
    for i in 0..n {
        wheel.schedule(i, deadline(t0, i, n), i);
    }
    wheel
}

/// Advances from `t0` over the whole span, firing what is due; the number
/// of timers fired.
fn fire_all(wheel: &mut TimerWheel<Key, Key>, t0: Instant) -> usize {
    let mut fired = 0;
    let mut at = 0;
    while at <= SPAN_MS {
        fired += wheel.take_due(t0 + Duration::from_millis(at)).len();
        at += STEP_MS;
    }
    fired
}

/// Allocations per operation, printed once per size before the timings.
fn report_allocations(t0: Instant, n: u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut wheel = filled(t0, n);
    let insert = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let resets = n.min(100_000);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..resets {
        let key = i.wrapping_mul(7_919) % n;
        wheel.schedule(key, deadline(t0, i + 1, n), key);
    }
    let reset = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let fired = fire_all(&mut wheel, t0);
    let fire = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(fired as u64, n);
    let per = |count: u64, ops: u64| count as f64 / ops as f64;
    eprintln!(
        "timer_wheel n={n}: allocations per insert {:.3}, per reset {:.3}, per fired timer {:.3} \
         ({} take_due calls)",
        per(insert, n),
        per(reset, resets),
        per(fire, n),
        SPAN_MS / STEP_MS + 1,
    );
}

fn insert(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("timer_wheel/insert");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in SIZES {
        report_allocations(t0, n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(n.to_string(), |b| b.iter(|| filled(t0, black_box(n))));
    }
    g.finish();
}

/// A keep-alive reset: the connection's key already has a timer, which
/// `schedule` replaces with one at a new deadline.
fn reset(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("timer_wheel/reset");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut wheel = filled(t0, n);
        // Deadlines keep moving later, as they do when packets arrive.
        let mut i = n;
        g.bench_function(n.to_string(), |b| {
            b.iter(|| {
                i += 1;
                let key = i.wrapping_mul(7_919) % n;
                let at = t0 + Duration::from_millis(SPAN_MS + i / 64);
                black_box(wheel.schedule(key, at, key))
            })
        });
        assert_eq!(wheel.len() as u64, n);
    }
    g.finish();
}

fn fire(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("timer_wheel/advance_and_fire");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in SIZES {
        g.throughput(Throughput::Elements(n));
        g.bench_function(n.to_string(), |b| {
            b.iter_batched_ref(
                || filled(t0, n),
                |wheel| fire_all(wheel, t0),
                BatchSize::LargeInput,
            )
        });
    }
    // Advancing with nothing due: the cost of a driver's wake-up.
    let mut wheel = filled(t0 + Duration::from_secs(3_600), 100_000);
    g.throughput(Throughput::Elements(1));
    g.bench_function("nothing_due", |b| {
        b.iter(|| black_box(wheel.take_due(black_box(t0))))
    });
    g.finish();
}

criterion_group!(benches, insert, reset, fire);
criterion_main!(benches);

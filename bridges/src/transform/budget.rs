//! What one run of a jq rule may spend, and the guard that stops it.
//!
//! jaq interprets a rule by recursion over iterators and offers no fuel of
//! its own, so a rule like `until(false; .)` loops forever and
//! `def f: 1 + f; f` recurses until the thread's stack overflows, which
//! aborts the whole process (Rust cannot catch a stack overflow). Rules are
//! run with a data type ([`super::jq`]) whose context is cloned on every
//! call of a jq function, every branch of a generator and every iteration
//! of `range`: each clone calls [`tick`], which counts a step, measures the
//! stack in use and, every [`CLOCK_EVERY`] steps, reads the clock. Past any
//! limit the run unwinds (with [`std::panic::resume_unwind`], which skips
//! the panic hook) back to [`run`], which turns it into an error; the rule
//! keeps no state between runs, so nothing is left half-changed.
//!
//! What this does not bound: memory a single operation allocates (`"x" *
//! 1e9`, a value doubled thirty times). Rules come from the operator's
//! configuration; keep such operations off client-controlled numbers.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Default for [`Budget::max_steps`].
pub const DEFAULT_MAX_STEPS: u64 = 1_000_000;
/// Default for [`Budget::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default for [`Budget::max_output_bytes`].
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Stack a run may use below the point where it started. Deep enough for
/// any sensible recursion (thousands of levels even in debug builds), and
/// far below the stack of the thread that runs rules
/// ([`RULE_THREAD_STACK`]), which also has to hold the unguarded
/// recursion of dropping or encoding the values a run built.
pub const MAX_STACK_BYTES: usize = 32 << 20;

/// Stack size for threads that run rules (reserved address space; only the
/// pages a run touches are ever committed).
pub const RULE_THREAD_STACK: usize = 256 << 20;

/// Steps between two readings of the clock (a reading costs about as much
/// as a few steps; natives between steps can be slow, so not many more).
const CLOCK_EVERY: u64 = 16;

/// Limits for one run of a rule on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Steps (function calls, generator branches, `range` items).
    pub max_steps: u64,
    /// Wall-clock time.
    pub timeout: Duration,
    /// Largest transformed payload, in bytes of JSON.
    pub max_output_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: DEFAULT_MAX_STEPS,
            timeout: DEFAULT_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Which limit a run went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Steps(u64),
    Time(Duration),
    /// Recursion deeper than [`MAX_STACK_BYTES`] of stack.
    Depth,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Steps(n) => write!(f, "the rule ran more than {n} steps"),
            Exceeded::Time(t) => write!(f, "the rule ran longer than {} ms", t.as_millis()),
            Exceeded::Depth => f.write_str("the rule recursed too deeply"),
        }
    }
}

struct Guard {
    steps: u64,
    max_steps: u64,
    deadline: Instant,
    timeout: Duration,
    /// Lowest stack address the run may reach (stacks grow down on every
    /// platform we build for).
    stack_floor: usize,
}

thread_local! {
    static GUARD: Cell<Option<Guard>> = const { Cell::new(None) };
    /// Set on threads started with [`RULE_THREAD_STACK`] of stack.
    static RULE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Starts a thread with the stack rules need, on which [`on_rule_thread`]
/// runs its closure in place.
pub fn spawn_rule_thread<F>(name: String, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name)
        .stack_size(RULE_THREAD_STACK)
        .spawn(move || {
            RULE_THREAD.with(|c| c.set(true));
            f()
        })
}

/// Runs `f` on a thread with the stack rules need: this one if it is such
/// a thread, else a new one, waited for. The second case (load-time checks,
/// tests, embedders calling [`super::Transform::apply`] directly) costs a
/// thread start per call.
pub(crate) fn on_rule_thread<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if RULE_THREAD.with(Cell::get) {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .stack_size(RULE_THREAD_STACK)
            .spawn_scoped(s, || {
                RULE_THREAD.with(|c| c.set(true));
                f()
            });
        match spawned?.join() {
            Ok(v) => Ok(v),
            // Panics are caught inside `run`; one here is ours, not the
            // rule's: pass it on.
            Err(payload) => panic::resume_unwind(payload),
        }
    })
}

fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::addr_of!(marker)) as usize
}

/// Counts one step of the running rule; unwinds to [`run`] past a limit.
/// Outside [`run`] (a thread with no guard) it does nothing.
pub(crate) fn tick() {
    let exceeded = GUARD.with(|cell| {
        let mut g = cell.take()?;
        g.steps += 1;
        let exceeded = if g.steps > g.max_steps {
            Some(Exceeded::Steps(g.max_steps))
        } else if stack_address() < g.stack_floor {
            Some(Exceeded::Depth)
        } else if g.steps % CLOCK_EVERY == 0 && Instant::now() > g.deadline {
            Some(Exceeded::Time(g.timeout))
        } else {
            None
        };
        cell.set(Some(g));
        exceeded
    });
    if let Some(e) = exceeded {
        panic::resume_unwind(Box::new(e));
    }
}

/// Runs `f` under `budget`. A panic inside `f` that is not the guard's
/// (a bug in jaq, a capacity overflow) is an error too, never a crash.
pub(crate) fn run<T>(budget: &Budget, f: impl FnOnce() -> T) -> Result<T, String> {
    let guard = Guard {
        steps: 0,
        max_steps: budget.max_steps,
        deadline: Instant::now() + budget.timeout,
        timeout: budget.timeout,
        stack_floor: stack_address().saturating_sub(MAX_STACK_BYTES),
    };
    let previous = GUARD.with(|cell| cell.replace(Some(guard)));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARD.with(|cell| cell.set(previous));
    result.map_err(|payload| {
        if let Some(e) = payload.downcast_ref::<Exceeded>() {
            e.to_string()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            format!("the rule failed inside jq: {s}")
        } else if let Some(s) = payload.downcast_ref::<String>() {
            format!("the rule failed inside jq: {s}")
        } else {
            "the rule failed inside jq".to_owned()
        }
    })
}

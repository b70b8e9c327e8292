//! The idle-connection table: connections with nothing to do, kept as
//! small records rather than as tasks.
//!
//! Most connections of an IoT fleet are idle most of the time. As a task,
//! an idle connection costs its future (every state it can be in, sized
//! for the largest), its timer entry and its registration with the
//! runtime's reactor: a few kilobytes each. Parked here, it is a record
//! (what the caller keeps to resume it), a registration in one epoll set
//! of this table's own thread, and 8 bytes in a keep-alive wheel. When its
//! socket becomes readable, when someone wakes it (a delivery, a kick,
//! shutdown) or when its deadline passes, the record leaves the table and
//! is handed to `resume`, which turns it back into a task.
//!
//! The table knows nothing of MQTT: it holds any `T` with a socket.

mod wheel;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

pub use wheel::{KeepAliveWheel, Position, Tick, BUCKETS};

/// The token of the thread's own waker; entry tokens are never 0.
const WAKER: Token = Token(0);

/// Names a parked entry: its index in the table and the generation of the
/// index (a token of an entry that left the table matches nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkToken(u64);

impl ParkToken {
    fn new(index: u32, generation: u32) -> ParkToken {
        ParkToken(u64::from(generation) << 32 | u64::from(index))
    }

    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The token as one non-zero number (for an atomic in the session).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    pub fn from_u64(raw: u64) -> Option<ParkToken> {
        (raw != 0).then_some(ParkToken(raw))
    }
}

/// Why an entry left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Its socket is readable (or closed).
    Readable,
    /// Someone asked: a delivery, a kick, shutdown.
    Woken,
    /// Its deadline passed.
    Deadline,
}

/// One place of the table. Generations start at 1, so no token is 0.
struct Entry<T> {
    generation: u32,
    fd: RawFd,
    timer: Option<Position>,
    value: Option<Box<T>>,
}

struct Inner<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    wheel: KeepAliveWheel,
    /// Tokens asked to wake, for the thread to take out.
    woken: Vec<ParkToken>,
}

struct Shared<T> {
    registry: mio::Registry,
    waker: Waker,
    inner: Mutex<Inner<T>>,
}

/// A table of parked `T`s, each waiting on a socket and a deadline, with
/// the thread that waits for them. Dropping the last handle leaves the
/// thread running: tables live as long as the process.
pub struct IdleTable<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Clone for IdleTable<T> {
    fn clone(&self) -> Self {
        IdleTable {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + 'static> IdleTable<T> {
    /// Starts the table's thread; `resume` gets every entry that leaves
    /// the table (on that thread: it should hand the entry on, not work).
    pub fn start(
        name: &str,
        resume: impl Fn(T, Resumed) + Send + 'static,
    ) -> std::io::Result<IdleTable<T>> {
        let poll = Poll::new()?;
        let shared = Arc::new(Shared {
            registry: poll.registry().try_clone()?,
            waker: Waker::new(poll.registry(), WAKER)?,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                free: Vec::new(),
                wheel: KeepAliveWheel::new(Instant::now()),
                woken: Vec::new(),
            }),
        });
        let table = IdleTable { shared };
        let thread_table = table.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || thread_table.run(poll, resume))?;
        Ok(table)
    }

    /// Parks `value`, which owns the socket `fd`, until the socket is
    /// readable, the token is woken or `deadline` passes. On failure the
    /// value comes back.
    pub fn park(
        &self,
        fd: RawFd,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<ParkToken, (std::io::Error, T)> {
        let mut inner = self.shared.inner.lock();
        let index = match inner.free.pop() {
            Some(i) => i as usize,
            None => {
                inner.entries.push(Entry {
                    generation: 0,
                    fd: -1,
                    timer: None,
                    value: None,
                });
                inner.entries.len() - 1
            }
        };
        let Ok(index32) = u32::try_from(index) else {
            return Err((std::io::Error::other("idle table full"), value));
        };
        let generation = inner.entries[index].generation.wrapping_add(1).max(1);
        let token = ParkToken::new(index32, generation);
        let interest = Interest::READABLE;
        if let Err(e) =
            self.shared
                .registry
                .register(&mut SourceFd(&fd), Token(token.0 as usize), interest)
        {
            inner.free.push(index32);
            return Err((e, value));
        }
        let timer = deadline.map(|at| inner.wheel.schedule(index32, at));
        let entry = &mut inner.entries[index];
        entry.generation = generation;
        entry.fd = fd;
        entry.timer = timer;
        entry.value = Some(Box::new(value));
        let earliest = deadline.is_some() && inner.wheel.len() == 1;
        drop(inner);
        if earliest {
            // The thread may be sleeping without a deadline.
            let _ = self.shared.waker.wake();
        }
        Ok(token)
    }

    /// Asks for the entry of `token` to be resumed (no effect if it left
    /// the table already).
    pub fn wake(&self, token: ParkToken) {
        self.shared.inner.lock().woken.push(token);
        let _ = self.shared.waker.wake();
    }

    /// Wakes every entry `pick` chooses (shutdown of one broker).
    pub fn wake_where(&self, pick: impl Fn(&T) -> bool) {
        {
            let mut inner = self.shared.inner.lock();
            let chosen: Vec<ParkToken> = inner
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.value.as_deref().is_some_and(&pick))
                .map(|(i, e)| ParkToken::new(i as u32, e.generation))
                .collect();
            inner.woken.extend(chosen);
        }
        let _ = self.shared.waker.wake();
    }

    /// Entries parked now.
    pub fn len(&self) -> usize {
        let inner = self.shared.inner.lock();
        inner.entries.len() - inner.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn run(self, mut poll: Poll, resume: impl Fn(T, Resumed)) {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<(T, Resumed)> = Vec::new();
        loop {
            let timeout = {
                let inner = self.shared.inner.lock();
                inner
                    .wheel
                    .next_tick()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "idle table: waiting for sockets failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            self.collect(&events, &mut ready);
            for (value, why) in ready.drain(..) {
                resume(value, why);
            }
            if ready.capacity() > 64 {
                // A mass wake-up (shutdown) leaves no lasting allocation.
                ready = Vec::new();
            }
        }
    }

    /// Takes out what is ready: readable sockets, woken tokens, deadlines.
    fn collect(&self, events: &Events, ready: &mut Vec<(T, Resumed)>) {
        let mut inner = self.shared.inner.lock();
        for event in events.iter() {
            if event.token() != WAKER {
                let token = ParkToken(event.token().0 as u64);
                if let Some(v) = inner.take(&self.shared.registry, token) {
                    ready.push((v, Resumed::Readable));
                }
            }
        }
        for token in std::mem::take(&mut inner.woken) {
            if let Some(v) = inner.take(&self.shared.registry, token) {
                ready.push((v, Resumed::Woken));
            }
        }
        let mut due = Vec::new();
        let Inner { wheel, entries, .. } = &mut *inner;
        wheel.advance(Instant::now(), |tick| match tick {
            Tick::Due(index) => {
                if let Some(e) = entries.get_mut(index as usize) {
                    e.timer = None;
                    due.push(ParkToken::new(index, e.generation));
                }
            }
            Tick::Moved(index, pos) => {
                if let Some(e) = entries.get_mut(index as usize) {
                    e.timer = Some(pos);
                }
            }
        });
        for token in due {
            if let Some(v) = inner.take(&self.shared.registry, token) {
                ready.push((v, Resumed::Deadline));
            }
        }
    }
}

impl<T> Inner<T> {
    /// Removes the entry of `token`, if it is still the one parked there.
    fn take(&mut self, registry: &mio::Registry, token: ParkToken) -> Option<T> {
        let index = token.index();
        let entry = self.entries.get_mut(index)?;
        if entry.generation != token.generation() {
            return None;
        }
        let value = entry.value.take()?;
        let _ = registry.deregister(&mut SourceFd(&entry.fd));
        entry.fd = -1;
        if let Some(pos) = entry.timer.take() {
            if let Some((moved, at)) = self.wheel.cancel(pos) {
                if let Some(m) = self.entries.get_mut(moved as usize) {
                    m.timer = Some(at);
                }
            }
        }
        self.free.push(index as u32);
        Some(*value)
    }
}

#[cfg(test)]
mod tests;

//! What the committer needs from a storage engine: apply a group of ops
//! atomically, make everything applied durable. The fjall engine is the one
//! the broker uses; tests drive the committer with engines that fail or
//! panic on purpose, and a replicated engine can come in here later.
//!
//! This is the store's seam. The broker never names the engine: it holds
//! a `Store` handle (submit ops, get a `Ticket`, wait for durability), and
//! `Store::start` runs the committer over any `Backend`. The router and
//! the retained messages have seams of their own in `broker`.

use super::{FjallBackend, Op, StoreError};

pub trait Backend: Send + Sync {
    /// Writes `ops` in order; all or nothing per engine batch.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Makes everything applied so far survive a power loss.
    fn sync(&self) -> Result<(), StoreError>;
    /// Bytes on disk, for metrics.
    fn disk_usage(&self) -> u64 {
        0
    }
}

impl Backend for FjallBackend {
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        FjallBackend::apply(self, ops)
    }

    fn sync(&self) -> Result<(), StoreError> {
        FjallBackend::sync(self)
    }

    fn disk_usage(&self) -> u64 {
        FjallBackend::disk_usage(self)
    }
}

//! Why a buffer operation failed, with the file and operation for I/O.

use std::io;
use std::path::{Path, PathBuf};

use super::format;

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The quota would be exceeded under `FullPolicy::Block`; retry after
    /// the sink has acknowledged records.
    #[error("bridge buffer full")]
    Full,
    /// The batch alone exceeds the quota (or a field exceeds 4 GiB): it can
    /// never be appended.
    #[error("batch of {bytes} bytes can never fit the buffer quota of {max_bytes} bytes")]
    TooLarge { bytes: u64, max_bytes: u64 },
    /// Record ids must increase strictly across appends and restarts.
    #[error("record id {id} is below the buffer's next id {next_id}")]
    IdNotIncreasing { id: u64, next_id: u64 },
    /// `ack` was asked for more records than the buffer holds.
    #[error("cannot acknowledge {requested} records, the buffer holds {available}")]
    AckOutOfRange { requested: usize, available: usize },
    /// `dead_letter` on an empty buffer.
    #[error("the buffer holds no record")]
    Empty,
    #[error("invalid buffer configuration: {0}")]
    InvalidConfig(&'static str),
    /// The cursor file cannot be trusted. Deleting it makes the buffer
    /// resend every record still on disk (duplicates, no loss).
    #[error("cursor file {} is unreadable ({reason}); delete it to resend every buffered record", path.display())]
    CorruptCursor { path: PathBuf, reason: String },
    /// A segment written by another format version.
    #[error("segment {} has format version {version}, this build reads version {}", path.display(), format::SEGMENT_VERSION)]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// A failed append could not be undone on disk; reopen the buffer,
    /// whose recovery scan will sort out the partial write.
    #[error("a failed append could not be rolled back; reopen the buffer")]
    Poisoned,
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BufferError {
    let path = path.to_path_buf();
    move |source| BufferError::Io { op, path, source }
}

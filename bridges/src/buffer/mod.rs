//! The durable buffer between a bridge's transform and its sink.
//!
//! An append-only log of segment files in one directory, a cursor file
//! naming the first unacknowledged record, and a dead-letter file:
//!
//! ```text
//! dir/00000000000000000000.seg   records 0.. (named by the first record id)
//! dir/00000000000000001734.seg   records 1734.. (the active segment)
//! dir/cursor.json                {"version":1,"acked_below":1790,"next_id":1812}
//! dir/dead-letter.jsonl          records a sink refused for good (bounded,
//! dir/dead-letter.1.jsonl        rotated; see `dead_letter`)
//! ```
//!
//! Why this shape: appends are sequential writes, acknowledging is one
//! small atomic file, and disk space comes back a whole segment at a time
//! (as Vector's disk buffer does) instead of by compaction. Delivery is
//! at-least-once: the cursor is persisted after the sink confirmed, so a
//! crash in between resends records, which consumers drop by their id.
//!
//! Crash consistency (with `fsync`): segments and the dead-letter file
//! are only appended to (each append fsynced, the directory fsynced when
//! a file is created or renamed); the cursor is the one file rewritten,
//! always through `cursor.json.tmp`, fsync, rename and a directory fsync.
//! What `open` repairs in place is idempotent: a torn tail is cut off, the
//! torn header of a last segment that holds no record is written again.
//!
//! The API is synchronous (std::fs): the bridge runs it on its own thread or
//! through `spawn_blocking`. One `Buffer` per directory; nothing stops two
//! processes from opening the same directory, so the caller must not.
//! See `format` for the bytes on disk.

mod cursor;
mod dead_letter;
mod error;
mod format;
mod open;
mod reader;
mod recent;
mod recovery;
mod space;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Record;
use reader::{approx_size, Reader};

pub use dead_letter::{DeadLetterPolicy, DEFAULT_DEAD_LETTER_MAX_BYTES};
use error::io_err;
pub use error::BufferError;

/// Default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
/// Default disk quota of one bridge buffer.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Smallest accepted `segment_bytes`: a header and a few small records.
pub const MIN_SEGMENT_BYTES: u64 = 64;

const CURSOR_FILE: &str = "cursor.json";
const CURSOR_TMP: &str = "cursor.json.tmp";
const CURSOR_VERSION: u32 = 1;
const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";
const SEGMENT_EXT: &str = "seg";
/// Records appended while the reader is caught up are kept in memory (up to
/// these bounds) so a fast sink never reads back what was just written.
const READ_AHEAD_RECORDS: usize = 4096;
const READ_AHEAD_BYTES: usize = 8 << 20;

/// Where and how a buffer keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// Directory owned by this buffer alone (created if missing).
    pub dir: PathBuf,
    /// A segment is sealed once the next record would take it past this
    /// size; a record larger than this gets a segment of its own.
    pub segment_bytes: u64,
    /// Disk quota for the segment files (the cursor and dead-letter files
    /// are not counted). Space is reclaimed a whole segment at a time, so
    /// keep it at several times `segment_bytes`.
    pub max_bytes: u64,
    /// What `append` does when the quota would be exceeded.
    pub full_policy: FullPolicy,
    /// fsync appends, new segments, the cursor and the dead-letter file
    /// before returning. Without it a process crash (kill -9) still loses
    /// nothing, since the page cache survives it; a power loss may.
    pub fsync: bool,
    /// Bound on the dead-letter files together (current and rotated).
    pub dead_letter_max_bytes: u64,
    pub dead_letter_policy: DeadLetterPolicy,
}

impl BufferConfig {
    /// The defaults: 16 MiB segments, a 1 GiB quota, block when full, fsync.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BufferConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            full_policy: FullPolicy::Block,
            fsync: true,
            dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
            dead_letter_policy: DeadLetterPolicy::Rotate,
        }
    }
}

/// What to do when an append would exceed the disk quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse the append with [`BufferError::Full`]: the broker pushes back
    /// on publishers (MQTT 5 QoS 1 answered 0x97, quota exceeded).
    #[default]
    Block,
    /// Drop the oldest unacknowledged records, a whole segment at a time,
    /// and count them.
    DropOldest,
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Unacknowledged records dropped to make room (`FullPolicy::DropOldest`).
    pub dropped_oldest: u64,
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files kept.
    pub segments: usize,
    /// Readable unacknowledged records.
    pub records: u64,
    /// Bytes cut off the end of the last segment: a write the crash tore.
    pub torn_bytes: u64,
    /// Damaged records (or runs of damaged bytes) skipped inside the log.
    pub corrupt_records: u64,
    /// Bytes those damaged records took.
    pub corrupt_bytes: u64,
    /// Segments whose header was damaged; their frames are still read, but
    /// nothing more is appended to them.
    pub damaged_headers: u64,
}

#[derive(Debug)]
struct Segment {
    first_id: u64,
    path: PathBuf,
    /// Bytes on disk that belong to the log (header and whole frames).
    size: u64,
    /// Intact records in the file, acknowledged or not.
    records: u64,
    /// Offsets of damage found when opening, so reading past it again does
    /// not count it twice.
    known_corrupt: Vec<u64>,
}

/// The durable segment log of one bridge. See the module documentation.
pub struct Buffer {
    config: BufferConfig,
    /// The directory, open for fsync after creating or renaming files in it.
    dir: File,
    segments: VecDeque<Segment>,
    /// Append handle on the last segment; `None` when there is no segment
    /// or the last one is sealed (the next append starts a new one).
    writer: Option<File>,
    acked_below: u64,
    next_id: u64,
    /// Readable unacknowledged records.
    len: u64,
    /// The first unacknowledged records, in order, read ahead of the sink.
    /// Holds at least one record whenever `len > 0`.
    ahead: VecDeque<Record>,
    ahead_bytes: usize,
    reader: Reader,
    /// Records of the last `peek` still at the front of `ahead`.
    peeked: usize,
    /// Records of the last `peek` dropped by `DropOldest` since; `ack` and
    /// `dead_letter` count them off first, so they never hit records the
    /// sink has not seen.
    shift: usize,
    dropped_total: u64,
    corrupt_total: u64,
    recovery: Recovery,
    dead: dead_letter::DeadLetterFile,
    poisoned: bool,
    /// Segments sealed since the last `sync` without having been fsynced
    /// (`fsync: false`), by first id, so `sync` covers them too.
    unsynced: Vec<u64>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("dir", &self.config.dir)
            .field("len", &self.len)
            .field("bytes", &self.bytes())
            .field("segments", &self.segments.len())
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Buffer {
    /// Appends `records` in order: all of them or none. Ids must increase
    /// strictly and be at least [`Buffer::next_id`]. Durable on return when
    /// `config.fsync`. When the quota would be exceeded: `Err(Full)` under
    /// `Block`, or the oldest records are dropped under `DropOldest`.
    pub fn append(&mut self, records: &[Record]) -> Result<Appended, BufferError> {
        if self.poisoned {
            return Err(BufferError::Poisoned);
        }
        if records.is_empty() {
            return Ok(Appended::default());
        }
        let mut next_id = self.next_id;
        for record in records {
            if record.id < next_id || record.id == u64::MAX {
                return Err(BufferError::IdNotIncreasing {
                    id: record.id,
                    next_id,
                });
            }
            next_id = record.id + 1;
        }
        let mut frames = Vec::new();
        let mut sizes = Vec::with_capacity(records.len());
        for record in records {
            let size =
                format::encode_frame(record, &mut frames).map_err(|_| BufferError::TooLarge {
                    bytes: record.payload.len() as u64,
                    max_bytes: self.config.max_bytes,
                })?;
            sizes.push(size as u64);
        }
        let alone = self.plan(None, &sizes);
        if alone > self.config.max_bytes {
            return Err(BufferError::TooLarge {
                bytes: alone,
                max_bytes: self.config.max_bytes,
            });
        }
        let dropped_oldest = self.make_room(&sizes)?;

        let caught_up = self.reader_at_end();
        self.write_frames(records, &frames, &sizes)?;
        self.next_id = next_id;
        self.len += records.len() as u64;
        let batch_bytes: usize = records.iter().map(approx_size).sum();
        if caught_up
            && self.ahead.len() + records.len() <= READ_AHEAD_RECORDS
            && self.ahead_bytes + batch_bytes <= READ_AHEAD_BYTES
        {
            self.ahead.extend(records.iter().cloned());
            self.ahead_bytes += batch_bytes;
            if let Some(last) = self.segments.back() {
                self.reader.segment = last.first_id;
                self.reader.pos = last.size;
            }
        }
        self.keep_front();
        Ok(Appended { dropped_oldest })
    }

    /// Up to `max` records from the first unacknowledged one, in order,
    /// without moving the cursor: after a failed send, peek again to resend
    /// (go-back-N).
    pub fn peek(&mut self, max: usize) -> Result<Vec<Record>, BufferError> {
        self.fill(max)?;
        let count = max.min(self.ahead.len());
        self.peeked = count;
        self.shift = 0;
        Ok(self.ahead.iter().take(count).cloned().collect())
    }

    /// Acknowledges the first `n` records of the last `peek` (the first `n`
    /// from the cursor when nothing was dropped since): persists the cursor,
    /// then deletes the segments all of whose records are acknowledged.
    /// Records of that peek which `DropOldest` removed meanwhile count
    /// towards `n` without acknowledging anything else. Once this returns
    /// `Ok` the acknowledgement is durable; on `Err` nothing changed.
    pub fn ack(&mut self, n: usize) -> Result<(), BufferError> {
        let already_gone = n.min(self.shift);
        let count = n - already_gone;
        self.ack_front(count)?;
        self.shift -= already_gone;
        self.peeked = self.peeked.saturating_sub(count);
        Ok(())
    }

    /// Writes `record` straight to the dead-letter file, in the same format
    /// as [`Buffer::dead_letter`], for records that never entered the log
    /// (a payload the transform refused, a record larger than the quota).
    pub fn dead_letter_record(&mut self, record: &Record, reason: &str) -> Result<(), BufferError> {
        self.write_dead_letters(&[dead_letter::line(record, reason)])
    }

    /// As [`Buffer::dead_letter_record`] for several records, with one
    /// sync for all of them.
    pub fn dead_letter_records(&mut self, records: &[(Record, String)]) -> Result<(), BufferError> {
        let lines: Vec<Vec<u8>> = records
            .iter()
            .map(|(record, reason)| dead_letter::line(record, reason))
            .collect();
        self.write_dead_letters(&lines)
    }

    /// Writes dead-letter lines within the files' bound; a line the
    /// bound leaves out is counted ([`Buffer::dead_letter_discarded`]).
    fn write_dead_letters(&mut self, lines: &[Vec<u8>]) -> Result<(), BufferError> {
        let dir = &self.dir;
        self.dead
            .write_all(lines, self.config.fsync, || dir.sync_all())
            .map_err(io_err("write", self.dead.path()))?;
        Ok(())
    }

    /// Dead-letter lines not kept since opening (discarded, or rotated
    /// away), under the dead-letter bound.
    pub fn dead_letter_discarded(&self) -> u64 {
        self.dead.discarded()
    }

    /// Bytes of the dead-letter files.
    pub fn dead_letter_bytes(&self) -> u64 {
        self.dead.bytes()
    }

    /// Moves the first record (of the last `peek`) to `dir/dead-letter.jsonl`
    /// with `reason`, then acknowledges it. A crash in between may write
    /// the line twice.
    pub fn dead_letter(&mut self, reason: &str) -> Result<(), BufferError> {
        if self.shift > 0 {
            // DropOldest already removed the record the sink refused.
            self.shift -= 1;
            return Ok(());
        }
        self.fill(1)?;
        let Some(record) = self.ahead.front() else {
            return Err(BufferError::Empty);
        };
        let id = record.id;
        let line = dead_letter::line(record, reason);
        self.write_dead_letters(&[line])?;
        self.ack_front(1)?;
        self.peeked = self.peeked.saturating_sub(1);
        // The caller logs (rate-limited): one line per bad record would
        // flood the log as surely as the file.
        tracing::debug!(dir = %self.config.dir.display(), id, reason, "bridge record moved to the dead-letter file");
        Ok(())
    }

    /// fsyncs the active segment and the directory: a group commit for
    /// callers running with `fsync: false`.
    pub fn sync(&mut self) -> Result<(), BufferError> {
        for segment in &self.segments {
            if self.unsynced.contains(&segment.first_id) {
                File::open(&segment.path)
                    .and_then(|f| f.sync_data())
                    .map_err(io_err("fsync", &segment.path))?;
            }
        }
        self.unsynced.clear();
        if let (Some(writer), Some(last)) = (&self.writer, self.segments.back()) {
            writer.sync_data().map_err(io_err("fsync", &last.path))?;
        }
        self.sync_dir()
    }

    /// Readable unacknowledged records.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of segment files on disk: what the quota limits. Includes the
    /// acknowledged records of segments not yet fully acknowledged.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Timestamp of the first unacknowledged record (for a lag metric).
    pub fn oldest_timestamp_ms(&self) -> Option<u64> {
        self.ahead.front().map(|r| r.timestamp_ms)
    }

    /// One past the highest id ever appended; survives restarts, so ids
    /// handed out from it are never reused.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Unacknowledged records dropped by `DropOldest` since opening.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Damaged records skipped since opening (those found by `open`
    /// included).
    pub fn corrupt_total(&self) -> u64 {
        self.corrupt_total
    }

    /// What `open` found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.config.dir.join(DEAD_LETTER_FILE)
    }

    /// Acknowledges the first `n` records from the cursor.
    fn ack_front(&mut self, n: usize) -> Result<(), BufferError> {
        if n == 0 {
            return Ok(());
        }
        self.fill(n)?;
        if self.ahead.len() < n {
            return Err(BufferError::AckOutOfRange {
                requested: n,
                available: self.ahead.len(),
            });
        }
        let acked_below = self.ahead[n - 1].id + 1;
        self.persist_cursor(acked_below)?;
        self.acked_below = acked_below;
        for record in self.ahead.drain(..n) {
            self.ahead_bytes = self.ahead_bytes.saturating_sub(approx_size(&record));
        }
        self.len = self.len.saturating_sub(n as u64);
        self.delete_acked_segments();
        self.keep_front();
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), BufferError> {
        self.dir
            .sync_all()
            .map_err(io_err("fsync", &self.config.dir))
    }

    /// Deletes the segments all of whose records are acknowledged, except
    /// the last one, which stays open for appends.
    fn delete_acked_segments(&mut self) {
        while self.segments.len() > 1 && self.segments[1].first_id <= self.acked_below {
            if let Some(segment) = self.segments.pop_front() {
                if self.reader.segment == segment.first_id {
                    self.reader.handle = None;
                }
                remove_segment(&segment.path);
            }
        }
    }
}

fn open_append(path: &Path) -> Result<File, BufferError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open", path))
}

/// Deletes a segment file; a failure only costs disk space until the next
/// open deletes it, so it is logged, not returned.
fn remove_segment(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "bridge buffer: cannot delete an acknowledged segment");
        }
    }
}

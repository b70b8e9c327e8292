//! `Buffer::open`: check the configuration, read the cursor, scan every
//! segment (repairing a torn tail), and start where the sink left off.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;

use super::cursor::read_cursor;
use super::format::HEADER_LEN;
use super::reader::Reader;
use super::recovery::{list_segments, scan_segment};
use super::{
    dead_letter, io_err, open_append, Buffer, BufferConfig, BufferError, Recovery, Segment,
    CURSOR_FILE, CURSOR_TMP, DEAD_LETTER_FILE, MIN_SEGMENT_BYTES,
};

/// What the scan of the segment files found.
struct Scanned {
    segments: VecDeque<Segment>,
    /// Readable unacknowledged records.
    len: u64,
    next_id: u64,
    /// The last segment takes no more appends (damaged header).
    last_sealed: bool,
    recovery: Recovery,
}

impl Buffer {
    /// Opens or creates the buffer in `config.dir` and recovers from a
    /// crash: a torn write at the end of the last segment is cut off,
    /// damaged records elsewhere are skipped and counted (see
    /// [`Buffer::recovery`]), and acknowledged segments left behind are
    /// deleted. Fails rather than start over when the cursor file or a
    /// segment's format version cannot be trusted.
    pub fn open(config: BufferConfig) -> Result<Buffer, BufferError> {
        check(&config)?;
        let dir = prepare_dir(&config)?;
        let cursor = read_cursor(&config.dir.join(CURSOR_FILE))?;
        let acked_below = cursor.as_ref().map_or(0, |c| c.acked_below);
        let next_id = cursor.as_ref().map_or(0, |c| c.next_id).max(acked_below);
        let scanned = scan_all(&config, acked_below, next_id)?;
        let writer = match scanned.segments.back() {
            Some(last) if !scanned.last_sealed => Some(open_append(&last.path)?),
            _ => None,
        };
        let dead_path = config.dir.join(DEAD_LETTER_FILE);
        let dead = dead_letter::DeadLetterFile::open(
            dead_path.clone(),
            config.dead_letter_max_bytes,
            config.dead_letter_policy,
        )
        .map_err(io_err("read", &dead_path))?;
        let front = scanned.segments.front().map_or(0, |s| s.first_id);
        let mut buffer = Buffer {
            config,
            dir,
            segments: scanned.segments,
            writer,
            acked_below,
            next_id: scanned.next_id,
            len: scanned.len,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            reader: Reader {
                segment: front,
                pos: HEADER_LEN,
                handle: None,
            },
            peeked: 0,
            shift: 0,
            dropped_total: 0,
            corrupt_total: scanned.recovery.corrupt_records,
            recovery: scanned.recovery,
            dead,
            poisoned: false,
            unsynced: Vec::new(),
        };
        // The cursor is persisted before segments are deleted; a crash in
        // between leaves acknowledged segments behind.
        buffer.delete_acked_segments();
        buffer.recovery.segments = buffer.segments.len();
        buffer.fill(1)?;
        tracing::debug!(
            dir = %buffer.config.dir.display(),
            records = buffer.len,
            segments = buffer.segments.len(),
            next_id = buffer.next_id,
            "bridge buffer opened"
        );
        Ok(buffer)
    }
}

fn check(config: &BufferConfig) -> Result<(), BufferError> {
    if config.segment_bytes < MIN_SEGMENT_BYTES {
        return Err(BufferError::InvalidConfig(
            "segment_bytes must be at least 64",
        ));
    }
    if config.max_bytes < config.segment_bytes {
        return Err(BufferError::InvalidConfig(
            "max_bytes must be at least segment_bytes",
        ));
    }
    Ok(())
}

/// Creates the directory if needed, opens it (for fsync) and removes a
/// cursor file a crash left half-written.
fn prepare_dir(config: &BufferConfig) -> Result<File, BufferError> {
    fs::create_dir_all(&config.dir).map_err(io_err("create", &config.dir))?;
    let dir = File::open(&config.dir).map_err(io_err("open", &config.dir))?;
    let tmp = config.dir.join(CURSOR_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("remove", &tmp)(e));
        }
        _ => {}
    }
    Ok(dir)
}

/// Scans every segment in id order; the next id is past every id found
/// and past the name of a sealed last segment.
fn scan_all(
    config: &BufferConfig,
    acked_below: u64,
    mut next_id: u64,
) -> Result<Scanned, BufferError> {
    let files = list_segments(&config.dir)?;
    let count = files.len();
    let mut recovery = Recovery::default();
    let mut segments = VecDeque::with_capacity(files.len());
    let mut len = 0;
    let mut last_sealed = false;
    for (i, (first_id, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let scan = scan_segment(&path, is_last, acked_below, config.fsync, &mut recovery)?;
        len += scan.unacked;
        next_id = next_id.max(first_id);
        if let Some(max_id) = scan.max_id {
            next_id = next_id.max(max_id.saturating_add(1));
        }
        if is_last && scan.sealed {
            // A new segment must not take this one's name.
            next_id = next_id.max(first_id.saturating_add(1));
            last_sealed = true;
        }
        segments.push_back(Segment {
            first_id,
            path,
            size: scan.size,
            records: scan.records,
            known_corrupt: scan.known_corrupt,
        });
    }
    recovery.records = len;
    if recovery.torn_bytes > 0 || recovery.corrupt_records > 0 || recovery.damaged_headers > 0 {
        tracing::warn!(
            dir = %config.dir.display(),
            torn_bytes = recovery.torn_bytes,
            corrupt_records = recovery.corrupt_records,
            corrupt_bytes = recovery.corrupt_bytes,
            damaged_headers = recovery.damaged_headers,
            "bridge buffer repaired after a crash or disk damage"
        );
    }
    Ok(Scanned {
        segments,
        len,
        next_id,
        last_sealed,
        recovery,
    })
}

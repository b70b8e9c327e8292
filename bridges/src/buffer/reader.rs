//! Reading the log back: the reader's position, read-ahead, and skipping
//! damage met after `open` (a disk can rot while the buffer runs).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use bytes::Bytes;

use super::format::{self, Frame, HEADER_LEN};
use super::{io_err, Buffer, BufferError, Segment};
use crate::record::Record;

/// Where the next record is read from, and an open handle if any.
pub(super) struct Reader {
    pub(super) segment: u64,
    pub(super) pos: u64,
    pub(super) handle: Option<ReadHandle>,
}

pub(super) struct ReadHandle {
    segment: u64,
    pos: u64,
    file: BufReader<File>,
}

impl Buffer {
    pub(super) fn reader_at_end(&self) -> bool {
        match self.segments.back() {
            None => true,
            Some(last) => self.reader.segment == last.first_id && self.reader.pos >= last.size,
        }
    }

    /// Keeps the first unacknowledged record in memory (for
    /// `oldest_timestamp_ms`). A read error here is logged, not returned:
    /// the operation that called it has already taken effect.
    pub(super) fn keep_front(&mut self) {
        if self.ahead.is_empty() && self.len > 0 {
            if let Err(e) = self.fill(1) {
                tracing::warn!(dir = %self.config.dir.display(), error = %e, "bridge buffer: cannot read ahead");
            }
        }
    }

    /// Reads until `ahead` holds `want` records or the log ends.
    pub(super) fn fill(&mut self, want: usize) -> Result<(), BufferError> {
        while self.ahead.len() < want {
            match self.read_next()? {
                Some(record) => {
                    if record.id >= self.acked_below {
                        self.ahead_bytes += approx_size(&record);
                        self.ahead.push_back(record);
                    }
                }
                None => {
                    // Everything unacknowledged is in memory now; damage
                    // found since opening may have made `len` too large.
                    self.len = self.ahead.len() as u64;
                    break;
                }
            }
        }
        Ok(())
    }

    /// The next intact record after the reader, skipping damage.
    pub(super) fn read_next(&mut self) -> Result<Option<Record>, BufferError> {
        loop {
            let Some(index) = self
                .segments
                .iter()
                .position(|s| s.first_id == self.reader.segment)
            else {
                // The reader's segment was deleted: go on from the oldest.
                let Some(front) = self.segments.front() else {
                    return Ok(None);
                };
                self.reader.segment = front.first_id;
                self.reader.pos = HEADER_LEN;
                self.reader.handle = None;
                continue;
            };
            if self.reader.pos >= self.segments[index].size {
                let Some(next) = self.segments.get(index + 1) else {
                    return Ok(None);
                };
                self.reader.segment = next.first_id;
                self.reader.pos = HEADER_LEN;
                self.reader.handle = None;
                continue;
            }
            if let Some(record) = self.read_frame(index)? {
                return Ok(Some(record));
            }
        }
    }

    /// Reads the frame at the reader's position in segment `index`, or
    /// skips the damage there and returns `None`.
    fn read_frame(&mut self, index: usize) -> Result<Option<Record>, BufferError> {
        let result = self.try_read_frame(index);
        if result.is_err() {
            // Its position is unknown after a failed read.
            self.reader.handle = None;
        }
        result
    }

    fn try_read_frame(&mut self, index: usize) -> Result<Option<Record>, BufferError> {
        let segment = &self.segments[index];
        let pos = self.reader.pos;
        let remaining = segment.size - pos;
        let handle = reader_handle(&mut self.reader, segment)?;
        if remaining >= format::FRAME_OVERHEAD as u64 {
            let mut head = [0u8; 8];
            handle
                .file
                .read_exact(&mut head)
                .map_err(io_err("read", &segment.path))?;
            handle.pos += 8;
            if let Some(total) = format::announced_len(&head).filter(|&t| t as u64 <= remaining) {
                let mut frame = vec![0u8; total];
                frame[..8].copy_from_slice(&head);
                handle
                    .file
                    .read_exact(&mut frame[8..])
                    .map_err(io_err("read", &segment.path))?;
                handle.pos += total as u64 - 8;
                if let Frame::Record(record, _) = format::parse_frame(&Bytes::from(frame)) {
                    self.reader.pos += total as u64;
                    return Ok(Some(record));
                }
            }
        }
        // Damage: read the rest of the segment and find the next frame.
        let mut rest = vec![0u8; remaining as usize];
        handle
            .file
            .seek(SeekFrom::Start(pos))
            .map_err(io_err("seek", &segment.path))?;
        handle
            .file
            .read_exact(&mut rest)
            .map_err(io_err("read", &segment.path))?;
        handle.pos = pos + remaining;
        let skip = format::resync(&Bytes::from(rest), 1).unwrap_or(remaining as usize) as u64;
        if !segment.known_corrupt.contains(&pos) {
            self.corrupt_total += 1;
            tracing::warn!(
                path = %segment.path.display(),
                offset = pos,
                bytes = skip,
                "bridge buffer: skipped a damaged record"
            );
        }
        self.reader.pos += skip;
        Ok(None)
    }
}

/// The reader's handle on `segment`, positioned at the reader's offset.
fn reader_handle<'a>(
    reader: &'a mut Reader,
    segment: &Segment,
) -> Result<&'a mut ReadHandle, BufferError> {
    let pos = reader.pos;
    let reusable = matches!(&reader.handle, Some(h) if h.segment == segment.first_id);
    if !reusable {
        reader.handle = None;
        let file = File::open(&segment.path).map_err(io_err("open", &segment.path))?;
        reader.handle = Some(ReadHandle {
            segment: segment.first_id,
            // Unknown: forces the seek below.
            pos: u64::MAX,
            file: BufReader::with_capacity(64 << 10, file),
        });
    }
    let Some(handle) = reader.handle.as_mut() else {
        // Set just above; an error rather than a panic all the same.
        return Err(io_err("open", &segment.path)(io::Error::other(
            "no read handle",
        )));
    };
    if handle.pos != pos {
        handle
            .file
            .seek(SeekFrom::Start(pos))
            .map_err(io_err("seek", &segment.path))?;
        handle.pos = pos;
    }
    Ok(handle)
}

/// Memory a record takes in the read-ahead queue, roughly.
pub(super) fn approx_size(record: &Record) -> usize {
    64 + record.destination.len()
        + record.key.as_ref().map_or(0, |k| k.len())
        + record.payload.len()
        + record
            .headers
            .iter()
            .map(|(name, value)| 16 + name.len() + value.len())
            .sum::<usize>()
}

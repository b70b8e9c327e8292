//! Appending: frames go to the active segment until it is full, then to
//! a new one; a failed append is undone so the log never holds half a
//! batch the caller was told failed.

use std::fs::{self, OpenOptions};
use std::io::Write;

use super::format::{self, HEADER_LEN};
use super::{io_err, open_append, Buffer, BufferError, Segment, SEGMENT_EXT};
use crate::record::Record;

impl Buffer {
    /// Writes the encoded `frames` (lengths `sizes`) of `records`, starting
    /// new segments as needed; on failure undoes what it wrote.
    pub(super) fn write_frames(
        &mut self,
        records: &[Record],
        frames: &[u8],
        sizes: &[u64],
    ) -> Result<(), BufferError> {
        let segments_before = self.segments.len();
        let back_before = self.segments.back().map(|s| (s.size, s.records));
        let had_writer = self.writer.is_some();
        let mut result = self.write_groups(records, frames, sizes);
        if result.is_ok() && self.segments.len() > segments_before && self.config.fsync {
            // The new segments' directory entries are part of the append.
            result = self.sync_dir();
        }
        if result.is_err() {
            self.roll_back(segments_before, back_before, had_writer);
        }
        result
    }

    fn write_groups(
        &mut self,
        records: &[Record],
        frames: &[u8],
        sizes: &[u64],
    ) -> Result<(), BufferError> {
        let limit = self.config.segment_bytes;
        let mut i = 0;
        let mut offset = 0;
        while i < records.len() {
            let needs_segment = match self.writable_size() {
                Some(size) => size > HEADER_LEN && size + sizes[i] > limit,
                None => true,
            };
            if needs_segment {
                self.start_segment(records[i].id)?;
            }
            let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut())
            else {
                return Err(BufferError::Poisoned);
            };
            let mut end = i;
            let mut group = 0;
            while end < records.len() && (end == i || segment.size + group + sizes[end] <= limit) {
                group += sizes[end];
                end += 1;
            }
            let bytes = &frames[offset..offset + group as usize];
            writer
                .write_all(bytes)
                .map_err(io_err("write", &segment.path))?;
            if self.config.fsync {
                writer.sync_data().map_err(io_err("fsync", &segment.path))?;
            }
            segment.size += group;
            segment.records += (end - i) as u64;
            offset += group as usize;
            i = end;
        }
        Ok(())
    }

    fn start_segment(&mut self, first_id: u64) -> Result<(), BufferError> {
        if self.writer.take().is_some() && !self.config.fsync {
            if let Some(sealed) = self.segments.back() {
                let sealed = sealed.first_id;
                let segments = &self.segments;
                self.unsynced
                    .retain(|id| segments.iter().any(|s| s.first_id == *id));
                self.unsynced.push(sealed);
            }
        }
        let path = self
            .config
            .dir
            .join(format!("{first_id:020}.{SEGMENT_EXT}"));
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        // Listed before the header is written, so a rollback removes it.
        self.segments.push_back(Segment {
            first_id,
            path: path.clone(),
            size: HEADER_LEN,
            records: 0,
            known_corrupt: Vec::new(),
        });
        file.write_all(&format::segment_header())
            .map_err(io_err("write", &path))?;
        self.writer = Some(file);
        Ok(())
    }

    /// Undoes a failed append: removes the segments it started and cuts
    /// the one it continued back to its old size. Poisons the buffer when
    /// that fails, since a later append would land after the debris.
    fn roll_back(
        &mut self,
        segments_before: usize,
        back_before: Option<(u64, u64)>,
        had_writer: bool,
    ) {
        self.writer = None;
        // The read handle may have buffered bytes that are about to go.
        self.reader.handle = None;
        while self.segments.len() > segments_before {
            if let Some(segment) = self.segments.pop_back() {
                if let Err(e) = fs::remove_file(&segment.path) {
                    tracing::error!(path = %segment.path.display(), error = %e, "bridge buffer: cannot remove a partly written segment");
                    self.poisoned = true;
                }
            }
        }
        let (Some((size, records)), Some(segment)) = (back_before, self.segments.back_mut()) else {
            return;
        };
        segment.records = records;
        if segment.size != size {
            segment.size = size;
            let cut = OpenOptions::new()
                .write(true)
                .open(&segment.path)
                .and_then(|f| f.set_len(size));
            if let Err(e) = cut {
                tracing::error!(path = %segment.path.display(), error = %e, "bridge buffer: cannot cut a partly written segment");
                self.poisoned = true;
                return;
            }
        }
        if had_writer {
            // Without a writer the next append starts a new segment.
            self.writer = open_append(&segment.path).ok();
        }
    }
}

//! The disk quota: how many bytes an append adds, and making room for it
//! (starting afresh when everything is acknowledged, or dropping the oldest
//! segment under `FullPolicy::DropOldest`).

use super::format::HEADER_LEN;
use super::reader::approx_size;
use super::{remove_segment, Buffer, BufferError, FullPolicy};

impl Buffer {
    /// Bytes the frames of `sizes` add to the log, given the size of the
    /// segment open for appending.
    pub(super) fn plan(&self, mut active: Option<u64>, sizes: &[u64]) -> u64 {
        let mut added = 0;
        for &size in sizes {
            match active {
                Some(current)
                    if current == HEADER_LEN || current + size <= self.config.segment_bytes =>
                {
                    active = Some(current + size);
                    added += size;
                }
                _ => {
                    active = Some(HEADER_LEN + size);
                    added += HEADER_LEN + size;
                }
            }
        }
        added
    }

    pub(super) fn writable_size(&self) -> Option<u64> {
        self.writer
            .as_ref()
            .and(self.segments.back())
            .map(|s| s.size)
    }

    /// Frees space until frames of `sizes` fit the quota; returns how many
    /// unacknowledged records were dropped.
    pub(super) fn make_room(&mut self, sizes: &[u64]) -> Result<u64, BufferError> {
        let mut dropped = 0;
        loop {
            let needed = self.plan(self.writable_size(), sizes);
            if self.bytes() + needed <= self.config.max_bytes {
                return Ok(dropped);
            }
            if self.len == 0 && !self.segments.is_empty() {
                // Only acknowledged records left (in the active segment):
                // start afresh.
                self.discard_acked_log()?;
                continue;
            }
            match self.config.full_policy {
                FullPolicy::Block => return Err(BufferError::Full),
                FullPolicy::DropOldest => {
                    if self.segments.is_empty() {
                        return Err(BufferError::Full);
                    }
                    dropped += self.drop_oldest_segment()?;
                }
            }
        }
    }

    /// Deletes every segment when no unacknowledged record is left.
    fn discard_acked_log(&mut self) -> Result<(), BufferError> {
        let acked_below = self.acked_below.max(self.next_id);
        self.persist_cursor(acked_below)?;
        self.acked_below = acked_below;
        self.writer = None;
        self.reader.handle = None;
        self.ahead.clear();
        self.ahead_bytes = 0;
        for segment in self.segments.drain(..) {
            remove_segment(&segment.path);
        }
        Ok(())
    }

    /// Drops the oldest segment with its unacknowledged records; returns
    /// how many records were dropped.
    fn drop_oldest_segment(&mut self) -> Result<u64, BufferError> {
        let Some(oldest) = self.segments.front() else {
            return Ok(0);
        };
        let boundary = self.segments.get(1).map_or(self.next_id, |s| s.first_id);
        let later: u64 = self.segments.iter().skip(1).map(|s| s.records).sum();
        let dropped = if self.acked_below <= boundary {
            self.len.saturating_sub(later)
        } else {
            0
        };
        let oldest_id = oldest.first_id;
        let acked_below = self.acked_below.max(boundary);
        self.persist_cursor(acked_below)?;
        self.acked_below = acked_below;
        self.len -= dropped;
        self.dropped_total += dropped;
        while self.ahead.front().is_some_and(|r| r.id < acked_below) {
            if let Some(record) = self.ahead.pop_front() {
                self.ahead_bytes = self.ahead_bytes.saturating_sub(approx_size(&record));
            }
            if self.peeked > 0 {
                self.peeked -= 1;
                self.shift += 1;
            }
        }
        if let Some(segment) = self.segments.pop_front() {
            if self.segments.is_empty() {
                self.writer = None;
            }
            if self.reader.segment == oldest_id {
                self.reader.handle = None;
            }
            remove_segment(&segment.path);
        }
        tracing::warn!(
            dir = %self.config.dir.display(),
            dropped,
            "bridge buffer over quota: dropped the oldest records"
        );
        Ok(dropped)
    }
}

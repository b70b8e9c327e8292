//! What `open` does before the buffer runs: list the segments and scan
//! each one, cutting a torn tail off the last segment
//! and counting damage anywhere else.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, Frame, Header, HEADER_LEN};
use super::{io_err, BufferError, Recovery, SEGMENT_EXT};

/// Segment files in `dir`, sorted by their first record id.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, BufferError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let path = entry.map_err(io_err("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok());
        match id {
            Some(id) => segments.push((id, path)),
            None => {
                tracing::warn!(path = %path.display(), "bridge buffer: ignoring a file not named like a segment")
            }
        }
    }
    segments.sort_unstable_by_key(|(id, _)| *id);
    Ok(segments)
}

/// What scanning one segment file found.
pub(super) struct Scan {
    pub(super) size: u64,
    pub(super) records: u64,
    pub(super) unacked: u64,
    pub(super) max_id: Option<u64>,
    /// Nothing may be appended to it (damaged header).
    pub(super) sealed: bool,
    pub(super) known_corrupt: Vec<u64>,
}

/// Reads a whole segment, checking every frame; cuts a torn tail off the
/// last segment and counts damage anywhere else.
pub(super) fn scan_segment(
    path: &Path,
    is_last: bool,
    acked_below: u64,
    fsync: bool,
    recovery: &mut Recovery,
) -> Result<Scan, BufferError> {
    let data = Bytes::from(fs::read(path).map_err(io_err("read", path))?);
    let mut scan = Scan {
        size: data.len() as u64,
        records: 0,
        unacked: 0,
        max_id: None,
        sealed: false,
        known_corrupt: Vec::new(),
    };
    match format::check_header(&data) {
        Header::Valid => {}
        Header::Torn if is_last => {
            // Died while creating the segment: no record reached it.
            recovery.torn_bytes += data.len() as u64;
            rewrite_header(path, fsync)?;
            scan.size = HEADER_LEN;
            return Ok(scan);
        }
        Header::OtherVersion(version) => {
            return Err(BufferError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Header::Torn | Header::Damaged => {
            tracing::warn!(path = %path.display(), "bridge buffer: damaged segment header");
            recovery.damaged_headers += 1;
            scan.sealed = true;
        }
    }
    let tail = scan_frames(&data, is_last, acked_below, &mut scan, recovery);
    if let Some(pos) = tail {
        // Nothing intact follows: the write the crash tore.
        recovery.torn_bytes += (data.len() - pos) as u64;
        cut_at(path, pos as u64, fsync)?;
        scan.size = pos as u64;
    }
    Ok(scan)
}

/// Reads the frames after the header into `scan`, skipping damage. Returns
/// where a torn tail starts (last, unsealed segment only), to be cut off.
fn scan_frames(
    data: &Bytes,
    is_last: bool,
    acked_below: u64,
    scan: &mut Scan,
    recovery: &mut Recovery,
) -> Option<usize> {
    let end = data.len();
    let mut pos = HEADER_LEN as usize;
    while pos < end {
        match format::parse_frame(&data.slice(pos..)) {
            Frame::Record(record, len) => {
                scan.records += 1;
                if record.id >= acked_below {
                    scan.unacked += 1;
                }
                scan.max_id = Some(scan.max_id.map_or(record.id, |m| m.max(record.id)));
                pos += len;
            }
            Frame::Incomplete | Frame::Corrupt => match format::resync(data, pos + 1) {
                Some(next) => {
                    recovery.corrupt_records += 1;
                    recovery.corrupt_bytes += (next - pos) as u64;
                    scan.known_corrupt.push(pos as u64);
                    pos = next;
                }
                None if is_last && !scan.sealed => return Some(pos),
                None => {
                    recovery.corrupt_records += 1;
                    recovery.corrupt_bytes += (end - pos) as u64;
                    scan.known_corrupt.push(pos as u64);
                    break;
                }
            },
        }
    }
    None
}

/// Writes a fresh header over a segment whose header a crash tore.
fn rewrite_header(path: &Path, fsync: bool) -> Result<(), BufferError> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("open", path))?;
    file.write_all(&format::segment_header())
        .map_err(io_err("write", path))?;
    if fsync {
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(())
}

/// Truncates a segment to `len` bytes.
fn cut_at(path: &Path, len: u64, fsync: bool) -> Result<(), BufferError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    file.set_len(len).map_err(io_err("truncate", path))?;
    if fsync {
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(())
}

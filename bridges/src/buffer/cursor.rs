//! The cursor file: every record below `acked_below` is acknowledged. It
//! is the one file rewritten, always through a temporary file, fsync,
//! rename and a directory fsync.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io_err, Buffer, BufferError, CURSOR_FILE, CURSOR_TMP, CURSOR_VERSION};

/// The persisted cursor.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CursorFile {
    pub(super) version: u32,
    /// Every record with a smaller id is acknowledged.
    pub(super) acked_below: u64,
    /// One past the highest id ever appended.
    pub(super) next_id: u64,
}

/// The cursor as `open` finds it; `None` when there is none yet.
pub(super) fn read_cursor(path: &Path) -> Result<Option<CursorFile>, BufferError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let corrupt = |reason: String| BufferError::CorruptCursor {
        path: path.to_path_buf(),
        reason,
    };
    let cursor: CursorFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if cursor.version != CURSOR_VERSION {
        return Err(corrupt(format!("unknown version {}", cursor.version)));
    }
    Ok(Some(cursor))
}

impl Buffer {
    /// Writes the cursor atomically: temp file, fsync, rename, fsync dir.
    pub(super) fn persist_cursor(&mut self, acked_below: u64) -> Result<(), BufferError> {
        let cursor = CursorFile {
            version: CURSOR_VERSION,
            acked_below,
            next_id: self.next_id,
        };
        let json = serde_json::to_vec(&cursor).unwrap_or_default();
        let tmp = self.config.dir.join(CURSOR_TMP);
        let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(&json).map_err(io_err("write", &tmp))?;
        if self.config.fsync {
            file.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        let path = self.config.dir.join(CURSOR_FILE);
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
        if self.config.fsync {
            self.sync_dir()?;
        }
        Ok(())
    }
}

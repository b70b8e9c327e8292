//! The QoS 2 records whose PUBREL the bridge may have sent, on disk.
//!
//! A bridged record's packet id is a function of its record id
//! ([`packet_id_of`](super::packet_id_of)), so after a crash the buffer's
//! unacknowledged records go out again under the same ids: a PUBLISH the
//! remote already holds (PUBREC sent, PUBREL not yet received) is known to
//! it as a duplicate and delivered once. What must not be published again
//! is a record the remote has already *released*: that packet id is free on
//! the remote, and a PUBLISH under it would be a second message. So a
//! record's id is written here, and synced, before its PUBREL goes out;
//! such records are resumed with PUBREL (answered with PUBCOMP whatever
//! the remote remembers), never with PUBLISH.
//!
//! Entries below the buffer's cursor are of no use (those records are never
//! sent again); they are forgotten in memory as batches move on, and the
//! file is rewritten without them once it holds many. Each entry carries a
//! CRC: an entry torn by a power loss was never followed by its PUBREL and
//! is skipped.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// One entry: the record id (8 bytes LE) and the CRC-32 of those bytes.
const ENTRY: usize = 12;

/// The file is rewritten when it holds this many more entries than ids
/// still kept.
const COMPACT_AFTER: usize = 4096;

pub(crate) struct ReleaseLog {
    path: PathBuf,
    file: File,
    ids: BTreeSet<u64>,
    entries_in_file: usize,
}

impl ReleaseLog {
    /// Opens (or creates) `dir/mqtt-releases` and reads what it holds.
    pub(crate) fn open(dir: &Path) -> io::Result<ReleaseLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("mqtt-releases");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() / ENTRY * ENTRY;
        if whole != bytes.len() {
            // A torn last entry: cut it off so what is appended next stays
            // aligned.
            file.set_len(whole as u64)?;
        }
        let mut ids = BTreeSet::new();
        let mut entries_in_file = 0;
        for entry in bytes.chunks_exact(ENTRY) {
            let (id, crc) = entry.split_at(8);
            if crc32fast::hash(id).to_le_bytes() == crc {
                let mut le = [0u8; 8];
                le.copy_from_slice(id);
                ids.insert(u64::from_le_bytes(le));
                entries_in_file += 1;
            }
        }
        Ok(ReleaseLog {
            path,
            file,
            ids,
            entries_in_file,
        })
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Writes `ids` and syncs: only then may their PUBRELs go out.
    pub(crate) fn add(&mut self, ids: &[u64]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(ids.len() * ENTRY);
        for id in ids {
            let le = id.to_le_bytes();
            bytes.extend_from_slice(&le);
            bytes.extend_from_slice(&crc32fast::hash(&le).to_le_bytes());
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.ids.extend(ids);
        self.entries_in_file += ids.len();
        Ok(())
    }

    /// Forgets the records below `first` (the buffer acknowledged them);
    /// rewrites the file when it is mostly such entries.
    pub(crate) fn forget_below(&mut self, first: u64) -> io::Result<()> {
        self.ids = self.ids.split_off(&first);
        if self.entries_in_file >= self.ids.len() + COMPACT_AFTER {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with one holding only the kept ids (written aside,
    /// synced, renamed over, directory synced: a crash leaves one or the
    /// other whole).
    fn rewrite(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut bytes = Vec::with_capacity(self.ids.len() * ENTRY);
            for id in &self.ids {
                let le = id.to_le_bytes();
                bytes.extend_from_slice(&le);
                bytes.extend_from_slice(&crc32fast::hash(&le).to_le_bytes());
            }
            f.write_all(&bytes)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.entries_in_file = self.ids.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_ids_survive_a_reopen_and_forgotten_ones_go_with_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ReleaseLog::open(dir.path()).unwrap();
        log.add(&[5, 6, 9]).unwrap();
        drop(log);
        let mut log = ReleaseLog::open(dir.path()).unwrap();
        assert!(log.contains(5) && log.contains(6) && log.contains(9));
        assert!(!log.contains(7));
        log.forget_below(7).unwrap();
        assert!(!log.contains(5) && log.contains(9));
        // Enough forgotten entries rewrite the file: a reopen sees only the kept.
        let many: Vec<u64> = (100..100 + COMPACT_AFTER as u64).collect();
        log.add(&many).unwrap();
        log.forget_below(100 + COMPACT_AFTER as u64 - 1).unwrap();
        let len = std::fs::metadata(dir.path().join("mqtt-releases"))
            .unwrap()
            .len();
        assert_eq!(len, ENTRY as u64, "only the last id is left in the file");
        let log = ReleaseLog::open(dir.path()).unwrap();
        assert!(log.contains(100 + COMPACT_AFTER as u64 - 1) && !log.contains(9));
    }

    #[test]
    fn a_torn_or_corrupt_entry_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ReleaseLog::open(dir.path()).unwrap();
        log.add(&[1, 2]).unwrap();
        drop(log);
        let path = dir.path().join("mqtt-releases");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ENTRY] ^= 0xff; // the second entry's id no longer matches its CRC
        bytes.extend_from_slice(&[7, 0, 0]); // a torn third entry
        std::fs::write(&path, bytes).unwrap();
        let log = ReleaseLog::open(dir.path()).unwrap();
        assert!(log.contains(1));
        assert!(!log.contains(2));
        assert_eq!(log.ids.len(), 1);
        drop(log);
        let mut log = ReleaseLog::open(dir.path()).unwrap();
        log.add(&[3]).unwrap();
        drop(log);
        let log = ReleaseLog::open(dir.path()).unwrap();
        assert!(log.contains(3), "appended after the cut, aligned");
    }
}

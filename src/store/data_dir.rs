//! The data directory around the engine: the format marker, what a start
//! does with a marker a power loss damaged, and which format the data is
//! in. The rules are in the store's module docs ("Crash consistency").

use std::path::Path;

use fjall::Database;

use super::durable_file::{self, TMP_SUFFIX};
use super::migrate;
use super::records::FORMAT_VERSION;
use super::StoreError;

/// The marker file: `sluice-data-format N`.
pub const MARKER: &str = "SLUICE_FORMAT";
/// The engine's directory inside the data directory.
pub const DB_DIR: &str = "db";

const MARKER_PREFIX: &str = "sluice-data-format ";

/// What the marker file says.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Format(u32),
    /// Empty, zero-filled or cut short: what a power loss leaves of a
    /// marker written without fsync (Sluice before format 2 did that).
    Torn,
    Missing,
}

fn read_marker(dir: &Path) -> Result<Marker, StoreError> {
    let path = dir.join(MARKER);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Marker::Missing),
        Err(e) => {
            return Err(StoreError::Engine(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if let Some(v) = text
        .trim()
        .strip_prefix(MARKER_PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
    {
        return Ok(Marker::Format(v));
    }
    let kept = text.trim_end_matches('\0');
    if MARKER_PREFIX.starts_with(kept) {
        Ok(Marker::Torn)
    } else {
        Err(StoreError::Corrupt("format marker"))
    }
}

pub fn write_marker(dir: &Path, format: u32) -> Result<(), StoreError> {
    let path = dir.join(MARKER);
    durable_file::write_atomically(&path, format!("{MARKER_PREFIX}{format}\n").as_bytes())
        .map_err(|e| StoreError::Engine(format!("cannot write {}: {e}", path.display())))
}

/// Whether `dir` holds anything but what Sluice puts there.
fn has_foreign_files(dir: &Path) -> bool {
    let tmp_marker = format!("{MARKER}{TMP_SUFFIX}");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                name != DB_DIR && name != MARKER && name != tmp_marker.as_str()
            })
        })
        .unwrap_or(false)
}

/// Creates or opens the data directory and its engine, recovers a marker a
/// power loss damaged, and migrates older formats: on return the engine
/// holds format [`FORMAT_VERSION`] and the marker says so.
pub fn open(dir: &Path) -> Result<Database, StoreError> {
    durable_file::create_dir_durably(dir)
        .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
    let marker = read_marker(dir)?;
    let db_exists = dir.join(DB_DIR).exists();
    let known = match marker {
        Marker::Format(v) => Some(v),
        Marker::Missing if has_foreign_files(dir) => {
            return Err(StoreError::Foreign {
                path: dir.to_path_buf(),
            })
        }
        // Nothing of the engine yet: a fresh directory, or a first start
        // cut short before the engine existed. The marker comes first, so
        // a directory with an engine always had a marker once.
        Marker::Missing | Marker::Torn if !db_exists => {
            write_marker(dir, FORMAT_VERSION)?;
            Some(FORMAT_VERSION)
        }
        Marker::Missing | Marker::Torn => None,
    };
    if let Some(v) = known {
        if v == 0 || v > FORMAT_VERSION {
            return Err(StoreError::WrongFormat {
                path: dir.to_path_buf(),
                found: v,
                expected: FORMAT_VERSION,
            });
        }
    }
    let db = Database::builder(dir.join(DB_DIR)).open()?;
    let format = match known {
        Some(v) => v,
        None => {
            let inferred = migrate::format_of(&db)?;
            tracing::warn!(
                data_dir = %dir.display(),
                format = inferred,
                "the data format marker was lost (a power loss during the first start?); recovered it from the data"
            );
            inferred
        }
    };
    if format < FORMAT_VERSION {
        let moved = migrate::v1_to_v2(&db)?;
        write_marker(dir, FORMAT_VERSION)?;
        tracing::info!(data_dir = %dir.display(), records = moved, from = format, to = FORMAT_VERSION, "data directory migrated");
    } else if known.is_none() {
        write_marker(dir, FORMAT_VERSION)?;
    }
    migrate::drop_v1(&db);
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FjallBackend, Op};

    fn marker_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(MARKER)).unwrap()
    }

    #[test]
    fn a_torn_marker_without_an_engine_is_a_new_directory() {
        for torn in [&b""[..], b"\0\0\0\0\0\0", b"sluice-"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(MARKER), torn).unwrap();
            // A temporary file of an interrupted marker write is ours too.
            std::fs::write(dir.path().join(format!("{MARKER}{TMP_SUFFIX}")), "x").unwrap();
            FjallBackend::open(dir.path()).unwrap();
            assert_eq!(marker_of(dir.path()), "sluice-data-format 2\n");
        }
    }

    #[test]
    fn a_torn_marker_with_an_empty_engine_opens() {
        let dir = tempfile::tempdir().unwrap();
        // The engine directory exists but holds nothing (first start cut
        // short right after creating it).
        drop(Database::builder(dir.path().join(DB_DIR)).open().unwrap());
        std::fs::write(dir.path().join(MARKER), "").unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        assert!(b.load().unwrap().sessions.is_empty());
        assert_eq!(marker_of(dir.path()), "sluice-data-format 2\n");
    }

    /// Decided: an engine with data and a torn or lost marker is recovered
    /// from what the engine holds, not refused. Only a Sluice wrote that
    /// engine next to that marker, and its keyspaces say which format.
    #[test]
    fn a_torn_or_lost_marker_with_data_keeps_the_data() {
        for lost in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            {
                let b = FjallBackend::open(dir.path()).unwrap();
                b.apply(vec![Op::PutRetained {
                    topic: "t".into(),
                    message_id: 1,
                }])
                .unwrap();
                b.sync().unwrap();
            }
            if lost {
                std::fs::remove_file(dir.path().join(MARKER)).unwrap();
            } else {
                std::fs::write(dir.path().join(MARKER), "").unwrap();
            }
            let b = FjallBackend::open(dir.path()).unwrap();
            assert_eq!(b.load().unwrap().retained, vec![("t".into(), 1)]);
            assert_eq!(marker_of(dir.path()), "sluice-data-format 2\n");
        }
    }

    #[test]
    fn torn_markers_are_told_from_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            (&b""[..], Marker::Torn),
            (b"\0\0\0\0", Marker::Torn),
            (b"sluice-da", Marker::Torn),
            (b"sluice-data-format 2\n", Marker::Format(2)),
        ] {
            std::fs::write(dir.path().join(MARKER), text).unwrap();
            assert_eq!(read_marker(dir.path()).unwrap(), expected, "{text:?}");
        }
        std::fs::write(dir.path().join(MARKER), "something else").unwrap();
        assert!(matches!(
            read_marker(dir.path()),
            Err(StoreError::Corrupt("format marker"))
        ));
    }
}

//! Files the broker writes outside the storage engine. A power loss may
//! drop any write that was not fsynced, and a plain `fs::write` can leave
//! an empty or half-written file behind, so every such file is written to
//! a temporary name, fsynced, renamed over the target, and the directory
//! fsynced: afterwards the file is either the old one or the new one,
//! whole, and survives a power loss.

use std::io::Write;
use std::path::Path;

/// Suffix of the temporary file next to the target; a crash may leave one
/// behind, which the next write replaces.
pub const TMP_SUFFIX: &str = ".sluice-tmp";

/// Replaces `path` with `contents` atomically and durably (see the module
/// docs).
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the entries of `dir` (creations, renames) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) and makes its entry, and those of the
/// parents it created, durable, so a power loss does not take the whole
/// directory away after data in it was acknowledged.
pub fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    // The nearest ancestor that already exists: everything below it is new.
    let existing = dir.ancestors().skip(1).find(|a| a.exists());
    std::fs::create_dir_all(dir)?;
    sync_dir(dir)?;
    for parent in dir.ancestors().skip(1) {
        sync_dir(parent)?;
        if Some(parent) == existing || parent.as_os_str().is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn creates_nested_directories() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_durably(&nested).unwrap();
        create_dir_durably(&nested).unwrap();
        assert!(nested.is_dir());
    }
}

//! Writing mosquitto-format password files (`sluice passwd`): new `$7$`
//! hashes and an atomic update of one user's line.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::pbkdf2;
use ring::rand::SecureRandom;

use super::password::{DEFAULT_ITERATIONS, HASH_LEN, SALT_LEN};
use super::AuthError;

/// A `$7$` line value (PBKDF2-SHA512, 101 iterations like mosquitto 2.0
/// default, 12-byte random salt from ring::rand::SystemRandom), returned as
/// the text after `user:`.
pub fn hash_password(password: &[u8]) -> Result<String, AuthError> {
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AuthError::Random)?;
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        DEFAULT_ITERATIONS,
        &salt,
        password,
        &mut hash,
    );
    Ok(format!(
        "$7${DEFAULT_ITERATIONS}${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    ))
}

/// Refuses names that could not be read back as the same user: `:` ends
/// the name, a leading `#` makes the line a comment, surrounding blanks are
/// trimmed by the reader and control characters (newlines above all) would
/// break the line structure.
fn check_username(user: &str) -> Result<(), AuthError> {
    let reason = if user.is_empty() {
        Some("it is empty")
    } else if user.contains(':') {
        Some("it contains `:`")
    } else if user.starts_with('#') {
        Some("it starts with `#`, which would make the line a comment")
    } else if user.trim() != user {
        Some("it starts or ends with white space")
    } else if user.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AuthError::InvalidUsername {
            username: user.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `line` is the password line of `user` (same reading as `parse`).
fn is_line_of(line: &str, user: &str) -> bool {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return false;
    }
    line.split_once(':')
        .is_some_and(|(name, _)| name.trim() == user)
}

/// Creates or updates USER's line in FILE (creating the file if missing,
/// keeping other lines and their order), with file permissions 0600 on
/// unix.
///
/// The new content is written to a sibling temporary file and renamed over
/// the original, so a crash or a full disk never leaves a half-written
/// password file that would lock every user out. If the file holds several
/// lines for USER (which `PasswordFile::parse` rejects), the first is
/// replaced and the others are dropped.
pub fn upsert_password_file(path: &Path, user: &str, password: &[u8]) -> Result<(), AuthError> {
    check_username(user)?;
    let new_line = format!("{user}:{}", hash_password(password)?);

    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AuthError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };

    let mut out = String::with_capacity(existing.len() + new_line.len() + 1);
    let mut replaced = false;
    for line in existing.lines() {
        if is_line_of(line, user) {
            if !replaced {
                out.push_str(&new_line);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&new_line);
        out.push('\n');
    }

    write_atomically(path, out.as_bytes())
}

/// Writes `contents` to a private temporary file next to `path`, syncs it
/// and renames it over `path`.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let io_err = |p: &Path| {
        let p = p.to_owned();
        move |source| AuthError::Io { path: p, source }
    };
    let Some(name) = path.file_name() else {
        return Err(AuthError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        });
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".sluice-tmp");
    let tmp: PathBuf = path.with_file_name(tmp_name);

    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        // The mode above only applies when the file is created; a stale
        // temporary file from a crash keeps its old mode otherwise.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&tmp))?;
        }
        file.write_all(contents).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; not all platforms can open a
    // directory, so a failure here is not worth failing the update for.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::tests::{MOSQUITTO_PBKDF2, MOSQUITTO_SHA512, PYTHON_SHA512};
    use crate::auth::PasswordFile;

    fn parse(text: &str) -> PasswordFile {
        match PasswordFile::parse(text, "pw.txt") {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn hash_password_output_verifies() {
        let value = match hash_password(b"s3cret\xff\x00binary") {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let fields: Vec<&str> = value.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "101"]);
        assert_eq!(
            BASE64.decode(fields[3]).map(|s| s.len()).ok(),
            Some(SALT_LEN)
        );
        assert_eq!(
            BASE64.decode(fields[4]).map(|h| h.len()).ok(),
            Some(HASH_LEN)
        );

        let f = parse(&format!("dev-1:{value}\n"));
        assert!(f.verify("dev-1", b"s3cret\xff\x00binary"));
        assert!(!f.verify("dev-1", b"s3cret\xff\x00binar"));
        assert!(!f.verify("dev-1", b"s3cret"));
    }

    #[test]
    fn hash_password_salts_are_random() {
        let a = hash_password(b"same").ok();
        let b = hash_password(b"same").ok();
        assert!(a.is_some());
        assert_ne!(a, b);
    }

    fn upsert(path: &Path, user: &str, password: &[u8]) {
        if let Err(e) = upsert_password_file(path, user, password) {
            panic!("{e}");
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn upsert_creates_the_file_private() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("new.passwd");
        upsert(&path, "dev-1", b"pw1");
        let f = PasswordFile::load(&path).ok();
        assert!(f
            .as_ref()
            .is_some_and(|f| f.len() == 1 && f.verify("dev-1", b"pw1")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .ok();
            assert_eq!(mode, Some(0o600));
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from("new.passwd")]);
    }

    #[test]
    fn upsert_keeps_other_users_and_order() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("users.passwd");
        let original =
            format!("# fleet\n{MOSQUITTO_PBKDF2}\n\n{MOSQUITTO_SHA512}\n{PYTHON_SHA512}\n");
        std::fs::write(&path, &original).ok();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).ok();
        }

        // Update the middle user: everything else byte for byte unchanged.
        upsert(&path, "alice", b"new password");
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "# fleet");
        assert_eq!(lines[1], MOSQUITTO_PBKDF2);
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("alice:$7$101$"));
        assert_eq!(lines[4], PYTHON_SHA512);

        // Add a new user at the end.
        upsert(&path, "dave", b"d");
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[5].starts_with("dave:$7$"));

        let f = match PasswordFile::load(&path) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.len(), 4);
        assert!(f.verify("alice", b"new password"));
        assert!(!f.verify("alice", b"correct horse"));
        assert!(f.verify("user", b"secret"));
        assert!(f.verify("carol", b"hunter2"));
        assert!(f.verify("dave", b"d"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .ok();
            assert_eq!(mode, Some(0o600));
        }
    }

    #[test]
    fn upsert_collapses_duplicate_lines() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("dup.passwd");
        std::fs::write(
            &path,
            format!("{MOSQUITTO_PBKDF2}\n{MOSQUITTO_SHA512}\n {MOSQUITTO_PBKDF2}\n"),
        )
        .ok();
        upsert(&path, "user", b"again");
        let f = PasswordFile::load(&path).ok();
        assert!(f
            .as_ref()
            .is_some_and(|f| f.len() == 2 && f.verify("user", b"again")));
        assert!(read(&path).lines().nth(1) == Some(MOSQUITTO_SHA512));
    }

    #[test]
    fn upsert_rejects_unstorable_user_names() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("x.passwd");
        for bad in [
            "",
            "a:b",
            "#admin",
            " padded",
            "padded ",
            "line\nbreak",
            "nul\0",
        ] {
            match upsert_password_file(&path, bad, b"pw") {
                Err(AuthError::InvalidUsername { username, .. }) => assert_eq!(username, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(!path.exists());
    }
}

//! The admin API's bearer token: read from `admin.token_file` or
//! `admin.token_env`, or, with `admin.generate_token`, created once in
//! `token_file` so a first start (a container image's) is never tokenless
//! on a reachable address and the operator reads the token in the log.

use std::io::Write;
use std::path::Path;

use base64::Engine;

use super::AdminError;
use crate::config::AdminConfig;

/// Random bytes in a generated token (256 bits).
const GENERATED_BYTES: usize = 32;

/// The token the REST API requires, if any.
pub(super) fn load(config: &AdminConfig) -> Result<Option<String>, AdminError> {
    match (&config.token_file, &config.token_env) {
        (Some(path), _) => {
            if config.generate_token && !path.exists() {
                return generate(path).map(Some);
            }
            read(path).map(Some)
        }
        (None, Some(var)) => Ok(std::env::var(var)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())),
        (None, None) => Ok(None),
    }
}

fn read(path: &Path) -> Result<String, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|error| AdminError::Token {
        path: path.display().to_string(),
        error,
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(AdminError::EmptyToken {
            path: path.display().to_string(),
        });
    }
    Ok(token)
}

/// Writes a new random token to `path` (owner-only, synced: a token
/// logged but lost in a crash would lock the operator out), then logs it
/// once. `create_new`: two starts racing never overwrite each other's.
fn generate(path: &Path) -> Result<String, AdminError> {
    let failed = |error| AdminError::Token {
        path: path.display().to_string(),
        error,
    };
    let mut bytes = [0u8; GENERATED_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| failed(std::io::Error::other("no system randomness")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    tracing::warn!(
        token = %token,
        file = %path.display(),
        "admin token generated (shown this once; later starts read it from the file): send it as `Authorization: Bearer TOKEN`, or paste it into the dashboard"
    );
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &Path, generate_token: bool) -> AdminConfig {
        AdminConfig {
            token_file: Some(path.to_path_buf()),
            generate_token,
            ..AdminConfig::default()
        }
    }

    #[test]
    fn a_generated_token_is_kept_and_read_back_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let first = load(&config(&path, true)).unwrap().unwrap();
        assert_eq!(first.len(), 43, "32 bytes in unpadded base64url");
        let second = load(&config(&path, true)).unwrap().unwrap();
        assert_eq!(first, second, "the second start reads the same token");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the token");
        }
    }

    #[test]
    fn two_generated_tokens_differ() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&config(&dir.path().join("a"), true)).unwrap();
        let b = load(&config(&dir.path().join("b"), true)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn without_generate_token_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&config(&dir.path().join("missing"), false)).unwrap_err();
        assert!(err.to_string().contains("admin.token_file"), "{err}");
    }
}

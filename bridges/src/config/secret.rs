//! A secret named in a bridge's configuration instead of written into it:
//! the content of a file, or an environment variable. The configuration
//! file can then be shared, checked in or printed without the secret.
//!
//! Read when the sink is built and when the configuration is checked, so a
//! missing file or variable fails `check-config` as it would fail start-up.

use std::path::Path;

/// Where a secret comes from, as the configuration names it.
#[derive(Debug, Clone, Copy)]
pub enum SecretSource<'a> {
    /// A file whose content, trailing newlines removed, is the secret.
    File(&'a Path),
    /// An environment variable holding the secret.
    Env(&'a str),
}

impl SecretSource<'_> {
    /// The secret's bytes, or why they cannot be had (worded for the file's
    /// key, without the secret).
    pub fn read(self) -> Result<Vec<u8>, String> {
        match self {
            SecretSource::File(path) => {
                let mut text = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                while matches!(text.last(), Some(b'\n' | b'\r')) {
                    text.pop();
                }
                Ok(text)
            }
            SecretSource::Env(var) => std::env::var_os(var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| format!("environment variable {var} is not set")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_loses_its_trailing_newlines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b" s3cret \r\n\n").unwrap();
        assert_eq!(SecretSource::File(&path).read().unwrap(), b" s3cret ");
        let missing = dir.path().join("missing");
        let err = SecretSource::File(&missing).read().unwrap_err();
        assert!(
            err.contains("cannot read") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn an_unset_variable_is_named() {
        let err = SecretSource::Env("SLUICE_TEST_SURELY_UNSET_SECRET")
            .read()
            .unwrap_err();
        assert!(err.contains("SLUICE_TEST_SURELY_UNSET_SECRET"), "{err}");
    }
}

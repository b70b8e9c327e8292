//! Who may connect and what they may do: the password file and the ACL,
//! loaded together and swapped as one on reload, so a connection never
//! sees half of an update.

use std::path::PathBuf;

use crate::auth::{Acl, AuthError, PasswordFile};

#[derive(Default)]
pub struct AccessControl {
    pub passwords: Option<PasswordFile>,
    pub acl: Option<Acl>,
}

impl AccessControl {
    /// Reads the configured files; any error leaves the caller's current
    /// rules in place.
    pub fn load(
        password_file: Option<&PathBuf>,
        acl_file: Option<&PathBuf>,
    ) -> Result<AccessControl, AuthError> {
        let passwords = password_file.map(|p| PasswordFile::load(p)).transpose()?;
        let acl = acl_file.map(|p| Acl::load(p)).transpose()?;
        Ok(AccessControl { passwords, acl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_a_typed_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.acl");
        let err = AccessControl::load(None, Some(&missing)).err();
        assert!(
            matches!(&err, Some(AuthError::Io { path, .. }) if path == &missing),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.to_string().contains("absent.acl")));
    }
}

//! Who may connect and what they may do: the password file and the ACL,
//! loaded together and swapped as one on reload, so a connection never
//! sees half of an update.

use std::path::PathBuf;

use crate::auth::{Acl, PasswordFile};

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
    ) -> Result<AccessControl, String> {
        let passwords = password_file
            .map(|p| PasswordFile::load(p))
            .transpose()
            .map_err(|e| e.to_string())?;
        let acl = acl_file
            .map(|p| Acl::load(p))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(AccessControl { passwords, acl })
    }
}

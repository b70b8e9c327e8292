//! Authentication (mosquitto-compatible password files) and authorization
//! (mosquitto ACL files).
//!
//! Both formats are mosquitto's so that an operator can move a deployment
//! between mosquitto and Sluice without regenerating credentials or
//! rewriting rules, and can keep using `mosquitto_passwd` to manage users.
//!
//! Layout:
//! - `password`: `username:$7$...` / `$6$...` lines and verification;
//!   `password_write`: new hashes and the writer used by `sluice passwd`.
//! - `acl`: `topic` / `user` / `pattern` rules and the publish, delivery and
//!   subscribe checks.
//! - `throttle`: failed logins per source address.

pub mod acl;
pub mod password;
pub mod password_write;
pub mod throttle;

pub use acl::{Access, Acl};
pub use password::PasswordFile;
pub use password_write::{hash_password, upsert_password_file};
pub use throttle::LoginThrottle;

use std::path::PathBuf;

/// Warns when a client can get a user's ACL rules by sending that user's
/// name: with no password file, a name is taken as given where anonymous
/// clients are allowed (as mosquitto does). Returns whether it warned.
pub fn warn_if_names_are_unverified(
    acl: Option<&Acl>,
    password_file: bool,
    anonymous_allowed: bool,
) -> bool {
    let open = acl.is_some_and(Acl::has_user_rules) && !password_file && anonymous_allowed;
    if open {
        tracing::warn!(
            "the ACL has `user` sections or %u patterns but there is no password_file: any client may claim a user name and get that user's rules (set password_file, or allow_anonymous = false)"
        );
    }
    open
}

/// Everything that can go wrong while loading or writing the auth files.
///
/// Syntax errors carry the file and the 1-based line number because these
/// files are edited by hand and an operator must be able to jump to the
/// offending line from the startup error alone.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or its temporary sibling) we were working on.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A line of a password or ACL file is malformed.
    #[error("{file} line {line}: {message}")]
    Syntax {
        /// The file name as given by the caller (for messages only).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A user name that cannot be stored in a password file.
    #[error("invalid user name `{username}`: {reason}")]
    InvalidUsername {
        /// The rejected name.
        username: String,
        /// Why it cannot be stored.
        reason: &'static str,
    },
    /// The operating system's random number generator failed, so no salt
    /// could be drawn; we refuse to hash with a predictable salt.
    #[error("the system random number generator failed")]
    Random,
}

impl AuthError {
    /// Shorthand for the parsers, which know the file and line.
    pub(crate) fn syntax(file: &str, line: usize, message: impl Into<String>) -> AuthError {
        AuthError::Syntax {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

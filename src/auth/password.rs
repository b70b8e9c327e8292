//! Mosquitto-compatible password files.
//!
//! One user per line, `username:hash`, where the hash is either
//! - `$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512 with
//!   a 64-byte output, what `mosquitto_passwd` writes since mosquitto 2.0;
//! - `$6$<base64 salt>$<base64 hash>`: one SHA-512 over the password bytes
//!   followed by the salt bytes, what mosquitto 1.x wrote (and 2.x still
//!   writes with `-H sha512`), accepted so that old files keep working.
//!
//! Base64 is the standard alphabet with padding. Blank lines and lines
//! starting with `#` are ignored. Unlike mosquitto, which skips lines it
//! does not understand, every other malformed line is an error naming the
//! file and the line: a typo silently locking a device out is worse than a
//! broker that refuses to start.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, pbkdf2};

use super::AuthError;

/// Iteration count for new hashes: mosquitto 2.0's default, so that files
/// we write are indistinguishable from `mosquitto_passwd`'s and verify at
/// the same cost on a busy broker.
pub(super) const DEFAULT_ITERATIONS: NonZeroU32 = match NonZeroU32::new(101) {
    Some(n) => n,
    None => panic!("101 is not zero"),
};

/// Salt length for new hashes; mosquitto 2.0 only accepts 12-byte salts.
pub(super) const SALT_LEN: usize = 12;

/// SHA-512 output length, the only hash length either format produces.
pub(super) const HASH_LEN: usize = 64;

/// The parsed hash of one user.
#[derive(Clone)]
enum Hash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_LEN] },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

impl Hash {
    /// Parses the text after `username:`; the error is a message for the
    /// caller to prefix with file and line.
    fn parse(text: &str) -> Result<Hash, String> {
        let Some(rest) = text.strip_prefix('$') else {
            return Err("password is not hashed (expected `$7$...` or `$6$...`; \
                 hash plain-text files with `mosquitto_passwd -U`)"
                .to_owned());
        };
        let fields: Vec<&str> = rest.split('$').collect();
        match fields.as_slice() {
            ["6", salt, hash] => Ok(Hash::Sha512 {
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            }),
            ["7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| {
                        format!(
                            "invalid iteration count `{iterations}` (expected 1 to {})",
                            u32::MAX
                        )
                    })?;
                Ok(Hash::Pbkdf2Sha512 {
                    iterations,
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            ["6", ..] => Err("malformed `$6$` hash (expected `$6$<salt>$<hash>`)".to_owned()),
            ["7", ..] => {
                Err("malformed `$7$` hash (expected `$7$<iterations>$<salt>$<hash>`)".to_owned())
            }
            [kind, ..] => Err(format!(
                "unsupported hash type `${kind}$` (only `$6$` and `$7$` are supported)"
            )),
            [] => Err("empty hash".to_owned()),
        }
    }

    /// What one verification costs: the kind and its iteration count.
    /// Two hashes with the same work take the same time to check.
    fn work(&self) -> (&'static str, u32) {
        match self {
            Hash::Sha512 { .. } => ("sha512", 1),
            Hash::Pbkdf2Sha512 { iterations, .. } => ("pbkdf2-sha512", iterations.get()),
        }
    }

    /// A hash of the same kind, salt length and cost that no password
    /// matches (its stored value is zeros and its result is ignored).
    fn decoy(&self) -> Hash {
        match self {
            Hash::Sha512 { salt, .. } => Hash::Sha512 {
                salt: salt.clone(),
                hash: [0; HASH_LEN],
            },
            Hash::Pbkdf2Sha512 {
                iterations, salt, ..
            } => Hash::Pbkdf2Sha512 {
                iterations: *iterations,
                salt: salt.clone(),
                hash: [0; HASH_LEN],
            },
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        #[cfg(test)]
        tests::VERIFIED.with(|v| v.borrow_mut().push(self.work()));
        match self {
            Hash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                constant_time_eq(ctx.finish().as_ref(), hash)
            }
            Hash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
        }
    }
}

fn decode_salt(text: &str) -> Result<Vec<u8>, String> {
    let salt = BASE64
        .decode(text)
        .map_err(|e| format!("salt is not valid base64: {e}"))?;
    if salt.is_empty() {
        return Err("empty salt".to_owned());
    }
    Ok(salt)
}

fn decode_hash(text: &str) -> Result<[u8; HASH_LEN], String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("hash is not valid base64: {e}"))?;
    <[u8; HASH_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| format!("hash is {} bytes, expected {HASH_LEN}", bytes.len()))
}

/// Compares without an early exit so that the time taken does not tell an
/// attacker how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The users of a password file with their parsed hashes.
#[derive(Clone)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// What an unknown user name is checked against, so that it costs what
    /// a known one does: the most common kind and iteration count of the
    /// file (a file mixing kinds still tells the rarer kind's users apart;
    /// `sluice passwd` re-hashes them as `$7$`).
    decoy: Hash,
}

impl fmt::Debug for PasswordFile {
    /// Lists user names only: hashes do not belong in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("PasswordFile")
            .field("users", &names)
            .finish()
    }
}

impl PasswordFile {
    /// Reads and parses `path`; messages name the path as given.
    pub fn load(path: &Path) -> Result<PasswordFile, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_owned(),
            source,
        })?;
        PasswordFile::parse(&text, &path.display().to_string())
    }

    /// Parses the text of a password file; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<PasswordFile, AuthError> {
        let mut users = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        // Per kind and cost: how many users, and the first one's hash.
        let mut kinds: HashMap<(&'static str, u32), (usize, usize, Hash)> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(AuthError::syntax(
                    source,
                    line_no,
                    "expected `username:hash` (no `:` found)",
                ));
            };
            // mosquitto trims blanks around both fields; so do we, so that
            // a file it accepts is read the same way here.
            let user = user.trim();
            if user.is_empty() {
                return Err(AuthError::syntax(source, line_no, "empty user name"));
            }
            if let Some(first) = first_line.get(user) {
                return Err(AuthError::syntax(
                    source,
                    line_no,
                    format!("duplicate user `{user}` (first defined on line {first})"),
                ));
            }
            let hash = Hash::parse(hash.trim()).map_err(|message| {
                AuthError::syntax(source, line_no, format!("user `{user}`: {message}"))
            })?;
            first_line.insert(user.to_owned(), line_no);
            kinds
                .entry(hash.work())
                .or_insert_with(|| (0, line_no, hash.decoy()))
                .0 += 1;
            users.insert(user.to_owned(), hash);
        }
        // Most users first, then the earliest line: the same file always
        // gives the same decoy.
        let decoy = kinds
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, _, h)| h)
            .unwrap_or(Hash::Pbkdf2Sha512 {
                iterations: DEFAULT_ITERATIONS,
                salt: vec![0; SALT_LEN],
                hash: [0; HASH_LEN],
            });
        Ok(PasswordFile { users, decoy })
    }

    /// Constant-time comparison of the derived hash.
    ///
    /// An unknown user is checked against the decoy, the same work as a
    /// known user of the file's usual kind, so that response time does
    /// not reveal which user names exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                std::hint::black_box(self.decoy.verify(password));
                false
            }
        }
    }

    /// Whether the file has a line for `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users (every client would be refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        /// The work of every `Hash::verify` on this thread.
        pub(super) static VERIFIED: RefCell<Vec<(&'static str, u32)>> = const { RefCell::new(Vec::new()) };
    }

    /// The hashing work `f` did.
    fn work_of(f: impl FnOnce()) -> Vec<(&'static str, u32)> {
        VERIFIED.with(|v| v.borrow_mut().clear());
        f();
        VERIFIED.with(|v| v.take())
    }

    #[test]
    fn unknown_users_cost_what_known_users_cost() {
        let pbkdf2_1000 = format!(
            "dave:{}",
            MOSQUITTO_PBKDF2
                .replacen("$101$", "$1000$", 1)
                .split_once(':')
                .unwrap()
                .1
        );
        for (file, known, kind) in [
            (MOSQUITTO_SHA512.to_string(), "alice", ("sha512", 1)),
            (MOSQUITTO_PBKDF2.to_string(), "user", ("pbkdf2-sha512", 101)),
            (pbkdf2_1000, "dave", ("pbkdf2-sha512", 1000)),
            // The usual kind of a mixed file.
            (
                format!("{MOSQUITTO_SHA512}\n{PYTHON_SHA512}\n{MOSQUITTO_PBKDF2}"),
                "alice",
                ("sha512", 1),
            ),
        ] {
            let f = parse(&file);
            let known_work = work_of(|| assert!(!f.verify(known, b"guess")));
            let unknown_work = work_of(|| assert!(!f.verify("nobody", b"guess")));
            assert_eq!(known_work, [kind], "{file}");
            assert_eq!(unknown_work, known_work, "{file}");
        }
        // A decoy matches nothing, not even a known user's password.
        let f = parse(&format!(
            "{MOSQUITTO_PBKDF2}\n{MOSQUITTO_PBKDF2_ODD_PASSWORD}"
        ));
        assert!(!f.verify("nobody", b"secret"));
    }

    // Written by Debian's mosquitto_passwd 2.0.11:
    //   mosquitto_passwd -c -b /tmp/pw user secret
    pub(crate) const MOSQUITTO_PBKDF2: &str = "user:$7$101$hXlzogUBHvyS7C1o$SMKYbiuq0NvqYTV08yfxf/5qSJfF36P1y8rx9IH7KGONLGd1t/NhiKEU+IF7GbCkWA8/UOb+zuc/MRQ5sDyh+w==";

    // mosquitto_passwd -c -b /tmp/pw bob 'p@ss:w0rd with spaces'
    pub(crate) const MOSQUITTO_PBKDF2_ODD_PASSWORD: &str = "bob:$7$101$ZTaSAH0yNToOWfmg$hSWDYsmqulZORHqDkoCe4KjJUFF3mh2Qx5g5HdtZKsnzHFcaF2FTD28UlVcqG/d1/zKUbMS0hLAVa8XSrszxIg==";

    // The 1.x format, written by the same mosquitto_passwd 2.0.11:
    //   mosquitto_passwd -H sha512 -c -b /tmp/pw alice 'correct horse'
    pub(crate) const MOSQUITTO_SHA512: &str = "alice:$6$MSHEkABT4Wht+Gpg$DGtfDyfJOS7SQfmzU1DGoZV1aiYM5cT0DMlGFGrglaDBADWTADRB9loMsnrMgy65sRD6Hz2RAe/7Mluczk773w==";

    // An independent `$6$` vector, computed with Python's hashlib:
    //   salt = bytes(range(1, 13))
    //   h = hashlib.sha512(b"hunter2" + salt).digest()
    //   "carol:$6$" + b64encode(salt) + "$" + b64encode(h)
    pub(crate) const PYTHON_SHA512: &str = "carol:$6$AQIDBAUGBwgJCgsM$BvAI+Qf6pQOLRl808d6QZTT3a6B0xO5zIcHD3JzY0IlwG27yGPwEz2wOVlVnzMCgfQVblzctfy3CVaRYU+etmQ==";

    fn parse(text: &str) -> PasswordFile {
        match PasswordFile::parse(text, "pw.txt") {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match PasswordFile::parse(text, "pw.txt") {
            Ok(f) => panic!("expected an error, got {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn verifies_mosquitto_pbkdf2_line() {
        let f = parse(MOSQUITTO_PBKDF2);
        assert!(f.verify("user", b"secret"));
        assert!(!f.verify("user", b"Secret"));
        assert!(!f.verify("user", b"secret "));
        assert!(!f.verify("user", b""));
    }

    #[test]
    fn verifies_password_with_colon_and_spaces() {
        let f = parse(MOSQUITTO_PBKDF2_ODD_PASSWORD);
        assert!(f.verify("bob", b"p@ss:w0rd with spaces"));
        assert!(!f.verify("bob", b"p@ss"));
    }

    #[test]
    fn verifies_mosquitto_sha512_line() {
        let f = parse(MOSQUITTO_SHA512);
        assert!(f.verify("alice", b"correct horse"));
        assert!(!f.verify("alice", b"correct horse battery"));
    }

    #[test]
    fn verifies_python_sha512_vector() {
        let f = parse(PYTHON_SHA512);
        assert!(f.verify("carol", b"hunter2"));
        assert!(!f.verify("carol", b"hunter3"));
    }

    #[test]
    fn mixed_file_with_comments_blank_lines_crlf_and_blanks() {
        let text = format!(
            "# users\r\n\r\n{MOSQUITTO_PBKDF2}\r\n   \n  # indented comment\n{MOSQUITTO_SHA512}  \n\t{PYTHON_SHA512}\n"
        );
        let f = parse(&text);
        assert_eq!(f.len(), 3);
        assert!(!f.is_empty());
        assert!(f.contains("user") && f.contains("alice") && f.contains("carol"));
        assert!(f.verify("user", b"secret"));
        assert!(f.verify("alice", b"correct horse"));
        assert!(f.verify("carol", b"hunter2"));
        // Each user only with their own password.
        assert!(!f.verify("alice", b"secret"));
        assert!(!f.verify("user", b"hunter2"));
    }

    #[test]
    fn unknown_user_rejected() {
        let f = parse(MOSQUITTO_PBKDF2);
        assert!(!f.contains("nobody"));
        assert!(!f.verify("nobody", b"secret"));
        assert!(!f.verify("", b"secret"));
        assert!(!f.verify("User", b"secret"));
    }

    #[test]
    fn empty_file_has_no_users() {
        let f = parse("# nothing here\n\n");
        assert!(f.is_empty());
        assert_eq!(f.len(), 0);
        assert!(!f.verify("user", b"secret"));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "# c\nplainuser\n",
                "pw.txt line 2: expected `username:hash`",
            ),
            ("\n\n:$6$AQID$AAAA\n", "pw.txt line 3: empty user name"),
            (
                "u:secret\n",
                "pw.txt line 1: user `u`: password is not hashed",
            ),
            ("u:$5$abc$def\n", "unsupported hash type `$5$`"),
            ("u:$8$abc\n", "unsupported hash type `$8$`"),
            (
                "u:$6$AQID\n",
                "pw.txt line 1: user `u`: malformed `$6$` hash",
            ),
            ("u:$7$AQID$AAAA\n", "malformed `$7$` hash"),
            ("u:$7$0$AQID$AAAA\n", "invalid iteration count `0`"),
            ("u:$7$-5$AQID$AAAA\n", "invalid iteration count `-5`"),
            ("u:$6$!!!$AAAA\n", "salt is not valid base64"),
            ("u:$6$$AAAA\n", "empty salt"),
            ("u:$6$AQID$AAAA\n", "hash is 3 bytes, expected 64"),
            ("u:$6$AQID$AAAA$\n", "malformed `$6$` hash"),
            ("u:\n", "password is not hashed"),
        ];
        for (text, expected) in cases {
            let msg = parse_err(text);
            assert!(
                msg.contains(expected),
                "for {text:?}: `{msg}` lacks `{expected}`"
            );
            assert!(msg.starts_with("pw.txt line "), "{msg}");
        }
    }

    #[test]
    fn truncated_hash_is_an_error_not_a_mismatch() {
        let line = &MOSQUITTO_PBKDF2[..MOSQUITTO_PBKDF2.len() - 4];
        let msg = parse_err(&format!("{MOSQUITTO_SHA512}\n{line}\n"));
        assert!(msg.starts_with("pw.txt line 2: user `user`:"), "{msg}");
    }

    #[test]
    fn duplicate_user_is_an_error() {
        let msg = parse_err(&format!("{MOSQUITTO_PBKDF2}\n#\n{MOSQUITTO_PBKDF2}\n"));
        assert_eq!(
            msg,
            "pw.txt line 3: duplicate user `user` (first defined on line 1)"
        );
    }

    #[test]
    fn load_missing_file_names_the_path() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { panic!("tempdir") };
        let path = dir.path().join("nope.passwd");
        match PasswordFile::load(&path) {
            Ok(_) => panic!("loaded a missing file"),
            Err(e) => assert!(e.to_string().contains("nope.passwd"), "{e}"),
        }
    }

    #[test]
    fn load_reads_and_names_the_file() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("users.passwd");
        std::fs::write(&path, format!("{MOSQUITTO_SHA512}\nbroken\n")).ok();
        match PasswordFile::load(&path) {
            Ok(_) => panic!("accepted a broken file"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.ends_with("users.passwd line 2: expected `username:hash` (no `:` found)"),
                    "{msg}"
                );
            }
        }
        std::fs::write(&path, format!("{MOSQUITTO_SHA512}\n")).ok();
        let f = PasswordFile::load(&path).ok();
        assert!(f.is_some_and(|f| f.verify("alice", b"correct horse")));
    }

    #[test]
    fn debug_does_not_print_hashes() {
        let f = parse(MOSQUITTO_PBKDF2);
        let s = format!("{f:?}");
        assert!(s.contains("user") && !s.contains("hXlz"), "{s}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

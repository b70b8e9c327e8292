//! Fixed-length names for unbounded strings: NATS keys and queue names
//! allow few characters and should stay short, while a topic or a shared
//! subscription's filter may be 64 KiB of anything.

use std::fmt::Write;

/// 160 bits of the text's SHA-256, in hex (40 characters).
pub fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = String::with_capacity(40);
    for b in &digest.as_ref()[..20] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_length_hex_and_differ_per_text() {
        let a = short_hash("a/b");
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, short_hash("a/b"));
        assert_ne!(a, short_hash("a/c"));
        assert_eq!(short_hash(&"x".repeat(65_535)).len(), 40);
    }
}

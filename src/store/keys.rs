//! Key layout of data format 2. No key embeds a client-controlled string:
//! MQTT allows client ids and topics of 65,535 bytes, which is exactly the
//! engine's key limit, so a key made of one plus a suffix does not fit (and
//! the engine panics on it). Sessions, their outbox and incoming QoS 2 ids,
//! and retained entries are keyed by a fixed-size digest instead; the
//! string itself lives in the value.
//!
//! The digest is SHA-256 truncated to 128 bits. Two different ids with the
//! same digest would share a session on disk, so the digest must resist a
//! client that chooses its id to collide with someone else's: that is a
//! second preimage, 2^128 work for SHA-256/128. Colliding two ids of one's
//! own (2^64) gains nothing. A numeric session id would need its own
//! index from client id to number, kept in step across crashes; the digest
//! is a pure function of the id and needs none.

/// Bytes of the key digest.
pub const DIGEST_LEN: usize = 16;

/// The digest that stands for a client id or topic in keys.
pub type Digest = [u8; DIGEST_LEN];

pub fn digest(s: &str) -> Digest {
    let full = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut d = [0u8; DIGEST_LEN];
    d.copy_from_slice(&full.as_ref()[..DIGEST_LEN]);
    d
}

/// A session's outbox entry: digest, sequence (u64 BE), so one prefix scan
/// finds a session's deliveries in order.
pub fn outbox(session: &Digest, seq: u64) -> [u8; DIGEST_LEN + 8] {
    let mut k = [0u8; DIGEST_LEN + 8];
    k[..DIGEST_LEN].copy_from_slice(session);
    k[DIGEST_LEN..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// A session's incoming QoS 2 packet id: digest, packet id (u16 BE).
pub fn incoming(session: &Digest, packet_id: u16) -> [u8; DIGEST_LEN + 2] {
    let mut k = [0u8; DIGEST_LEN + 2];
    k[..DIGEST_LEN].copy_from_slice(session);
    k[DIGEST_LEN..].copy_from_slice(&packet_id.to_be_bytes());
    k
}

/// Splits an outbox or incoming key into the session digest and the rest.
pub fn split(key: &[u8]) -> Option<(Digest, &[u8])> {
    let (d, rest) = key.split_at_checked(DIGEST_LEN)?;
    Some((d.try_into().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_fixed_size_whatever_the_id() {
        let long = "x".repeat(65_535);
        let d = digest(&long);
        assert_eq!(outbox(&d, 7).len(), 24);
        assert_ne!(digest("a"), digest("b"));
        let key = incoming(&d, 9);
        let (back, rest) = split(&key).unwrap();
        assert_eq!((back, rest), (d, &[0u8, 9][..]));
    }
}

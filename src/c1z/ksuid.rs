//! KSUID generation (segment.io format), used as the sync id.
//!
//! A KSUID is 20 bytes — a big-endian `u32` of seconds since 2014-05-13
//! (unix 1400000000) followed by 16 random bytes — written as 27 base62
//! characters `0-9A-Za-z`, left-padded with `0`. Newer baton-sdk versions parse it.

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::{C1zError, Result};

/// The KSUID epoch in unix seconds.
const EPOCH: i64 = 1_400_000_000;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the string form.
pub(crate) const KSUID_LEN: usize = 27;

/// Returns a new KSUID for `at` with a random payload.
pub fn new_ksuid(at: DateTime<Utc>) -> Result<String> {
    let mut payload = [0u8; 16];
    rand::rng().fill_bytes(&mut payload);
    ksuid_from_parts(at, payload)
}

/// Builds the KSUID string for a timestamp and payload.
pub(crate) fn ksuid_from_parts(at: DateTime<Utc>, payload: [u8; 16]) -> Result<String> {
    let secs = u32::try_from(at.timestamp() - EPOCH)
        .map_err(|_| C1zError::TimeOutOfRange(at.to_rfc3339()))?;
    let mut raw = [0u8; 20];
    raw[..4].copy_from_slice(&secs.to_be_bytes());
    raw[4..].copy_from_slice(&payload);
    Ok(base62(raw))
}

/// Base62-encodes 20 bytes into exactly 27 characters by long division.
fn base62(raw: [u8; 20]) -> String {
    // Five big-endian u32 words; divide the whole number by 62 until it is zero.
    let mut words = [0u32; 5];
    for (i, chunk) in raw.chunks_exact(4).enumerate() {
        words[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let mut out = [b'0'; KSUID_LEN];
    let mut pos = KSUID_LEN;
    while words.iter().any(|w| *w != 0) && pos > 0 {
        let mut rem: u64 = 0;
        for w in words.iter_mut() {
            let cur = (rem << 32) | u64::from(*w);
            // cur / 62 < 2^32 because rem < 62.
            *w = (cur / 62) as u32;
            rem = cur % 62;
        }
        pos -= 1;
        out[pos] = ALPHABET[rem as usize];
    }
    out.iter().map(|b| char::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Decodes a KSUID string back into five big-endian words.
    fn decode(id: &str) -> [u32; 5] {
        let mut words = [0u32; 5];
        for c in id.bytes() {
            let mut carry = ALPHABET.iter().position(|a| *a == c).unwrap() as u64;
            for w in words.iter_mut().rev() {
                let cur = u64::from(*w) * 62 + carry;
                *w = cur as u32;
                carry = cur >> 32;
            }
        }
        words
    }

    #[test]
    fn known_vectors() {
        // Zero and max values from the reference implementation's docs.
        assert_eq!(base62([0u8; 20]), "000000000000000000000000000");
        assert_eq!(base62([0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn timestamp_prefix_and_alphabet() {
        let at = Utc.with_ymd_and_hms(2026, 8, 22, 10, 15, 3).unwrap();
        let id = ksuid_from_parts(at, [0u8; 16]).unwrap();
        assert_eq!(id.len(), KSUID_LEN);
        assert_eq!(decode(&id)[0], (at.timestamp() - EPOCH) as u32);
        assert_eq!(&decode(&id)[1..], &[0, 0, 0, 0]);
        let random = new_ksuid(at).unwrap();
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(random.len(), KSUID_LEN);
        assert_ne!(random, new_ksuid(at).unwrap());
    }

    #[test]
    fn rejects_times_before_epoch() {
        let at = Utc.with_ymd_and_hms(2010, 1, 1, 0, 0, 0).unwrap();
        assert!(matches!(
            ksuid_from_parts(at, [0; 16]),
            Err(C1zError::TimeOutOfRange(_))
        ));
    }
}

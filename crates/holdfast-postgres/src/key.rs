//! Lock names and the 64-bit advisory-lock keys derived from them.

use sha2::{Digest, Sha256};

/// The longest lock name (and phase target), in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;

/// The advisory-lock key of `name`: the first 8 bytes of the SHA-256 of
/// its UTF-8 bytes, read as a big-endian signed 64-bit integer.
///
/// The same key in SQL, so `psql` can take or inspect the lock holdfast
/// takes:
///
/// ```sql
/// SELECT ('x' || left(encode(sha256(convert_to('jobs/nightly', 'UTF8')), 'hex'), 16))::bit(64)::bigint;
/// ```
///
/// Two names share a key (and so a lock) only if their hashes agree in
/// those 64 bits: for `n` names in one database the chance that any two
/// collide is about `n² / 2⁶⁵` (one in 37 million for a million names). A
/// collision makes the two names exclude each other; it never lets two
/// holders of one name in together. Keys of the two-argument form
/// `pg_advisory_lock(int4, int4)` live in another space (`objsubid` 2 in
/// `pg_locks`) and never collide with these.
///
/// ```
/// let k = holdfast_postgres::lock_key("jobs/nightly");
/// assert_eq!(k, holdfast_postgres::lock_key("jobs/nightly"));
/// assert_ne!(k, holdfast_postgres::lock_key("jobs/nightly2"));
/// ```
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Why `name` cannot be a lock name, phase target or phase name, if it
/// cannot: empty, longer than [`MAX_NAME_LEN`] bytes, or holding a NUL
/// (PostgreSQL text cannot store one).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!(
            "the {what} contains a NUL character, which PostgreSQL text cannot hold"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable() {
        // sha256("a") = ca978112ca1bbdca…: pinned so the derivation never drifts.
        assert_eq!(
            lock_key("a"),
            i64::from_be_bytes([0xca, 0x97, 0x81, 0x12, 0xca, 0x1b, 0xbd, 0xca])
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("lock name", "ok").is_ok());
        assert!(check_name("lock name", "").is_err());
        assert!(check_name("lock name", "a\0b").unwrap_err().contains("NUL"));
        assert!(
            check_name("lock name", &"x".repeat(256))
                .unwrap_err()
                .contains("256 bytes")
        );
        assert!(check_name("lock name", &"x".repeat(255)).is_ok());
    }
}

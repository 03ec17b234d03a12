//! Ids and secret tokens.

use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Makes `prefix_` + ULID ids: unique, and sortable by the clock's time at creation (ids made in
/// the same millisecond keep their creation order).
#[derive(Default)]
pub(crate) struct IdGen {
    generator: Mutex<ulid::Generator>,
}

impl IdGen {
    pub(crate) fn next(&self, prefix: &str, at: DateTime<Utc>) -> String {
        let when = SystemTime::from(at.max(DateTime::UNIX_EPOCH));
        let ulid = {
            let mut generator = self.generator.lock().unwrap_or_else(|p| p.into_inner());
            generator
                .generate_from_datetime(when)
                .unwrap_or_else(|_| ulid::Ulid::from_datetime(when))
        };
        format!("{prefix}_{ulid}")
    }
}

/// A new secret token: 256 random bits as 64 lower-case hex characters.
pub(crate) fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::storage(format!("no randomness: {e}")))?;
    Ok(hex(&bytes))
}

/// What is stored instead of a token.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two hashes in constant time.
pub(crate) fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_even_within_one_millisecond() {
        let ids = IdGen::default();
        let at = Utc::now();
        let a = ids.next("org", at);
        let b = ids.next("org", at);
        assert!(a.starts_with("org_") && a.len() == 4 + 26);
        assert!(a < b);
    }

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(hashes_equal(&token_hash(&a), &token_hash(&a)));
        assert!(!hashes_equal(&token_hash(&a), &token_hash(&b)));
    }
}

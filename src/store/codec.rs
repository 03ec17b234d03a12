//! The only place that encodes and decodes stored values.
//!
//! A value is `[format tag][bincode 2, standard config]`. The tag names the record type and its
//! format version, so a reader never misreads one record type as another or an old layout as a
//! new one. Decoding has a size limit: stored bytes are untrusted (a damaged file must give
//! `corrupted`, never an out-of-memory abort).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Largest value the decoder accepts.
const DECODE_LIMIT: usize = 16 << 20;

/// Format tags, one per stored record type and layout. Never reuse a number (9 is retired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    User = 1,
    Org = 2,
    OrgStats = 3,
    Membership = 4,
    Invitation = 5,
    Project = 6,
    ProjectMember = 7,
    Resource = 8,
    Audit = 10,
    UsageDay = 11,
}

pub(crate) fn encode<T: Serialize>(tag: Tag, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![tag as u8];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| Error::storage(format!("encoding {tag:?}: {e}")))?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(tag: Tag, bytes: &[u8]) -> Result<T> {
    let Some((&found, body)) = bytes.split_first() else {
        return Err(Error::corrupted(format!("empty {tag:?} value")));
    };
    if found != tag as u8 {
        return Err(Error::corrupted(format!(
            "{tag:?} value has format tag {found}, expected {}",
            tag as u8
        )));
    }
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| Error::corrupted(format!("decoding {tag:?}: {e}")))?;
    if read != body.len() {
        return Err(Error::corrupted(format!(
            "{tag:?} value has {} trailing bytes",
            body.len() - read
        )));
    }
    Ok(value)
}

/// Counters are plain 8-byte big-endian integers.
pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupted(format!("counter has {} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user::User;

    #[test]
    fn round_trip_and_tag_check() {
        let user = User {
            id: "user_1".into(),
            email: "a@b.c".into(),
            name: "A".into(),
            created_at: crate::model::time::from_micros(1_705_314_600_123_456).unwrap(),
            last_active: None,
        };
        let bytes = encode(Tag::User, &user).unwrap();
        assert_eq!(decode::<User>(Tag::User, &bytes).unwrap(), user);
        let err = decode::<User>(Tag::Org, &bytes).unwrap_err();
        assert_eq!(err.code(), "corrupted");
    }

    #[test]
    fn hostile_bytes_are_corrupted_not_a_panic() {
        // A length prefix claiming ~2^64 bytes must hit the limit, not allocate.
        let bytes = [
            Tag::User as u8,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
        ];
        assert_eq!(
            decode::<User>(Tag::User, &bytes).unwrap_err().code(),
            "corrupted"
        );
        assert_eq!(
            decode::<User>(Tag::User, &[]).unwrap_err().code(),
            "corrupted"
        );
        assert_eq!(decode_u64(&[1, 2]).unwrap_err().code(), "corrupted");
    }
}

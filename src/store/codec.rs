//! The only place that encodes and decodes stored values.
//!
//! A record is `[format tag][crc32 of the body][body: bincode 2, standard config]`; a counter is
//! `[u64 big-endian][crc32]`; an id stored as an index value is `[UTF-8][crc32]`. The tag names
//! the record type and its format version, so a reader never misreads one record type as
//! another or an old layout as a new one. The checksum catches damaged bytes that the storage
//! engine does not (it does not verify pages on every read): a damaged value reads as
//! `corrupted`, never as different data. Decoding has a size limit: stored bytes are untrusted
//! (a damaged file must give `corrupted`, never an out-of-memory abort).

use serde::{Deserialize, Serialize};

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
    /// A membership with its deactivation time (schema 4); tag 4 records read as active.
    MembershipV2 = 12,
    /// An organization's override of a named limit or feature (schema 5).
    EntitlementOverride = 13,
    /// An organization with its quota period (schema 6); tag 2 records read as calendar
    /// months.
    OrgV2 = 14,
    /// An organization with its quota period and usage alert thresholds (schema 7); tag 14
    /// records read as the default thresholds.
    OrgV3 = 15,
    /// A usage reservation (schema 7).
    Reservation = 16,
}

const CRC: usize = 4;

fn crc(bytes: &[u8]) -> [u8; CRC] {
    crc32fast::hash(bytes).to_le_bytes()
}

/// Splits `[body][crc]` and verifies the checksum.
fn checked<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let split = bytes
        .len()
        .checked_sub(CRC)
        .ok_or_else(|| Error::corrupted(format!("{what} is too short")))?;
    let (body, sum) = bytes.split_at(split);
    if crc(body) != sum {
        return Err(Error::corrupted(format!("{what} fails its checksum")));
    }
    Ok(body)
}

pub(crate) fn encode<T: Serialize>(tag: Tag, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![tag as u8, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .map_err(|e| Error::storage(format!("encoding {tag:?}: {e}")))?;
    let sum = crc(&out[1 + CRC..]);
    out[1..1 + CRC].copy_from_slice(&sum);
    Ok(out)
}

/// Text fields declared `#[serde(borrow)]` borrow from `bytes` (validated as UTF-8, not
/// copied): a record's decode copies only the strings its value keeps.
pub(crate) fn decode<'a, T: Deserialize<'a>>(tag: Tag, bytes: &'a [u8]) -> Result<T> {
    let Some((&found, rest)) = bytes.split_first() else {
        return Err(Error::corrupted(format!("empty {tag:?} value")));
    };
    if found != tag as u8 {
        return Err(Error::corrupted(format!(
            "{tag:?} value has format tag {found}, expected {}",
            tag as u8
        )));
    }
    let (sum, body) = rest
        .split_at_checked(CRC)
        .ok_or_else(|| Error::corrupted(format!("{tag:?} value is too short")))?;
    if crc(body) != sum {
        return Err(Error::corrupted(format!(
            "{tag:?} value fails its checksum"
        )));
    }
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::serde::borrow_decode_from_slice(body, config)
        .map_err(|e| Error::corrupted(format!("decoding {tag:?}: {e}")))?;
    if read != body.len() {
        return Err(Error::corrupted(format!(
            "{tag:?} value has {} trailing bytes",
            body.len() - read
        )));
    }
    Ok(value)
}

/// A counter: 8 bytes big-endian, then their checksum.
pub(crate) fn encode_u64(value: u64) -> [u8; 8 + CRC] {
    let mut out = [0u8; 8 + CRC];
    out[..8].copy_from_slice(&value.to_be_bytes());
    let sum = crc(&out[..8]);
    out[8..].copy_from_slice(&sum);
    out
}

/// An id kept as an index value: its UTF-8, then their checksum.
pub(crate) fn encode_id(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + CRC);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&crc(id.as_bytes()));
    out
}

pub(crate) fn decode_id(bytes: &[u8]) -> Result<String> {
    let body = checked("stored id", bytes)?;
    String::from_utf8(body.to_vec()).map_err(|_| Error::corrupted("stored id is not UTF-8"))
}

/// A pending-invitation index value: the invitation's expiry (microseconds since the epoch,
/// 8 bytes big-endian), its id's UTF-8, then their checksum. Counting the unexpired pending
/// invitations of an organization reads only these.
pub(crate) fn encode_pending(id: &str, expires_micros: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + id.len() + CRC);
    out.extend_from_slice(&expires_micros.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    let sum = crc(&out);
    out.extend_from_slice(&sum);
    out
}

/// (id, expiry in microseconds) of a pending-invitation index value.
pub(crate) fn decode_pending(bytes: &[u8]) -> Result<(String, i64)> {
    let body = checked("pending invitation entry", bytes)?;
    let (expires, id) = body
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::corrupted("pending invitation entry is too short"))?;
    let id = String::from_utf8(id.to_vec())
        .map_err(|_| Error::corrupted("pending invitation id is not UTF-8"))?;
    Ok((id, i64::from_be_bytes(*expires)))
}

/// A `member_search` value: what a list needs of the member without reading the membership
/// (deactivated flag, role rank, `joined_at` in microseconds, 8 bytes big-endian), then their
/// checksum.
pub(crate) fn encode_member_hit(deactivated: bool, role: u8, joined_micros: i64) -> [u8; 10 + CRC] {
    let mut out = [0u8; 10 + CRC];
    out[0] = u8::from(deactivated);
    out[1] = role;
    out[2..10].copy_from_slice(&joined_micros.to_be_bytes());
    let sum = crc(&out[..10]);
    out[10..].copy_from_slice(&sum);
    out
}

/// (deactivated, role rank, `joined_at` micros) of a `member_search` value.
pub(crate) fn decode_member_hit(bytes: &[u8]) -> Result<(bool, u8, i64)> {
    let body = checked("member search entry", bytes)?;
    let body: &[u8; 10] = body
        .try_into()
        .map_err(|_| Error::corrupted("member search entry has the wrong size"))?;
    let deactivated = match body[0] {
        0 => false,
        1 => true,
        _ => return Err(Error::corrupted("member search entry has a bad status")),
    };
    let joined = i64::from_be_bytes(body[2..10].try_into().unwrap_or_default());
    Ok((deactivated, body[1], joined))
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let bytes = checked("counter", bytes)?;
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupted(format!("counter has {} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user::User;

    fn user() -> User {
        User {
            id: "user_1".into(),
            email: "a@b.c".into(),
            name: "A".into(),
            created_at: crate::model::time::from_micros(1_705_314_600_123_456).unwrap(),
            last_active: None,
        }
    }

    #[test]
    fn round_trip_and_tag_check() {
        let bytes = encode(Tag::User, &user()).unwrap();
        assert_eq!(decode::<User>(Tag::User, &bytes).unwrap(), user());
        let err = decode::<User>(Tag::Org, &bytes).unwrap_err();
        assert_eq!(err.code(), "corrupted");
        assert_eq!(decode_u64(&encode_u64(7)).unwrap(), 7);
        assert_eq!(decode_id(&encode_id("org_1")).unwrap(), "org_1");
        assert_eq!(
            decode_pending(&encode_pending("inv_1", -5)).unwrap(),
            ("inv_1".to_owned(), -5)
        );
    }

    #[test]
    fn hostile_bytes_are_corrupted_not_a_panic() {
        // A valid checksum over a length prefix claiming ~2^64 bytes must hit the limit.
        let body = [0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let mut framed = vec![Tag::User as u8];
        framed.extend_from_slice(&crc(&body));
        framed.extend_from_slice(&body);
        assert_eq!(
            decode::<User>(Tag::User, &framed).unwrap_err().code(),
            "corrupted"
        );
        assert_eq!(
            decode::<User>(Tag::User, &[]).unwrap_err().code(),
            "corrupted"
        );
        assert_eq!(decode_u64(&[1, 2]).unwrap_err().code(), "corrupted");
        assert_eq!(decode_id(&[1]).unwrap_err().code(), "corrupted");
        let short = [1u8, 2, 3];
        let framed = [&short[..], &crc(&short)].concat();
        assert_eq!(decode_pending(&framed).unwrap_err().code(), "corrupted");
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let bytes = encode(Tag::User, &user()).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decode::<User>(Tag::User, &bad).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        let id = encode_id("org_01");
        for i in 0..id.len() {
            let mut bad = id.clone();
            bad[i] ^= 0x10;
            assert!(decode_id(&bad).is_err());
        }
        let pending = encode_pending("inv_01", 1_705_314_600_123_456);
        for i in 0..pending.len() {
            let mut bad = pending.clone();
            bad[i] ^= 0x10;
            assert!(decode_pending(&bad).is_err());
        }
        let n = encode_u64(42);
        for i in 0..n.len() {
            let mut bad = n;
            bad[i] ^= 0x01;
            assert!(decode_u64(&bad).is_err());
        }
    }
}

//! Byte keys whose order is the logical order.
//!
//! Strings are their UTF-8 bytes followed by `0x00` (validation keeps NUL out of every id,
//! email, slug and idempotency key); integers are fixed-width big-endian. So a key built from a
//! prefix of components is a byte prefix of every key that extends it, and [`prefix_end`] bounds
//! the range of all of them.

use chrono::{DateTime, Utc};

use super::{codec, Table};
use crate::error::Result;
use crate::model::invitation::{Invitation, InvitationStatus};
use crate::model::resource::Resource;
use crate::model::role::Role;

/// A key under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Key(Vec<u8>);

impl Key {
    pub(crate) fn new() -> Key {
        Key(Vec::with_capacity(48))
    }

    /// Appends a string component and its terminator.
    pub(crate) fn str(mut self, s: &str) -> Key {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    pub(crate) fn u8(mut self, v: u8) -> Key {
        self.0.push(v);
        self
    }

    pub(crate) fn u32(mut self, v: u32) -> Key {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Key {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Microseconds since the epoch, clamped at zero (orgdb never stores earlier times).
    pub(crate) fn time(self, at: DateTime<Utc>) -> Key {
        self.u64(at.timestamp_micros().max(0) as u64)
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// A string key with one component (`Key::new().str(s)`).
pub(crate) fn one(s: &str) -> Vec<u8> {
    Key::new().str(s).into_vec()
}

/// Two string components.
pub(crate) fn two(a: &str, b: &str) -> Vec<u8> {
    Key::new().str(a).str(b).into_vec()
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when there is
/// none (all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Reads string components and integers back out of a key.
pub(crate) struct KeyReader<'a> {
    rest: &'a [u8],
}

impl<'a> KeyReader<'a> {
    pub(crate) fn new(key: &'a [u8]) -> KeyReader<'a> {
        KeyReader { rest: key }
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let end = self.rest.iter().position(|&b| b == 0)?;
        let (s, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        std::str::from_utf8(s).ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        if self.rest.len() < 4 {
            return None;
        }
        let (b, rest) = self.rest.split_at(4);
        self.rest = rest;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        if self.rest.len() < 8 {
            return None;
        }
        let (b, rest) = self.rest.split_at(8);
        self.rest = rest;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }
}

/// Day number used in usage keys: days since 0001-01-01 (always positive, ordered).
pub(crate) fn day_number(date: chrono::NaiveDate) -> u32 {
    use chrono::Datelike;
    date.num_days_from_ce().max(0) as u32
}

pub(crate) fn day_from_number(n: u32) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(n).ok()?)
}

/// A quota period as day numbers: its first and last day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

/// The empty span, which holds no day.
impl Default for Span {
    fn default() -> Span {
        Span { start: 1, end: 0 }
    }
}

impl Span {
    /// The period of `rule` that holds day number `day` (the day alone at the calendar's ends,
    /// where no whole period fits).
    pub(crate) fn of(rule: crate::model::period::QuotaPeriod, day: u32) -> Span {
        day_from_number(day).and_then(|d| rule.span(d)).map_or(
            Span {
                start: day,
                end: day,
            },
            |(s, e)| Span {
                start: day_number(s),
                end: day_number(e),
            },
        )
    }

    /// Whether the span holds day number `day`.
    pub(crate) fn holds(self, day: u32) -> bool {
        self.start <= day && day <= self.end
    }

    /// The first and last day as dates.
    pub(crate) fn dates(self) -> (chrono::NaiveDate, chrono::NaiveDate) {
        let date = |n| day_from_number(n).unwrap_or_default();
        (date(self.start), date(self.end))
    }
}

/// An announced usage alert: threshold `percent` was reached in the period `span` under the
/// limit `limit` (a change of limit, or of rule, makes a new announcement due).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AlertFired {
    pub(crate) span: Span,
    pub(crate) percent: u32,
    pub(crate) limit: u64,
}

/// The key of an announced alert: organization, the period's first and last day, threshold.
pub(crate) fn alert_key(org: &str, span: Span, percent: u32) -> Vec<u8> {
    Key::new()
        .str(org)
        .u32(span.start)
        .u32(span.end)
        .u32(percent)
        .into_vec()
}

/// The key of a period total: organization, the period's first day.
pub(crate) fn period_key(org: &str, start: u32) -> Vec<u8> {
    Key::new().str(org).u32(start).into_vec()
}

pub(crate) fn day_key(org: &str, day: u32) -> Vec<u8> {
    Key::new().str(org).u32(day).into_vec()
}

/// Position in a member list: (deactivated, `joined_at`, user id). A list of every member
/// has the active ones first, then the deactivated ones, each part by join time.
pub(crate) type MemberPos = (bool, DateTime<Utc>, String);

/// The two list indexes (by join time, by role) of active members (`false`) or deactivated
/// ones (`true`): a membership is in the pair of its status, so active lists, counts and
/// pages never meet a deactivated member.
pub(crate) fn member_tables(deactivated: bool) -> (Table, Table) {
    if deactivated {
        (Table::DeactivatedByJoin, Table::DeactivatedByRole)
    } else {
        (Table::MembersByJoin, Table::MembersByRole)
    }
}

/// Values of `resources_by_org`: whether the resource still counts.
pub(crate) const RESOURCE_LIVE: u8 = 1;

pub(crate) const RESOURCE_REMOVED: u8 = 0;

pub(crate) fn resource_org_key(res: &Resource) -> Vec<u8> {
    Key::new()
        .str(&res.organization_id)
        .u8(res.kind.code())
        .str(&res.id)
        .into_vec()
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    one(name)
}

pub(crate) fn member_join_key(org: &str, joined_at: DateTime<Utc>, user: &str) -> Vec<u8> {
    join_prefix(org).time(joined_at).str(user).into_vec()
}

/// A `member_search` key: org ∅ term ∅ user ∅.
pub(crate) fn member_search_key(org: &str, term: &str, user: &str) -> Vec<u8> {
    Key::new().str(org).str(term).str(user).into_vec()
}

/// What the `member_search` keys of `org` whose term starts with `prefix` start with (no
/// terminator after the prefix: a term has no NUL).
pub(crate) fn member_search_prefix(org: &str, prefix: &str) -> Vec<u8> {
    let mut k = one(org);
    k.extend_from_slice(prefix.as_bytes());
    k
}

/// What `members_by_join` (and `deactivated_by_join`) keys of `org` start with (their counted
/// prefix).
pub(crate) fn join_prefix(org: &str) -> Key {
    Key::new().str(org)
}

/// What `members_by_role` (and `deactivated_by_role`) keys of `org` and `role` start with
/// (their counted prefix).
pub(crate) fn role_prefix(org: &str, role: Role) -> Key {
    join_prefix(org).u8(role.rank())
}

pub(crate) fn member_role_key(
    org: &str,
    role: Role,
    joined_at: DateTime<Utc>,
    user: &str,
) -> Vec<u8> {
    role_prefix(org, role).time(joined_at).str(user).into_vec()
}

/// The byte an invitation's stored status is indexed under in `invitations_by_status`.
pub(crate) fn status_byte(status: InvitationStatus) -> u8 {
    match status {
        InvitationStatus::Pending => 0,
        InvitationStatus::Accepted => 1,
        InvitationStatus::Declined => 2,
        InvitationStatus::Revoked => 3,
        InvitationStatus::Expired => 4,
    }
}

/// What `invitations_by_status` keys of `org` and a stored status start with (its counted
/// prefix).
pub(crate) fn status_prefix(org: &str, status: InvitationStatus) -> Key {
    Key::new().str(org).u8(status_byte(status))
}

/// The `invitations_by_status` entry of an invitation: its key, and its expiry (µs) as value,
/// so a pending entry tells whether it reads `expired` without decoding the invitation.
pub(crate) fn status_entry(inv: &Invitation) -> (Vec<u8>, [u8; 12]) {
    let key = status_prefix(&inv.organization_id, inv.status)
        .str(&inv.id)
        .into_vec();
    (
        key,
        codec::encode_u64(inv.expires_at.timestamp_micros() as u64),
    )
}

/// The expiry (µs) an `invitations_by_status` value carries.
pub(crate) fn entry_expiry(value: &[u8]) -> Result<i64> {
    Ok(codec::decode_u64(value)? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_components_keep_prefix_order() {
        let a = Key::new().str("org_1").str("a").into_vec();
        let b = Key::new().str("org_1").str("ab").into_vec();
        let other = Key::new().str("org_10").str("a").into_vec();
        let prefix = one("org_1");
        assert!(a < b);
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix));
        assert!(
            !other.starts_with(&prefix),
            "org_10 must not fall under org_1"
        );
        let end = prefix_end(&prefix).unwrap();
        assert!(b < end && other > end);
    }

    #[test]
    fn prefix_end_of_all_ff_is_none() {
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
    }

    #[test]
    fn reader_round_trips() {
        let k = Key::new().str("org").u8(3).u64(42).str("user").into_vec();
        let mut r = KeyReader::new(&k);
        assert_eq!(r.str(), Some("org"));
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u64(), Some(42));
        assert_eq!(r.str(), Some("user"));
        assert_eq!(r.u8(), None);
    }
}

//! Schema version: written when a file is created, checked on every open.

use super::{
    codec, counted, keys, org_terms, status_entry, InvitationRecord, KvReadExt, KvWrite, OrgRecord,
    Reads, Stored, Table, Writes,
};
use crate::error::{Error, Result};
use crate::model::membership::Membership;
use crate::model::user::{search_terms, User};

/// The format this build writes. Bump it with a migration in [`ensure_schema`] and a test that
/// opens a file of the old format.
///
/// - 1: the first format.
/// - 2: `pending_invitations` values carry the invitation's expiry before its id, so counting
///   an organization's unexpired pending invitations (every seat check) reads the index only;
///   `member_counts` holds the buckets of the counted member indexes (offset pages seek).
/// - 3: `invitations_by_status` (organization, stored status, id → expiry) and
///   `invitations_by_project` (project, id); `invitations_by_org` and `invitations_by_status`
///   are counted indexes, so invitation lists page and count without decoding invitations,
///   and deleting a project finds its invitations without reading the organization's.
/// - 4: member deactivation and search. Memberships are written as tag 12 (with
///   `deactivated_at`; a tag-4 record reads as active, so nothing is rewritten);
///   `members_by_join` / `members_by_role` and the counters hold active members only, and the
///   new counted indexes `deactivated_by_join` / `deactivated_by_role` hold the deactivated
///   ones (empty after the step). `member_search` (org, search term, user → status, role,
///   join time) is built from the memberships and their users; `org_search` and
///   `user_search` (term, id) from the organizations and users (the system lists' search).
/// - 5: `entitlement_overrides` (org, name → tag-13 record), an organization's overrides of
///   named limits and features. The step only creates the (empty) table; an older orgdb
///   would ignore the table, so the version bump keeps it from opening the file.
/// - 6: quota periods. Organizations are written as tag 14 (with their quota period; a tag-2
///   record reads as the calendar month, so nothing is rewritten); `usage_month` holds a total
///   per quota period keyed by its first day number instead of per `yyyymm`: the step
///   re-keys every row to its calendar month's first day.
/// - 7: usage alerts. Organizations are written as tag 15 (with their alert thresholds; a
///   tag-14 record reads as the defaults, so nothing is rewritten); `usage_alert_state` (org,
///   period's first and last day, threshold → the limit it was announced under), and
///   `usage_reservations` (org, id → tag-16 record). The step only creates the (empty)
///   tables.
pub(crate) const SCHEMA_VERSION: u32 = 7;

pub(crate) const SCHEMA_KEY: &str = "schema_version";
pub(crate) const AUDIT_SEQ: &str = "audit_seq";

/// Creates the tables and version of a new file, refuses a file of a newer version, and
/// migrates an older one. Runs in one write transaction.
pub(crate) fn ensure_schema(tx: &mut dyn KvWrite) -> Result<()> {
    match tx.meta_u64(SCHEMA_KEY)? {
        None => {
            create_tables(tx)?;
            tx.set_meta_u64(SCHEMA_KEY, u64::from(SCHEMA_VERSION))
        }
        Some(found) if found > u64::from(SCHEMA_VERSION) => Err(Error::IncompatibleVersion {
            format: "database schema",
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION,
        }),
        Some(found) if found == u64::from(SCHEMA_VERSION) => Ok(()),
        Some(found) if found >= 1 => {
            create_tables(tx)?;
            // One step per version, each from the one before, in this transaction.
            for from in found..u64::from(SCHEMA_VERSION) {
                upgrade_from(tx, from)?;
            }
            tx.set_meta_u64(SCHEMA_KEY, u64::from(SCHEMA_VERSION))
        }
        Some(found) => Err(Error::corrupted(format!(
            "schema version {found} predates the first format"
        ))),
    }
}

/// The step from schema version `from` to `from + 1`.
fn upgrade_from(tx: &mut dyn KvWrite, from: u64) -> Result<()> {
    match from {
        1 => {
            pending_entries_carry_expiry(tx)?;
            counted::rebuild(tx, &[Table::MembersByJoin, Table::MembersByRole])
        }
        2 => invitation_indexes(tx),
        // Every membership of a version-3 file is active: the deactivated indexes start empty.
        3 => {
            member_search(tx)?;
            directory_search(tx)
        }
        // `create_tables` made the new, empty table (5: `entitlement_overrides`; 7:
        // `usage_alert_state`).
        4 | 6 => Ok(()),
        5 => period_keys(tx),
        other => Err(Error::storage(format!(
            "no migration from schema version {other}"
        ))),
    }
}

/// Migration 5 → 6: every `usage_month` row from `org ∅ yyyymm` to `org ∅ first day number`
/// of that month (what the calendar-month rule of every existing organization cuts). A row
/// whose key does not read as a month is left as it is (`check()` reports it).
fn period_keys(tx: &mut dyn KvWrite) -> Result<()> {
    let mut rows = Vec::new();
    tx.scan_prefix(Table::UsagePeriod, &[], &mut |k, v| {
        rows.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    // Every old key goes before any new one is written: a new key never meets an old one.
    let mut moved = Vec::new();
    for (key, value) in rows {
        let mut r = keys::KeyReader::new(&key);
        let (Some(org), Some(month)) = (r.str(), r.u32()) else {
            continue;
        };
        let Some(first) = chrono::NaiveDate::from_ymd_opt((month / 100) as i32, month % 100, 1)
        else {
            continue;
        };
        moved.push((keys::period_key(org, keys::day_number(first)), value));
        tx.delete(Table::UsagePeriod, &key)?;
    }
    for (key, value) in moved {
        tx.put(Table::UsagePeriod, &key, &value)?;
    }
    Ok(())
}

/// Migration 3 → 4: the `member_search` entries of every membership, from its user. A
/// membership or user that cannot be read is left out (`check()` reports it).
fn member_search(tx: &mut dyn KvWrite) -> Result<()> {
    let mut memberships = Vec::new();
    tx.scan_prefix(Table::Memberships, &[], &mut |_, v| {
        if let Ok(m) = Membership::decode(v) {
            memberships.push(m);
        }
        Ok(true)
    })?;
    for m in &memberships {
        let Ok(Some(user)) = tx.user(&m.user_id) else {
            continue;
        };
        let hit = codec::encode_member_hit(
            !m.is_active(),
            m.role.rank(),
            m.joined_at.timestamp_micros(),
        );
        for term in search_terms(&user.email, &user.name) {
            let key = keys::member_search_key(&m.organization_id, &term, &m.user_id);
            tx.put(Table::MemberSearch, &key, &hit)?;
        }
    }
    Ok(())
}

/// Migration 3 → 4, continued: the search terms of every organization and user (the system
/// lists). A record that cannot be read is left out (`check()` reports it).
fn directory_search(tx: &mut dyn KvWrite) -> Result<()> {
    let mut entries = Vec::new();
    tx.scan_prefix(Table::Orgs, &[], &mut |_, v| {
        if let Ok(rec) = OrgRecord::decode(v) {
            for term in org_terms(&rec.org) {
                entries.push((Table::OrgSearch, keys::two(&term, &rec.org.id)));
            }
        }
        Ok(true)
    })?;
    tx.scan_prefix(Table::Users, &[], &mut |_, v| {
        if let Ok(u) = User::decode(v) {
            for term in search_terms(&u.email, &u.name) {
                entries.push((Table::UserSearch, keys::two(&term, &u.id)));
            }
        }
        Ok(true)
    })?;
    for (table, key) in entries {
        tx.put(table, &key, &[])?;
    }
    Ok(())
}

/// Migration 2 → 3: builds `invitations_by_status` and `invitations_by_project` from the
/// invitations, then the buckets of the two counted invitation indexes. An invitation record
/// that cannot be read is left out (`check()` reports it), as in the step before.
fn invitation_indexes(tx: &mut dyn KvWrite) -> Result<()> {
    let mut invitations = Vec::new();
    tx.scan_prefix(Table::Invitations, &[], &mut |_, v| {
        if let Ok(rec) = InvitationRecord::decode(v) {
            invitations.push(rec.invitation);
        }
        Ok(true)
    })?;
    for inv in &invitations {
        let (key, value) = status_entry(inv);
        tx.put(Table::InvitationsByStatus, &key, &value)?;
        if let Some(project) = &inv.project_id {
            tx.put(
                Table::InvitationsByProject,
                &keys::two(project, &inv.id),
                &[],
            )?;
        }
    }
    counted::rebuild(tx, &[Table::InvitationsByOrg, Table::InvitationsByStatus])
}

/// Migration 1 → 2: rewrites every `pending_invitations` value from the id alone to
/// (expiry, id), reading the expiry from the invitation.
///
/// Damage found on the way never fails the open (the file must still open so that `check()`
/// can report it and export can save the rest, as version 1 allowed): an entry whose id fails
/// its checksum is left as it is (it fails the same way in the new layout, so that
/// organization's seat checks answer `corrupted`); an entry naming an invitation that is
/// missing or unreadable points at nothing usable and is dropped (the index is derived data;
/// `check()` still reports an unreadable invitation record).
fn pending_entries_carry_expiry(tx: &mut dyn KvWrite) -> Result<()> {
    let mut entries = Vec::new();
    tx.scan_prefix(Table::PendingInvitations, &[], &mut |k, v| {
        if let Ok(id) = codec::decode_id(v) {
            entries.push((k.to_vec(), id));
        }
        Ok(true)
    })?;
    for (key, id) in entries {
        let inv = match tx.invitation(&id) {
            Ok(Some(rec)) => rec.invitation,
            Ok(None) | Err(Error::Corrupted { .. }) => {
                tx.delete(Table::PendingInvitations, &key)?;
                continue;
            }
            Err(other) => return Err(other),
        };
        let value = codec::encode_pending(&inv.id, inv.expires_at.timestamp_micros());
        tx.put(Table::PendingInvitations, &key, &value)?;
    }
    Ok(())
}

/// Creates every table, so readers never meet a missing one.
fn create_tables(tx: &mut dyn KvWrite) -> Result<()> {
    for table in super::Table::ALL {
        tx.touch(table)?;
    }
    Ok(())
}

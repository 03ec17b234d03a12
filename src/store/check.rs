//! `Db::check()`: recomputes every index and counter from the rows and compares, both ways.
//! It reads through the raw traits, so it checks what is on disk, not what the typed layer
//! believes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::codec;
use super::counted;
use super::keys::{self, Key};
use super::keys::{
    member_join_key, member_role_key, resource_org_key, RESOURCE_LIVE, RESOURCE_REMOVED,
};
use super::records::Stored;
use super::{
    org_terms, schema, InvitationRecord, KvRead, OrgRecord, OrgStats, Reads, ResourceRecord, Table,
};
use crate::error::Result;
use crate::model::audit::AuditEvent;
use crate::model::entitlement::{valid_name, EntitlementValue, SEED_LIMITS};
use crate::model::invitation::InvitationStatus;
use crate::model::membership::Membership;
use crate::model::project::{Project, ProjectMembership};
use crate::model::reservation::Reservation;
use crate::model::resource::ResourceKind;
use crate::model::role::Role;
use crate::model::user::{search_terms, User};

/// What `Db::check()` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Every violation found; empty when the database is sound.
    pub problems: Vec<String>,
    /// Users checked.
    pub users: u64,
    /// Organizations checked.
    pub organizations: u64,
    /// Memberships checked.
    pub memberships: u64,
    /// Invitations checked.
    pub invitations: u64,
    /// Projects checked.
    pub projects: u64,
    /// Resources checked.
    pub resources: u64,
    /// Audit events checked.
    pub audit_events: u64,
}

impl CheckReport {
    /// Whether no violation was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every (key, value) of a table.
fn all<R: KvRead + ?Sized>(tx: &R, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    tx.scan(table, &[], None, false, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

fn keyset<R: KvRead + ?Sized>(tx: &R, table: Table) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    Ok(all(tx, table)?.into_iter().collect())
}

struct Checker<'a, R: KvRead + ?Sized> {
    tx: &'a R,
    report: CheckReport,
}

impl<R: KvRead + ?Sized> Checker<'_, R> {
    fn problem(&mut self, text: String) {
        // A badly broken file could list millions; the first thousand tell the story.
        if self.report.problems.len() < 1_000 {
            self.report.problems.push(text);
        }
    }

    fn records<T: Stored>(&mut self, table: Table) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for (k, v) in all(self.tx, table)? {
            match T::decode(&v) {
                Ok(value) => {
                    if value.own_key().is_some_and(|own| own != k) {
                        self.problem(format!(
                            "{}: a row stored under a foreign key {}",
                            table.name(),
                            show(&k)
                        ));
                    }
                    out.push((k, value));
                }
                Err(e) => self.problem(format!("{}: undecodable row: {e}", table.name())),
            }
        }
        Ok(out)
    }

    /// The index must hold exactly `expected` (key → value).
    fn index(&mut self, table: Table, expected: BTreeMap<Vec<u8>, Vec<u8>>) -> Result<()> {
        let actual = keyset(self.tx, table)?;
        for (k, v) in &expected {
            match actual.get(k) {
                None => self.problem(format!("{}: missing entry {}", table.name(), show(k))),
                Some(found) if found != v => {
                    self.problem(format!("{}: wrong value at {}", table.name(), show(k)))
                }
                Some(_) => {}
            }
        }
        for k in actual.keys() {
            if !expected.contains_key(k) {
                self.problem(format!("{}: stray entry {}", table.name(), show(k)));
            }
        }
        Ok(())
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}

pub(crate) fn check<R: KvRead + ?Sized>(tx: &R, now: DateTime<Utc>) -> Result<CheckReport> {
    let mut c = Checker {
        tx,
        report: CheckReport::default(),
    };

    // Users and their email index.
    let users: Vec<(Vec<u8>, User)> = c.records(Table::Users)?;
    c.report.users = users.len() as u64;
    let user_ids: BTreeSet<String> = users.iter().map(|(_, u)| u.id.clone()).collect();
    let user_by_id: BTreeMap<&str, &User> = users.iter().map(|(_, u)| (u.id.as_str(), u)).collect();
    let email_user: BTreeMap<&str, String> = users
        .iter()
        .map(|(_, u)| (u.email.as_str(), u.id.clone()))
        .collect();
    c.index(
        Table::UserEmail,
        users
            .iter()
            .map(|(_, u)| (keys::one(&u.email), codec::encode_id(&u.id)))
            .collect(),
    )?;

    // Organizations, slugs, external ids.
    let orgs: Vec<(Vec<u8>, OrgRecord)> = c.records(Table::Orgs)?;
    c.report.organizations = orgs.len() as u64;
    let org_ids: BTreeSet<String> = orgs.iter().map(|(_, o)| o.org.id.clone()).collect();
    let rules: BTreeMap<String, crate::model::period::QuotaPeriod> = orgs
        .iter()
        .map(|(_, o)| (o.org.id.clone(), o.period))
        .collect();
    c.index(
        Table::OrgSlug,
        orgs.iter()
            .map(|(_, o)| (keys::one(&o.org.slug), codec::encode_id(&o.org.id)))
            .collect(),
    )?;
    c.index(
        Table::OrgExternal,
        orgs.iter()
            .filter_map(|(_, o)| {
                o.org
                    .external_id
                    .as_ref()
                    .map(|e| (keys::one(e), codec::encode_id(&o.org.id)))
            })
            .collect(),
    )?;
    // The search terms of the system lists.
    c.index(
        Table::OrgSearch,
        orgs.iter()
            .flat_map(|(_, o)| {
                org_terms(&o.org)
                    .into_iter()
                    .map(|t| (keys::two(&t, &o.org.id), vec![]))
            })
            .collect(),
    )?;
    c.index(
        Table::UserSearch,
        users
            .iter()
            .flat_map(|(_, u)| {
                search_terms(&u.email, &u.name)
                    .into_iter()
                    .map(|t| (keys::two(&t, &u.id), vec![]))
            })
            .collect(),
    )?;

    // Memberships and their six indexes (the two list indexes of their status); counts of
    // active members per organization.
    let memberships: Vec<(Vec<u8>, Membership)> = c.records(Table::Memberships)?;
    c.report.memberships = memberships.len() as u64;
    let mut expected_stats: BTreeMap<String, OrgStats> = org_ids
        .iter()
        .map(|id| (id.clone(), OrgStats::default()))
        .collect();
    let (mut ids, mut user_orgs, mut search) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    // (by join, by role) entries of the active (0) and deactivated (1) lists.
    type Entries = BTreeMap<Vec<u8>, Vec<u8>>;
    let mut lists: [(Entries, Entries); 2] = Default::default();
    let mut member_pairs = BTreeSet::new();
    for (key, m) in &memberships {
        if !user_ids.contains(&m.user_id) {
            c.problem(format!(
                "memberships: {} names missing user {}",
                m.id, m.user_id
            ));
        }
        match expected_stats.get_mut(&m.organization_id) {
            Some(stats) => {
                if m.is_active() {
                    stats.members += 1;
                    stats.by_role[m.role.rank() as usize] += 1;
                }
            }
            None => c.problem(format!(
                "memberships: {} names missing organization {}",
                m.id, m.organization_id
            )),
        }
        member_pairs.insert((m.organization_id.clone(), m.user_id.clone()));
        ids.insert(keys::one(&m.id), key.clone());
        let (by_join, by_role) = &mut lists[usize::from(!m.is_active())];
        by_join.insert(
            member_join_key(&m.organization_id, m.joined_at, &m.user_id),
            vec![],
        );
        by_role.insert(
            member_role_key(&m.organization_id, m.role, m.joined_at, &m.user_id),
            vec![],
        );
        user_orgs.insert(keys::two(&m.user_id, &m.organization_id), vec![]);
        if let Some(u) = user_by_id.get(m.user_id.as_str()) {
            let hit = codec::encode_member_hit(
                !m.is_active(),
                m.role.rank(),
                m.joined_at.timestamp_micros(),
            );
            for term in search_terms(&u.email, &u.name) {
                search.insert(
                    keys::member_search_key(&m.organization_id, &term, &m.user_id),
                    hit.to_vec(),
                );
            }
        }
    }
    // The bucket table of every counted index (positional paging), read once; the member
    // indexes' buckets are verified here, the invitation indexes' below.
    let buckets = keyset(c.tx, Table::MemberCounts)?;
    let mut problems = Vec::new();
    for (deactivated, (by_join, by_role)) in [false, true].into_iter().zip(&lists) {
        let (join_table, role_table) = keys::member_tables(deactivated);
        counted::verify(join_table, by_join.keys(), &buckets, &mut problems)?;
        counted::verify(role_table, by_role.keys(), &buckets, &mut problems)?;
    }
    for key in buckets.keys() {
        if !counted::COUNTED
            .iter()
            .any(|(_, tag)| key.first() == Some(tag))
        {
            problems.push("member_counts: a row of no counted index".to_owned());
        }
    }
    for problem in problems {
        c.problem(problem);
    }
    c.index(Table::MembershipIds, ids)?;
    for (deactivated, (by_join, by_role)) in [false, true].into_iter().zip(lists) {
        let (join_table, role_table) = keys::member_tables(deactivated);
        c.index(join_table, by_join)?;
        c.index(role_table, by_role)?;
    }
    c.index(Table::UserOrgs, user_orgs)?;
    c.index(Table::MemberSearch, search)?;

    // Resources, their org index and counts.
    let resources: Vec<(Vec<u8>, ResourceRecord)> = c.records(Table::Resources)?;
    c.report.resources = resources.len() as u64;
    let mut res_index = BTreeMap::new();
    let mut columns: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (_, rec) in &resources {
        let r = &rec.resource;
        if !columns
            .entry(r.organization_id.as_str())
            .or_default()
            .insert(rec.column)
        {
            c.problem(format!(
                "resources: column {} used twice in {}",
                rec.column, r.organization_id
            ));
        }
        if let Some(stats) = expected_stats.get_mut(&r.organization_id) {
            stats.resource_columns = stats.resource_columns.max(rec.column + 1);
        }
        let live = r.removed_at.is_none();
        res_index.insert(
            resource_org_key(r),
            vec![if live {
                RESOURCE_LIVE
            } else {
                RESOURCE_REMOVED
            }],
        );
        match expected_stats.get_mut(&r.organization_id) {
            Some(stats) if live => match r.kind {
                ResourceKind::Mcp => stats.mcps += 1,
                ResourceKind::ApiKey => stats.api_keys += 1,
            },
            Some(_) => {}
            None => c.problem(format!("resources: {} names a missing organization", r.id)),
        }
    }
    c.index(Table::ResourcesByOrg, res_index)?;

    // Stored counters equal recomputed ones; every organization keeps an owner.
    let stored: Vec<(Vec<u8>, OrgStats)> = c.records(Table::OrgStats)?;
    let stored: BTreeMap<Vec<u8>, OrgStats> = stored.into_iter().collect();
    for (org, expected) in &expected_stats {
        let found = stored.get(&keys::one(org)).copied().unwrap_or_default();
        if found != *expected {
            c.problem(format!(
                "org_stats: {org} holds {found:?}, rows say {expected:?}"
            ));
        }
        if expected.by_role[Role::Owner.rank() as usize] == 0 {
            c.problem(format!("organization {org} has no owner"));
        }
    }
    let org_keys: BTreeSet<Vec<u8>> = expected_stats.keys().map(|org| keys::one(org)).collect();
    for key in stored.keys() {
        if !org_keys.contains(key) {
            c.problem(format!("org_stats: stray counters {}", show(key)));
        }
    }

    // Invitations and their indexes.
    let invitations: Vec<(Vec<u8>, InvitationRecord)> = c.records(Table::Invitations)?;
    c.report.invitations = invitations.len() as u64;
    let (mut tokens, mut by_org, mut pending, mut by_email) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    let (mut by_status, mut by_project) = (BTreeMap::new(), BTreeMap::new());
    for (_, rec) in &invitations {
        let inv = &rec.invitation;
        if !org_ids.contains(&inv.organization_id) {
            c.problem(format!(
                "invitations: {} names a missing organization",
                inv.id
            ));
        }
        tokens.insert(rec.token_hash.to_vec(), codec::encode_id(&inv.id));
        by_org.insert(keys::two(&inv.organization_id, &inv.id), vec![]);
        let (key, value) = super::status_entry(inv);
        by_status.insert(key, value.to_vec());
        if let Some(project) = &inv.project_id {
            by_project.insert(keys::two(project, &inv.id), vec![]);
        }
        if inv.status == InvitationStatus::Pending {
            let column = keys::two(&inv.organization_id, &inv.email);
            let entry = codec::encode_pending(&inv.id, inv.expires_at.timestamp_micros());
            if pending.insert(column, entry).is_some() {
                c.problem(format!(
                    "invitations: two pending invitations for {}",
                    inv.email
                ));
            }
            by_email.insert(keys::two(&inv.email, &inv.id), vec![]);
        }
        // Nobody is counted twice: a member holds no seat-holding invitation in the same
        // organization.
        let member_email = email_user.get(inv.email.as_str()).is_some_and(|user| {
            member_pairs.contains(&(inv.organization_id.clone(), user.clone()))
        });
        if inv.status_at(now) == InvitationStatus::Pending && member_email {
            c.problem(format!(
                "invitations: {} is pending for {}, already a member of {}",
                inv.id, inv.email, inv.organization_id
            ));
        }
    }
    c.index(Table::InvitationTokens, tokens)?;
    // The buckets of the two counted invitation indexes (in the bucket table read above).
    let mut problems = Vec::new();
    counted::verify(
        Table::InvitationsByOrg,
        by_org.keys(),
        &buckets,
        &mut problems,
    )?;
    counted::verify(
        Table::InvitationsByStatus,
        by_status.keys(),
        &buckets,
        &mut problems,
    )?;
    for problem in problems {
        c.problem(problem);
    }
    c.index(Table::InvitationsByOrg, by_org)?;
    c.index(Table::InvitationsByStatus, by_status)?;
    c.index(Table::InvitationsByProject, by_project)?;
    c.index(Table::PendingInvitations, pending)?;
    c.index(Table::InvitationsByEmail, by_email)?;

    // Projects and project members (always organization members).
    let projects: Vec<(Vec<u8>, Project)> = c.records(Table::Projects)?;
    c.report.projects = projects.len() as u64;
    let project_org: BTreeMap<String, String> = projects
        .iter()
        .map(|(_, p)| (p.id.clone(), p.organization_id.clone()))
        .collect();
    c.index(
        Table::ProjectsByOrg,
        projects
            .iter()
            .map(|(_, p)| (keys::two(&p.organization_id, &p.id), vec![]))
            .collect(),
    )?;
    let pms: Vec<(Vec<u8>, ProjectMembership)> = c.records(Table::ProjectMembers)?;
    let mut pm_by_user = BTreeMap::new();
    for (_, pm) in &pms {
        let Some(org) = project_org.get(&pm.project_id) else {
            c.problem(format!(
                "project_members: {} in missing project",
                pm.user_id
            ));
            continue;
        };
        if !member_pairs.contains(&(org.clone(), pm.user_id.clone())) {
            c.problem(format!(
                "project_members: {} in {} is not an organization member",
                pm.user_id, pm.project_id
            ));
        }
        pm_by_user.insert(
            Key::new()
                .str(org)
                .str(&pm.user_id)
                .str(&pm.project_id)
                .into_vec(),
            vec![],
        );
    }
    c.index(Table::ProjectMembersByUser, pm_by_user)?;

    // Usage: rows of live organizations; a day's resource counts fit in its total and in the
    // organization's columns; a quota period's total (cut by the organization's rule) covers
    // its days (equal unless days were pruned).
    let columns_of: BTreeMap<String, u32> = expected_stats
        .iter()
        .map(|(org, s)| (org.clone(), s.resource_columns))
        .collect();
    let mut period_days: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for (key, value) in all(tx, Table::UsageDay)? {
        let Some((org, day)) = split_org_number(&key) else {
            c.problem(format!("usage_day: bad key {}", show(&key)));
            continue;
        };
        let row = match super::DayRow::decode(&value) {
            Ok(row) => row,
            Err(e) => {
                c.problem(format!("usage_day: undecodable row: {e}"));
                continue;
            }
        };
        match columns_of.get(&org) {
            None => c.problem(format!("usage_day: row of missing organization {org}")),
            Some(columns) if row.columns.len() > *columns as usize => c.problem(format!(
                "usage_day: {org} row names columns it never handed out"
            )),
            Some(_) => {}
        }
        let attributed = row.columns.iter().fold(0u64, |a, n| a.saturating_add(*n));
        if attributed > row.total {
            c.problem(format!(
                "usage_day: {org} day {day}: resources sum past the total"
            ));
        }
        let rule = rules.get(&org).copied().unwrap_or_default();
        let start = super::Span::of(rule, day).start;
        let sum = period_days.entry((org, start)).or_default();
        *sum = sum.saturating_add(row.total);
    }
    let mut periods: Vec<(String, u32, u64)> = Vec::new();
    for (key, value) in all(tx, Table::UsagePeriod)? {
        match (split_org_number(&key), codec::decode_u64(&value)) {
            (Some((org, start)), Ok(total)) => periods.push((org, start, total)),
            _ => c.problem(format!("usage_period: bad row {}", show(&key))),
        }
    }
    for problem in period_problems(&rules, &period_days, &periods) {
        c.problem(problem);
    }
    let thresholds: BTreeMap<&str, &[u32]> = orgs
        .iter()
        .map(|(_, o)| {
            let list = o
                .alerts
                .as_deref()
                .unwrap_or(&crate::model::alert::DEFAULT_THRESHOLDS);
            (o.org.id.as_str(), list)
        })
        .collect();
    for (id, list) in &thresholds {
        if !crate::model::alert::valid_thresholds(list) {
            c.problem(format!(
                "organizations: {id} has alert thresholds that are not 1 to 1000 ascending"
            ));
        }
    }
    for (key, r) in c.records::<Reservation>(Table::Reservations)? {
        if keys::two(&r.organization_id, &r.id) != key {
            c.problem(format!("usage_reservations: {} is under another key", r.id));
        } else if !org_ids.contains(&r.organization_id) {
            c.problem(format!(
                "usage_reservations: {} of a missing organization {}",
                r.id, r.organization_id
            ));
        } else if r.count == 0 || r.count > 1 << 53 || r.period_end < r.period_start {
            c.problem(format!(
                "usage_reservations: {} holds {} over {}..{}",
                r.id, r.count, r.period_start, r.period_end
            ));
        }
    }
    for (key, value) in all(tx, Table::AlertState)? {
        let mut r = keys::KeyReader::new(&key);
        let row = (
            r.str(),
            r.u32(),
            r.u32(),
            r.u32(),
            codec::decode_u64(&value),
        );
        match row {
            (Some(org), Some(start), Some(end), Some(percent), Ok(limit))
                if start <= end && limit > 0 =>
            {
                match thresholds.get(org) {
                    None => c.problem(format!(
                        "usage_alert_state: row of missing organization {org}"
                    )),
                    Some(list) if !list.contains(&percent) => c.problem(format!(
                        "usage_alert_state: {org} threshold {percent} is not one of its thresholds"
                    )),
                    Some(_) => {}
                }
            }
            _ => c.problem(format!("usage_alert_state: bad row {}", show(&key))),
        }
    }
    for (key, _) in all(tx, Table::Idempotency)? {
        let org = keys::KeyReader::new(&key).str().map(str::to_owned);
        if !org.is_some_and(|o| org_ids.contains(&o)) {
            c.problem(format!(
                "idempotency: key of a missing organization {}",
                show(&key)
            ));
        }
    }

    for (key, value) in all(tx, Table::EntitlementOverrides)? {
        let mut r = keys::KeyReader::new(&key);
        let (org, name) = (r.str().map(str::to_owned), r.str().map(str::to_owned));
        if !org.as_ref().is_some_and(|o| org_ids.contains(o)) {
            c.problem(format!(
                "entitlement_overrides: override of a missing organization {}",
                show(&key)
            ));
        }
        if !name.is_some_and(|n| valid_name(&n) && !SEED_LIMITS.contains(&n.as_str())) {
            c.problem(format!("entitlement_overrides: bad name in {}", show(&key)));
        }
        if let Err(e) = EntitlementValue::decode(&value) {
            c.problem(format!("entitlement_overrides: {} {e}", show(&key)));
        }
    }

    // Audit: gap-free sequence, org index.
    let events: Vec<(Vec<u8>, AuditEvent)> = c.records(Table::Audit)?;
    c.report.audit_events = events.len() as u64;
    let last = tx.meta_u64(schema::AUDIT_SEQ)?.unwrap_or(0);
    let mut audit_index = BTreeMap::new();
    for (i, (key, e)) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if e.seq != want || *key != Key::new().u64(e.seq).into_vec() {
            c.problem(format!(
                "audit: event {} found where seq {want} belongs",
                e.seq
            ));
        }
        if let Some(org) = &e.organization_id {
            audit_index.insert(Key::new().str(org).u64(e.seq).into_vec(), vec![]);
        }
    }
    if events.len() as u64 != last {
        c.problem(format!(
            "audit: {} events but the sequence is at {last}",
            events.len()
        ));
    }
    c.index(Table::AuditByOrg, audit_index)?;

    Ok(c.report)
}

/// (org, number) of a usage key: the org id, its terminator, then a 4-byte number.
fn split_org_number(key: &[u8]) -> Option<(String, u32)> {
    let org = keys::KeyReader::new(key).str()?.to_owned();
    let rest = key.get(org.len() + 1..)?;
    Some((org, u32::from_be_bytes(rest.try_into().ok()?)))
}

/// What is wrong with stored period totals (`periods`: organization, first day, total), given
/// each organization's rule and the sums of its days per period (by first day): a row of a
/// missing organization, a row that does not start a period of its organization's rule, a
/// total below its days' sum. Both backends' `check()` use it.
pub(crate) fn period_problems(
    rules: &BTreeMap<String, crate::model::period::QuotaPeriod>,
    period_days: &BTreeMap<(String, u32), u64>,
    periods: &[(String, u32, u64)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut totals: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for (org, start, total) in periods {
        match rules.get(org) {
            None => problems.push(format!("usage_period: row of missing organization {org}")),
            Some(rule) if super::Span::of(*rule, *start).start != *start => problems.push(format!(
                "usage_period: {org} day {start} does not start a period of its rule"
            )),
            Some(_) => {}
        }
        totals.insert((org.as_str(), *start), *total);
    }
    for ((org, start), days) in period_days {
        let total = totals.get(&(org.as_str(), *start)).copied().unwrap_or(0);
        if total < *days {
            problems.push(format!(
                "usage_period: {org} period from day {start} holds {total}, its days sum to {days}"
            ));
        }
    }
    problems
}

//! Whole-database reads on PostgreSQL: `check` (every stored counter and cross-table rule
//! recomputed in SQL) and `export` (every record, in key order, as the embedded backend
//! writes them).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use super::rows::{
    audit_of, day_of, get, invitation_of, membership_of, org_of, override_of, period_of,
    project_membership_of, project_of, resource_of, unsigned, user_of, Query, INVITATION_SELECT,
    MEMBERSHIP_SELECT, ORG_SELECT, PROJECT_SELECT, RESOURCE_SELECT,
};
use crate::error::{Error, Result};
use crate::model::transfer::{AuditFeeds, Record};
use crate::model::user::search_terms;
use crate::store::transfer::{day_record, EXPORT_VERSION};
use crate::store::{day_number, CheckReport, Span};

/// Queries whose every row is one problem, as text.
const PROBLEMS: &[&str] = &[
    // Counters on the organization row against the rows they count.
    "SELECT 'org counters: ' || o.id || ' holds ' || o.count_owner || '/' || o.count_admin
            || '/' || o.count_member || '/' || o.count_viewer || ' (owner/admin/member/viewer)'
            || ', active rows say ' || coalesce(m.owners, 0) || '/' || coalesce(m.admins, 0) || '/'
            || coalesce(m.members, 0) || '/' || coalesce(m.viewers, 0)
     FROM organizations o LEFT JOIN (
        SELECT organization_id,
            count(*) FILTER (WHERE role = 'owner') AS owners,
            count(*) FILTER (WHERE role = 'admin') AS admins,
            count(*) FILTER (WHERE role = 'member') AS members,
            count(*) FILTER (WHERE role = 'viewer') AS viewers
        FROM memberships WHERE NOT deactivated GROUP BY organization_id) m
        ON m.organization_id = o.id
     WHERE (o.count_owner, o.count_admin, o.count_member, o.count_viewer)
        <> (coalesce(m.owners, 0), coalesce(m.admins, 0), coalesce(m.members, 0),
            coalesce(m.viewers, 0))",
    "SELECT 'organization ' || id || ' has no active owner' FROM organizations o
     WHERE NOT EXISTS (SELECT 1 FROM memberships m
                       WHERE m.organization_id = o.id AND m.role = 'owner'
                         AND NOT m.deactivated)",
    "SELECT 'memberships: ' || id || ' has deactivated ' || deactivated
            || ' but deactivated_at ' || coalesce(deactivated_at::TEXT, 'null')
     FROM memberships WHERE deactivated <> (deactivated_at IS NOT NULL)",
    "SELECT 'org counters: ' || o.id || ' holds ' || o.count_mcp || ' mcps and '
            || o.count_api_key || ' api keys, rows say ' || coalesce(r.mcps, 0) || ' and '
            || coalesce(r.keys, 0)
     FROM organizations o LEFT JOIN (
        SELECT organization_id,
            count(*) FILTER (WHERE kind = 'mcp' AND removed_at IS NULL) AS mcps,
            count(*) FILTER (WHERE kind = 'api_key' AND removed_at IS NULL) AS keys
        FROM resources GROUP BY organization_id) r ON r.organization_id = o.id
     WHERE (o.count_mcp, o.count_api_key) <> (coalesce(r.mcps, 0), coalesce(r.keys, 0))",
    "SELECT 'resources: ' || r.organization_id || ' hands out ' || o.resource_columns
            || ' columns but resource ' || r.id || ' has column ' || r.usage_column
     FROM resources r JOIN organizations o ON o.id = r.organization_id
     WHERE r.usage_column >= o.resource_columns OR r.usage_column < 0",
    "SELECT 'resources: column ' || usage_column || ' used twice in ' || organization_id
     FROM resources GROUP BY organization_id, usage_column HAVING count(*) > 1",
    "SELECT 'resources: ' || id || ' names a missing organization' FROM resources r
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = r.organization_id)",
    "SELECT 'memberships: ' || id || ' names a missing user or organization'
     FROM memberships m
     WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id)
        OR NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = m.organization_id)",
    "SELECT 'invitations: ' || id || ' names a missing organization' FROM invitations i
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = i.organization_id)",
    "SELECT 'invitations: ' || i.id || ' names project ' || i.project_id
            || ' of another or no organization'
     FROM invitations i WHERE i.project_id IS NOT NULL AND i.status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM projects p
                       WHERE p.id = i.project_id AND p.organization_id = i.organization_id)",
    "SELECT 'projects: ' || id || ' names a missing organization' FROM projects p
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = p.organization_id)",
    "SELECT 'project_members: ' || pm.user_id || ' in ' || pm.project_id
            || ' is not a member of the project''s organization'
     FROM project_members pm
     WHERE NOT EXISTS (SELECT 1 FROM projects p
                       WHERE p.id = pm.project_id AND p.organization_id = pm.organization_id)
        OR NOT EXISTS (SELECT 1 FROM memberships m
                       WHERE m.organization_id = pm.organization_id
                         AND m.user_id = pm.user_id)",
    "SELECT 'usage_days: ' || d.organization_id || ' ' || d.day
            || ': resources sum past the total, or columns never handed out'
     FROM usage_days d LEFT JOIN organizations o ON o.id = d.organization_id
     WHERE o.id IS NULL
        OR cardinality(d.by_column) > o.resource_columns
        OR (SELECT coalesce(sum(c), 0) FROM unnest(d.by_column) c) > d.total
        OR EXISTS (SELECT 1 FROM unnest(d.by_column) c WHERE c < 0)",
    "SELECT 'usage_periods: ' || organization_id || ' ' || period_start || '..' || period_end
            || ' is not a period of its quota period'
     FROM usage_periods p
     WHERE period_end < period_start",
    "SELECT 'usage_reservations: ' || id || ' of a missing organization ' || organization_id
     FROM usage_reservations r
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = r.organization_id)",
    "SELECT 'usage_alert_state: row of missing organization ' || organization_id
     FROM usage_alert_state a
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = a.organization_id)",
    "SELECT 'usage_alert_state: ' || a.organization_id || ' threshold ' || a.threshold_percent
            || ' is not one of its thresholds'
     FROM usage_alert_state a JOIN organizations o ON o.id = a.organization_id
     WHERE a.threshold_percent <> ALL (coalesce(o.alert_thresholds, ARRAY[80, 100]))",
    "SELECT 'organizations: ' || id || ' has alert thresholds that are not 1 to 1000 ascending'
     FROM organizations o
     WHERE cardinality(o.alert_thresholds) > 10
        OR EXISTS (SELECT 1 FROM unnest(o.alert_thresholds) WITH ORDINALITY t(p, i)
                   WHERE p NOT BETWEEN 1 AND 1000
                      OR p <= coalesce(o.alert_thresholds[i - 1], 0))",
    "SELECT 'idempotency: key of a missing organization ' || organization_id
     FROM idempotency_keys k
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = k.organization_id)",
    "SELECT 'entitlement_overrides: ' || name || ' of a missing organization ' || organization_id
     FROM entitlement_overrides e
     WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = e.organization_id)",
    // The names `model::entitlement::valid_name` allows, never one of the four seed limits
    // (those live on `organizations`).
    "SELECT 'entitlement_overrides: bad name ' || quote_literal(name) || ' of ' || organization_id
     FROM entitlement_overrides
     WHERE name !~ '^[a-z][a-z0-9_]{0,63}$'
        OR name IN ('mcps', 'api_keys', 'team_members', 'monthly_requests')",
    // Each organization's change feed: its head is its last event; numbers only grow.
    "SELECT 'audit: ' || h.organization_id || ' feed head ' || h.seq || ', last event '
            || coalesce(max(e.seq), 0)
     FROM audit_heads h LEFT JOIN audit_events e ON e.organization_id = h.organization_id
     GROUP BY h.organization_id, h.seq HAVING h.seq <> coalesce(max(e.seq), 0)",
    "SELECT 'audit: events of ' || organization_id || ' without a feed head'
     FROM audit_events e
     WHERE NOT EXISTS (SELECT 1 FROM audit_heads h WHERE h.organization_id = e.organization_id)
     GROUP BY organization_id",
];

const TOTALS: &str = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM organizations),
    (SELECT count(*) FROM memberships), (SELECT count(*) FROM invitations),
    (SELECT count(*) FROM projects), (SELECT count(*) FROM resources),
    (SELECT count(*) FROM audit_events) + (SELECT count(*) FROM user_audit_events)";

/// Problems that depend on the time: nobody is counted twice, so a member holds no
/// invitation of the same organization that is still pending (not past its expiry).
const PROBLEMS_AT: &[&str] = &[
    "SELECT 'invitations: ' || i.id || ' is pending for ' || i.email
        || ', already a member of ' || i.organization_id
     FROM invitations i JOIN users u ON u.email = i.email
     JOIN memberships m ON m.organization_id = i.organization_id AND m.user_id = u.id
     WHERE i.status = 'pending' AND i.expires_at > $1",
];

pub(super) fn check(tx: &dyn Query, now: DateTime<Utc>) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let rows = PROBLEMS
        .iter()
        .map(|sql| tx.query(sql, &[]))
        .chain(PROBLEMS_AT.iter().map(|sql| tx.query(sql, &[&now])));
    for found in rows {
        for row in found? {
            if report.problems.len() < 1_000 {
                report.problems.push(get(&row, 0)?);
            }
        }
    }
    search_terms_problems(tx, &mut report.problems)?;
    period_problems(tx, &mut report.problems)?;
    let totals = tx.query(TOTALS, &[])?;
    let row = totals
        .first()
        .ok_or_else(|| Error::storage("the totals query returned no row"))?;
    let n = |i| -> Result<u64> { unsigned(get(row, i)?) };
    report.users = n(0)?;
    report.organizations = n(1)?;
    report.memberships = n(2)?;
    report.invitations = n(3)?;
    report.projects = n(4)?;
    report.resources = n(5)?;
    report.audit_events = n(6)?;
    Ok(report)
}

/// Period totals against the day rows, by each organization's rule (computed here, as on the
/// embedded backend: `store::check::period_problems`), and each row's last day against its
/// rule.
fn period_problems(tx: &dyn Query, problems: &mut Vec<String>) -> Result<()> {
    let mut rules = BTreeMap::new();
    for r in tx.query(
        "SELECT id, quota_period, billing_anchor FROM organizations",
        &[],
    )? {
        let id: String = get(&r, 0)?;
        rules.insert(id, period_of(get(&r, 1)?, get(&r, 2)?)?);
    }
    let mut period_days: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for r in tx.query("SELECT organization_id, day, total FROM usage_days", &[])? {
        let org: String = get(&r, 0)?;
        let day = day_number(get::<NaiveDate>(&r, 1)?);
        let rule = rules.get(&org).copied().unwrap_or_default();
        let sum = period_days
            .entry((org, Span::of(rule, day).start))
            .or_default();
        *sum = sum.saturating_add(unsigned(get(&r, 2)?)?);
    }
    let mut periods = Vec::new();
    for r in tx.query(
        "SELECT organization_id, period_start, period_end, total FROM usage_periods",
        &[],
    )? {
        let org: String = get(&r, 0)?;
        let start = day_number(get::<NaiveDate>(&r, 1)?);
        let end = day_number(get::<NaiveDate>(&r, 2)?);
        if let Some(rule) = rules.get(&org) {
            if Span::of(*rule, start).end != end {
                problems.push(format!(
                    "usage_periods: {org} period from day {start} ends on day {end}, not as its \
                     rule does"
                ));
            }
        }
        periods.push((org, start, unsigned(get(&r, 3)?)?));
    }
    problems.extend(crate::store::check::period_problems(
        &rules,
        &period_days,
        &periods,
    ));
    Ok(())
}

/// The search-term tables hold exactly the terms orgdb computes (the server cannot: its
/// `lower()` follows its locale): `member_terms` those of every membership's user,
/// `org_terms` and `user_terms` those of every organization and user.
fn search_terms_problems(tx: &dyn Query, problems: &mut Vec<String>) -> Result<()> {
    // (table, rows: key columns then the two texts the terms come from, stored terms by key)
    const SETS: [(&str, &str, &str); 3] = [
        (
            "member_terms",
            "SELECT m.organization_id || '/' || m.user_id, u.email, u.name
             FROM memberships m JOIN users u ON u.id = m.user_id",
            "SELECT organization_id || '/' || user_id, array_agg(term ORDER BY term)
             FROM member_terms GROUP BY organization_id, user_id",
        ),
        (
            "org_terms",
            "SELECT id, slug, name FROM organizations",
            "SELECT organization_id, array_agg(term ORDER BY term)
             FROM org_terms GROUP BY organization_id",
        ),
        (
            "user_terms",
            "SELECT id, email, name FROM users",
            "SELECT user_id, array_agg(term ORDER BY term) FROM user_terms GROUP BY user_id",
        ),
    ];
    for (table, rows, stored) in SETS {
        let mut expected = std::collections::BTreeMap::new();
        for r in tx.query(rows, &[])?.iter() {
            let mut terms = search_terms(&get::<String>(r, 1)?, &get::<String>(r, 2)?);
            terms.sort();
            expected.insert(get::<String>(r, 0)?, terms);
        }
        let mut found = std::collections::BTreeMap::new();
        for r in tx.query(stored, &[])?.iter() {
            found.insert(get::<String>(r, 0)?, get::<Vec<String>>(r, 1)?);
        }
        for (key, terms) in &expected {
            if found.get(key) != Some(terms) && problems.len() < 1_000 {
                problems.push(format!(
                    "{table}: {key} has {:?}, expected {terms:?}",
                    found.get(key)
                ));
            }
        }
        for key in found.keys().filter(|k| !expected.contains_key(*k)) {
            if problems.len() < 1_000 {
                problems.push(format!("{table}: terms of {key}, which is not there"));
            }
        }
    }
    Ok(())
}

macro_rules! each {
    ($tx:expr, $sql:expr, |$row:ident| $body:expr) => {
        for $row in $tx.query($sql, &[])?.iter() {
            $body;
        }
    };
}

pub(super) fn export(tx: &dyn Query, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<u64> {
    let mut n = 0u64;
    let mut out = |r: Record| -> Result<()> {
        n += 1;
        visit(r)
    };
    // The highest number any feed handed out (informative: a single-feed database that
    // imports this renumbers every event, as `audit_feeds` tells it to, and continues after
    // the last one; another PostgreSQL database keeps each feed's numbers).
    let highest = tx
        .query(
            "SELECT greatest(
                (SELECT coalesce(max(seq), 0) FROM audit_heads),
                (SELECT coalesce(max(value), 0) FROM orgdb_meta WHERE name = 'user_audit_seq'))",
            &[],
        )?
        .first()
        .map(|r| get::<i64>(r, 0))
        .transpose()?
        .unwrap_or(0);
    let pruned = tx
        .query(
            "SELECT value FROM orgdb_meta WHERE name = $1",
            &[&crate::store::USAGE_PRUNED_BEFORE],
        )?
        .first()
        .map(|r| get::<i64>(r, 0).and_then(unsigned))
        .transpose()?;
    out(Record::Header {
        schema_version: EXPORT_VERSION,
        audit_seq: unsigned(highest)?,
        audit_feeds: AuditFeeds::PerOrganization,
        usage_pruned_before: crate::store::transfer::pruned_before(pruned),
    })?;
    each!(
        tx,
        "SELECT id, email, name, created_at, last_active FROM users ORDER BY id",
        |r| out(Record::User(user_of(r)?))?
    );
    each!(tx, sql!(ORG_SELECT, " ORDER BY id"), |r| {
        let o = org_of(r)?;
        out(Record::Organization {
            organization: Box::new(o.org),
            limit_overrides: o.overrides,
            quota_period: o.period,
            usage_alerts: o.alerts,
        })?
    });
    each!(
        tx,
        "SELECT organization_id, name, kind, enabled, limit_value FROM entitlement_overrides
         ORDER BY organization_id, name",
        |r| out(Record::EntitlementOverride {
            organization_id: get(r, 0)?,
            name: get(r, 1)?,
            value: override_of(r, 2)?,
        })?
    );
    each!(
        tx,
        sql!(MEMBERSHIP_SELECT, " ORDER BY organization_id, user_id"),
        |r| out(Record::Membership(membership_of(r)?))?
    );
    each!(tx, sql!(PROJECT_SELECT, " ORDER BY id"), |r| out(
        Record::Project(project_of(r)?)
    )?);
    each!(
        tx,
        "SELECT project_id, user_id, role, added_at, updated_at FROM project_members
         ORDER BY project_id, user_id",
        |r| out(Record::ProjectMember(project_membership_of(r)?))?
    );
    let mut column_ids: HashMap<(String, u32), String> = HashMap::new();
    each!(tx, sql!(RESOURCE_SELECT, " ORDER BY id"), |r| {
        let rec = resource_of(r)?;
        column_ids.insert(
            (rec.resource.organization_id.clone(), rec.column),
            rec.resource.id.clone(),
        );
        out(Record::Resource(rec.resource))?
    });
    each!(tx, sql!(INVITATION_SELECT, " ORDER BY id"), |r| {
        let i = invitation_of(r)?;
        out(Record::Invitation {
            invitation: i.invitation,
            lifetime_secs: i.lifetime_secs,
        })?
    });
    each!(
        tx,
        "SELECT organization_id, period_start, period_end, total FROM usage_periods
         ORDER BY organization_id, period_start",
        |r| {
            out(Record::UsagePeriod {
                organization_id: get(r, 0)?,
                period_start: get(r, 1)?,
                period_end: get(r, 2)?,
                total: unsigned(get(r, 3)?)?,
            })?
        }
    );
    each!(
        tx,
        "SELECT id, organization_id, count, resource_id, created_at, expires_at, period_start,
            period_end FROM usage_reservations ORDER BY organization_id, id",
        |r| out(Record::Reservation(super::rows::reservation_of(r)?))?
    );
    each!(
        tx,
        "SELECT organization_id, period_start, period_end, threshold_percent, limit_value
         FROM usage_alert_state
         ORDER BY organization_id, period_start, period_end, threshold_percent",
        |r| {
            out(Record::UsageAlertFired {
                organization_id: get(r, 0)?,
                period_start: get(r, 1)?,
                period_end: get(r, 2)?,
                threshold_percent: u32::try_from(get::<i64>(r, 3)?)
                    .map_err(|_| Error::corrupted("usage_alert_state: threshold out of range"))?,
                limit: unsigned(get(r, 4)?)?,
            })?
        }
    );
    each!(
        tx,
        "SELECT organization_id, day, total, by_column FROM usage_days
         ORDER BY organization_id, day",
        |r| {
            let organization_id: String = get(r, 0)?;
            let date: NaiveDate = get(r, 1)?;
            let row = day_of(r, 2)?;
            out(day_record(&column_ids, organization_id, date, &row)?)?
        }
    );
    each!(
        tx,
        "SELECT organization_id, key, recorded_at FROM idempotency_keys
         ORDER BY organization_id, key",
        |r| out(Record::IdempotencyKey {
            organization_id: get(r, 0)?,
            key: get(r, 1)?,
            recorded_at: get(r, 2)?,
        })?
    );
    each!(
        tx,
        "SELECT seq, id, at, actor, action, target, details FROM user_audit_events
         ORDER BY seq",
        |r| out(Record::AuditEvent(audit_of(r, None)?))?
    );
    each!(
        tx,
        "SELECT seq, id, at, actor, action, target, details, organization_id
         FROM audit_events ORDER BY organization_id, seq",
        |r| out(Record::AuditEvent(audit_of(r, Some(get(r, 7)?))?))?
    );
    Ok(n)
}

//! The PostgreSQL schema: plain tables with named, typed columns, created and upgraded by
//! versioned migrations that run at open.
//!
//! Every statement is idempotent (`IF NOT EXISTS`) and runs on its own, because CockroachDB
//! commits an open transaction before DDL and YugabyteDB runs DDL outside transactions: a
//! migration that stops half-way is finished by the next open. The version row is written
//! last. Primary keys lead with the organization id (range-sharded engines keep a tenant's rows
//! together); ids are time-ordered ULIDs, so they never lead a key.

use super::client::Client;

use crate::error::{Error, Result};
use crate::model::user::search_terms;

use super::pg_err;

/// The schema version this build writes. A database of a newer version is refused.
pub(crate) const SCHEMA_VERSION: i64 = 6;

/// Versions 1 to 4: a usage total per calendar month (`month` is yyyymm); version 5 moves the
/// rows to `usage_periods`.
const USAGE_MONTHS: &str = r#"CREATE TABLE IF NOT EXISTS usage_months (
        organization_id TEXT COLLATE "C" NOT NULL,
        month INTEGER NOT NULL,
        total BIGINT NOT NULL,
        PRIMARY KEY (organization_id, month)
    )"#;

/// Version 1: every entity of SPEC section 2, usage counters and the audit change feed.
const V1: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS orgdb_meta (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE IF NOT EXISTS users (
        id TEXT COLLATE "C" PRIMARY KEY,
        email TEXT COLLATE "C" NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        last_active TIMESTAMPTZ
    )"#,
    // Counters (members by role, resources, usage columns handed out) live on the row, kept by
    // the writers in the same transaction, so a seat or resource check reads one row. Keys and
    // ids compare byte-wise (`COLLATE "C"`), whatever the database's locale: list orders and
    // cursors are the same as on the embedded backend.
    r#"CREATE TABLE IF NOT EXISTS organizations (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT COLLATE "C" NOT NULL UNIQUE,
        external_id TEXT COLLATE "C" UNIQUE,
        description TEXT,
        plan TEXT NOT NULL,
        address_line1 TEXT,
        address_line2 TEXT,
        city TEXT,
        state TEXT,
        zipcode TEXT,
        country TEXT,
        pin_protection BOOLEAN NOT NULL,
        settings JSONB NOT NULL,
        metadata JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        limit_mcps BIGINT,
        limit_api_keys BIGINT,
        limit_team_members BIGINT,
        limit_monthly_requests BIGINT,
        count_owner BIGINT NOT NULL DEFAULT 0,
        count_admin BIGINT NOT NULL DEFAULT 0,
        count_member BIGINT NOT NULL DEFAULT 0,
        count_viewer BIGINT NOT NULL DEFAULT 0,
        count_mcp BIGINT NOT NULL DEFAULT 0,
        count_api_key BIGINT NOT NULL DEFAULT 0,
        resource_columns INTEGER NOT NULL DEFAULT 0
    )"#,
    r#"CREATE TABLE IF NOT EXISTS memberships (
        organization_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        role TEXT NOT NULL,
        joined_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, user_id)
    )"#,
    r#"CREATE INDEX IF NOT EXISTS memberships_by_join
        ON memberships (organization_id, joined_at, user_id)"#,
    r#"CREATE INDEX IF NOT EXISTS memberships_by_role
        ON memberships (organization_id, role, joined_at, user_id)"#,
    r#"CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id, organization_id)"#,
    // `status` is the stored status; `expired` is derived from `expires_at` when read.
    r#"CREATE TABLE IF NOT EXISTS invitations (
        organization_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        email TEXT COLLATE "C" NOT NULL,
        role TEXT NOT NULL,
        project_id TEXT COLLATE "C",
        project_role TEXT,
        status TEXT NOT NULL,
        invited_by TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        accepted_at TIMESTAMPTZ,
        token_hash BYTEA NOT NULL UNIQUE,
        lifetime_secs BIGINT NOT NULL,
        PRIMARY KEY (organization_id, id)
    )"#,
    r#"CREATE UNIQUE INDEX IF NOT EXISTS invitations_pending
        ON invitations (organization_id, email) WHERE status = 'pending'"#,
    r#"CREATE INDEX IF NOT EXISTS invitations_by_status
        ON invitations (organization_id, status, id)"#,
    r#"CREATE INDEX IF NOT EXISTS invitations_pending_by_email
        ON invitations (email) WHERE status = 'pending'"#,
    r#"CREATE INDEX IF NOT EXISTS invitations_by_project
        ON invitations (project_id) WHERE project_id IS NOT NULL"#,
    r#"CREATE TABLE IF NOT EXISTS projects (
        organization_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, id)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS project_members (
        organization_id TEXT COLLATE "C" NOT NULL,
        project_id TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        role TEXT NOT NULL,
        added_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, project_id, user_id)
    )"#,
    r#"CREATE UNIQUE INDEX IF NOT EXISTS project_members_by_project
        ON project_members (project_id, user_id)"#,
    r#"CREATE INDEX IF NOT EXISTS project_members_by_user
        ON project_members (organization_id, user_id, project_id)"#,
    // `usage_column` is the resource's position in `usage_days.by_column` (1-based there).
    r#"CREATE TABLE IF NOT EXISTS resources (
        organization_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        removed_at TIMESTAMPTZ,
        usage_column INTEGER NOT NULL,
        PRIMARY KEY (organization_id, id)
    )"#,
    r#"CREATE INDEX IF NOT EXISTS resources_by_kind ON resources (organization_id, kind, id)"#,
    USAGE_MONTHS,
    // `by_column[resources.usage_column + 1]` is that resource's count on the day; events
    // without a resource are `total` minus the sum.
    r#"CREATE TABLE IF NOT EXISTS usage_days (
        organization_id TEXT COLLATE "C" NOT NULL,
        day DATE NOT NULL,
        total BIGINT NOT NULL,
        by_column BIGINT[] NOT NULL,
        PRIMARY KEY (organization_id, day)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS idempotency_keys (
        organization_id TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, key)
    )"#,
    // Each organization's change feed is numbered 1, 2, 3… without gaps by its own counter row
    // (`audit_heads`), so no row is shared by every tenant's writes. Events outside any
    // organization (users) have their own feed, numbered by `orgdb_meta.user_audit_seq`.
    r#"CREATE TABLE IF NOT EXISTS audit_heads (
        organization_id TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE IF NOT EXISTS audit_events (
        organization_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details JSONB NOT NULL,
        PRIMARY KEY (organization_id, seq)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS user_audit_events (
        seq BIGINT PRIMARY KEY,
        id TEXT COLLATE "C" NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details JSONB NOT NULL
    )"#,
];

/// Version 2: leases of buffered usage quota (`ledger/lease.rs`): what each process (holder)
/// reserved of an organization's month and until when (the server's clock). Transient: not
/// exported.
const V2: &[&str] = &[r#"CREATE TABLE IF NOT EXISTS usage_leases (
        organization_id TEXT COLLATE "C" NOT NULL,
        month INTEGER NOT NULL,
        holder TEXT COLLATE "C" NOT NULL,
        amount BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, month, holder)
    )"#];

/// Version 3: member deactivation and search. `deactivated_at` is null while a member is active; the
/// list indexes order the active members before the deactivated ones (`deactivated` after the
/// organization, or after its role), so every status filter and the list of
/// all members page from an index. The counters on the organization row count active members
/// only.
const V3: &[&str] = &[
    // `deactivated` is `deactivated_at IS NOT NULL`, kept by the writers as a column of its
    // own (check() verifies it): the list indexes lead with it, and an index-only scan can
    // cut a page from an index of plain columns, not from one of an expression.
    "ALTER TABLE memberships ADD COLUMN IF NOT EXISTS deactivated_at TIMESTAMPTZ",
    "ALTER TABLE memberships ADD COLUMN IF NOT EXISTS deactivated BOOLEAN NOT NULL DEFAULT false",
    r#"CREATE INDEX IF NOT EXISTS memberships_by_status_join
        ON memberships (organization_id, deactivated, joined_at, user_id)"#,
    r#"CREATE INDEX IF NOT EXISTS memberships_by_status_role
        ON memberships (organization_id, role, deactivated, joined_at, user_id)"#,
    "DROP INDEX IF EXISTS memberships_by_join",
    "DROP INDEX IF EXISTS memberships_by_role",
    // Member search: each membership's search terms (`model::user::search_terms`: the email,
    // the whole name, each later word of the name, lower-cased by orgdb, not by the server's
    // locale), so a prefix is one range of the primary key. Filled by `fill_member_terms`.
    r#"CREATE TABLE IF NOT EXISTS member_terms (
        organization_id TEXT COLLATE "C" NOT NULL,
        term TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (organization_id, term, user_id)
    )"#,
    r#"CREATE INDEX IF NOT EXISTS member_terms_by_user ON member_terms (organization_id, user_id)"#,
    // The system lists' search: the terms of every organization (slug, name) and user
    // (email, name). A row per term, so no row is every writer's.
    r#"CREATE TABLE IF NOT EXISTS org_terms (
        term TEXT COLLATE "C" NOT NULL,
        organization_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (term, organization_id)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS user_terms (
        term TEXT COLLATE "C" NOT NULL,
        user_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (term, user_id)
    )"#,
];

/// Version 4: an organization's overrides of named limits and features (`entitlement`). A
/// feature override has `enabled`; a limit override has `limit_value`, NULL when unlimited.
/// The four seed limits keep their columns on `organizations`.
const V4: &[&str] = &[r#"CREATE TABLE IF NOT EXISTS entitlement_overrides (
        organization_id TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('feature', 'limit')),
        enabled BOOLEAN,
        limit_value BIGINT CHECK (limit_value >= 0),
        PRIMARY KEY (organization_id, name),
        CHECK ((kind = 'feature') = (enabled IS NOT NULL)),
        CHECK (kind = 'limit' OR limit_value IS NULL)
    )"#];

/// Version 5: quota periods. An organization's quota resets by `quota_period`
/// (`calendar_month`, `day`, `week`, `year`, or `anchored` monthly from `billing_anchor`'s
/// day); `usage_periods` holds a total per period (its first and last day), replacing
/// `usage_months` (yyyymm), whose rows become the calendar months they were. Leases are keyed
/// by the period's first day: the data step (`rekey_usage_leases`) makes their table again.
const V5: &[&str] = &[
    "ALTER TABLE organizations ADD COLUMN IF NOT EXISTS quota_period TEXT NOT NULL
        DEFAULT 'calendar_month'",
    "ALTER TABLE organizations ADD COLUMN IF NOT EXISTS billing_anchor DATE",
    "ALTER TABLE organizations DROP CONSTRAINT IF EXISTS organizations_quota_period",
    "ALTER TABLE organizations ADD CONSTRAINT organizations_quota_period CHECK (
        quota_period IN ('calendar_month', 'day', 'week', 'year', 'anchored')
        AND (quota_period = 'anchored') = (billing_anchor IS NOT NULL))",
    r#"CREATE TABLE IF NOT EXISTS usage_periods (
        organization_id TEXT COLLATE "C" NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        total BIGINT NOT NULL CHECK (total >= 0),
        PRIMARY KEY (organization_id, period_start),
        CHECK (period_end >= period_start)
    )"#,
    // Made again if a re-run finds it dropped already (the data step copies nothing then).
    USAGE_MONTHS,
];

/// Version 5's lease table, keyed by the period's first day.
const USAGE_LEASES: &str = r#"CREATE TABLE IF NOT EXISTS usage_leases (
        organization_id TEXT COLLATE "C" NOT NULL,
        period_start DATE NOT NULL,
        holder TEXT COLLATE "C" NOT NULL,
        amount BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (organization_id, period_start, holder)
    )"#;

/// Version 6: usage alerts and reservations. An organization's thresholds in percent of `monthly_requests`,
/// ascending (NULL: the defaults, 80 and 100); each announcement: the period, the threshold
/// and the limit it was reached under, so that it is announced once per period and limit.
const V6: &[&str] = &[
    "ALTER TABLE organizations ADD COLUMN IF NOT EXISTS alert_thresholds INTEGER[]",
    r#"CREATE TABLE IF NOT EXISTS usage_alert_state (
        organization_id TEXT COLLATE "C" NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        threshold_percent BIGINT NOT NULL CHECK (threshold_percent BETWEEN 1 AND 1000),
        limit_value BIGINT NOT NULL CHECK (limit_value > 0),
        PRIMARY KEY (organization_id, period_start, period_end, threshold_percent)
    )"#,
    // Usage reservations: quota held until committed, released or `expires_at` (the
    // database handle's clock); they count against every period of the organization.
    r#"CREATE TABLE IF NOT EXISTS usage_reservations (
        organization_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        count BIGINT NOT NULL CHECK (count > 0),
        resource_id TEXT COLLATE "C",
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        PRIMARY KEY (organization_id, id)
    )"#,
];

/// The migrations in order: `MIGRATIONS[n]` takes a database from version `n` to `n + 1`.
const MIGRATIONS: &[&[&str]] = &[V1, V2, V3, V4, V5, V6];

/// Creates or upgrades the schema, one idempotent statement at a time, then records the
/// version. A database written by a newer orgdb is `incompatible_version`.
pub(crate) fn migrate(client: &mut Client) -> Result<()> {
    let found = current_version(client)?;
    if found > SCHEMA_VERSION {
        return Err(Error::IncompatibleVersion {
            format: "database",
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION as u32,
        });
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        for statement in *statements {
            client.batch_execute(statement).map_err(pg_err)?;
        }
        let to = from as i64 + 1;
        if to == 3 {
            fill_member_terms(client)?;
        }
        if to == 5 {
            fill_usage_periods(client)?;
            rekey_usage_leases(client)?;
        }
        client
            .execute(
                "INSERT INTO orgdb_meta (name, value) VALUES ('schema_version', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&to],
            )
            .map_err(pg_err)?;
    }
    Ok(())
}

/// Version 5's data step: every `usage_months` row (yyyymm) becomes the `usage_periods` row of
/// its calendar month (first and last day computed here: no date function of the server is
/// needed), then the old table goes. Idempotent: rows already copied are kept, and a re-run
/// after the drop finds the empty table the statements made again.
fn fill_usage_periods(client: &mut Client) -> Result<()> {
    let rows = client
        .query(
            "SELECT organization_id, month, total FROM usage_months",
            &[],
        )
        .map_err(pg_err)?;
    let (mut orgs, mut starts, mut ends, mut totals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        let (org, month, total): (String, i32, i64) = (r.get(0), r.get(1), r.get(2));
        let first = chrono::NaiveDate::from_ymd_opt(month / 100, (month % 100) as u32, 1)
            .ok_or_else(|| Error::corrupted(format!("usage_months: month {month} of {org}")))?;
        let last = first
            .checked_add_months(chrono::Months::new(1))
            .and_then(|d| d.pred_opt())
            .ok_or_else(|| Error::corrupted(format!("usage_months: month {month} of {org}")))?;
        orgs.push(org);
        starts.push(first);
        ends.push(last);
        totals.push(total);
    }
    client
        .execute(
            "INSERT INTO usage_periods (organization_id, period_start, period_end, total)
             SELECT * FROM unnest($1::TEXT[], $2::DATE[], $3::DATE[], $4::BIGINT[])
             ON CONFLICT (organization_id, period_start) DO NOTHING",
            &[&orgs, &starts, &ends, &totals],
        )
        .map_err(pg_err)?;
    client
        .batch_execute("DROP TABLE IF EXISTS usage_months")
        .map_err(pg_err)?;
    Ok(())
}

/// Version 5's lease step: a lease table of versions 2 to 4 (keyed by `month`, yyyymm) is
/// made again keyed by `period_start`, its live rows kept as the calendar months they were.
/// Only a table of the old shape is dropped: a second process migrating at the same time, or
/// a re-run after a stop half-way, finds the new table and leaves it and the live leases of
/// the processes already serving alone. (Two first opens racing could still drop the new
/// table in the moment between one's look and its drop, before anything is served; a lease
/// is a reservation, and its holder's next sync writes it again.)
fn rekey_usage_leases(client: &mut Client) -> Result<()> {
    let old_shape: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'usage_leases'
               AND column_name = 'month')",
            &[],
        )
        .map_err(pg_err)?
        .get(0);
    let mut kept = Vec::new();
    if old_shape {
        kept = client
            .query(
                "SELECT organization_id, month, holder, amount, expires_at FROM usage_leases
                 WHERE expires_at > now()",
                &[],
            )
            .map_err(pg_err)?;
        client
            .batch_execute("DROP TABLE IF EXISTS usage_leases")
            .map_err(pg_err)?;
    }
    client.batch_execute(USAGE_LEASES).map_err(pg_err)?;
    for r in &kept {
        let (org, month, holder, amount, expires): (
            String,
            i32,
            String,
            i64,
            chrono::DateTime<chrono::Utc>,
        ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let Some(start) = chrono::NaiveDate::from_ymd_opt(month / 100, (month % 100) as u32, 1)
        else {
            continue;
        };
        client
            .execute(
                "INSERT INTO usage_leases (organization_id, period_start, holder, amount, expires_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&org, &start, &holder, &amount, &expires],
            )
            .map_err(pg_err)?;
    }
    Ok(())
}

/// Version 3's data step: the search terms of every membership, organization and user,
/// computed here (the server's
/// `lower()` follows its locale, and orgdb's terms must match what every backend writes).
/// Idempotent, like the statements: terms already there are kept.
fn fill_member_terms(client: &mut Client) -> Result<()> {
    let rows = client
        .query(
            "SELECT m.organization_id, m.user_id, u.email, u.name
             FROM memberships m JOIN users u ON u.id = m.user_id",
            &[],
        )
        .map_err(pg_err)?;
    for chunk in rows.chunks(5_000) {
        let (mut orgs, mut terms, mut users) = (Vec::new(), Vec::new(), Vec::new());
        for r in chunk {
            let (org, user, email, name): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            for term in search_terms(&email, &name) {
                orgs.push(org.clone());
                terms.push(term);
                users.push(user.clone());
            }
        }
        client
            .execute(
                "INSERT INTO member_terms (organization_id, term, user_id)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])
                 ON CONFLICT DO NOTHING",
                &[&orgs, &terms, &users],
            )
            .map_err(pg_err)?;
    }
    for (select, insert) in [
        (
            "SELECT id, slug, name FROM organizations",
            "INSERT INTO org_terms (term, organization_id)
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[]) ON CONFLICT DO NOTHING",
        ),
        (
            "SELECT id, email, name FROM users",
            "INSERT INTO user_terms (term, user_id)
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[]) ON CONFLICT DO NOTHING",
        ),
    ] {
        let rows = client.query(select, &[]).map_err(pg_err)?;
        for chunk in rows.chunks(5_000) {
            let (mut terms, mut ids) = (Vec::new(), Vec::new());
            for r in chunk {
                let (id, key, name): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                for term in search_terms(&key, &name) {
                    terms.push(term);
                    ids.push(id.clone());
                }
            }
            client.execute(insert, &[&terms, &ids]).map_err(pg_err)?;
        }
    }
    Ok(())
}

/// The recorded version: 0 for a database without orgdb's tables.
fn current_version(client: &mut Client) -> Result<i64> {
    let exists = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'orgdb_meta'",
            &[],
        )
        .map_err(pg_err)?
        .get::<_, i64>(0);
    if exists == 0 {
        return Ok(0);
    }
    let row = client
        .query_opt(
            "SELECT value FROM orgdb_meta WHERE name = 'schema_version'",
            &[],
        )
        .map_err(pg_err)?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0)))
}

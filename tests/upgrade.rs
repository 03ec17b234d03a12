//! Upgrade: database files of every earlier format are kept as fixtures and opened by the
//! current code, which migrates them one version at a time (1 → 2: pending invitation entries
//! carry their expiry, counted member indexes; 2 → 3: invitation status and project indexes,
//! counted invitation indexes; 3 → 4: member deactivation, the indexes of deactivated
//! members; 4 → 5: the entitlement overrides table); a file claiming a newer schema is refused.
//!
//! Fixtures of version 1 (`tests/fixtures/v1/`), written once by `write_fixture` below:
//! - `clean/orgdb.redb`: the database after a clean close (every usage event folded in).
//! - `crashed/orgdb.redb` + `crashed/orgdb.redb.journal`: the same database copied while its
//!   handle was still open, after the last checkpoint: the last three usage events are only in
//!   the journal, and redb must recover a file that was not closed.
//!
//! Both must open to exactly the same content, hard-coded below from what the generator
//! wrote (ids, emails, roles, statuses, usage totals, the audit history).
//!
//! Fixtures of version 2 (`tests/fixtures/v2/`): the same scenario written by the version-2
//! code (other ids), with `expected.jsonl`, its export at the time: both layouts must open to
//! exactly that export (in today's export format), and page their invitations through the
//! version-3 indexes. Fixtures of version 3 (`tests/fixtures/v3/`): the same, written by the
//! version-3 code, and of versions 4, 5 and 6 (`tests/fixtures/v4/`, `v5/` with two
//! entitlement overrides, `v6/` also with a billing anchor), by the code of those versions.
//!
//! Write fixtures of today's format (only when the format changes on purpose, into a new
//! `vN` directory, keeping the old ones and their tests): `ORGDB_WRITE_FIXTURE=1
//! ORGDB_FIXTURE_DIR=tests/fixtures/vN cargo test --test upgrade write_fixture -- --nocapture`,
//! then add the printed constants for the new directory.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use orgdb::{
    Actor, Db, InvitationQuery, InvitationStatus, Limit, LimitOverrides, ManualClock, MemberQuery,
    NewInvitation, NewOrganization, NewProject, NewUser, Options, OrganizationSettings,
    ResourceKind, Role, UsageEvent, UsageQuery,
};

/// The schema version this build writes.
const CURRENT: u64 = 7;

/// The export format this build writes (the header's `schema_version`).
const EXPORT_FORMAT: u64 = 5;

// What the generator wrote into the version-1 fixtures (printed by `write_fixture`).
const OLIVIA: &str = "user_01HKS9K4M07MX2BT4XFPGJK2HW";
const ADAM: &str = "user_01HKS9K4M07MX2BT4XFPGJK2HY";
const MIA: &str = "user_01HKS9K4M07MX2BT4XFPGJK2J0";
const VICTOR: &str = "user_01HKS9K4M07MX2BT4XFPGJK2J2";
const PRIYA: &str = "user_01HKS9K4M07MX2BT4XFPGJK2J4";
const ACME: &str = "org_01HKS9K4M07MX2BT4XFPGJK2J6";
const BETA: &str = "org_01HKSD1080WEA56HQTGD4B7RY8";
const WEBSITE: &str = "proj_01HKSD1080WEA56HQTGD4B7RYB";
const SEARCH: &str = "res_01HKSD1080WEA56HQTGD4B7RYF";
const OLD: &str = "res_01HKSD1080WEA56HQTGD4B7RYH";
const CI_KEY: &str = "res_01HKSD1080WEA56HQTGD4B7RYK";
const INV_ACCEPTED: &str = "inv_01HKSGEVW0DZ1RTJ067ZDGXSK8";
const INV_REVOKED: &str = "inv_01HKSGEVW0DZ1RTJ067ZDGXSKD";
const INV_DECLINED: &str = "inv_01HKSGEVW0DZ1RTJ067ZDGXSKG";
const INV_EXPIRED: &str = "inv_01HKSGEVW0DZ1RTJ067ZDGXSKK";
const INV_PENDING: &str = "inv_01HM4J2S80YQ01DPY9CWKJGEN1";
const PENDING_TOKEN: &str = "df3758b46985f27f7ab2cfb4bbbfe1837021e7c3b7590059900263274b324e25";
const AUDIT_ACTIONS: &[&str] = &[
    "organization.created",
    "member.added",
    "member.added",
    "member.added",
    "member.role_changed",
    "project.created",
    "project.member_added",
    "project.member_added",
    "resource.registered",
    "resource.registered",
    "resource.registered",
    "organization.limits_changed",
    "invitation.created",
    "member.added",
    "invitation.accepted",
    "invitation.created",
    "invitation.revoked",
    "invitation.created",
    "invitation.declined",
    "invitation.created",
    "resource.removed",
    "invitation.created",
];

/// The generator's first instant.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 10, 9, 0, 0).unwrap()
}

/// When the generator stopped, and the clock every test opens the fixture with.
fn t_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0).unwrap()
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn opts(clock: &ManualClock) -> Options {
    Options {
        clock: Arc::new(clock.clone()),
        usage_flush_interval: Duration::from_secs(3600),
        journal_size: 64 * 1024,
        ..Options::default()
    }
}

fn journal_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// Usage per day of the generator, as (search-server, old-server, no resource).
fn day_usage(day: i64) -> (u64, u64, u64) {
    let search = 100 + day as u64;
    let old = if day < 2 { 5 } else { 0 };
    let batch = if day == 3 { 3 + 4 } else { 0 };
    (search + if day == 3 { 2 } else { 0 }, old, 7 + batch)
}

/// Writes the fixtures. Runs only with `ORGDB_WRITE_FIXTURE=1`.
#[test]
fn write_fixture() {
    if std::env::var("ORGDB_WRITE_FIXTURE").as_deref() != Ok("1") {
        return;
    }
    // Today's code writes today's format, so never over an older version's fixtures.
    let out = std::env::var("ORGDB_FIXTURE_DIR")
        .map(PathBuf::from)
        .expect("ORGDB_FIXTURE_DIR: a new directory, e.g. tests/fixtures/v2");
    assert!(
        !["v1", "v2", "v3", "v4", "v5", "v6"]
            .iter()
            .any(|v| out.ends_with(format!("fixtures/{v}"))),
        "the fixtures of older versions are kept as they are"
    );
    std::fs::create_dir_all(out.join("clean")).unwrap();
    std::fs::create_dir_all(out.join("crashed")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("orgdb.redb");
    let clock = ManualClock::new(t0());
    let db = Db::open_with(&path, opts(&clock)).unwrap();
    let mut consts: Vec<(&str, String)> = Vec::new();

    let mut users = Vec::new();
    for (name, email) in [
        ("Olivia Owner", "olivia@example.com"),
        ("Adam Admin", "adam@example.com"),
        ("Mia Member", "mia@example.com"),
        ("Victor Viewer", "victor@example.com"),
        ("Priya Invitee", "priya@example.com"),
    ] {
        let u = db
            .create_user(&NewUser {
                email: email.into(),
                name: name.into(),
            })
            .unwrap();
        users.push(u.id);
    }
    for (c, id) in ["OLIVIA", "ADAM", "MIA", "VICTOR", "PRIYA"]
        .iter()
        .zip(&users)
    {
        consts.push((c, id.clone()));
    }
    let (olivia, adam, mia, victor, priya) =
        (&users[0], &users[1], &users[2], &users[3], &users[4]);
    let acme = db
        .create_organization(
            olivia,
            &NewOrganization {
                name: "Acme Corp".into(),
                external_id: Some("acme-ext-1".into()),
                description: Some("Makes everything".into()),
                plan: Some("team".into()),
                address_line1: Some("1 Main St".into()),
                city: Some("Berlin".into()),
                country: Some("DE".into()),
                settings: Some(OrganizationSettings {
                    pin_protection: true,
                    extra: [("theme".to_owned(), "dark".to_owned())].into(),
                }),
                metadata: [("tier".to_owned(), "gold".to_owned())].into(),
                ..Default::default()
            },
        )
        .unwrap()
        .organization
        .id;
    consts.push(("ACME", acme.clone()));
    let by = Actor::user(olivia);
    clock.advance(TimeDelta::hours(1));
    db.add_member(&by, &acme, adam, "admin").unwrap();
    db.add_member(&by, &acme, mia, "viewer").unwrap();
    db.add_member(&by, &acme, victor, "viewer").unwrap();
    db.update_member_role(&by, &acme, &mia.as_str().into(), "member")
        .unwrap();
    let beta = db
        .create_organization(
            adam,
            &NewOrganization {
                name: "Beta Labs".into(),
                plan: Some("free".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .organization
        .id;
    consts.push(("BETA", beta));
    let website = db
        .create_project(
            &by,
            &acme,
            &NewProject {
                name: "Website".into(),
                description: Some("Marketing site".into()),
            },
        )
        .unwrap()
        .id;
    consts.push(("WEBSITE", website.clone()));
    db.add_project_member(&by, &acme, &website, mia, Some(orgdb::Role::Member.into()))
        .unwrap();
    db.add_project_member(
        &by,
        &acme,
        &website,
        victor,
        Some(orgdb::Role::Viewer.into()),
    )
    .unwrap();
    let search = db
        .register_resource(&by, &acme, ResourceKind::Mcp, "search-server")
        .unwrap()
        .id;
    let old = db
        .register_resource(&by, &acme, ResourceKind::Mcp, "old-server")
        .unwrap()
        .id;
    let ci_key = db
        .register_resource(&by, &acme, ResourceKind::ApiKey, "ci-key")
        .unwrap()
        .id;
    consts.push(("SEARCH", search.clone()));
    consts.push(("OLD", old.clone()));
    consts.push(("CI_KEY", ci_key));
    db.set_limit_overrides(
        &Actor::System,
        &acme,
        &LimitOverrides {
            monthly_requests: Some(Limit::Count(500_000)),
            ..Default::default()
        }
        .into(),
    )
    .unwrap();
    // Entitlement overrides (schema 5 on): a feature and a named limit.
    for (name, value) in [
        ("sso", orgdb::EntitlementValue::Feature { enabled: true }),
        (
            "projects",
            orgdb::EntitlementValue::Limit { limit: Some(9) },
        ),
    ] {
        db.set_entitlement_override(&Actor::System, &acme, name, Some(&value))
            .unwrap();
    }
    // A billing anchor (schema 6 on): periods from the 31st, clamped to short months.
    db.set_billing_anchor(
        &Actor::System,
        &acme,
        orgdb::QuotaPeriod::Anchored {
            anchor: NaiveDate::from_ymd_opt(2023, 12, 31).unwrap(),
        },
    )
    .unwrap();

    let invite = |email: &str, role: &str, secs: Option<u64>| {
        db.create_invitation(
            &by,
            &acme,
            &NewInvitation {
                email: email.into(),
                role: Some(role.into()),
                expires_in: secs.map(std::time::Duration::from_secs),
                ..Default::default()
            },
        )
        .unwrap()
    };
    clock.advance(TimeDelta::hours(1));
    let accepted = invite("priya@example.com", "member", None);
    db.accept_invitation(&accepted.token, priya).unwrap();
    let revoked = invite("revoked@example.com", "viewer", None);
    db.revoke_invitation(&by, &acme, &revoked.invite_id)
        .unwrap();
    let declined = invite("declined@example.com", "member", None);
    db.decline_invitation(&declined.token).unwrap();
    let expired = invite("expired@example.com", "viewer", Some(3_600));
    consts.push(("INV_ACCEPTED", accepted.invite_id));
    consts.push(("INV_REVOKED", revoked.invite_id));
    consts.push(("INV_DECLINED", declined.invite_id));
    consts.push(("INV_EXPIRED", expired.invite_id));

    // Usage on 2024-01-10 .. 2024-01-14, one clock day at a time.
    for day in 0..5i64 {
        clock.set(Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap() + TimeDelta::days(day));
        db.record_usage(
            &acme,
            &UsageEvent::new(100 + day as u64)
                .resource(&search)
                .key(format!("day{day}-a")),
        )
        .unwrap();
        db.record_usage(&acme, &UsageEvent::new(7).key(format!("day{day}-b")))
            .unwrap();
        if day < 2 {
            db.record_usage(
                &acme,
                &UsageEvent::new(5)
                    .resource(&old)
                    .key(format!("day{day}-old")),
            )
            .unwrap();
        }
        if day == 2 {
            db.remove_resource(&by, &acme, &old).unwrap();
        }
        if day == 3 {
            db.record_usage_batch(
                &acme,
                &[
                    UsageEvent::new(3).key("batch-1"),
                    UsageEvent::new(4).key("batch-2"),
                    UsageEvent::new(2).resource(&search).key("batch-3"),
                ],
            )
            .unwrap();
        }
        if day == 4 {
            let dup = db
                .record_usage(&acme, &UsageEvent::new(100).resource(&search).key("day4-a"))
                .unwrap();
            assert!(dup.duplicate);
        }
    }
    // A pending invitation (with a project) that the test accepts with its token.
    clock.set(Utc.with_ymd_and_hms(2024, 1, 14, 18, 0, 0).unwrap());
    let pending = db
        .create_invitation(
            &by,
            &acme,
            &NewInvitation {
                email: "pending@example.com".into(),
                role: Some("member".into()),
                project_id: Some(website.clone()),
                project_role: Some("viewer".into()),
                expires_in: None,
            },
        )
        .unwrap();
    consts.push(("INV_PENDING", pending.invite_id));
    consts.push(("PENDING_TOKEN", pending.token));
    // Checkpoint, then the tail: only in the journal of the `crashed` copy.
    clock.set(Utc.with_ymd_and_hms(2024, 1, 15, 11, 0, 0).unwrap());
    db.flush().unwrap();
    db.record_usage(
        &acme,
        &UsageEvent::new(1_000).resource(&search).key("tail-1"),
    )
    .unwrap();
    db.record_usage_batch(
        &acme,
        &[
            UsageEvent::new(50).key("tail-2"),
            UsageEvent::new(25).resource(&search).key("tail-3"),
        ],
    )
    .unwrap();
    std::fs::copy(&path, out.join("crashed/orgdb.redb")).unwrap();
    std::fs::copy(journal_of(&path), out.join("crashed/orgdb.redb.journal")).unwrap();
    let actions: Vec<String> = db
        .audit_log(&Actor::System, &acme, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    drop(db);
    std::fs::copy(&path, out.join("clean/orgdb.redb")).unwrap();
    // The content as an export (whose format does not change with the layout): a later
    // version's test compares what it reads from these files with it, line for line.
    let db = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap();
    let mut export = Vec::new();
    db.export_jsonl(&mut export).unwrap();
    std::fs::write(out.join("expected.jsonl"), export).unwrap();
    drop(db);
    for (name, value) in consts {
        println!("const {name}: &str = {value:?};");
    }
    println!("const AUDIT_ACTIONS: &[&str] = &{actions:?};");
}

/// Copies a fixture layout into a scratch directory; returns the database path there.
fn copy_fixture(layout: &str, dir: &Path) -> PathBuf {
    let from = fixture_dir().join(layout).join("orgdb.redb");
    let to = dir.join("orgdb.redb");
    std::fs::copy(&from, &to).unwrap();
    if journal_of(&from).exists() {
        std::fs::copy(journal_of(&from), journal_of(&to)).unwrap();
    }
    to
}

/// Asserts every hard-coded value of the fixture.
fn assert_fixture_content(db: &Db) {
    let sys = Actor::System;
    // Users.
    for (id, email, name) in [
        (OLIVIA, "olivia@example.com", "Olivia Owner"),
        (ADAM, "adam@example.com", "Adam Admin"),
        (MIA, "mia@example.com", "Mia Member"),
        (VICTOR, "victor@example.com", "Victor Viewer"),
        (PRIYA, "priya@example.com", "Priya Invitee"),
    ] {
        let u = db.get_user(id).unwrap();
        assert_eq!((u.email.as_str(), u.name.as_str()), (email, name));
        assert_eq!(u.created_at, t0());
        assert_eq!(db.find_user_by_email(email).unwrap().id, id);
    }

    // The organization, with every field, its limits and usage.
    let d = db.get_organization(&sys, ACME).unwrap();
    let o = &d.organization;
    assert_eq!(o.id, ACME);
    assert_eq!(o.name, "Acme Corp");
    assert_eq!(o.slug, "acme-corp");
    assert_eq!(o.external_id.as_deref(), Some("acme-ext-1"));
    assert_eq!(o.description.as_deref(), Some("Makes everything"));
    assert_eq!(o.plan, "team");
    assert_eq!(o.address_line1.as_deref(), Some("1 Main St"));
    assert_eq!(o.address_line2, None);
    assert_eq!(o.city.as_deref(), Some("Berlin"));
    assert_eq!(o.country.as_deref(), Some("DE"));
    assert!(o.settings.pin_protection);
    assert_eq!(o.settings.extra["theme"], "dark");
    assert_eq!(o.metadata["tier"], "gold");
    assert_eq!(o.created_at, t0());
    assert_eq!(d.limits.monthly_requests, Some(500_000), "override kept");
    assert_eq!(d.limits.team_members, Some(25));
    assert_eq!(
        d.usage.team_members, 6,
        "5 members and 1 pending invitation"
    );
    assert_eq!(d.usage.mcps, 1, "old-server removed");
    assert_eq!(d.usage.api_keys, 1);
    assert_eq!(d.usage.monthly_requests, MONTH_TOTAL);
    assert_eq!(
        db.get_organization_by_slug(&sys, "acme-corp")
            .unwrap()
            .organization
            .id,
        ACME
    );
    assert_eq!(
        db.get_organization_by_external_id(&sys, "acme-ext-1")
            .unwrap()
            .organization
            .id,
        ACME
    );

    // Members: every role, in join order.
    let page = db
        .list_members(&sys, ACME, &MemberQuery::default())
        .unwrap();
    let got: Vec<(&str, Role)> = page.data.iter().map(|m| (m.id.as_str(), m.role)).collect();
    assert_eq!(
        got,
        [
            (OLIVIA, Role::Owner),
            (ADAM, Role::Admin),
            (MIA, Role::Member),
            (VICTOR, Role::Viewer),
            (PRIYA, Role::Member),
        ]
    );
    assert_eq!(page.pagination.total, 5);
    let admins = db
        .list_members(
            &sys,
            ACME,
            &MemberQuery {
                role: Some("viewer".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(admins.data.len(), 1);
    let orgs: Vec<String> = db
        .list_organizations_for_user(ADAM)
        .unwrap()
        .into_iter()
        .map(|o| o.organization.id)
        .collect();
    assert_eq!(orgs, [ACME, BETA]);
    let beta = db.get_organization(&sys, BETA).unwrap();
    assert_eq!(
        (
            beta.organization.slug.as_str(),
            beta.organization.plan.as_str()
        ),
        ("beta-labs", "free")
    );

    // Invitations: each status, oldest first.
    let invs = db
        .list_invitations(&sys, ACME, &InvitationQuery::default())
        .unwrap();
    let got: Vec<(&str, &str, InvitationStatus, Role)> = invs
        .data
        .iter()
        .map(|i| (i.id.as_str(), i.email.as_str(), i.status, i.role))
        .collect();
    assert_eq!(
        got,
        [
            (
                INV_ACCEPTED,
                "priya@example.com",
                InvitationStatus::Accepted,
                Role::Member
            ),
            (
                INV_REVOKED,
                "revoked@example.com",
                InvitationStatus::Revoked,
                Role::Viewer
            ),
            (
                INV_DECLINED,
                "declined@example.com",
                InvitationStatus::Declined,
                Role::Member
            ),
            (
                INV_EXPIRED,
                "expired@example.com",
                InvitationStatus::Expired,
                Role::Viewer
            ),
            (
                INV_PENDING,
                "pending@example.com",
                InvitationStatus::Pending,
                Role::Member
            ),
        ]
    );
    let pending = &invs.data[4];
    assert_eq!(pending.project_id.as_deref(), Some(WEBSITE));
    assert_eq!(pending.project_role, Some(Role::Viewer));
    assert_eq!(
        pending.expires_at,
        Utc.with_ymd_and_hms(2024, 1, 21, 18, 0, 0).unwrap()
    );
    let preview = db.get_invitation_by_token(PENDING_TOKEN).unwrap();
    assert_eq!(preview.id, INV_PENDING);
    assert_eq!(preview.organization_name, "Acme Corp");

    // The project and its members.
    let projects = db.list_projects(&sys, ACME).unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(
        (projects[0].id.as_str(), projects[0].name.as_str()),
        (WEBSITE, "Website")
    );
    assert_eq!(projects[0].description.as_deref(), Some("Marketing site"));
    let pm: Vec<(String, Role)> = db
        .list_project_members(&sys, ACME, WEBSITE)
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.role))
        .collect();
    assert_eq!(
        pm,
        [
            (MIA.to_owned(), Role::Member),
            (VICTOR.to_owned(), Role::Viewer)
        ]
    );

    // Resources: the removed one is not listed.
    let live: Vec<(String, String)> = db
        .list_resources(&sys, ACME, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    assert_eq!(
        live,
        [
            (SEARCH.to_owned(), "search-server".to_owned()),
            (CI_KEY.to_owned(), "ci-key".to_owned()),
        ]
    );

    // Usage: the month, each day, each server (the removed one by name).
    let report = db
        .usage_report(
            &sys,
            ACME,
            &UsageQuery {
                period: None,
                start_date: NaiveDate::from_ymd_opt(2024, 1, 1),
                end_date: NaiveDate::from_ymd_opt(2024, 1, 31),
            },
        )
        .unwrap();
    assert_eq!(report.requests.total, MONTH_TOTAL);
    assert_eq!(report.requests.limit, Some(500_000));
    let days: Vec<(u32, u64)> = report
        .by_day
        .iter()
        .filter(|d| d.requests > 0)
        .map(|d| (chrono::Datelike::day(&d.date), d.requests))
        .collect();
    let mut want_days: Vec<(u32, u64)> = (0..5)
        .map(|day| {
            let (s, o, n) = day_usage(day);
            (10 + day as u32, s + o + n)
        })
        .collect();
    want_days.push((15, TAIL_TOTAL));
    assert_eq!(days, want_days);
    let by: Vec<(&str, &str, u64)> = report
        .by_mcp
        .iter()
        .map(|r| (r.mcp_id.as_str(), r.name.as_str(), r.requests))
        .collect();
    let search_total: u64 = (0..5).map(|d| day_usage(d).0).sum::<u64>() + 1_000 + 25;
    assert_eq!(search_total, 1_537);
    assert!(
        by.contains(&(SEARCH, "search-server", search_total)),
        "{by:?}"
    );
    assert!(by.contains(&(OLD, "old-server", 10)), "{by:?}");

    // The audit history, in order, with no gap.
    let log = db.audit_log(&sys, ACME, 0, 1000).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, AUDIT_ACTIONS);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));

    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.users, 5);
    assert_eq!(report.organizations, 2);
}

/// Jan 10-14 (see `day_usage`): search 100..104 + 2, old 5 + 5, no resource 7 a day + 7.
const DAYS_TOTAL: u64 = 510 + 2 + 10 + 35 + 7;
/// The tail (Jan 15): 1 000 + 50 + 25, only in the journal of the `crashed` copy.
const TAIL_TOTAL: u64 = 1_075;
const MONTH_TOTAL: u64 = DAYS_TOTAL + TAIL_TOTAL;

/// After the content checks: the old file takes writes as usual.
fn assert_writable(db: &Db, clock: &ManualClock) {
    // Keys of the last 48 hours are still remembered.
    for key in ["day4-a", "tail-1", "tail-3"] {
        let r = db
            .record_usage(ACME, &UsageEvent::new(1).resource(SEARCH).key(key))
            .unwrap();
        assert!(r.duplicate, "{key}");
    }
    let r = db
        .record_usage(ACME, &UsageEvent::new(5).key("after-upgrade"))
        .unwrap();
    assert!(!r.duplicate);
    assert_eq!(r.used, MONTH_TOTAL + 5);
    // The pending invitation is accepted with the token issued before the upgrade.
    let pending = db
        .create_user(&NewUser {
            email: "pending@example.com".into(),
            name: "Pending".into(),
        })
        .unwrap();
    clock.set(t_end() + TimeDelta::hours(1));
    let m = db.accept_invitation(PENDING_TOKEN, &pending.id).unwrap();
    assert_eq!((m.organization_id.as_str(), m.role), (ACME, Role::Member));
    assert_eq!(
        db.list_project_members(&Actor::System, ACME, WEBSITE)
            .unwrap()
            .len(),
        3
    );
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn open_and_verify(layout: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(layout, dir.path());
    let clock = ManualClock::new(t_end());
    {
        let db = Db::open_with(&path, opts(&clock)).unwrap();
        assert_fixture_content(&db);
    }
    // Opening migrated the file step by step (1 → 2: the pending index carries expiries; the
    // seat count in `assert_fixture_content` and its `check()` read the migrated entries;
    // 2 → 3: the invitation lists there page through the new indexes).
    assert_eq!(schema_version(&path), CURRENT);
    // Once more after a clean close by the current code, then writes.
    let db = Db::open_with(&path, opts(&clock)).unwrap();
    assert_fixture_content(&db);
    assert_writable(&db, &clock);
}

#[test]
fn a_cleanly_closed_v1_file_opens_with_its_exact_content() {
    open_and_verify("clean");
}

#[test]
fn a_v1_file_left_open_recovers_with_its_journal() {
    open_and_verify("crashed");
}

#[test]
fn the_crashed_layout_needs_its_journal_for_the_tail() {
    // Proof that the `crashed` fixture exercises replay: without its journal the database
    // holds only what the last checkpoint folded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orgdb.redb");
    std::fs::copy(fixture_dir().join("crashed/orgdb.redb"), &path).unwrap();
    let db = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap();
    let d = db.get_organization(&Actor::System, ACME).unwrap();
    assert_eq!(d.usage.monthly_requests, DAYS_TOTAL);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn both_fixture_layouts_export_the_same() {
    let export = |layout: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_fixture(layout, dir.path());
        let db = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap();
        let mut out = Vec::new();
        db.export_jsonl(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let clean = export("clean");
    assert_eq!(clean, export("crashed"));
    // The export of an old file imports into the current code unchanged.
    let fresh = Db::in_memory_with(opts(&ManualClock::new(t_end()))).unwrap();
    fresh
        .import_jsonl(clean.as_bytes(), None, &mut |_| {})
        .unwrap();
    let mut again = Vec::new();
    fresh.export_jsonl(&mut again).unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), clean);
}

/// Sets `meta.schema_version` of a closed file directly, as another orgdb version would.
fn set_schema_version(path: &Path, version: u64) {
    let raw = redb::Database::open(path).unwrap();
    let txn = raw.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
        let mut meta = txn.open_table(def).unwrap();
        // A counter: 8 bytes big-endian, then their crc32 (little-endian).
        let mut value = version.to_be_bytes().to_vec();
        value.extend_from_slice(&crc32fast::hash(&version.to_be_bytes()).to_le_bytes());
        meta.insert(&b"schema_version\0"[..], &value[..]).unwrap();
    }
    txn.commit().unwrap();
}

fn schema_version(path: &Path) -> u64 {
    use redb::ReadableDatabase;
    let raw = redb::Database::open(path).unwrap();
    let txn = raw.begin_read().unwrap();
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
    let meta = txn.open_table(def).unwrap();
    let value = meta.get(&b"schema_version\0"[..]).unwrap().unwrap();
    u64::from_be_bytes(value.value()[..8].try_into().unwrap())
}

#[test]
fn a_fixture_claiming_a_newer_schema_is_refused() {
    for (version, found) in [
        (CURRENT + 1, CURRENT as u32 + 1),
        (99, 99),
        (u64::MAX, u32::MAX),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_fixture("clean", dir.path());
        set_schema_version(&path, version);
        let err = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap_err();
        assert_eq!(err.code(), "incompatible_version", "{version}: {err}");
        assert_eq!(err.details()["found"], found);
        assert_eq!(err.details()["supported"], CURRENT);
        assert_eq!(err.http_status(), 500);
        // Refused without touching the data: the newer version's marker is still there.
        assert_eq!(schema_version(&path), version);
    }
    // Version 0 predates the first format: not ours.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("clean", dir.path());
    set_schema_version(&path, 0);
    let err = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap_err();
    assert_eq!(err.code(), "corrupted", "{err}");
}

#[test]
fn damage_in_the_pending_index_does_not_stop_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("clean", dir.path());
    {
        // Version 1 entries: (org, email) -> invitation id + crc32 (LE). One names an
        // invitation that does not exist; one fails its checksum.
        let raw = redb::Database::open(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&[u8], &[u8]> =
                redb::TableDefinition::new("pending_invitations");
            let mut pending = txn.open_table(def).unwrap();
            let key = |email: &str| format!("{ACME}\0{email}\0").into_bytes();
            let id = b"inv_01HM4J2S80YQ01DPY9CWKJGZZZ";
            let dangling = [&id[..], &crc32fast::hash(id).to_le_bytes()].concat();
            pending
                .insert(&key("ghost@example.com")[..], &dangling[..])
                .unwrap();
            let mut damaged = dangling.clone();
            damaged[5] ^= 0x20;
            pending
                .insert(&key("broken@example.com")[..], &damaged[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let clock = ManualClock::new(t_end());
    let db = Db::open_with(&path, opts(&clock)).unwrap();
    // The dangling entry was dropped; the damaged one is reported, not taken for a seat.
    let report = db.check().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("broken@example.com"),
        "{:?}",
        report.problems
    );
    let err = db.get_organization(&Actor::System, ACME).unwrap_err();
    assert_eq!(err.code(), "corrupted", "{err}");
    // Other organizations are untouched.
    assert_eq!(
        db.get_organization(&Actor::System, BETA)
            .unwrap()
            .organization
            .id,
        BETA
    );
    drop(db);
    assert_eq!(
        schema_version(&path),
        CURRENT,
        "migrated despite the damage"
    );
}

/// Opens a fixture layout of `version` (2 or later: the ones with `expected.jsonl`),
/// migrating it to the current version, and returns its export, with the database.
fn open_fixture(version: u64, layout: &str, dir: &Path) -> (Db, String) {
    let from = fixture_root()
        .join(format!("v{version}"))
        .join(layout)
        .join("orgdb.redb");
    let path = dir.join("orgdb.redb");
    std::fs::copy(&from, &path).unwrap();
    if journal_of(&from).exists() {
        std::fs::copy(journal_of(&from), journal_of(&path)).unwrap();
    }
    assert_eq!(
        schema_version(&path),
        version,
        "a version-{version} fixture"
    );
    let db = Db::open_with(&path, opts(&ManualClock::new(t_end()))).unwrap();
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    (db, String::from_utf8(out).unwrap())
}

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The export a fixture of `version` wrote (`vN/expected.jsonl`), in today's export format:
/// export version 2 gave memberships `status` and `deactivated_at`, and every membership an
/// older file holds is active; export version 4 wrote `usage_period` records (first and last
/// day) instead of `usage_month` (every organization of an older file counts calendar
/// months). One JSON value per line.
fn expected_export(version: u64) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(fixture_root().join(format!("v{version}/expected.jsonl"))).unwrap();
    text.lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("header") => v["data"]["schema_version"] = EXPORT_FORMAT.into(),
                Some("membership") => {
                    v["data"]["status"] = "active".into();
                    v["data"]["deactivated_at"] = serde_json::Value::Null;
                }
                Some("usage_month") => v = common::usage_period_of_month(&v),
                _ => {}
            }
            v
        })
        .collect()
}

fn values(export: &str) -> Vec<serde_json::Value> {
    export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A fixture of `version` (both layouts) opens with exactly the content it was written with,
/// and its lists read the indexes of today's format.
fn migrates_with_exact_content(version: u64) {
    let expected = expected_export(version);
    for layout in ["clean", "crashed"] {
        let dir = tempfile::tempdir().unwrap();
        let (db, export) = open_fixture(version, layout, dir.path());
        assert_eq!(
            values(&export),
            expected,
            "{layout}: the content is what version {version} wrote"
        );
        let report = db.check().unwrap();
        assert!(report.is_ok(), "{layout}: {:?}", report.problems);
        // The invitation lists read the indexes the migration built: every status pages
        // to the same invitations that the export holds, in id order.
        let org = db
            .get_organization_by_slug(&Actor::System, "acme-corp")
            .unwrap()
            .organization
            .id;
        let all = db
            .list_invitations(&Actor::System, &org, &InvitationQuery::default())
            .unwrap();
        let mut exported: Vec<(String, String)> = expected
            .iter()
            .filter(|v| {
                v["type"] == "invitation"
                    && v["data"]["invitation"]["organization_id"] == org.as_str()
            })
            .map(|v| {
                let inv = &v["data"]["invitation"];
                (
                    inv["id"].as_str().unwrap().to_owned(),
                    inv["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        exported.sort();
        assert_eq!(all.pagination.total, exported.len() as u64);
        let listed: Vec<String> = all.data.iter().map(|i| i.id.clone()).collect();
        let ids: Vec<String> = exported.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(listed, ids, "{layout}");
        for inv in &all.data {
            let one = db
                .list_invitations(
                    &Actor::System,
                    &org,
                    &InvitationQuery {
                        status: Some(inv.status.as_str().into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(one.data.iter().any(|i| i.id == inv.id), "{layout}: {inv:?}");
            assert!(one.data.iter().all(|i| i.status == inv.status));
        }
        // Every member of an older file is active: the member lists of each status say so.
        let members = |status: &str| {
            db.list_members(
                &Actor::System,
                &org,
                &MemberQuery {
                    status: Some(status.into()),
                    per_page: Some(100),
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let active = members("active");
        let exported_members = expected
            .iter()
            .filter(|v| v["type"] == "membership" && v["data"]["organization_id"] == org.as_str())
            .count() as u64;
        assert_eq!(active.pagination.total, exported_members, "{layout}");
        assert_eq!(members("all").data, active.data, "{layout}");
        assert_eq!(members("deactivated").pagination.total, 0, "{layout}");
        // The migration built the search index: every member is found by their email.
        for m in &active.data {
            let hits = db
                .list_members(
                    &Actor::System,
                    &org,
                    &MemberQuery {
                        search: Some(m.email.to_uppercase()),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(hits.data.len(), 1, "{layout}: {}", m.email);
            assert_eq!(hits.data[0].id, m.id);
        }
        drop(db);
        assert_eq!(schema_version(&dir.path().join("orgdb.redb")), CURRENT);
    }
}

#[test]
fn v2_files_migrate_to_the_current_version_with_their_exact_content() {
    migrates_with_exact_content(2);
}

#[test]
fn v3_files_migrate_to_the_current_version_with_their_exact_content() {
    migrates_with_exact_content(3);
}

#[test]
fn v4_files_migrate_to_the_current_version_with_their_exact_content() {
    migrates_with_exact_content(4);
}

/// Version 5 files hold entitlement overrides; they come through with the rest.
#[test]
fn v5_files_migrate_to_the_current_version_with_their_exact_content() {
    migrates_with_exact_content(5);
}

/// Version 6 files hold an anchored quota period; totals and rule come through with the rest.
#[test]
fn v6_files_migrate_to_the_current_version_with_their_exact_content() {
    migrates_with_exact_content(6);
}

/// A version-3 file takes deactivation at once: a deactivated member moves to the new
/// indexes, frees a seat, and the file checks clean, closed and opened again.
#[test]
fn a_migrated_v3_file_deactivates_and_reactivates() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = open_fixture(3, "clean", dir.path());
    let org = db
        .get_organization_by_slug(&Actor::System, "acme-corp")
        .unwrap()
        .organization
        .id;
    let before = db.get_organization(&Actor::System, &org).unwrap();
    let mia = orgdb::MemberRef::User(db.find_user_by_email("mia@example.com").unwrap().id);
    let off = db.deactivate_member(&Actor::System, &org, &mia).unwrap();
    assert_eq!(off.status, orgdb::MemberStatus::Deactivated);
    let after = db.get_organization(&Actor::System, &org).unwrap();
    assert_eq!(after.usage.team_members + 1, before.usage.team_members);
    assert!(db.check().unwrap().is_ok());
    drop(db);
    let db = Db::open_with(
        dir.path().join("orgdb.redb"),
        opts(&ManualClock::new(t_end())),
    )
    .unwrap();
    let listed = db
        .list_members(
            &Actor::System,
            &org,
            &MemberQuery {
                status: Some("deactivated".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    db.reactivate_member(&Actor::System, &org, &mia).unwrap();
    assert_eq!(
        db.get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .team_members,
        before.usage.team_members
    );
    assert!(db.check().unwrap().is_ok());
}

/// A version-4 file takes entitlement overrides at once (the migration made their table),
/// and keeps them across a reopen.
#[test]
fn a_migrated_v4_file_takes_entitlement_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = open_fixture(4, "crashed", dir.path());
    let org = db
        .get_organization_by_slug(&Actor::System, "acme-corp")
        .unwrap()
        .organization
        .id;
    assert_eq!(
        db.entitlement(&Actor::System, &org, "beta_ui")
            .unwrap_err()
            .code(),
        "not_found"
    );
    let on = orgdb::EntitlementValue::Feature { enabled: true };
    db.set_entitlement_override(&Actor::System, &org, "beta_ui", Some(&on))
        .unwrap();
    drop(db);
    let db = Db::open_with(
        dir.path().join("orgdb.redb"),
        opts(&ManualClock::new(t_end())),
    )
    .unwrap();
    let beta = db.entitlement(&Actor::System, &org, "beta_ui").unwrap();
    assert!(beta.has_access);
    assert_eq!(beta.source, orgdb::EntitlementSource::Override);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn the_fixtures_are_small() {
    for layout in [
        "v1/clean",
        "v1/crashed",
        "v2/clean",
        "v2/crashed",
        "v3/clean",
        "v3/crashed",
        "v4/clean",
        "v4/crashed",
        "v5/clean",
        "v5/crashed",
        "v6/clean",
        "v6/crashed",
    ] {
        let dir = fixture_root().join(layout);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let len = entry.metadata().unwrap().len();
            assert!(len < 2 << 20, "{:?} is {len} bytes", entry.path());
        }
    }
}

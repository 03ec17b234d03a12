//! Entitlements (SPEC section 13): plan features and named limits, per-organization
//! overrides, `entitlement` / `entitlements`, and the `projects` limit. On both backends.

mod common;

use std::collections::BTreeMap;

use common::*;
use orgdb::{
    Actor, Db, EntitlementKind, EntitlementSource, EntitlementValue, Limits, ManualClock,
    NewProject, Options, Plan, PlanCatalog,
};

/// `starter` (2 projects, `audit_export`), `scale` (unlimited projects, `sso`, `seats_sso`
/// 10), `bare` (nothing beyond the seed limits).
fn catalog() -> PlanCatalog {
    let seats = Limits {
        team_members: Some(5),
        ..Limits::default()
    };
    PlanCatalog {
        plans: BTreeMap::from([
            (
                "starter".to_owned(),
                Plan::from(seats)
                    .feature("audit_export")
                    .limit("projects", Some(2)),
            ),
            (
                "scale".to_owned(),
                Plan::from(Limits::default())
                    .feature("sso")
                    .limit("projects", None)
                    .limit("seats_sso", Some(10)),
            ),
            ("bare".to_owned(), Plan::from(seats)),
        ]),
        default_plan: "starter".to_owned(),
    }
}

fn open() -> (Db, ManualClock) {
    let clock = ManualClock::new(start());
    let mut opts = Options::with_clock(clock.clone());
    opts.plans = catalog();
    (db_with(opts), clock)
}

fn project(db: &Db, actor: &Actor, org: &str, name: &str) -> orgdb::Result<orgdb::Project> {
    db.create_project(
        actor,
        org,
        &NewProject {
            name: name.to_owned(),
            ..Default::default()
        },
    )
}

fn feature(enabled: bool) -> EntitlementValue {
    EntitlementValue::Feature { enabled }
}

fn limit(limit: Option<u64>) -> EntitlementValue {
    EntitlementValue::Limit { limit }
}

#[test]
fn features_come_from_the_plan_and_an_override_wins() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "starter");
    let a = actor(&owner);
    let audit = db.entitlement(&a, &org, "audit_export").unwrap();
    assert_eq!(audit.kind, EntitlementKind::Feature);
    assert!(audit.has_access);
    assert_eq!(audit.source, EntitlementSource::Plan);
    assert_eq!(audit.plan, "starter");
    assert_eq!((audit.limit, audit.used), (None, None));
    // `sso` is a feature of another plan: off here, by default.
    let sso = db.entitlement(&a, &org, "sso").unwrap();
    assert!(!sso.has_access);
    assert_eq!(sso.source, EntitlementSource::Default);
    // The operator switches it on for Acme alone.
    let on = db
        .set_entitlement_override(&Actor::System, &org, "sso", Some(&feature(true)))
        .unwrap();
    assert!(on.has_access);
    assert_eq!(on.source, EntitlementSource::Override);
    assert_eq!(db.entitlement(&a, &org, "sso").unwrap(), on);
    let (other, other_owner) = common::org(&db, "Other", "starter");
    assert!(
        !db.entitlement(&actor(&other_owner), &other, "sso")
            .unwrap()
            .has_access
    );
    // An override switches a plan's feature off, and clearing it gives the plan's back.
    db.set_entitlement_override(&Actor::System, &org, "audit_export", Some(&feature(false)))
        .unwrap();
    assert!(!db.entitlement(&a, &org, "audit_export").unwrap().has_access);
    let back = db
        .set_entitlement_override(&Actor::System, &org, "audit_export", None)
        .unwrap();
    assert_eq!(back, audit);
    assert_sound(&db);
}

#[test]
fn the_projects_limit_is_enforced_from_the_plan_and_overrides() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "starter");
    let a = actor(&owner);
    project(&db, &a, &org, "One").unwrap();
    let e = db.entitlement(&a, &org, "projects").unwrap();
    assert_eq!((e.limit, e.used, e.has_access), (Some(2), Some(1), true));
    project(&db, &a, &org, "Two").unwrap();
    let err = assert_err(project(&db, &a, &org, "Three"), "quota_exceeded", None);
    assert_eq!(err.details()["quota"], "projects", "{err:?}");
    assert_eq!(err.details()["limit"], 2, "{err:?}");
    let e = db.entitlement(&a, &org, "projects").unwrap();
    assert_eq!((e.limit, e.used, e.has_access), (Some(2), Some(2), false));
    assert_eq!(
        db.list_projects(&a, &org).unwrap().len(),
        2,
        "nothing written"
    );
    // An override raises it; a lower one refuses again; unlimited lifts it.
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&limit(Some(3))))
        .unwrap();
    project(&db, &a, &org, "Three").unwrap();
    assert_err(project(&db, &a, &org, "Four"), "quota_exceeded", None);
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&limit(None)))
        .unwrap();
    for i in 4..8 {
        project(&db, &a, &org, &format!("P{i}")).unwrap();
    }
    let e = db.entitlement(&a, &org, "projects").unwrap();
    assert_eq!((e.limit, e.used, e.has_access), (None, Some(7), true));
    assert_eq!(e.source, EntitlementSource::Override);
    // A plan without the limit: unlimited, by default.
    let (bare, bare_owner) = common::org(&db, "Bare", "bare");
    for i in 0..4 {
        project(&db, &actor(&bare_owner), &bare, &format!("B{i}")).unwrap();
    }
    let e = db
        .entitlement(&actor(&bare_owner), &bare, "projects")
        .unwrap();
    assert_eq!(e.source, EntitlementSource::Default);
    assert_eq!((e.limit, e.used), (None, Some(4)));
    // Deleting projects makes room again under a lower override.
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&limit(Some(7))))
        .unwrap();
    assert_err(project(&db, &a, &org, "Eight"), "quota_exceeded", None);
    let first = db.list_projects(&a, &org).unwrap()[0].id.clone();
    db.delete_project(&a, &org, &first).unwrap();
    project(&db, &a, &org, "Eight").unwrap();
    assert_sound(&db);
}

#[test]
fn seed_limits_are_entitlements_with_their_usage() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "starter");
    let a = actor(&owner);
    let seats = db.entitlement(&a, &org, "team_members").unwrap();
    assert_eq!(seats.kind, EntitlementKind::Limit);
    assert_eq!((seats.limit, seats.used), (Some(5), Some(1)));
    assert_eq!(seats.source, EntitlementSource::Plan);
    let requests = db.entitlement(&a, &org, "monthly_requests").unwrap();
    assert_eq!((requests.limit, requests.used), (None, Some(0)));
    db.record_usage(&org, &orgdb::UsageEvent::new(7)).unwrap();
    assert_eq!(
        db.entitlement(&a, &org, "monthly_requests").unwrap().used,
        Some(7)
    );
    // An override of a seed limit is the limit override: both views agree.
    let e = db
        .set_entitlement_override(&Actor::System, &org, "team_members", Some(&limit(Some(1))))
        .unwrap();
    assert_eq!((e.limit, e.used, e.has_access), (Some(1), Some(1), false));
    assert_eq!(e.source, EntitlementSource::Override);
    assert_eq!(
        db.get_limit_overrides(&a, &org).unwrap().team_members,
        Some(orgdb::Limit::Count(1))
    );
    assert_eq!(
        db.get_organization(&a, &org).unwrap().limits.team_members,
        Some(1)
    );
    let stranger = user(&db, "Stranger");
    assert_err(
        db.add_member(&a, &org, &stranger.id, "member"),
        "quota_exceeded",
        None,
    );
    db.set_entitlement_override(&Actor::System, &org, "team_members", None)
        .unwrap();
    db.add_member(&a, &org, &stranger.id, "member").unwrap();
    // A monthly quota override reaches the usage ledger at once.
    db.set_entitlement_override(
        &Actor::System,
        &org,
        "monthly_requests",
        Some(&limit(Some(8))),
    )
    .unwrap();
    assert_err(
        db.record_usage(&org, &orgdb::UsageEvent::new(2)),
        "quota_exceeded",
        None,
    );
    assert_sound(&db);
}

#[test]
fn the_list_holds_the_seed_limits_then_every_known_name() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "scale");
    db.set_entitlement_override(&Actor::System, &org, "beta_ui", Some(&feature(true)))
        .unwrap();
    let all = db.entitlements(&actor(&owner), &org).unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mcps",
            "api_keys",
            "team_members",
            "monthly_requests",
            "audit_export",
            "beta_ui",
            "projects",
            "seats_sso",
            "sso"
        ]
    );
    let by_name = |n: &str| all.iter().find(|e| e.name == n).unwrap();
    assert!(by_name("sso").has_access);
    assert!(!by_name("audit_export").has_access);
    assert_eq!(by_name("beta_ui").source, EntitlementSource::Override);
    // A host-counted limit: no `used`, access while above zero.
    let seats_sso = by_name("seats_sso");
    assert_eq!((seats_sso.limit, seats_sso.used), (Some(10), None));
    assert!(seats_sso.has_access);
    for e in &all {
        assert_eq!(&db.entitlement(&Actor::System, &org, &e.name).unwrap(), e);
    }
}

#[test]
fn bad_names_values_and_actors_are_refused_and_change_nothing() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "starter");
    let a = actor(&owner);
    let member = user(&db, "Member");
    db.add_member(&a, &org, &member.id, "member").unwrap();
    let before = db.audit_log(&Actor::System, &org, 0, 1000).unwrap().len();
    for bad in ["", "SSO", "9lives", "has space", "dash-ed", &"x".repeat(65)] {
        assert_err(
            db.entitlement(&a, &org, bad),
            "validation_error",
            Some("name"),
        );
        assert_err(
            db.set_entitlement_override(&Actor::System, &org, bad, Some(&feature(true))),
            "validation_error",
            Some("name"),
        );
    }
    assert_err(db.entitlement(&a, &org, "unknown_thing"), "not_found", None);
    // A value of the wrong kind for the catalog's name.
    for (name, value) in [
        ("sso", limit(Some(1))),
        ("projects", feature(true)),
        ("mcps", feature(false)),
    ] {
        assert_err(
            db.set_entitlement_override(&Actor::System, &org, name, Some(&value)),
            "validation_error",
            Some("value"),
        );
    }
    // Only the operator sets overrides; members read; strangers do not.
    assert_err(
        db.set_entitlement_override(&a, &org, "sso", Some(&feature(true))),
        "forbidden",
        None,
    );
    assert!(db.entitlement(&actor(&member), &org, "sso").is_ok());
    let stranger = user(&db, "Stranger");
    assert_err(
        db.entitlement(&actor(&stranger), &org, "sso"),
        "forbidden",
        None,
    );
    assert_err(
        db.set_entitlement_override(&Actor::System, "org_missing", "sso", None),
        "not_found",
        None,
    );
    assert_eq!(
        db.audit_log(&Actor::System, &org, 0, 1000).unwrap().len(),
        before,
        "nothing was written"
    );
    assert_eq!(
        db.entitlement(&a, &org, "sso").unwrap().source,
        EntitlementSource::Default
    );
}

#[test]
fn overrides_are_audited_exported_and_leave_with_their_organization() {
    let (db, _) = open();
    let (org, _owner) = org(&db, "Acme", "starter");
    db.set_entitlement_override(&Actor::System, &org, "sso", Some(&feature(true)))
        .unwrap();
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&limit(Some(9))))
        .unwrap();
    // Setting the same value again writes nothing.
    db.set_entitlement_override(&Actor::System, &org, "sso", Some(&feature(true)))
        .unwrap();
    let events = db.audit_log(&Actor::System, &org, 0, 1000).unwrap();
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.action == "organization.entitlement_changed")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0].details,
        serde_json::json!({
            "name": "sso",
            "before": null,
            "after": {"kind": "feature", "enabled": true}
        })
    );
    assert_eq!(
        changes[1].details["after"],
        serde_json::json!({"kind": "limit", "limit": 9})
    );
    // Export and import carry them.
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == "entitlement_override")
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["data"],
        serde_json::json!({"organization_id": org, "name": "projects",
            "value": {"kind": "limit", "limit": 9}})
    );
    let (copy, _) = open();
    copy.import_jsonl(&out[..], None, &mut |_| {}).unwrap();
    assert_eq!(
        copy.entitlement(&Actor::System, &org, "projects")
            .unwrap()
            .limit,
        Some(9)
    );
    assert!(
        copy.entitlement(&Actor::System, &org, "sso")
            .unwrap()
            .has_access
    );
    assert_sound(&copy);
    // Deleting the organization removes its overrides.
    db.delete_organization(&Actor::System, &org).unwrap();
    assert_sound(&db);
    let (again, again_owner) = common::org(&db, "Again", "starter");
    assert_eq!(
        db.entitlement(&actor(&again_owner), &again, "sso")
            .unwrap()
            .source,
        EntitlementSource::Default
    );
}

#[test]
fn a_catalog_that_breaks_the_naming_rules_is_refused_at_open() {
    let broken = [
        Plan::default().feature("Bad Name"),
        Plan::default().limit("mcps", Some(1)),
        Plan::default().feature(""),
    ];
    for plan in broken {
        let mut opts = Options::default();
        opts.plans.plans.insert("x".into(), plan);
        let err = Db::in_memory_with(opts).unwrap_err();
        assert_eq!(err.code(), "validation_error");
        assert!(err.details().contains_key("plans"), "{err:?}");
    }
    // One name, a feature in one plan and a limit in another.
    let mut opts = Options::default();
    opts.plans
        .plans
        .insert("x".into(), Plan::default().limit("sso", Some(1)));
    assert!(Db::in_memory_with(opts).is_err());
}

/// An override of a name outside the catalog is set and cleared again (clearing answers the
/// default; clearing what was never set is a no-op), and `projects` is a limit whatever the
/// catalog says.
#[test]
fn overrides_outside_the_catalog_clear_and_projects_is_always_a_limit() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "bare");
    let a = actor(&owner);
    let on = db
        .set_entitlement_override(&Actor::System, &org, "beta_reports", Some(&feature(true)))
        .unwrap();
    assert!(on.has_access);
    let off = db
        .set_entitlement_override(&Actor::System, &org, "beta_reports", None)
        .unwrap();
    assert_eq!(off.source, EntitlementSource::Default);
    assert_eq!(off.kind, EntitlementKind::Feature);
    assert!(!off.has_access);
    assert_err(db.entitlement(&a, &org, "beta_reports"), "not_found", None);
    let never = db
        .set_entitlement_override(&Actor::System, &org, "never_set", None)
        .unwrap();
    assert_eq!(never.source, EntitlementSource::Default);
    // `projects` may not be made a feature, in an override (even with a catalog that does
    // not name it) or in a plan.
    let plain = db_with(Options::default());
    let (plain_org, _) = common::org(&plain, "Plain", "free");
    assert_err(
        plain.set_entitlement_override(
            &Actor::System,
            &plain_org,
            "projects",
            Some(&feature(false)),
        ),
        "validation_error",
        Some("value"),
    );
    let mut opts = Options::default();
    opts.plans
        .plans
        .insert("odd".into(), Plan::default().feature("projects"));
    assert_eq!(
        Db::in_memory_with(opts).unwrap_err().code(),
        "validation_error"
    );
    // A limit above what every backend stores is refused on each, naming `value`.
    let huge = orgdb::LimitOverrides {
        api_keys: Some(orgdb::Limit::Count(u64::MAX)),
        ..Default::default()
    };
    assert_err(
        db.set_limit_overrides(&Actor::System, &org, &huge.into()),
        "validation_error",
        Some("api_keys"),
    );
    let mut opts = Options::default();
    opts.plans.plans.insert(
        "huge".into(),
        Plan::from(Limits {
            mcps: Some(u64::MAX),
            ..Limits::default()
        }),
    );
    assert!(Db::in_memory_with(opts).is_err());
    for name in ["projects", "seats_sso", "mcps"] {
        assert_err(
            db.set_entitlement_override(&Actor::System, &org, name, Some(&limit(Some(u64::MAX)))),
            "validation_error",
            Some("value"),
        );
    }
    assert_sound(&db);
}

/// A soft `monthly_requests` limit admits past the limit up to its overage cap, marks the
/// receipts `over` with the overage, and refuses past the cap; the entitlement says so.
#[test]
fn soft_usage_limits_admit_overage_up_to_the_cap() {
    let clock = ManualClock::new(start());
    let mut opts = Options::with_clock(clock.clone());
    opts.plans = catalog();
    let metered = Plan::from(Limits {
        monthly_requests: Some(100),
        team_members: Some(2),
        ..Limits::default()
    })
    .soft("monthly_requests", Some(50))
    .soft("team_members", None)
    .limit("projects", Some(1))
    .soft("projects", Some(1));
    opts.plans.plans.insert("metered".into(), metered);
    let db = db_with(opts);
    let (org, owner) = org(&db, "Acme", "metered");
    let a = actor(&owner);
    let r = db.record_usage(&org, &orgdb::UsageEvent::new(100)).unwrap();
    assert_eq!(
        (r.used, r.over, r.overage, r.remaining),
        (100, false, 0, Some(0))
    );
    let r = db.record_usage(&org, &orgdb::UsageEvent::new(30)).unwrap();
    assert_eq!(
        (r.used, r.over, r.overage, r.remaining),
        (130, true, 30, Some(0))
    );
    assert_eq!(r.limit, Some(100));
    // The cap is hard: 21 more would make 151.
    let err = assert_err(
        db.record_usage(&org, &orgdb::UsageEvent::new(21)),
        "quota_exceeded",
        None,
    );
    assert_eq!(err.details()["limit"], 150, "{err:?}");
    let r = db.record_usage(&org, &orgdb::UsageEvent::new(20)).unwrap();
    assert_eq!((r.used, r.overage), (150, 50));
    // A recorder's buffered path and `check_quota` follow the same bound.
    let recorder = db.usage_recorder(&org).unwrap();
    assert_err(recorder.record(None, 1), "quota_exceeded", None);
    let e = db.entitlement(&a, &org, "monthly_requests").unwrap();
    assert_eq!(
        e.enforcement,
        orgdb::Enforcement::Soft {
            overage_cap: Some(50)
        }
    );
    assert_eq!(
        (e.limit, e.used, e.has_access),
        (Some(100), Some(150), false)
    );
    // Soft seats without a cap: members past the limit are admitted.
    for name in ["B", "C", "D"] {
        let u = user(&db, name);
        db.add_member(&a, &org, &u.id, "member").unwrap();
    }
    let seats = db.entitlement(&a, &org, "team_members").unwrap();
    assert_eq!(
        (seats.limit, seats.used, seats.has_access),
        (Some(2), Some(4), true)
    );
    assert_eq!(
        db.get_organization(&a, &org).unwrap().limits.team_members,
        Some(2)
    );
    // A soft projects limit of 1 with a cap of 1: two projects, not three.
    project(&db, &a, &org, "One").unwrap();
    project(&db, &a, &org, "Two").unwrap();
    let err = assert_err(project(&db, &a, &org, "Three"), "quota_exceeded", None);
    assert_eq!(err.details()["limit"], 2);
    // A new month starts within the limit again.
    clock.advance(chrono::TimeDelta::days(31));
    let r = db.record_usage(&org, &orgdb::UsageEvent::new(1)).unwrap();
    assert_eq!((r.used, r.over), (1, false));
    assert_sound(&db);
}

/// Sixteen threads race plain and buffered records at a soft limit's cap: never past it,
/// and the sum is exact.
#[test]
fn racing_records_never_pass_a_soft_cap() {
    let mut opts = Options::with_clock(ManualClock::new(start()));
    opts.plans = catalog();
    opts.plans.plans.insert(
        "metered".into(),
        Plan::from(Limits {
            monthly_requests: Some(500),
            ..Limits::default()
        })
        .soft("monthly_requests", Some(250)),
    );
    let db = db_with(opts);
    let (org, _) = org(&db, "Acme", "metered");
    let admitted: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let (db, org) = (&db, &org);
                s.spawn(move || {
                    let recorder = db.usage_recorder(org).unwrap();
                    let mut n = 0u64;
                    for _ in 0..40 {
                        let ok = if t % 2 == 0 {
                            db.record_usage(org, &orgdb::UsageEvent::new(2)).is_ok()
                        } else {
                            recorder.record(None, 2).is_ok()
                        };
                        n += if ok { 2 } else { 0 };
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    db.flush().unwrap();
    assert_eq!(
        admitted, 750,
        "16 × 40 × 2 asked, the cap of 500 + 250 admitted"
    );
    let used = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(used, 750);
    assert_sound(&db);
}

/// Threads racing to create projects at the limit never pass it.
#[test]
fn racing_project_creations_stop_at_the_limit() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "starter");
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&limit(Some(5))))
        .unwrap();
    let a = actor(&owner);
    let made: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (db, a, org) = (&db, &a, &org);
                s.spawn(move || {
                    (0..3)
                        .filter(|i| project(db, a, org, &format!("T{t}-{i}")).is_ok())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(made, 5);
    assert_eq!(db.list_projects(&a, &org).unwrap().len(), 5);
    assert_sound(&db);
}

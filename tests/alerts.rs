//! Usage alerts (SPEC section 13, issue 17): thresholds per organization (80 % and 100 % by
//! default) announce their crossing in the audit change feed once per quota period, and
//! `usage_alerts` says where the organization stands. On both backends.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::*;
use orgdb::{
    Actor, Db, Limits, ManualClock, Options, Plan, PlanCatalog, UsageCorrection, UsageEvent,
};

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// `metered`: 100 requests a period; `soft`: 100, soft with an overage cap of 50.
fn open() -> (Db, ManualClock) {
    let clock = ManualClock::new(at(2024, 1, 10));
    let mut opts = Options::with_clock(clock.clone());
    let hundred = Limits {
        monthly_requests: Some(100),
        ..Limits::default()
    };
    opts.plans = PlanCatalog {
        plans: BTreeMap::from([
            ("metered".to_owned(), Plan::from(hundred)),
            (
                "soft".to_owned(),
                Plan::from(hundred).soft("monthly_requests", Some(50)),
            ),
        ]),
        default_plan: "metered".to_owned(),
    };
    (db_with(opts), clock)
}

/// The thresholds announced so far, with the period each was announced in.
fn announced(db: &Db, org: &str) -> Vec<(u64, String)> {
    db.audit_log(&Actor::System, org, 0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "usage.threshold")
        .map(|e| {
            (
                e.details["threshold_percent"].as_u64().unwrap(),
                e.details["period_start"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn record(db: &Db, org: &str, n: u64) {
    db.record_usage(org, &UsageEvent::new(n)).unwrap();
}

fn correct(db: &Db, org: &str, day: NaiveDate, delta: i64) {
    db.correct_usage(
        &Actor::System,
        org,
        &UsageCorrection {
            date: day,
            resource_id: None,
            delta,
            idempotency_key: None,
            reason: None,
        },
    )
    .unwrap();
}

/// The defaults fire once each per period: a correction that takes the total back below a
/// mark and usage that crosses it again announce nothing twice; the next period announces
/// them afresh.
#[test]
fn default_thresholds_fire_once_per_period() {
    let (db, clock) = open();
    let (org, owner) = org(&db, "Acme", "metered");
    record(&db, &org, 79);
    assert_eq!(announced(&db, &org), []);
    record(&db, &org, 1);
    let jan = "2024-01-01".to_owned();
    assert_eq!(announced(&db, &org), [(80, jan.clone())]);
    correct(&db, &org, date(2024, 1, 10), -10);
    record(&db, &org, 30); // 70 → 100: 80 again (not announced) and 100
    assert_eq!(
        announced(&db, &org),
        [(80, jan.clone()), (100, jan.clone())]
    );

    let alerts = db.usage_alerts(&actor(&owner), &org).unwrap();
    assert!(alerts.default_thresholds);
    assert_eq!(
        (alerts.used, alerts.limit, alerts.percentage),
        (100, Some(100), Some(100))
    );
    assert_eq!(
        (alerts.period_start, alerts.period_end),
        (date(2024, 1, 1), date(2024, 1, 31))
    );
    let states: Vec<_> = alerts
        .alerts
        .iter()
        .map(|a| (a.threshold_percent, a.mark, a.reached, a.fired_this_period))
        .collect();
    assert_eq!(
        states,
        [(80, Some(80), true, true), (100, Some(100), true, true)]
    );

    // February: a new period, nothing announced in it yet.
    clock.set(at(2024, 2, 3));
    let alerts = db.usage_alerts(&actor(&owner), &org).unwrap();
    assert_eq!(alerts.used, 0);
    assert!(alerts
        .alerts
        .iter()
        .all(|a| !a.reached && !a.fired_this_period));
    assert_eq!(alerts.alerts[0].fired_period_start, Some(date(2024, 1, 1)));
    db.usage_recorder(&org).unwrap().record(None, 85).unwrap();
    assert_eq!(
        announced(&db, &org),
        [
            (80, jan.clone()),
            (100, jan.clone()),
            (80, "2024-02-01".to_owned())
        ]
    );
    assert_sound(&db);
}

/// Thresholds of the organization's own, above 100 % under a soft limit; a member may read
/// them, only owners set them, and bad ones change nothing.
#[test]
fn custom_thresholds_and_who_sets_them() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "soft");
    let member = user(&db, "Mia");
    db.add_member(&Actor::System, &org, &member.id, "member")
        .unwrap();
    let set = db
        .set_usage_alerts(&actor(&owner), &org, Some(&[120, 50, 90]))
        .unwrap();
    let percents: Vec<u32> = set.alerts.iter().map(|a| a.threshold_percent).collect();
    assert_eq!(percents, [50, 90, 120]);
    assert!(!set.default_thresholds);
    assert_eq!(set.alerts[2].mark, Some(120));
    record(&db, &org, 95);
    record(&db, &org, 30); // 125: past the limit, admitted by the soft limit
    let fired: Vec<u64> = announced(&db, &org).into_iter().map(|a| a.0).collect();
    assert_eq!(fired, [50, 90, 120]);
    let read = db.usage_alerts(&actor(&member), &org).unwrap();
    assert_eq!((read.used, read.percentage), (125, Some(125)));

    assert_err(
        db.set_usage_alerts(&actor(&member), &org, None),
        "forbidden",
        None,
    );
    for (bad, field) in [
        (vec![0], "thresholds[0]"),
        (vec![80, 1_001], "thresholds[1]"),
        (vec![80, 80], "thresholds[1]"),
        ((1..=11).collect(), "thresholds"),
    ] {
        assert_err(
            db.set_usage_alerts(&Actor::System, &org, Some(&bad)),
            "validation_error",
            Some(field),
        );
    }
    assert_eq!(db.usage_alerts(&actor(&owner), &org).unwrap(), read);

    // An empty list silences them; `None` brings the defaults back. Each change is audited.
    let none = db
        .set_usage_alerts(&Actor::System, &org, Some(&[]))
        .unwrap();
    assert!(none.alerts.is_empty());
    let back = db.set_usage_alerts(&Actor::System, &org, None).unwrap();
    assert!(back.default_thresholds);
    let changes = db
        .audit_log(&Actor::System, &org, 0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "organization.usage_alerts_changed")
        .count();
    assert_eq!(changes, 3);
    assert_sound(&db);
}

/// A threshold that goes forgets when it was announced; one that stays keeps it.
#[test]
fn a_removed_threshold_forgets_its_state() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "metered");
    record(&db, &org, 100);
    db.set_usage_alerts(&Actor::System, &org, Some(&[100]))
        .unwrap();
    let alerts = db
        .set_usage_alerts(&Actor::System, &org, Some(&[80, 100]))
        .unwrap();
    let fired: Vec<_> = alerts
        .alerts
        .iter()
        .map(|a| (a.threshold_percent, a.reached, a.fired_this_period))
        .collect();
    assert_eq!(fired, [(80, true, false), (100, true, true)]);
    // Below 80 and back over it: the re-added 80 % is announced, 100 % is not again.
    correct(&db, &org, date(2024, 1, 10), -30);
    record(&db, &org, 30);
    let marks: Vec<u64> = announced(&db, &org).into_iter().map(|a| a.0).collect();
    assert_eq!(marks, [80, 100, 80]);
    assert_sound(&db);
}

/// Export carries the thresholds and what was announced; the copy answers the same.
#[test]
fn export_and_import_carry_alerts() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "metered");
    db.set_usage_alerts(&Actor::System, &org, Some(&[25, 75]))
        .unwrap();
    record(&db, &org, 30);
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""usage_alerts":[25,75]"#), "{text}");
    assert!(text.contains(r#""type":"usage_alert_fired""#), "{text}");
    let (copy, _) = open();
    copy.import_jsonl(text.as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_sound(&copy);
    assert_eq!(
        copy.usage_alerts(&actor(&owner), &org).unwrap(),
        db.usage_alerts(&actor(&owner), &org).unwrap()
    );
    // Bad thresholds in an export are refused, and nothing is imported.
    let bad = text.replace(r#""usage_alerts":[25,75]"#, r#""usage_alerts":[75,25]"#);
    let (other, _) = open();
    assert_err(
        other.import_jsonl(bad.as_bytes(), None, &mut |_| {}),
        "validation_error",
        None,
    );
    assert_eq!(other.stats().unwrap(), open().0.stats().unwrap());
}

/// Announcements are kept per period: with a daily quota, a correction of an earlier day that
/// takes it under a mark and back over it announces nothing again, though a later day has
/// announced the same threshold since.
#[test]
fn corrections_of_an_earlier_period_announce_nothing_twice() {
    let (db, clock) = open();
    let (org, _) = org(&db, "Acme", "metered");
    db.set_billing_anchor(&Actor::System, &org, orgdb::QuotaPeriod::Day)
        .unwrap();
    record(&db, &org, 85);
    clock.set(at(2024, 1, 11));
    record(&db, &org, 85);
    let both = [(80, "2024-01-10".to_owned()), (80, "2024-01-11".to_owned())];
    assert_eq!(announced(&db, &org), both);
    correct(&db, &org, date(2024, 1, 10), -10);
    correct(&db, &org, date(2024, 1, 10), 10);
    assert_eq!(announced(&db, &org), both);
    assert_sound(&db);
}

/// Announcing is by level, not by crossing: a threshold added below the total, and a limit
/// changed under it, are announced by the next growth of the period (once per limit).
#[test]
fn thresholds_already_reached_are_announced_by_the_next_growth() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "metered");
    db.set_usage_alerts(&Actor::System, &org, Some(&[90]))
        .unwrap();
    record(&db, &org, 60);
    assert_eq!(announced(&db, &org), []);
    // 50 % is reached already: the next event announces it.
    db.set_usage_alerts(&Actor::System, &org, Some(&[50, 90]))
        .unwrap();
    record(&db, &org, 1);
    let jan = "2024-01-01".to_owned();
    assert_eq!(announced(&db, &org), [(50, jan.clone())]);
    // A limit of 120: 50 % is 60, reached under a new limit, so announced once more; 90 %
    // (108) is not reached.
    db.set_limit_overrides(
        &Actor::System,
        &org,
        &orgdb::LimitOverrides {
            monthly_requests: Some(orgdb::Limit::Count(120)),
            ..Default::default()
        }
        .into(),
    )
    .unwrap();
    record(&db, &org, 1);
    record(&db, &org, 1);
    assert_eq!(announced(&db, &org), [(50, jan.clone()), (50, jan.clone())]);
    let alerts = db.usage_alerts(&Actor::System, &org).unwrap();
    assert!(alerts.alerts[0].fired_this_period && !alerts.alerts[1].reached);
    assert_sound(&db);
}

//! Usage reservations (SPEC section 13, issue 17): quota held before an expensive call and
//! settled after it. A hold counts against the quota at once, for every path that admits
//! usage; a commit records the real count and frees the rest; a release frees it all; an
//! unsettled hold stops counting when it expires. On both backends.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use orgdb::{
    Actor, Db, Limits, ManualClock, NewReservation, Options, Plan, PlanCatalog, UsageEvent,
};

/// `metered`: 100 requests a period (the default plan); `big`: 10 000.
fn open() -> (Db, ManualClock) {
    let clock = ManualClock::new(start());
    let mut opts = Options::with_clock(clock.clone());
    let limit = |n| {
        Plan::from(Limits {
            monthly_requests: Some(n),
            ..Limits::default()
        })
    };
    opts.plans = PlanCatalog {
        plans: BTreeMap::from([
            ("metered".to_owned(), limit(100)),
            ("big".to_owned(), limit(10_000)),
        ]),
        default_plan: "metered".to_owned(),
    };
    (db_with(opts), clock)
}

fn used(db: &Db, org: &str) -> u64 {
    db.get_organization(&Actor::System, org)
        .unwrap()
        .usage
        .monthly_requests
}

/// A hold counts at once against durable records, the recorder's hot path and
/// `check_quota`; a commit records the real count and frees the rest; a repeated commit is a
/// duplicate; a release frees everything once.
#[test]
fn a_hold_counts_at_once_and_settles_exactly() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "metered");
    let recorder = db.usage_recorder(&org).unwrap();
    recorder.record(None, 10).unwrap();
    let hold = db.reserve_usage(&org, &NewReservation::new(60)).unwrap();
    assert_eq!(hold.count, 60);
    assert!(hold.id.starts_with("rsv_"));
    assert_eq!(hold.expires_at, hold.created_at + TimeDelta::minutes(5));
    // 10 used + 60 held: 30 are left, for every path.
    assert_err(db.check_quota(&org, 31), "quota_exceeded", None);
    assert_err(recorder.record(None, 31), "quota_exceeded", None);
    assert_err(
        db.reserve_usage(&org, &NewReservation::new(31)),
        "quota_exceeded",
        None,
    );
    db.record_usage(&org, &UsageEvent::new(30)).unwrap();
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1)),
        "quota_exceeded",
        None,
    );
    // The call cost 45 of the 60 held: 15 return.
    let receipt = db.commit_reservation(&org, &hold.id, 45).unwrap();
    assert_eq!((receipt.used, receipt.duplicate), (85, false));
    assert_eq!(used(&db, &org), 85);
    let again = db.commit_reservation(&org, &hold.id, 45).unwrap();
    assert_eq!((again.used, again.duplicate), (85, true));
    assert_eq!(recorder.record(None, 15).unwrap().used, 100);

    // Released: all of it returns, once.
    db.record_usage(&org, &UsageEvent::new(1)).unwrap_err();
    let (other, _) = common::org(&db, "Beta", "metered");
    let hold = db.reserve_usage(&other, &NewReservation::new(100)).unwrap();
    assert_err(db.check_quota(&other, 1), "quota_exceeded", None);
    assert!(db.release_reservation(&other, &hold.id).unwrap());
    assert!(!db.release_reservation(&other, &hold.id).unwrap());
    assert_err(
        db.commit_reservation(&other, &hold.id, 1),
        "not_found",
        None,
    );
    assert_eq!(db.check_quota(&other, 100).unwrap().used, 100);
    assert_eq!(used(&db, &other), 0);
    assert_sound(&db);
}

/// Beyond the hold a commit is admitted only as far as the quota allows (a refusal records
/// nothing and keeps the hold); within it, whatever the limit says now.
#[test]
fn a_commit_beyond_its_hold_must_fit() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "metered");
    let hold = db.reserve_usage(&org, &NewReservation::new(50)).unwrap();
    db.record_usage(&org, &UsageEvent::new(40)).unwrap();
    // 40 used, 50 held, 10 free: 61 is 11 beyond the hold.
    assert_err(
        db.commit_reservation(&org, &hold.id, 61),
        "quota_exceeded",
        None,
    );
    assert_eq!(used(&db, &org), 40);
    assert_err(db.check_quota(&org, 11), "quota_exceeded", None);
    assert_eq!(db.commit_reservation(&org, &hold.id, 60).unwrap().used, 100);

    // A limit lowered under a hold: the commit within it is still recorded, and its receipt
    // says the period is over the limit.
    let (beta, _) = common::org(&db, "Beta", "big");
    let hold = db.reserve_usage(&beta, &NewReservation::new(500)).unwrap();
    db.set_plan(&Actor::System, &beta, "metered").unwrap();
    let r = db.commit_reservation(&beta, &hold.id, 300).unwrap();
    assert_eq!((r.used, r.over, r.overage), (300, true, 200));
    assert_eq!(r.remaining, Some(0));
    assert_sound(&db);
}

/// An unsettled hold counts until it expires (by the database's clock), then frees its
/// quota; committing it later admits the whole count against the quota.
#[test]
fn an_unsettled_hold_expires() {
    let (db, clock) = open();
    let (org, _) = org(&db, "Acme", "metered");
    let hold = db
        .reserve_usage(
            &org,
            &NewReservation {
                count: 80,
                expires_in: Some(Duration::from_secs(60)),
                ..NewReservation::default()
            },
        )
        .unwrap();
    assert_err(db.check_quota(&org, 21), "quota_exceeded", None);
    clock.advance(TimeDelta::seconds(59));
    assert_err(db.check_quota(&org, 21), "quota_exceeded", None);
    clock.advance(TimeDelta::seconds(1));
    db.record_usage(&org, &UsageEvent::new(90)).unwrap();
    // Another reservation meanwhile does not make the expired one unknown.
    let other = db.reserve_usage(&org, &NewReservation::new(1)).unwrap();
    db.release_reservation(&org, &other.id).unwrap();
    // Expired: the commit's 20 are checked in full (10 fit, 20 do not).
    assert_err(
        db.commit_reservation(&org, &hold.id, 20),
        "quota_exceeded",
        None,
    );
    assert_eq!(db.commit_reservation(&org, &hold.id, 10).unwrap().used, 100);
    assert!(!db.release_reservation(&org, &hold.id).unwrap());
    assert_sound(&db);
}

/// A hold protects the period it was checked against: committed after that period ended
/// (here a daily quota, across midnight), all of its count must fit in the new period, which
/// may have filled meanwhile (an event dated a minute ahead counts in tomorrow).
#[test]
fn a_hold_protects_only_its_own_period() {
    let (db, clock) = open();
    let (org, _) = org(&db, "Acme", "metered");
    db.set_billing_anchor(&Actor::System, &org, orgdb::QuotaPeriod::Day)
        .unwrap();
    let at = |h, m| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 1, 15, h, m, 0).unwrap();
    clock.set(at(23, 57));
    let tomorrow = at(23, 59) + TimeDelta::minutes(2);
    db.record_usage(&org, &UsageEvent::new(100).at(tomorrow))
        .unwrap();
    // Today is empty: the hold fits today's period.
    let hold = db.reserve_usage(&org, &NewReservation::new(80)).unwrap();
    clock.set(tomorrow); // the hold (5 minutes from 23:57) still lives
    assert_err(
        db.commit_reservation(&org, &hold.id, 80),
        "quota_exceeded",
        None,
    );
    assert_eq!(db.commit_reservation(&org, &hold.id, 0).unwrap().used, 100);
    assert_sound(&db);
}

/// Bad input names its field and holds nothing.
#[test]
fn bad_reservations_are_refused_whole() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "metered");
    assert_err(
        db.reserve_usage(&org, &NewReservation::new(0)),
        "validation_error",
        Some("count"),
    );
    for secs in [0, 86_401] {
        let new = NewReservation {
            count: 1,
            expires_in: Some(Duration::from_secs(secs)),
            ..NewReservation::default()
        };
        assert_err(
            db.reserve_usage(&org, &new),
            "validation_error",
            Some("expires_in"),
        );
    }
    let unknown = NewReservation {
        count: 1,
        resource_id: Some("res_nope".into()),
        ..NewReservation::default()
    };
    assert_err(db.reserve_usage(&org, &unknown), "not_found", None);
    assert_err(
        db.reserve_usage("org_nope", &NewReservation::new(1)),
        "not_found",
        None,
    );
    assert_err(
        db.commit_reservation(&org, "rsv_nope", 1),
        "not_found",
        None,
    );
    let hold = db.reserve_usage(&org, &NewReservation::new(1)).unwrap();
    assert_err(
        db.commit_reservation(&org, &hold.id, (1 << 53) + 1),
        "validation_error",
        Some("actual"),
    );
    // The hold of 1 stands: 99 fit (a receipt's `used` counts usage, not holds), 100 do not.
    assert_eq!(db.check_quota(&org, 99).unwrap().used, 99);
    assert_err(db.check_quota(&org, 100), "quota_exceeded", None);
    assert_sound(&db);
}

/// Reservations with a resource count for it when committed; export carries live holds, and
/// the copy counts them.
#[test]
fn resources_and_export_import() {
    let (db, _) = open();
    let (org, owner) = org(&db, "Acme", "metered");
    let mcp = db
        .register_resource(&actor(&owner), &org, orgdb::ResourceKind::Mcp, "search")
        .unwrap();
    let new = NewReservation {
        count: 30,
        resource_id: Some(mcp.id.clone()),
        ..NewReservation::default()
    };
    let hold = db.reserve_usage(&org, &new).unwrap();
    db.commit_reservation(&org, &hold.id, 25).unwrap();
    let report = db
        .usage_report(&Actor::System, &org, &orgdb::UsageQuery::default())
        .unwrap();
    assert_eq!(report.by_mcp.iter().map(|m| m.requests).sum::<u64>(), 25);
    let live = db.reserve_usage(&org, &NewReservation::new(70)).unwrap();

    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(&format!(r#""id":"{}""#, live.id)), "{text}");
    let (copy, _) = open();
    copy.import_jsonl(text.as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_err(copy.check_quota(&org, 6), "quota_exceeded", None);
    assert_eq!(
        copy.commit_reservation(&org, &live.id, 70).unwrap().used,
        95
    );
    assert_sound(&copy);
}

/// Sixteen threads race reservations, commits, releases and plain records at the limit: the
/// period never passes it, and what was acknowledged is exactly what is stored.
#[test]
fn reservations_race_plain_records_at_the_limit() {
    let (db, _) = open();
    let (org, _) = org(&db, "Acme", "big");
    let recorded = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..16u64 {
            let (db, org, recorded) = (db.clone(), org.clone(), recorded.clone());
            s.spawn(move || {
                for i in 0..60u64 {
                    let n = 1 + (t * 7 + i) % 40;
                    if t % 2 == 0 {
                        if db.record_usage(&org, &UsageEvent::new(n)).is_ok() {
                            recorded.fetch_add(n, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let Ok(hold) = db.reserve_usage(&org, &NewReservation::new(n)) else {
                        continue;
                    };
                    if i % 5 == 0 {
                        db.release_reservation(&org, &hold.id).unwrap();
                        continue;
                    }
                    // Sometimes more than held: admitted only if it fits.
                    let actual = if i % 3 == 0 { n + 5 } else { n - 1 };
                    if db.commit_reservation(&org, &hold.id, actual).is_ok() {
                        recorded.fetch_add(actual, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let total = used(&db, &org);
    assert_eq!(
        total,
        recorded.load(Ordering::Relaxed),
        "acknowledged = stored"
    );
    assert!(total <= 10_000, "{total} passed the limit");
    assert!(total > 5_000, "the race reached the limit ({total})");
    assert_sound(&db);
}

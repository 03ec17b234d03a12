//! Usage metering: exact quotas under concurrency, idempotency, late events, month rollover,
//! reports, buffered recording, thresholds, pruning, and journal replay after an exit without
//! a clean close.

mod common;

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeDelta, TimeZone, Utc};
use common::*;
use orgdb::{
    Actor, Db, Durability, Limit, LimitOverrides, ManualClock, Options, Period, ResourceKind,
    UsageEvent, UsageQuery,
};

fn limit(db: &Db, org: &str, n: u64) {
    let over = LimitOverrides {
        monthly_requests: Some(Limit::Count(n)),
        ..Default::default()
    };
    db.set_limit_overrides(&Actor::System, org, &over.into())
        .unwrap();
}

#[test]
fn receipts_count_and_refusals_record_nothing() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 1 000 a month
    let r = db.record_usage(&org, &UsageEvent::new(600)).unwrap();
    assert_eq!(
        (r.duplicate, r.used, r.limit, r.remaining),
        (false, 600, Some(1000), Some(400))
    );
    let err = assert_err(
        db.record_usage(&org, &UsageEvent::new(401)),
        "quota_exceeded",
        None,
    );
    let d = err.details();
    assert_eq!(
        (
            d["quota"].as_str(),
            d["limit"].as_u64(),
            d["used"].as_u64(),
            d["requested"].as_u64()
        ),
        (Some("monthly_requests"), Some(1000), Some(600), Some(401))
    );
    assert_eq!(err.http_status(), 429);
    let r = db.record_usage(&org, &UsageEvent::new(400)).unwrap();
    assert_eq!((r.used, r.remaining), (1000, Some(0)));
    assert_err(db.check_quota(&org, 1), "quota_exceeded", None);
    assert_eq!(
        db.get_organization(&actor(&owner), &org)
            .unwrap()
            .usage
            .monthly_requests,
        1000
    );

    // A limit of 0 refuses everything and divides nothing by zero.
    limit(&db, &org, 0);
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1)),
        "quota_exceeded",
        None,
    );
    let report = db
        .usage_report(&actor(&owner), &org, &UsageQuery::default())
        .unwrap();
    assert_eq!(
        (report.requests.limit, report.requests.percentage),
        (Some(0), None)
    );
    assert_sound(&db);
}

#[test]
fn validation_and_scoping() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let (other, other_owner) = common::org(&db, "Other", "free");
    let foreign = db
        .register_resource(&actor(&other_owner), &other, ResourceKind::Mcp, "F")
        .unwrap();
    let before = db.stats().unwrap();
    assert_err(
        db.record_usage(&org, &UsageEvent::new(0)),
        "validation_error",
        Some("count"),
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new((1 << 53) + 1)),
        "validation_error",
        Some("count"),
    );
    let now = clock.now_for_tests();
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).at(now + TimeDelta::minutes(6))),
        "validation_error",
        Some("at"),
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).at(now - TimeDelta::days(36))),
        "validation_error",
        Some("at"),
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).key("")),
        "validation_error",
        Some("idempotency_key"),
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).key("k".repeat(256))),
        "validation_error",
        Some("idempotency_key"),
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).resource(&foreign.id)),
        "not_found",
        None,
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).resource("res_nothing")),
        "not_found",
        None,
    );
    assert_err(
        db.record_usage("org_nothing", &UsageEvent::new(1)),
        "not_found",
        None,
    );
    let batch = [UsageEvent::new(1), UsageEvent::new(0)];
    assert_err(
        db.record_usage_batch(&org, &batch),
        "validation_error",
        Some("events[1].count"),
    );
    assert_err(
        db.record_usage_batch(&org, &[]),
        "validation_error",
        Some("events"),
    );
    db.flush().unwrap();
    assert_eq!(db.stats().unwrap(), before, "nothing written");
    // Unlimited: an overflowing total is a validation error.
    db.record_usage(&org, &UsageEvent::new(1 << 53)).unwrap();
    let many: Vec<UsageEvent> = (0..2048).map(|_| UsageEvent::new(1 << 53)).collect();
    assert_err(
        db.record_usage_batch(&org, &many),
        "validation_error",
        Some("count"),
    );
    // A removed resource takes no new usage.
    let a = actor(&owner);
    let res = db
        .register_resource(&a, &org, ResourceKind::Mcp, "M")
        .unwrap();
    db.record_usage(&org, &UsageEvent::new(1).resource(&res.id))
        .unwrap();
    db.remove_resource(&a, &org, &res.id).unwrap();
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).resource(&res.id)),
        "not_found",
        None,
    );
}

/// A helper so the test reads naturally; the fixture clock starts at `common::start()`.
trait NowForTests {
    fn now_for_tests(&self) -> chrono::DateTime<Utc>;
}
impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> chrono::DateTime<Utc> {
        use orgdb::Clock;
        self.now()
    }
}

#[test]
fn idempotency_keys_count_once_for_48_hours() {
    let (db, clock) = db();
    let (org, _) = org(&db, "Acme", "pro");
    let (other, _) = common::org(&db, "Other", "pro");
    let first = db
        .record_usage(&org, &UsageEvent::new(5).key("req-1"))
        .unwrap();
    assert!(!first.duplicate);
    // A repeat, even with another payload, is acknowledged and counts nothing.
    let again = db
        .record_usage(&org, &UsageEvent::new(50).key("req-1"))
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.used, 5);
    // Keys are scoped to the organization.
    assert!(
        !db.record_usage(&other, &UsageEvent::new(1).key("req-1"))
            .unwrap()
            .duplicate
    );
    // Duplicates inside a batch count once; buffered recording sees the same keys.
    let batch = [
        UsageEvent::new(2).key("b"),
        UsageEvent::new(2).key("b"),
        UsageEvent::new(1).key("req-1"),
    ];
    let receipts = db.record_usage_batch(&org, &batch).unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(receipts[0].used, 7);
    assert!(
        db.record_usage_buffered(&org, &UsageEvent::new(1).key("b"))
            .unwrap()
            .duplicate
    );
    // A refused event's key is not remembered.
    limit(&db, &org, 7);
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).key("late")),
        "quota_exceeded",
        None,
    );
    limit(&db, &org, 100);
    assert!(
        !db.record_usage(&org, &UsageEvent::new(1).key("late"))
            .unwrap()
            .duplicate
    );
    // Remembered across a month end, for at least 48 hours.
    clock.set(Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap());
    assert!(
        db.record_usage(&org, &UsageEvent::new(1).key("late"))
            .unwrap()
            .duplicate
    );
    clock.set(Utc.with_ymd_and_hms(2024, 2, 20, 0, 0, 0).unwrap());
    db.flush().unwrap();
    db.prune_usage(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap())
        .unwrap();
    let stats: BTreeMap<String, u64> = db.stats().unwrap().into_iter().collect();
    // The table is `idempotency` in the embedded file, `idempotency_keys` on PostgreSQL.
    let keys = stats.get("idempotency").or(stats.get("idempotency_keys"));
    assert_eq!(keys, Some(&0), "every key is past its 48 hours");
    assert!(
        !db.record_usage(&org, &UsageEvent::new(1).key("req-1"))
            .unwrap()
            .duplicate
    );
    assert_sound(&db);
}

#[test]
fn months_roll_over_and_late_events_count_in_their_own_month() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "free");
    clock.set(Utc.with_ymd_and_hms(2024, 1, 31, 23, 59, 0).unwrap());
    db.record_usage(&org, &UsageEvent::new(990)).unwrap();
    clock.set(Utc.with_ymd_and_hms(2024, 2, 1, 0, 1, 0).unwrap());
    let r = db.record_usage(&org, &UsageEvent::new(900)).unwrap();
    assert_eq!(r.used, 900, "February starts from zero");
    // A late event lands in January, against January's total.
    let late = Utc.with_ymd_and_hms(2024, 1, 31, 12, 0, 0).unwrap();
    let r = db
        .record_usage(&org, &UsageEvent::new(10).at(late))
        .unwrap();
    assert_eq!(r.used, 1000);
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1).at(late)),
        "quota_exceeded",
        None,
    );
    let d = db.get_organization(&actor(&owner), &org).unwrap();
    assert_eq!(d.usage.monthly_requests, 900);
    let jan = UsageQuery {
        period: Some(Period::Month),
        start_date: NaiveDate::from_ymd_opt(2024, 1, 5),
        end_date: None,
    };
    let report = db.usage_report(&actor(&owner), &org, &jan).unwrap();
    assert_eq!(report.requests.total, 1000);
    assert_eq!(report.by_day.len(), 31);
    assert_eq!(report.by_day[30].requests, 1000);
    assert_sound(&db);
}

#[test]
fn reports_by_day_week_month_and_range() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let weather = db
        .register_resource(&a, &org, ResourceKind::Mcp, "Weather API")
        .unwrap();
    let calc = db
        .register_resource(&a, &org, ResourceKind::Mcp, "Calculator")
        .unwrap();
    let key = db
        .register_resource(&a, &org, ResourceKind::ApiKey, "CI")
        .unwrap();
    // Usage from Mon 2024-01-29 to Sun 2024-02-04 (one ISO week across a month end).
    let mut expected_days = BTreeMap::new();
    for (i, day) in (29..=31)
        .map(|d| (1, d))
        .chain((1..=4).map(|d| (2, d)))
        .enumerate()
    {
        clock.set(Utc.with_ymd_and_hms(2024, day.0, day.1, 12, 0, 0).unwrap());
        let n = 10 * (i as u64 + 1);
        db.record_usage(&org, &UsageEvent::new(n).resource(&weather.id))
            .unwrap();
        db.record_usage_buffered(&org, &UsageEvent::new(1).resource(&calc.id))
            .unwrap();
        db.record_usage(&org, &UsageEvent::new(2).resource(&key.id))
            .unwrap();
        db.record_usage(&org, &UsageEvent::new(3)).unwrap();
        expected_days.insert(NaiveDate::from_ymd_opt(2024, day.0, day.1).unwrap(), n + 6);
    }
    db.remove_resource(&a, &org, &calc.id).unwrap();

    let week = db
        .usage_report(
            &a,
            &org,
            &UsageQuery {
                period: Some(Period::Week),
                start_date: NaiveDate::from_ymd_opt(2024, 1, 31),
                end_date: None,
            },
        )
        .unwrap();
    assert_eq!(week.period, Period::Week);
    assert_eq!(
        week.by_day.first().unwrap().date,
        NaiveDate::from_ymd_opt(2024, 1, 29).unwrap(),
        "Monday first"
    );
    assert_eq!(week.by_day.len(), 7);
    let got: BTreeMap<NaiveDate, u64> = week.by_day.iter().map(|d| (d.date, d.requests)).collect();
    assert_eq!(got, expected_days);
    assert_eq!(week.requests.total, expected_days.values().sum::<u64>());
    assert_eq!(week.requests.limit, Some(50_000));
    assert_eq!(
        week.requests.percentage,
        Some(week.requests.total * 100 / 50_000)
    );
    // by_mcp: MCP servers only, most used first; a removed one keeps its name.
    let mcps: Vec<(&str, u64)> = week
        .by_mcp
        .iter()
        .map(|m| (m.name.as_str(), m.requests))
        .collect();
    assert_eq!(mcps, [("Weather API", 280), ("Calculator", 7)]);
    // by_api_key beside it: API keys' requests appear in a breakdown too.
    let keys: Vec<(&str, &str, u64)> = week
        .by_api_key
        .iter()
        .map(|k| (k.api_key_id.as_str(), k.name.as_str(), k.requests))
        .collect();
    assert_eq!(keys, [(key.id.as_str(), key.name.as_str(), 14)]);
    assert_eq!(
        week.start_date,
        Utc.with_ymd_and_hms(2024, 1, 29, 0, 0, 0).unwrap()
    );
    assert_eq!(
        week.end_date,
        Utc.with_ymd_and_hms(2024, 2, 4, 23, 59, 59).unwrap()
    );

    // Default: the current month (February, today the 4th), zero days included.
    let month = db.usage_report(&a, &org, &UsageQuery::default()).unwrap();
    assert_eq!(month.by_day.len(), 29, "2024 is a leap year");
    assert_eq!(month.by_day[10].requests, 0);
    assert_eq!(
        month.requests.total,
        (40..=70).step_by(10).map(|n| n + 6).sum::<u64>()
    );
    let json = serde_json::to_value(&month).unwrap();
    assert_eq!(json["start_date"], "2024-02-01T00:00:00Z");
    assert_eq!(json["end_date"], "2024-02-29T23:59:59Z");
    assert_eq!(json["period"], "month");
    assert_eq!(json["by_day"][0]["date"], "2024-02-01");
    assert_eq!(json["by_api_key"][0]["api_key_id"], key.id.as_str());
    assert_eq!(json["by_api_key"][0]["requests"], 8);

    let day = db
        .usage_report(
            &a,
            &org,
            &UsageQuery {
                period: Some(Period::Day),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(day.by_day.len(), 1);
    assert_eq!(day.requests.total, 76);

    let range = UsageQuery {
        period: None,
        start_date: NaiveDate::from_ymd_opt(2024, 1, 30),
        end_date: NaiveDate::from_ymd_opt(2024, 2, 2),
    };
    let r = db.usage_report(&a, &org, &range).unwrap();
    assert_eq!(r.by_day.len(), 4);
    assert_eq!(r.requests.total, [26, 36, 46, 56].iter().sum::<u64>());

    let bad = UsageQuery {
        period: None,
        start_date: NaiveDate::from_ymd_opt(2024, 2, 2),
        end_date: NaiveDate::from_ymd_opt(2024, 2, 1),
    };
    assert_err(
        db.usage_report(&a, &org, &bad),
        "validation_error",
        Some("end_date"),
    );
    let long = UsageQuery {
        period: None,
        start_date: NaiveDate::from_ymd_opt(2023, 1, 1),
        end_date: NaiveDate::from_ymd_opt(2024, 1, 2),
    };
    assert_err(
        db.usage_report(&a, &org, &long),
        "validation_error",
        Some("end_date"),
    );
    let outsider = user(&db, "Outsider");
    assert_err(
        db.usage_report(&actor(&outsider), &org, &UsageQuery::default()),
        "forbidden",
        None,
    );
    assert_sound(&db);
}

#[test]
fn thresholds_are_audited_once_each() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 1 000
    for n in [500, 299, 1, 150, 50] {
        db.record_usage(&org, &UsageEvent::new(n)).unwrap();
        db.check().unwrap(); // folds
    }
    let log = db.audit_log(&actor(&owner), &org, 0, 100).unwrap();
    let marks: Vec<u64> = log
        .iter()
        .filter(|e| e.action == "usage.threshold")
        .map(|e| e.details["threshold_percent"].as_u64().unwrap())
        .collect();
    assert_eq!(marks, [80, 100]);
}

/// The change feed has no lag: a crossing is in `audit_log` as soon as it was admitted, with
/// no report, flush or checkpoint in between (an in-memory database has no checkpoint thread).
#[test]
fn threshold_events_are_in_the_log_at_once() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 1 000
    let thresholds = |db: &orgdb::Db| -> Vec<u64> {
        db.audit_log(&actor(&owner), &org, 0, 1000)
            .unwrap()
            .iter()
            .filter(|e| e.action == "usage.threshold")
            .map(|e| e.details["threshold_percent"].as_u64().unwrap())
            .collect()
    };
    db.record_usage(&org, &UsageEvent::new(799)).unwrap();
    assert_eq!(thresholds(&db), Vec::<u64>::new());
    db.record_usage(&org, &UsageEvent::new(1)).unwrap();
    assert_eq!(thresholds(&db), [80]);
    db.usage_recorder(&org).unwrap().record(None, 200).unwrap();
    assert_eq!(thresholds(&db), [80, 100], "buffered crossings too");
}

#[test]
fn sixteen_threads_at_the_limit_never_pass_it() {
    for durable_file in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = if durable_file {
            let opts = Options {
                journal_size: 256 << 10,
                ..Default::default()
            };
            Db::open_with(dir.path().join("u.redb"), opts).unwrap()
        } else {
            // In memory, or on PostgreSQL where the calls share transactions (group commit).
            common::db_with(Options::default())
        };
        let (org, _) = common::org(&db, "Acme", "free");
        // One recorder for every thread: it sees each round's new limit.
        let recorder = db.usage_recorder(&org).unwrap();
        // A server round trip per batch: fewer rounds and calls there, still far past the limit.
        let (rounds, calls) = if common::on_postgres() {
            (2, 100)
        } else {
            (5, 200)
        };
        let mut before = 0;
        for round in 0..rounds {
            let limit_now = 1000 * (round + 1) - 1 - round * 7;
            limit(&db, &org, limit_now);
            let admitted: u64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..16)
                    .map(|t| {
                        let db = db.clone();
                        let org = org.clone();
                        let recorder = recorder.clone();
                        s.spawn(move || {
                            let mut mine = 0u64;
                            for i in 0..calls {
                                let n = 1 + (t * 7 + i) % 5;
                                let r = match i % 5 {
                                    0 => db.record_usage_buffered(&org, &UsageEvent::new(n)),
                                    1 => recorder.record(None, n),
                                    // n events of 1: admitted all together or not at all.
                                    2 => recorder.record_many(&vec![(None, 1); n as usize]),
                                    _ => db.record_usage(&org, &UsageEvent::new(n)),
                                };
                                match r {
                                    Ok(r) => {
                                        assert!(r.used <= limit_now);
                                        mine += n;
                                    }
                                    Err(e) => assert_eq!(e.code(), "quota_exceeded"),
                                }
                            }
                            mine
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            let used = db
                .check_quota(&org, 1)
                .map(|r| r.used - 1)
                .unwrap_or_else(|e| e.details()["used"].as_u64().unwrap());
            let total_so_far = db
                .get_organization(&Actor::System, &org)
                .unwrap()
                .usage
                .monthly_requests;
            assert_eq!(used, total_so_far);
            assert!(total_so_far <= limit_now, "{total_so_far} > {limit_now}");
            // 16 × 200 events of 1..5 ask far more than the limit: it is reached or nearly.
            assert!(
                total_so_far + 5 > limit_now,
                "round {round}: {total_so_far} of {limit_now}"
            );
            assert!(admitted > 0);
            assert_eq!(
                admitted,
                total_so_far - before,
                "every acknowledged call counted once"
            );
            before = total_so_far;
        }
        db.flush().unwrap();
        let report = db
            .usage_report(&Actor::System, &org, &UsageQuery::default())
            .unwrap();
        let total = db
            .get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .monthly_requests;
        assert_eq!(report.requests.total, total, "days sum to the month");
        assert_sound(&db);
    }
}

/// Callers that stop one after another, over several organizations, in a few waves: on
/// PostgreSQL batches overlap and the last callers often find one running and gather the next
/// alone. Every call is answered (a caller left waiting with no batch to take its call would
/// hang: the watchdog fails the test instead), and each organization counts exactly its calls.
#[test]
fn callers_that_stop_one_by_one_are_all_answered() {
    let db = common::db_with(Options::default());
    let orgs: Vec<String> = (0..8)
        .map(|i| common::org(&db, &format!("Org {i}"), "free").0)
        .collect();
    for org in &orgs {
        limit(&db, org, 1_000_000);
    }
    let threads = 16usize;
    let calls_of = |t: usize| {
        if common::on_postgres() {
            2 + 2 * t
        } else {
            20 + 10 * t
        }
    };
    let mut totals = vec![0u64; orgs.len()];
    for wave in 0..4 {
        let (done, finished) = std::sync::mpsc::channel();
        for t in 0..threads {
            let (db, orgs, done) = (db.clone(), orgs.clone(), done.clone());
            std::thread::spawn(move || {
                let mut counted = vec![0u64; orgs.len()];
                for i in 0..calls_of(t) {
                    let o = (t * 3 + i + wave) % orgs.len();
                    db.record_usage(&orgs[o], &UsageEvent::new(1)).unwrap();
                    counted[o] += 1;
                }
                done.send(counted).unwrap();
            });
        }
        for _ in 0..threads {
            let counted = finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("a caller was never answered");
            for (total, n) in totals.iter_mut().zip(counted) {
                *total += n;
            }
        }
    }
    for (org, total) in orgs.iter().zip(totals) {
        // A check counts the event it asks about on top of what is stored.
        assert_eq!(db.check_quota(org, 1).unwrap().used, total + 1, "{org}");
    }
}

#[test]
fn sixteen_threads_over_several_organizations_count_each_exactly() {
    // On PostgreSQL one transaction admits the calls of several organizations at once (group
    // commit): each must still be counted against its own limit, keys and resources, and an
    // organization deleted meanwhile must refuse its own calls only.
    let db = common::db_with(Options::default());
    let orgs: Vec<(String, u64, Vec<String>)> = (0..6u64)
        .map(|i| {
            let (org, owner) = common::org(&db, &format!("Org {i}"), "free");
            let quota = 60 + 13 * i;
            limit(&db, &org, quota);
            let resources = ["A", "B"]
                .iter()
                .map(|name| {
                    db.register_resource(&actor(&owner), &org, ResourceKind::Mcp, name)
                        .unwrap()
                        .id
                })
                .collect();
            (org, quota, resources)
        })
        .collect();
    let gone = 5;
    let calls = if common::on_postgres() { 40 } else { 120 };
    // What each thread saw acknowledged: (org, resource, key, count, duplicate).
    type Seen = Vec<(usize, usize, Option<String>, u64, bool)>;
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16usize)
            .map(|t| {
                let (db, orgs) = (db.clone(), &orgs);
                s.spawn(move || {
                    let mut mine = Seen::new();
                    for i in 0..calls {
                        if t == 0 && i == calls / 2 {
                            db.delete_organization(&Actor::System, &orgs[gone].0)
                                .unwrap();
                        }
                        let o = (t / 2 + i * 5) % orgs.len();
                        let r = (t + i) % 2;
                        let n = 1 + (t + 3 * i) as u64 % 4;
                        // Threads t and t ^ 1 use the same keys: one of each pair counts.
                        let key = (i % 3 == 0).then(|| format!("k{}-{i}", t / 2));
                        let mut event = UsageEvent::new(n).resource(&orgs[o].2[r]);
                        if let Some(k) = &key {
                            event = event.key(k);
                        }
                        match db.record_usage(&orgs[o].0, &event) {
                            Ok(receipt) => {
                                assert!(receipt.used <= orgs[o].1);
                                mine.push((o, r, key, n, receipt.duplicate));
                            }
                            Err(e) if o == gone && e.code() == "not_found" => {}
                            Err(e) => assert_eq!(e.code(), "quota_exceeded", "{e}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let seen: Seen = seen.into_iter().flatten().collect();
    let mut counted: BTreeMap<(usize, Option<String>), u64> = BTreeMap::new();
    for (o, _, key, _, duplicate) in &seen {
        if key.is_some() {
            *counted.entry((*o, key.clone())).or_default() += u64::from(!duplicate);
        }
    }
    assert!(
        counted.values().all(|&n| n == 1),
        "a key counts once: {counted:?}"
    );
    for (o, (org, quota, resources)) in orgs.iter().enumerate().take(gone) {
        let admitted = |r: Option<usize>| -> u64 {
            seen.iter()
                .filter(|(so, sr, _, _, dup)| *so == o && !dup && r.is_none_or(|r| r == *sr))
                .map(|(_, _, _, n, _)| n)
                .sum()
        };
        let total = db
            .get_organization(&Actor::System, org)
            .unwrap()
            .usage
            .monthly_requests;
        assert_eq!(
            total,
            admitted(None),
            "organization {o}: acknowledged = stored"
        );
        assert!(total <= *quota && total + 4 > *quota, "{total} of {quota}");
        let report = db
            .usage_report(&Actor::System, org, &UsageQuery::default())
            .unwrap();
        for (r, id) in resources.iter().enumerate() {
            let got = report
                .by_mcp
                .iter()
                .find(|m| &m.mcp_id == id)
                .map_or(0, |m| m.requests);
            assert_eq!(got, admitted(Some(r)), "organization {o}, resource {r}");
        }
    }
    assert_err(
        db.record_usage(&orgs[gone].0, &UsageEvent::new(1)),
        "not_found",
        None,
    );
    assert_sound(&db);
}

#[test]
fn buffered_usage_is_durable_after_flush_and_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.redb");
    let clock = ManualClock::new(start());
    let opts = || Options {
        usage_flush_interval: std::time::Duration::from_secs(3600),
        journal_size: 128 << 10,
        ..Options::with_clock(clock.clone())
    };
    let org = {
        let db = Db::open_with(&path, opts()).unwrap();
        let (org, _) = common::org(&db, "Acme", "pro");
        db.record_usage_buffered(&org, &UsageEvent::new(5).key("a"))
            .unwrap();
        db.flush().unwrap();
        db.record_usage_buffered(&org, &UsageEvent::new(7).key("b"))
            .unwrap();
        org
    }; // dropped: the last handle checkpoints
    let db = Db::open_with(&path, opts()).unwrap();
    assert_eq!(
        db.get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .monthly_requests,
        12
    );
    assert!(
        db.record_usage(&org, &UsageEvent::new(1).key("b"))
            .unwrap()
            .duplicate,
        "keys survive too"
    );
    assert_sound(&db);
}

#[test]
fn a_recorder_counts_against_the_same_quota_and_is_durable_after_flush_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let clock = ManualClock::new(start());
    let opts = || Options {
        usage_flush_interval: std::time::Duration::from_secs(3600),
        journal_size: 128 << 10,
        ..Options::with_clock(clock.clone())
    };
    let (org, calc) = {
        let db = Db::open_with(&path, opts()).unwrap();
        let (org, owner) = common::org(&db, "Acme", "free"); // 1 000 a month
        let calc = db
            .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "calc")
            .unwrap();
        let rec = db.usage_recorder(&format!("  {org} ")).unwrap();
        assert_eq!(rec.organization_id(), org);

        let r = rec.record(Some(&calc.id), 600).unwrap();
        assert_eq!(
            (r.duplicate, r.used, r.limit, r.remaining),
            (false, 600, Some(1000), Some(400))
        );
        // The recorder and the other paths share one ledger: exact across them.
        db.record_usage(&org, &UsageEvent::new(300)).unwrap();
        let err = assert_err(rec.record(None, 101), "quota_exceeded", None);
        assert_eq!(
            (
                err.details()["used"].as_u64(),
                err.details()["requested"].as_u64()
            ),
            (Some(900), Some(101))
        );
        assert_eq!(rec.record(None, 100).unwrap().remaining, Some(0));
        assert_err(rec.record(None, 1), "quota_exceeded", None);
        // A raised limit is seen at once.
        limit(&db, &org, 2000);
        assert_eq!(rec.record(None, 50).unwrap().used, 1050);

        // Bad input names its field and counts nothing.
        assert_err(rec.record(None, 0), "validation_error", Some("count"));
        assert_err(
            rec.record(None, (1 << 53) + 1),
            "validation_error",
            Some("count"),
        );
        assert_err(
            rec.record(Some("  "), 1),
            "validation_error",
            Some("resource_id"),
        );
        assert_err(rec.record(Some("res_nope"), 1), "not_found", None);
        let (other, _) = common::org(&db, "Other", "free");
        let foreign = db
            .register_resource(&Actor::System, &other, ResourceKind::Mcp, "theirs")
            .unwrap();
        assert_err(rec.record(Some(&foreign.id), 1), "not_found", None);
        assert_eq!(rec.record(None, 1).unwrap().used, 1051);

        // A full event (key, late time) goes through the same recorder.
        let late = UsageEvent::new(4)
            .key("k1")
            .at(start() - TimeDelta::days(1));
        assert!(!rec.record_event(&late).unwrap().duplicate);
        assert!(rec.record_event(&late).unwrap().duplicate);
        assert_err(db.usage_recorder("org_missing"), "not_found", None);

        rec.flush().unwrap();
        rec.record(Some(&calc.id), 9).unwrap();
        (org, calc.id)
    }; // the recorder and the database dropped: the last handle checkpoints

    let db = Db::open_with(&path, opts()).unwrap();
    let month = db.get_organization(&Actor::System, &org).unwrap().usage;
    assert_eq!(month.monthly_requests, 1064);
    let report = db
        .usage_report(&Actor::System, &org, &UsageQuery::default())
        .unwrap();
    let calc_total: u64 = report
        .by_mcp
        .iter()
        .filter(|m| m.mcp_id == calc)
        .map(|m| m.requests)
        .sum();
    assert_eq!(calc_total, 609);
    assert_sound(&db);
}

#[test]
fn a_recorder_batch_is_admitted_whole_or_not_at_all() {
    let (db, _clock) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 1 000 a month
    let calc = db
        .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "calc")
        .unwrap();
    let search = db
        .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "search")
        .unwrap();
    let rec = db.usage_recorder(&org).unwrap();

    let r = rec
        .record_many(&[(Some(&calc.id), 300), (None, 5), (Some(&search.id), 200)])
        .unwrap();
    assert_eq!(
        (r.duplicate, r.used, r.limit, r.remaining),
        (false, 505, Some(1000), Some(495))
    );
    // Past the limit as a sum: refused whole, with the batch's sum as `requested`.
    let err = assert_err(
        rec.record_many(&[(Some(&calc.id), 400), (None, 96)]),
        "quota_exceeded",
        None,
    );
    assert_eq!(err.details()["used"].as_u64(), Some(505));
    assert_eq!(err.details()["requested"].as_u64(), Some(496));
    // One unknown resource refuses the batch; nothing of it is counted.
    assert_err(
        rec.record_many(&[(Some(&calc.id), 1), (Some("res_nope"), 1)]),
        "not_found",
        None,
    );
    // Bad input names the event's field and counts nothing.
    let err = assert_err(
        rec.record_many(&[(None, 1), (None, 0), (Some(" "), 1)]),
        "validation_error",
        Some("events[1].count"),
    );
    assert!(err.details().contains_key("events[2].resource_id"));
    assert_err(rec.record_many(&[]), "validation_error", Some("events"));
    let too_many = vec![(None, 1); 10_001];
    assert_err(
        rec.record_many(&too_many),
        "validation_error",
        Some("events"),
    );
    assert_eq!(db.check_quota(&org, 1).unwrap().used, 506);

    // Exactly to the limit, with ids given with spaces around them as `record` accepts.
    let spaced = format!(" {} ", search.id);
    let r = rec
        .record_many(&[(Some(spaced.as_str()), 490), (None, 5)])
        .unwrap();
    assert_eq!(r.remaining, Some(0));
    assert_err(rec.record_many(&[(None, 1)]), "quota_exceeded", None);

    db.flush().unwrap();
    let report = db
        .usage_report(&Actor::System, &org, &UsageQuery::default())
        .unwrap();
    assert_eq!(report.requests.total, 1000);
    let by: BTreeMap<_, _> = report
        .by_mcp
        .iter()
        .map(|m| (m.mcp_id.clone(), m.requests))
        .collect();
    assert_eq!(by[&calc.id], 300);
    assert_eq!(by[&search.id], 690);
    assert_sound(&db);
}

#[test]
fn a_recorder_batch_past_two_to_the_64_is_refused_whole_when_unlimited() {
    let (db, _clock) = db();
    let (org, _) = org(&db, "Big", "enterprise"); // no monthly limit
    let rec = db.usage_recorder(&org).unwrap();
    assert_eq!(rec.record(None, 5).unwrap().used, 5);
    // 2 049 events of 2^53, each valid: their sum passes u64.
    let huge = vec![(None, 1u64 << 53); 2049];
    assert_err(rec.record_many(&huge), "validation_error", Some("count"));
    // Nothing of it was counted, here or (on PostgreSQL) in the lease.
    assert_eq!(db.check_quota(&org, 1).unwrap().used, 6);
    db.flush().unwrap();
    let stored = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(stored, 5);
    assert_sound(&db);
}

#[test]
fn a_recorder_rolls_over_months_and_stops_with_its_organization_or_resource() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "free");
    let calc = db
        .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "calc")
        .unwrap();
    let rec = db.usage_recorder(&org).unwrap();
    assert_eq!(rec.record(Some(&calc.id), 1000).unwrap().remaining, Some(0));
    assert_err(rec.record(None, 1), "quota_exceeded", None);
    // The first of the next month starts from zero.
    use chrono::Datelike;
    let next = start().date_naive().with_day(1).unwrap() + chrono::Months::new(1);
    clock.set(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).unwrap()));
    assert_eq!(rec.record(None, 10).unwrap().used, 10);

    db.remove_resource(&actor(&owner), &org, &calc.id).unwrap();
    assert_err(rec.record(Some(&calc.id), 1), "not_found", None);
    assert_eq!(rec.record(None, 1).unwrap().used, 11);

    db.delete_organization(&actor(&owner), &org).unwrap();
    assert_err(rec.record(None, 1), "not_found", None);
    // A new organization taking the freed place is not the recorder's.
    let (newer, _) = common::org(&db, "Newer", "free");
    assert_err(rec.record(None, 1), "not_found", None);
    let fresh = db.usage_recorder(&newer).unwrap();
    assert_eq!(fresh.record(None, 2).unwrap().used, 2);
    db.flush().unwrap();
    assert_sound(&db);
}

/// `for_resource` and `add`: the same admission as `record`, answering the period's usage,
/// with `record`'s errors (and nothing recorded by a refused call).
#[test]
fn a_resource_recorder_adds_as_record_does_and_answers_the_total() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 1 000 a month
    let calc = db
        .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "calc")
        .unwrap();
    let rec = db.usage_recorder(&org).unwrap();
    assert_err(
        rec.for_resource("  "),
        "validation_error",
        Some("resource_id"),
    );
    let on_calc = rec.for_resource(&format!(" {} ", calc.id)).unwrap();
    assert_eq!(on_calc.resource_id(), Some(calc.id.as_str()));
    assert_eq!(rec.resource_id(), None);
    assert_eq!(on_calc.add(600).unwrap(), 600);
    assert_eq!(rec.add(300).unwrap(), 900);
    assert_err(on_calc.add(0), "validation_error", Some("count"));
    let err = assert_err(on_calc.add(101), "quota_exceeded", None);
    assert_eq!(err.details()["used"].as_u64(), Some(900));
    // A resource of another organization, or none at all, is not found, as by `record`.
    let (other, other_owner) = common::org(&db, "Other", "free");
    let theirs = db
        .register_resource(&actor(&other_owner), &other, ResourceKind::Mcp, "theirs")
        .unwrap();
    assert_err(
        rec.for_resource(&theirs.id).unwrap().add(1),
        "not_found",
        None,
    );
    assert_err(
        rec.for_resource("mcp_missing").unwrap().add(1),
        "not_found",
        None,
    );
    assert_eq!(on_calc.add(100).unwrap(), 1000);
    db.remove_resource(&actor(&owner), &org, &calc.id).unwrap();
    assert_err(on_calc.add(1), "not_found", None);
    db.flush().unwrap();
    let report = db
        .usage_report(&actor(&owner), &org, &UsageQuery::default())
        .unwrap();
    assert_eq!(report.requests.total, 1000);
    let on_calc_total: u64 = report
        .by_mcp
        .iter()
        .filter(|r| r.mcp_id == calc.id)
        .map(|r| r.requests)
        .sum();
    assert_eq!(on_calc_total, 700);
    assert_sound(&db);
}

#[test]
fn the_journal_restarts_when_full_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.redb");
    let opts = || Options {
        usage_flush_interval: std::time::Duration::from_secs(3600),
        journal_size: 64 << 10,
        ..Default::default()
    };
    let db = Db::open_with(&path, opts()).unwrap();
    let (org, _) = common::org(&db, "Acme", "enterprise");
    // ~100 bytes a record: thousands of records wrap a 64 KiB journal many times.
    for i in 0..3000u64 {
        db.record_usage(&org, &UsageEvent::new(1).key(format!("k{i}")))
            .unwrap();
    }
    assert_eq!(
        db.get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .monthly_requests,
        3000
    );
    drop(db);
    let db = Db::open_with(&path, opts()).unwrap();
    assert_eq!(
        db.get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .monthly_requests,
        3000
    );
    assert!(
        db.record_usage(&org, &UsageEvent::new(1).key("k2999"))
            .unwrap()
            .duplicate
    );
    assert_sound(&db);
}

const CHILD_ENV: &str = "ORGDB_USAGE_CHILD_DB";

/// Not a test of its own: the body of the child process of
/// `acknowledged_usage_survives_an_exit_without_close` (it does nothing unless that test set
/// the environment variable). Records durable usage, prints each acknowledgement, then exits
/// without running destructors: no final checkpoint, no clean close.
#[test]
fn child_process_body() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let opts = Options {
        usage_flush_interval: std::time::Duration::from_secs(3600),
        journal_size: 1 << 20,
        durability: Durability::Immediate,
        ..Default::default()
    };
    let db = Db::open_with(&path, opts).unwrap();
    let org = db
        .check_slug("acme")
        .map(|_| ())
        .and_then(|_| {
            db.get_organization_by_slug(&Actor::System, "acme")
                .map(|d| d.organization.id)
        })
        .unwrap();
    for i in 0..500u64 {
        let r = db
            .record_usage(&org, &UsageEvent::new(1 + i % 3).key(format!("c{i}")))
            .unwrap();
        println!("ACK {i} {}", r.used);
    }
    std::process::exit(0);
}

#[test]
fn acknowledged_usage_survives_an_exit_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    let org = {
        let db = Db::open(&path).unwrap();
        let owner = db
            .create_user(&orgdb::NewUser {
                email: "o@example.com".into(),
                name: "O".into(),
            })
            .unwrap();
        let new = orgdb::NewOrganization {
            name: "Acme".into(),
            plan: Some("enterprise".into()),
            ..Default::default()
        };
        db.create_organization(&owner.id, &new)
            .unwrap()
            .organization
            .id
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_body",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let acks: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.split_once("ACK ").map(|(_, rest)| rest))
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        acks.len(),
        500,
        "child output: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = *acks.last().unwrap();
    let db = Db::open(&path).unwrap();
    let got = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(got, expected, "replayed from the journal");
    assert!(
        db.record_usage(&org, &UsageEvent::new(1).key("c499"))
            .unwrap()
            .duplicate
    );
    assert!(
        db.record_usage(&org, &UsageEvent::new(1).key("c0"))
            .unwrap()
            .duplicate
    );
    assert_sound(&db);
}

#[test]
fn a_new_database_ignores_a_journal_left_by_a_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let org_a = Db::open(&path).unwrap();
    let (org, _) = common::org(&org_a, "Acme", "enterprise");
    org_a.record_usage(&org, &UsageEvent::new(5)).unwrap();
    // Leave without a checkpoint (the records stay only in the journal), then delete the
    // database file but not its journal.
    std::mem::forget(org_a);
    std::fs::remove_file(&path).unwrap();
    // The forgotten handle still holds the old file's lock on its (now unlinked) inode only.
    let fresh = Db::open(&path).unwrap();
    assert_eq!(
        fresh
            .stats()
            .unwrap()
            .iter()
            .find(|(t, _)| t == "usage_month")
            .unwrap()
            .1,
        0
    );
    assert_sound(&fresh);
}

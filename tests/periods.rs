//! Quota periods (SPEC section 13, issue 17): a usage quota that resets on the calendar month
//! (default), a day, an ISO week, a year, or monthly from a billing anchor, rolled over by the
//! manual clock; changing the rule never loses or double-counts usage. On both backends.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::*;
use orgdb::{
    Actor, Db, Limits, ManualClock, Options, Period, Plan, PlanCatalog, QuotaPeriod, UsageEvent,
    UsageQuery,
};

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn anchored(y: i32, m: u32, d: u32) -> QuotaPeriod {
    QuotaPeriod::Anchored {
        anchor: date(y, m, d),
    }
}

/// `metered`: 10 requests a period; `big`: 1 000 000.
fn open_at(now: DateTime<Utc>) -> (Db, ManualClock) {
    let clock = ManualClock::new(now);
    let mut opts = Options::with_clock(clock.clone());
    let limits = |n| Limits {
        monthly_requests: Some(n),
        ..Limits::default()
    };
    opts.plans = PlanCatalog {
        plans: BTreeMap::from([
            ("metered".to_owned(), Plan::from(limits(10))),
            ("big".to_owned(), Plan::from(limits(1_000_000))),
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

/// An anchor on the 31st: periods start on Jan 31, Feb 29 (a leap year), Mar 31, Apr 30;
/// the quota resets at each, as the clock moves.
#[test]
fn an_anchored_quota_resets_on_the_clamped_billing_day() {
    let (db, clock) = open_at(at(2024, 2, 10));
    let (org, _) = org(&db, "Acme", "metered");
    let period = db
        .set_billing_anchor(&Actor::System, &org, anchored(2023, 1, 31))
        .unwrap();
    assert_eq!(
        (period.period_start, period.period_end),
        (date(2024, 1, 31), date(2024, 2, 28))
    );
    let r = db.record_usage(&org, &UsageEvent::new(10)).unwrap();
    assert_eq!((r.used, r.limit, r.remaining), (10, Some(10), Some(0)));
    assert_eq!(
        (r.period_start, r.period_end),
        (date(2024, 1, 31), date(2024, 2, 28))
    );
    assert_err(
        db.record_usage(&org, &UsageEvent::new(1)),
        "quota_exceeded",
        None,
    );
    assert_err(db.check_quota(&org, 1), "quota_exceeded", None);

    // Feb 29: a new period, clamped to the leap month's last day.
    clock.set(Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap());
    let r = db.check_quota(&org, 1).unwrap();
    assert_eq!(
        (r.used, r.period_start, r.period_end),
        (1, date(2024, 2, 29), date(2024, 3, 30))
    );
    assert_eq!(db.record_usage(&org, &UsageEvent::new(4)).unwrap().used, 4);
    assert_eq!(used(&db, &org), 4);

    // Mar 30 is still that period; Mar 31 starts the next.
    clock.set(at(2024, 3, 30));
    assert_eq!(db.record_usage(&org, &UsageEvent::new(6)).unwrap().used, 10);
    assert_err(db.check_quota(&org, 1), "quota_exceeded", None);
    clock.set(at(2024, 3, 31));
    let r = db.record_usage(&org, &UsageEvent::new(1)).unwrap();
    assert_eq!(
        (r.used, r.period_start, r.period_end),
        (1, date(2024, 3, 31), date(2024, 4, 29))
    );

    // The default report is the billing period; its days are what was recorded.
    let report = db
        .usage_report(&Actor::System, &org, &UsageQuery::default())
        .unwrap();
    assert_eq!(report.period, Period::Billing);
    assert_eq!(
        report.start_date,
        Utc.with_ymd_and_hms(2024, 3, 31, 0, 0, 0).unwrap()
    );
    assert_eq!(
        report.end_date,
        Utc.with_ymd_and_hms(2024, 4, 29, 23, 59, 59).unwrap()
    );
    assert_eq!(report.requests.total, 1);
    assert_eq!(report.by_day.len(), 30);
    let billing = db.billing_period(&Actor::System, &org).unwrap();
    assert_eq!(billing.rule, anchored(2023, 1, 31));
    assert_eq!(billing.period_start, date(2024, 3, 31));
    assert_sound(&db);
}

/// Usage recorded on several days, durable and buffered, then the rule changed five times:
/// each time the current period's total is exactly the sum of its days, the day rows never
/// change, and each change is audited once.
#[test]
fn changing_the_rule_never_loses_or_double_counts_usage() {
    let (db, clock) = open_at(at(2024, 1, 10));
    let (org, _) = org(&db, "Acme", "big");
    for (day, n) in [(10, 3), (14, 5), (15, 7), (20, 11)] {
        clock.set(at(2024, 1, day));
        db.record_usage(&org, &UsageEvent::new(n)).unwrap();
    }
    // Buffered usage not yet folded or flushed when the rule changes.
    let recorder = db.usage_recorder(&org).unwrap();
    assert_eq!(recorder.record(None, 2).unwrap().used, 28);
    assert_eq!(used(&db, &org), 28);
    let january = UsageQuery {
        period: None,
        start_date: Some(date(2024, 1, 1)),
        end_date: Some(date(2024, 1, 31)),
    };
    let days_before = db
        .usage_report(&Actor::System, &org, &january)
        .unwrap()
        .by_day;

    let steps = [
        (
            anchored(2024, 1, 15),
            20,
            date(2024, 1, 15),
            date(2024, 2, 14),
        ),
        (QuotaPeriod::Day, 13, date(2024, 1, 20), date(2024, 1, 20)),
        (QuotaPeriod::Week, 20, date(2024, 1, 15), date(2024, 1, 21)),
        (QuotaPeriod::Year, 28, date(2024, 1, 1), date(2024, 12, 31)),
        (
            QuotaPeriod::CalendarMonth,
            28,
            date(2024, 1, 1),
            date(2024, 1, 31),
        ),
    ];
    let mut last = QuotaPeriod::CalendarMonth;
    for (rule, total, start, end) in steps {
        let p = db.set_billing_anchor(&Actor::System, &org, rule).unwrap();
        assert_eq!((p.rule, p.period_start, p.period_end), (rule, start, end));
        assert_eq!(used(&db, &org), total, "{rule:?}");
        let r = db.check_quota(&org, 1).unwrap();
        assert_eq!((r.used, r.period_start), (total + 1, start), "{rule:?}");
        // The recorder (its organization loaded in memory) follows the new rule too.
        let r = recorder.record(None, 1).unwrap();
        assert_eq!((r.used, r.period_start), (total + 1, start), "{rule:?}");
        db.correct_usage(
            &Actor::System,
            &org,
            &orgdb::UsageCorrection {
                date: date(2024, 1, 20),
                resource_id: None,
                delta: -1,
                idempotency_key: None,
                reason: None,
            },
        )
        .unwrap();
        assert_eq!(used(&db, &org), total, "{rule:?}");
        assert_sound(&db);
        let events = db.audit_log(&Actor::System, &org, 0, 1_000).unwrap();
        let change = events
            .iter()
            .rev()
            .find(|e| e.action == "organization.quota_period_changed")
            .unwrap();
        assert_eq!(
            change.details["before"],
            serde_json::to_value(last).unwrap()
        );
        assert_eq!(change.details["after"], serde_json::to_value(rule).unwrap());
        last = rule;
    }
    // The same rule again changes nothing and is not audited.
    db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::CalendarMonth)
        .unwrap();
    let changes = db
        .audit_log(&Actor::System, &org, 0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "organization.quota_period_changed")
        .count();
    assert_eq!(changes, 5);
    let report = db.usage_report(&Actor::System, &org, &january).unwrap();
    assert_eq!(report.by_day, days_before);
    assert_eq!(report.requests.total, 28);
    assert_sound(&db);
}

/// A day quota: the recorder's hot path rolls over at midnight UTC; a late event counts in
/// its own day's period.
#[test]
fn a_daily_quota_rolls_over_at_midnight() {
    let (db, clock) = open_at(Utc.with_ymd_and_hms(2024, 3, 4, 23, 59, 0).unwrap());
    let (org, _) = org(&db, "Acme", "metered");
    db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::Day)
        .unwrap();
    let recorder = db.usage_recorder(&org).unwrap();
    for _ in 0..10 {
        recorder.record(None, 1).unwrap();
    }
    assert_err(recorder.record(None, 1), "quota_exceeded", None);
    clock.set(Utc.with_ymd_and_hms(2024, 3, 5, 0, 0, 1).unwrap());
    let r = recorder.record(None, 3).unwrap();
    assert_eq!(
        (r.used, r.period_start, r.period_end),
        (3, date(2024, 3, 5), date(2024, 3, 5))
    );
    // Yesterday is full; today has room.
    let late = UsageEvent {
        at: Some(Utc.with_ymd_and_hms(2024, 3, 4, 18, 0, 0).unwrap()),
        ..UsageEvent::new(1)
    };
    assert_err(db.record_usage(&org, &late), "quota_exceeded", None);
    assert_eq!(db.record_usage(&org, &UsageEvent::new(1)).unwrap().used, 4);
    // A batch spanning both days is checked per period: refused whole.
    let batch = [UsageEvent::new(1), late.clone()];
    assert_err(db.record_usage_batch(&org, &batch), "quota_exceeded", None);
    assert_eq!(used(&db, &org), 4);
    db.flush().unwrap();
    assert_sound(&db);
}

#[test]
fn only_the_operator_sets_the_rule_and_bad_anchors_change_nothing() {
    let (db, _) = open_at(at(2024, 1, 10));
    let (org, owner) = org(&db, "Acme", "metered");
    let a = actor(&owner);
    assert_err(
        db.set_billing_anchor(&a, &org, QuotaPeriod::Day),
        "forbidden",
        None,
    );
    assert_err(
        db.set_billing_anchor(&Actor::System, &org, anchored(1800, 1, 1)),
        "validation_error",
        Some("anchor"),
    );
    assert_err(
        db.set_billing_anchor(&Actor::System, "org_missing", QuotaPeriod::Day),
        "not_found",
        None,
    );
    // Members read it; others do not.
    let billing = db.billing_period(&a, &org).unwrap();
    assert_eq!(billing.rule, QuotaPeriod::CalendarMonth);
    assert_eq!(
        (billing.period_start, billing.period_end),
        (date(2024, 1, 1), date(2024, 1, 31))
    );
    let stranger = user(&db, "Eve");
    assert_err(
        db.billing_period(&actor(&stranger), &org),
        "forbidden",
        None,
    );
    assert!(db
        .audit_log(&Actor::System, &org, 0, 100)
        .unwrap()
        .iter()
        .all(|e| e.action != "organization.quota_period_changed"));
}

/// Export carries the rule and the period totals; an import gives the same database.
#[test]
fn export_and_import_carry_quota_periods() {
    let (db, clock) = open_at(at(2024, 1, 10));
    let (org, _) = org(&db, "Acme", "big");
    db.record_usage(&org, &UsageEvent::new(5)).unwrap();
    db.set_billing_anchor(&Actor::System, &org, anchored(2020, 2, 29))
        .unwrap();
    clock.set(at(2024, 1, 30));
    db.record_usage(&org, &UsageEvent::new(7)).unwrap();
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#""quota_period":{"kind":"anchored","anchor":"2020-02-29"}"#),
        "{text}"
    );
    assert!(text.contains(r#""type":"usage_period""#), "{text}");

    let (copy, _) = open_at(at(2024, 1, 30));
    copy.import_jsonl(text.as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_sound(&copy);
    let mut again = Vec::new();
    copy.export_jsonl(&mut again).unwrap();
    let lines = |t: &str| {
        t.lines()
            .filter(|l| !l.contains(r#""type":"header""#))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&String::from_utf8(again).unwrap()), lines(&text));
    assert_eq!(
        copy.billing_period(&Actor::System, &org).unwrap(),
        db.billing_period(&Actor::System, &org).unwrap()
    );
    // Dec 29 .. Jan 28: 5 + 0; Jan 29 .. Feb 28: 7.
    assert_eq!(used(&copy, &org), 7);

    // A period that is not one of the organization's rule is refused, and nothing changes.
    let bad = text.replace(
        r#""period_start":"2024-01-29""#,
        r#""period_start":"2024-01-28""#,
    );
    let (other, _) = open_at(at(2024, 1, 30));
    assert_err(
        other.import_jsonl(bad.as_bytes(), None, &mut |_| {}),
        "validation_error",
        None,
    );
    assert!(other.find_user_by_email("acme.owner@example.com").is_err());
}

/// Days pruned are gone: a rule whose open period (one late events still reach) would need
/// them is refused with `conflict`, naming the mark, and changes nothing; a rule whose periods
/// all start after the mark is taken. The mark only moves forward and travels in the export.
#[test]
fn a_rule_that_would_need_pruned_days_is_refused() {
    let (db, clock) = open_at(at(2024, 3, 10));
    let (org, _) = org(&db, "Acme", "big");
    db.record_usage(&org, &UsageEvent::new(100)).unwrap();
    // May 2: in the week from Apr 29, which starts before the mark.
    clock.set(at(2024, 5, 2));
    db.record_usage(&org, &UsageEvent::new(5)).unwrap();
    clock.set(at(2024, 5, 10));
    db.record_usage(&org, &UsageEvent::new(20)).unwrap();
    clock.set(at(2024, 6, 20));
    db.record_usage(&org, &UsageEvent::new(3)).unwrap();
    db.prune_usage(date(2024, 5, 1)).unwrap();
    // An earlier prune does not move the mark back.
    db.prune_usage(date(2024, 1, 1)).unwrap();

    let year = || db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::Year);
    let err = year().unwrap_err();
    assert_eq!(err.code(), "conflict", "{err:?}");
    let details = serde_json::to_value(err.details()).unwrap();
    assert_eq!(details["pruned_before"], "2024-05-01", "{details}");
    assert_eq!(details["period_start"], "2024-01-01", "{details}");
    let period = db.billing_period(&Actor::System, &org).unwrap();
    assert_eq!(period.rule, QuotaPeriod::CalendarMonth);
    assert_eq!(used(&db, &org), 3);

    // Weeks from May 13 (the oldest open day is May 16): all after the mark. The closed
    // week from Apr 29 keeps what remains of its days (May 2's 5).
    db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::Week)
        .unwrap();
    assert_eq!(used(&db, &org), 3);
    assert_sound(&db);
    db.set_billing_anchor(&Actor::System, &org, QuotaPeriod::CalendarMonth)
        .unwrap();
    assert_eq!(used(&db, &org), 3);
    let may = db
        .usage_report(
            &Actor::System,
            &org,
            &UsageQuery {
                start_date: Some(date(2024, 5, 1)),
                end_date: Some(date(2024, 5, 31)),
                ..UsageQuery::default()
            },
        )
        .unwrap();
    assert_eq!(may.requests.total, 25);
    assert_sound(&db);

    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains(r#""usage_pruned_before":"2024-05-01""#),
        "{text}"
    );
    let (copy, _) = open_at(at(2024, 6, 20));
    copy.import_jsonl(text.as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_eq!(
        copy.set_billing_anchor(&Actor::System, &org, QuotaPeriod::Year)
            .unwrap_err()
            .code(),
        "conflict"
    );
    assert_eq!(used(&copy, &org), 3);

    // An organization created after the mark lost nothing to it: any rule is taken.
    let (late, _) = common::org(&db, "Late", "big");
    db.set_billing_anchor(&Actor::System, &late, QuotaPeriod::Year)
        .unwrap();
    assert_sound(&db);
}

//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use orgdb::{Actor, Db, ManualClock, NewOrganization, NewUser, Options, User};

/// 2024-01-15T10:30:00Z, the seeds' first timestamp.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
}

/// A fresh database driven by a manual clock: in memory, or with `ORGDB_TEST_BACKEND=postgres`
/// a new schema on the server of `ORGDB_TEST_POSTGRES_URL` (see `scripts/pg-server.sh`), so
/// the same tests run against both backends.
pub fn db() -> (Db, ManualClock) {
    let clock = ManualClock::new(start());
    let db = db_with(Options::with_clock(clock.clone()));
    (db, clock)
}

/// A fresh database with `opts`, on the backend the environment chooses (see [`db`]).
pub fn db_with(opts: Options) -> Db {
    match postgres_url() {
        Some(url) => Db::open_with(fresh_schema(&url), opts).unwrap(),
        None => Db::in_memory_with(opts).unwrap(),
    }
}

/// Whether the tests run against PostgreSQL.
pub fn on_postgres() -> bool {
    postgres_url().is_some()
}

/// The server URL when `ORGDB_TEST_BACKEND=postgres`.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ORGDB_TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(std::env::var("ORGDB_TEST_POSTGRES_URL").expect(
            "ORGDB_TEST_BACKEND=postgres needs ORGDB_TEST_POSTGRES_URL (scripts/pg-server.sh run)",
        )),
        Ok("redb") | Ok("") | Err(_) => None,
        Ok(other) => panic!("ORGDB_TEST_BACKEND={other}: expected redb or postgres"),
    }
}

/// A URL for a new, empty schema on the server at `url` (orgdb creates it on open).
pub fn fresh_schema(url: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={name}")
}

pub fn user(db: &Db, name: &str) -> User {
    let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
    db.create_user(&NewUser {
        email,
        name: name.to_owned(),
    })
    .unwrap()
}

/// An organization on `plan` owned by a new user; returns (org id, owner).
pub fn org(db: &Db, name: &str, plan: &str) -> (String, User) {
    let owner = user(db, &format!("{name} Owner"));
    let created = db
        .create_organization(
            &owner.id,
            &NewOrganization {
                name: name.to_owned(),
                plan: Some(plan.to_owned()),
                ..Default::default()
            },
        )
        .unwrap();
    (created.organization.id, owner)
}

pub fn actor(user: &User) -> Actor {
    Actor::user(&user.id)
}

/// Asserts an error's code and (when given) that `details` names `field`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    result: orgdb::Result<T>,
    code: &str,
    field: Option<&str>,
) -> orgdb::Error {
    let err = result.expect_err("expected an error");
    assert_eq!(err.code(), code, "wrong code: {err:?}");
    if let Some(field) = field {
        assert!(
            err.details().contains_key(field),
            "details lack {field:?}: {err:?}"
        );
    }
    err
}

/// Asserts the database is sound.
#[track_caller]
pub fn assert_sound(db: &Db) {
    let report = db.check().unwrap();
    assert!(report.is_ok(), "check failed: {:#?}", report.problems);
}

/// A `usage_month` record as export format 4 writes it: `usage_period`, the calendar month.
pub fn usage_period_of_month(v: &serde_json::Value) -> serde_json::Value {
    let month = v["data"]["month"].as_str().unwrap();
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap();
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap()
        .pred_opt()
        .unwrap();
    serde_json::json!({"type": "usage_period", "data": {
        "organization_id": v["data"]["organization_id"],
        "period_start": first.to_string(),
        "period_end": last.to_string(),
        "total": v["data"]["total"],
    }})
}

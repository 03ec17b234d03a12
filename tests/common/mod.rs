//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use orgdb::{Actor, Db, ManualClock, NewOrganization, NewUser, Options, User};

/// 2024-01-15T10:30:00Z, the seeds' first timestamp.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
}

/// An in-memory database driven by a manual clock.
pub fn db() -> (Db, ManualClock) {
    let clock = ManualClock::new(start());
    let db = Db::in_memory_with(Options::with_clock(clock.clone())).unwrap();
    (db, clock)
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

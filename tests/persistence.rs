//! File databases: reopening keeps everything, a newer schema is refused, a second handle on
//! the same file is told the database is in use, a truncated file is refused, a file of
//! another format is told it is not an orgdb database.

mod common;

use common::*;
use orgdb::{Actor, Db, MemberQuery, NewOrganization, NewUser};

#[test]
fn reopen_keeps_every_row_and_the_audit_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    let (org, owner, seq) = {
        let db = Db::open(&path).unwrap();
        let owner = db
            .create_user(&NewUser {
                email: "a@example.com".into(),
                name: "A".into(),
            })
            .unwrap();
        let org = db
            .create_organization(
                &owner.id,
                &NewOrganization {
                    name: "Acme".into(),
                    ..Default::default()
                },
            )
            .unwrap()
            .organization;
        let log = db
            .audit_log(&Actor::user(&owner.id), &org.id, 0, 100)
            .unwrap();
        (org, owner, log.last().unwrap().seq)
    };
    let db = Db::open(&path).unwrap();
    let details = db
        .get_organization(&Actor::user(&owner.id), &org.id)
        .unwrap();
    assert_eq!(details.organization, org);
    assert_eq!(db.find_user_by_email("A@example.com").unwrap(), owner);
    let bob = db
        .create_user(&NewUser {
            email: "b@example.com".into(),
            name: "B".into(),
        })
        .unwrap();
    db.add_member(&Actor::user(&owner.id), &org.id, &bob.id, "member")
        .unwrap();
    let log = db.audit_log(&Actor::System, &org.id, seq, 100).unwrap();
    assert_eq!(
        log.first().unwrap().seq,
        seq + 2,
        "user.created took seq+1; no gap, no reuse"
    );
    assert_eq!(
        db.list_members(&Actor::System, &org.id, &MemberQuery::default())
            .unwrap()
            .pagination
            .total,
        2
    );
    assert_sound(&db);
}

#[test]
fn a_second_handle_on_the_same_file_is_told_it_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    let _first = Db::open(&path).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.code(), "storage_error");
    assert!(err.message().contains("in use"), "{err}");
    assert!(err.message().contains(&path.display().to_string()), "{err}");
    assert!(err.message().contains("Db::backup_to"), "{err}");
}

#[test]
fn a_database_file_truncated_to_nothing_is_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    {
        let db = Db::open(&path).unwrap();
        let (org, _) = org(&db, "Acme", "free");
        db.record_usage(&org, &orgdb::UsageEvent::new(3)).unwrap();
    }
    std::fs::File::create(&path).unwrap(); // truncates to 0 bytes
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.code(), "corrupted", "{err}");
    assert!(err.message().contains("truncated"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as found");

    // An empty file with no journal beside it is a new database, as a missing one is.
    let fresh = dir.path().join("new.redb");
    std::fs::File::create(&fresh).unwrap();
    let db = Db::open(&fresh).unwrap();
    let stats = db.stats().unwrap();
    assert!(
        stats
            .iter()
            .all(|(table, rows)| *table == "meta" || *rows == 0),
        "{stats:?}"
    );
}

#[test]
fn a_file_of_another_format_is_not_an_orgdb_database() {
    let dir = tempfile::tempdir().unwrap();
    // A real SQLite database, random bytes, and a file shorter than any header.
    let sqlite = dir.path().join("app.sqlite");
    {
        let conn = rusqlite::Connection::open(&sqlite).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    assert!(std::fs::read(&sqlite)
        .unwrap()
        .starts_with(b"SQLite format 3\0"));
    let random = dir.path().join("random.bin");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..10_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, b"hello").unwrap();

    for path in [&sqlite, &random, &short] {
        let before = std::fs::read(path).unwrap();
        let err = Db::open(path).unwrap_err();
        assert_eq!(err.code(), "corrupted", "{err}");
        let message = err.message();
        assert!(
            message.contains(&format!("not an orgdb database: {}: ", path.display())),
            "{message}"
        );
        assert!(!message.contains("magic number"), "{message}");
        assert_eq!(std::fs::read(path).unwrap(), before, "left as found");
        let mut journal = path.as_os_str().to_owned();
        journal.push(".journal");
        assert!(
            !std::path::Path::new(&journal).exists(),
            "no journal made beside it"
        );
    }
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    drop(Db::open(&path).unwrap());
    {
        // Write what a future orgdb would: meta["schema_version"] = 99 (key: name + NUL).
        let raw = redb::Database::open(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(def).unwrap();
            // Counters are 8 bytes big-endian followed by their crc32 (little-endian).
            let mut value = 99u64.to_be_bytes().to_vec();
            value.extend_from_slice(&crc32fast::hash(&99u64.to_be_bytes()).to_le_bytes());
            meta.insert(&b"schema_version\0"[..], &value[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Db::open(&path).unwrap_err();
    assert_eq!(err.code(), "incompatible_version");
    assert_eq!(err.details()["found"], 99);
    assert_eq!(err.http_status(), 500);
}

#[test]
fn bad_options_are_refused_at_open() {
    let opts = orgdb::Options {
        invitation_lifetime: chrono::TimeDelta::minutes(5),
        ..Default::default()
    };
    assert_err(
        Db::in_memory_with(opts),
        "validation_error",
        Some("invitation_lifetime"),
    );
    let opts = orgdb::Options {
        invite_url_template: "https://x/".into(),
        ..Default::default()
    };
    assert_err(
        Db::in_memory_with(opts),
        "validation_error",
        Some("invite_url_template"),
    );
}

/// Operations read the usage ledger inside their write transactions (an organization's
/// details carry its period total), while a journal restart or a fold before a write holds
/// admissions up and then waits for the database's writer: the hold must not be the ledger's
/// lock (it was, and these two deadlocked). A small journal with frequent checkpoints makes
/// restarts happen every few calls; a deadlock fails the test instead of hanging it.
#[test]
fn writes_that_read_usage_race_journal_restarts_without_deadlock() {
    use std::sync::mpsc;
    use std::time::Duration;

    use orgdb::{Limit, LimitOverridesPatch, Options, UsageEvent};

    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        journal_size: 64 * 1024,
        usage_flush_interval: Duration::from_millis(2),
        ..Options::default()
    };
    let db = Db::open_with(dir.path().join("org.redb"), opts).unwrap();
    let (org, _) = org(&db, "Acme", "enterprise");
    let (done, finished) = mpsc::channel();
    for worker in 0..3 {
        let (db, org, done) = (db.clone(), org.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..400u64 {
                match worker {
                    0 => {
                        let patch = LimitOverridesPatch {
                            mcps: Some(Some(Limit::Count(100 + i % 7))),
                            ..Default::default()
                        };
                        db.set_limit_overrides(&Actor::System, &org, &patch)
                            .unwrap();
                    }
                    1 => {
                        db.record_usage(&org, &UsageEvent::new(1).key(format!("k{i}")))
                            .unwrap();
                    }
                    _ => {
                        let correction = orgdb::UsageCorrection {
                            date: db.now().date_naive(),
                            resource_id: None,
                            delta: 1,
                            idempotency_key: None,
                            reason: None,
                        };
                        db.correct_usage(&Actor::System, &org, &correction).unwrap();
                    }
                }
            }
            done.send(worker).unwrap();
        });
    }
    for _ in 0..3 {
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("a worker is stuck: the ledger and the database's writer deadlocked");
    }
}

/// Journaled writes are in the file itself after a checkpoint (`flush`, or the background one
/// every `usage_flush_interval`), not only in the journal: a copy of the file alone, taken
/// while the handle is open, holds them.
#[test]
fn a_checkpoint_puts_journaled_writes_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    let opts = orgdb::Options {
        usage_flush_interval: std::time::Duration::from_secs(3600),
        ..orgdb::Options::default()
    };
    let db = Db::open_with(&path, opts).unwrap();
    let (org, _) = org(&db, "Acme", "enterprise");
    let member = user(&db, "Late Member");
    db.add_member(&Actor::System, &org, &member.id, "member")
        .unwrap();
    db.flush().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&path, &copy).unwrap();
    drop(db);
    // No journal beside the copy: what it holds is the file's.
    let copy = Db::open(&copy).unwrap();
    assert_eq!(copy.get_user(&member.id).unwrap().name, "Late Member");
    let page = copy
        .list_members(&Actor::System, &org, &MemberQuery::default())
        .unwrap();
    assert_eq!(page.data.len(), 2, "the owner and the member added last");
    assert_sound(&copy);
}

/// A database deleted while its journal stays beside it: a new database at the same path
/// owns nothing in that journal. Its generations and sequence numbers start where the old
/// one's did, so the old records must be gone before the new database writes any, or a later
/// open would replay the old writes into it.
#[test]
fn a_new_database_never_replays_the_journal_of_a_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.redb");
    {
        let db = Db::open(&path).unwrap();
        org(&db, "Old Co", "pro");
    }
    std::fs::remove_file(&path).unwrap();
    // Opened twice with nothing written, then once with a write: every open starts a
    // generation, and the old journal's were the same numbers.
    drop(Db::open(&path).unwrap());
    drop(Db::open(&path).unwrap());
    {
        let db = Db::open(&path).unwrap();
        user(&db, "New User");
    }
    let db = Db::open(&path).unwrap();
    assert!(
        db.find_user_by_email("old.co.owner@example.com").is_err(),
        "the deleted database's owner came back"
    );
    assert!(db.find_user_by_email("new.user@example.com").is_ok());
    assert_sound(&db);
}

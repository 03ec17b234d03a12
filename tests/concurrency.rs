//! The seat race of SPEC section 5: under any concurrency no limit is oversubscribed. Sixteen
//! threads with cloned `Db` handles race for the last N seats (direct adds, accepted
//! invitations) or MCP slots; exactly N win, every other caller gets `quota_exceeded`, and
//! the counts end exactly at the limit. Also: readers running next to writers see consistent
//! snapshots.

mod common;

use std::sync::Barrier;

use common::assert_sound;
use orgdb::{
    Actor, Db, Durability, Limit, LimitOverrides, MemberQuery, NewInvitation, NewOrganization,
    NewUser, Options, ResourceKind, User,
};

const THREADS: usize = 16;
const ROUNDS: usize = 20;

/// Free seats (or slots) in round `round`: 1 to 8.
fn free_in(round: usize) -> u64 {
    (round % 8) as u64 + 1
}

fn new_user(db: &Db, tag: &str) -> User {
    db.create_user(&NewUser {
        email: format!("{tag}@example.com"),
        name: tag.to_owned(),
    })
    .unwrap()
}

/// A new organization (plan `free`) owned by a new user; returns (org id, owner actor).
fn new_org(db: &Db, tag: &str) -> (String, Actor) {
    let owner = new_user(db, &format!("{tag}-owner"));
    let org = db
        .create_organization(
            &owner.id,
            &NewOrganization {
                name: format!("Org {tag}"),
                plan: Some("free".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .organization
        .id;
    (org, Actor::user(owner.id))
}

fn set_team_limit(db: &Db, org: &str, n: u64) {
    db.set_limit_overrides(
        &Actor::System,
        org,
        &LimitOverrides {
            team_members: Some(Limit::Count(n)),
            ..Default::default()
        }
        .into(),
    )
    .unwrap();
}

fn invite(email: &str) -> NewInvitation {
    NewInvitation {
        email: email.to_owned(),
        ..Default::default()
    }
}

/// All members of an organization, every page.
fn member_ids(db: &Db, org: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for page in 1u32.. {
        let p = db
            .list_members(
                &Actor::System,
                org,
                &MemberQuery {
                    page: Some(page),
                    per_page: Some(100),
                    ..Default::default()
                },
            )
            .unwrap();
        let last = u64::from(page) >= p.pagination.total_pages;
        ids.extend(p.data.into_iter().map(|m| m.id));
        if last {
            break;
        }
    }
    ids
}

/// Runs `f(i)` on `THREADS` threads released together; returns each thread's error code (or
/// `None` for success), in thread order.
fn race<T: Send>(f: impl Fn(usize) -> orgdb::Result<T> + Sync) -> Vec<Option<&'static str>> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i).err().map(|e| e.code())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Exactly `n` successes, and every failure is `quota_exceeded`.
#[track_caller]
fn assert_exactly(outcomes: &[Option<&'static str>], n: u64, what: &str) {
    let wins = outcomes.iter().filter(|o| o.is_none()).count() as u64;
    assert_eq!(
        wins, n,
        "{what}: {wins} succeeded, {n} should: {outcomes:?}"
    );
    for code in outcomes.iter().flatten() {
        assert_eq!(*code, "quota_exceeded", "{what}: {outcomes:?}");
    }
}

/// (a) 16 direct adds of distinct users into an organization with `free_in(round)` seats left.
/// Seats already taken mix members and pending invitations.
fn add_member_race(db: &Db, tag: &str) {
    for round in 0..ROUNDS {
        let tag = format!("{tag}-r{round}");
        let (org, owner) = new_org(db, &tag);
        set_team_limit(db, &org, 100);
        let extra_members = round % 3;
        for k in 0..extra_members {
            let u = new_user(db, &format!("{tag}-m{k}"));
            db.add_member(&owner, &org, &u.id, "member").unwrap();
        }
        let pending = round % 2;
        for k in 0..pending {
            db.create_invitation(&owner, &org, &invite(&format!("{tag}-p{k}@example.com")))
                .unwrap();
        }
        let n = free_in(round);
        let taken = 1 + extra_members as u64 + pending as u64;
        let limit = taken + n;
        set_team_limit(db, &org, limit);
        let racers: Vec<User> = (0..THREADS)
            .map(|i| new_user(db, &format!("{tag}-t{i}")))
            .collect();

        let outcomes = race(|i| {
            let db = db.clone();
            db.add_member(&owner, &org, &racers[i].id, "member")
        });
        assert_exactly(&outcomes, n, &format!("add_member round {round}"));

        let members = member_ids(db, &org);
        assert_eq!(members.len() as u64, 1 + extra_members as u64 + n);
        let winners: Vec<&String> = (0..THREADS)
            .filter(|&i| outcomes[i].is_none())
            .map(|i| &racers[i].id)
            .collect();
        for w in winners {
            assert!(members.contains(w), "winner {w} is not listed");
        }
        let details = db.get_organization(&owner, &org).unwrap();
        assert_eq!(details.usage.team_members, limit, "round {round}");
        assert_eq!(details.limits.team_members, Some(limit));
        // Full: one more is refused.
        let late = new_user(db, &format!("{tag}-late"));
        let err = db.add_member(&owner, &org, &late.id, "member").unwrap_err();
        assert_eq!(err.code(), "quota_exceeded");
    }
    assert_sound(db);
}

#[test]
fn add_member_race_on_a_file_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        dir.path().join("race.redb"),
        Options {
            durability: Durability::Eventual,
            ..Options::default()
        },
    )
    .unwrap();
    add_member_race(&db, "file");
    drop(db);
    // What the race left is what a reopened file holds.
    let db = Db::open(dir.path().join("race.redb")).unwrap();
    assert_sound(&db);
}

#[test]
fn add_member_race_in_memory() {
    let (db, _) = common::db();
    add_member_race(&db, "mem");
}

/// (b) More pending invitations than seats (created while the limit was high), then the limit
/// is lowered so only N more members fit, and 16 invitees accept at once.
#[test]
fn accept_invitation_race() {
    let (db, _) = common::db();
    for round in 0..ROUNDS {
        let tag = format!("acc-r{round}");
        let (org, owner) = new_org(&db, &tag);
        set_team_limit(&db, &org, 100);
        let invitees: Vec<User> = (0..THREADS)
            .map(|i| new_user(&db, &format!("{tag}-t{i}")))
            .collect();
        let tokens: Vec<String> = invitees
            .iter()
            .map(|u| {
                db.create_invitation(&owner, &org, &invite(&u.email))
                    .unwrap()
                    .token
            })
            .collect();
        let n = free_in(round);
        let limit = 1 + n;
        set_team_limit(&db, &org, limit);

        let outcomes = race(|i| {
            let db = db.clone();
            db.accept_invitation(&tokens[i], &invitees[i].id)
        });
        assert_exactly(&outcomes, n, &format!("accept round {round}"));

        let members = member_ids(&db, &org);
        assert_eq!(members.len() as u64, limit, "round {round}: members");
        for (i, u) in invitees.iter().enumerate() {
            assert_eq!(
                members.contains(&u.id),
                outcomes[i].is_none(),
                "round {round}: invitee {i}"
            );
            // A refused accept leaves its invitation pending.
            let preview = db.get_invitation_by_token(&tokens[i]).unwrap();
            let want = if outcomes[i].is_none() {
                "accepted"
            } else {
                "pending"
            };
            assert_eq!(preview.status.as_str(), want, "round {round}: invitee {i}");
        }
        let details = db.get_organization(&owner, &org).unwrap();
        // Seats: the members plus the invitations still pending.
        assert_eq!(
            details.usage.team_members,
            limit + (THREADS as u64 - n),
            "round {round}"
        );
    }
    assert_sound(&db);
}

/// (c) 16 registrations of MCP servers against the `mcps` limit with N slots left.
#[test]
fn register_resource_race() {
    let (db, _) = common::db();
    for round in 0..ROUNDS {
        let tag = format!("res-r{round}");
        let (org, owner) = new_org(&db, &tag);
        let before = round % 3;
        for k in 0..before {
            db.register_resource(&owner, &org, ResourceKind::Mcp, &format!("pre {k}"))
                .unwrap();
        }
        // An API key does not take an MCP slot.
        db.register_resource(&owner, &org, ResourceKind::ApiKey, "key")
            .unwrap();
        let n = free_in(round);
        let limit = before as u64 + n;
        db.set_limit_overrides(
            &Actor::System,
            &org,
            &LimitOverrides {
                mcps: Some(Limit::Count(limit)),
                ..Default::default()
            }
            .into(),
        )
        .unwrap();

        let outcomes = race(|i| {
            let db = db.clone();
            db.register_resource(&owner, &org, ResourceKind::Mcp, &format!("mcp {i}"))
        });
        assert_exactly(&outcomes, n, &format!("register round {round}"));

        let mcps = db
            .list_resources(&owner, &org, Some(ResourceKind::Mcp))
            .unwrap();
        assert_eq!(mcps.len() as u64, limit, "round {round}");
        let details = db.get_organization(&owner, &org).unwrap();
        assert_eq!(details.usage.mcps, limit);
        assert_eq!(details.usage.api_keys, 1);
        assert_eq!(details.limits.mcps, Some(limit));
    }
    assert_sound(&db);
}

/// Readers next to writers: every `list_members` page agrees with its own total, rows are in
/// order without duplicates, and counts read one after another never go down (each read sees
/// one committed state, at least as new as the one before).
#[test]
fn readers_see_consistent_snapshots_while_writers_add_members() {
    let (db, _) = common::db();
    readers_see_consistent_snapshots(&db, false);
}

/// The same on a file, where writes wait in the write overlay until a checkpoint, with
/// checkpoints running all along (the flusher every millisecond and a thread calling
/// `flush`): readers and writers read the generations and the file while a checkpoint writes
/// them (ARCHITECTURE.md, "The write overlay"). Everything is there after a reopen.
#[test]
fn readers_see_consistent_snapshots_on_a_file_while_checkpoints_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.redb");
    let opts = Options {
        usage_flush_interval: std::time::Duration::from_millis(1),
        ..Options::default()
    };
    let db = Db::open_with(&path, opts.clone()).unwrap();
    let org = readers_see_consistent_snapshots(&db, true);
    let members = member_ids(&db, &org);
    drop(db);
    let db = Db::open_with(&path, opts).unwrap();
    assert_eq!(member_ids(&db, &org), members);
    assert_sound(&db);
}

/// Writers add members while readers check each snapshot (and, with `flushing`, a thread
/// checkpoints in a loop); returns the organization.
fn readers_see_consistent_snapshots(db: &Db, flushing: bool) -> String {
    const WRITERS: usize = 4;
    const READERS: usize = 4;
    const PER_WRITER: usize = 24;
    let db = db.clone();
    let (org, owner) = new_org(&db, "snap");
    db.set_limit_overrides(
        &Actor::System,
        &org,
        &LimitOverrides {
            team_members: Some(Limit::Unlimited),
            ..Default::default()
        }
        .into(),
    )
    .unwrap();
    let users: Vec<Vec<User>> = (0..WRITERS)
        .map(|w| {
            (0..PER_WRITER)
                .map(|k| new_user(&db, &format!("snap-w{w}-{k}")))
                .collect()
        })
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let reads = std::thread::scope(|s| {
        for batch in &users {
            let (db, owner, org, done) = (db.clone(), &owner, &org, &done);
            s.spawn(move || {
                // Counted as done even if it panics, so the readers stop and the test fails
                // instead of spinning.
                struct Done<'a>(&'a std::sync::atomic::AtomicUsize);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let _done = Done(done);
                for u in batch {
                    let role = if u.name.ends_with('0') {
                        "admin"
                    } else {
                        "member"
                    };
                    // What a host does with `conflict` (the backend's own retries ran out
                    // under this contention): try again. This test is about what readers see.
                    loop {
                        match db.add_member(owner, org, &u.id, role) {
                            Ok(_) => break,
                            // ("already a member" is a conflict too: then it is done.)
                            Err(e) if e.code() == "conflict" => {
                                let who = orgdb::MemberRef::User(u.id.clone());
                                if db.get_member(&Actor::System, org, &who).is_ok() {
                                    break;
                                }
                            }
                            Err(e) => panic!("add_member: {e}"),
                        }
                    }
                }
            });
        }
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (db, owner, org, done) = (db.clone(), &owner, &org, &done);
                s.spawn(move || {
                    let mut last = 0u64;
                    let mut reads = 0u64;
                    loop {
                        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
                        let page = db
                            .list_members(
                                owner,
                                org,
                                &MemberQuery {
                                    per_page: Some(100),
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        let total = page.pagination.total;
                        assert_eq!(
                            page.data.len() as u64,
                            total,
                            "reader {r}: a page disagrees with its own total"
                        );
                        let keys: Vec<_> = page.data.iter().map(|m| (m.joined_at, &m.id)).collect();
                        assert!(
                            keys.windows(2).all(|w| w[0] < w[1]),
                            "reader {r}: rows out of order or repeated"
                        );
                        assert!(
                            total >= last,
                            "reader {r}: count went back {last} → {total}"
                        );
                        last = total;
                        let details = db.get_organization(owner, org).unwrap();
                        let seats = details.usage.team_members;
                        assert!(seats >= last, "reader {r}: seats {seats} < members {last}");
                        last = seats;
                        reads += 1;
                        if finished {
                            break;
                        }
                    }
                    (last, reads)
                })
            })
            .collect();
        if flushing {
            let (db, done) = (db.clone(), &done);
            s.spawn(move || {
                while done.load(std::sync::atomic::Ordering::SeqCst) < WRITERS {
                    db.flush().unwrap();
                }
            });
        }
        readers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let expected = 1 + (WRITERS * PER_WRITER) as u64;
    for (last, reads) in reads {
        assert_eq!(
            last, expected,
            "the last read after the writers saw everything"
        );
        assert!(reads >= 1);
    }
    assert_eq!(member_ids(&db, &org).len() as u64, expected);
    assert_sound(&db);
    org
}

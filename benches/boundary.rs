//! The Rust side of the bindings benchmark: the calls `bindings/kotlin/Bench.kt` makes
//! through the Kotlin binding, made here through the Rust API on the same data, so that the
//! two rates give the boundary's cost. `bindings/kotlin/bench.sh` runs both and prints the
//! table; on its own:
//!
//! ```sh
//! cargo bench --bench boundary -- [--rounds N] [--seconds S] [--workload NAME[,NAME]] [--list]
//! ```
//!
//! Prints one line per workload and round: `RATE <workload> <calls or events per second>`.
//! The JSON rows are the Rust call and `orgdb::json::ok_text` / `page_text`, which is what the
//! bindings' `*_json` calls run.

// Only the command line and timing helpers of the shared harness are used here.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{from_cargo_bench, timed, Cli, Config};
use orgdb::{
    json, Actor, Db, ManualClock, MemberQuery, NewOrganization, NewUser, Options, ResourceKind,
    UsageEvent, UsageQuery, UsageRecorder,
};

const MEMBERS: usize = 31;
const MCPS: usize = 10;
const BATCH: usize = 1000;

const WORKLOADS: &[(&str, &str)] = &[
    ("get_organization", "the typed call"),
    ("get_organization_json", "the call, then json::ok_text"),
    ("list_members_page1", "a page of 20 of the 31 members"),
    ("list_members_page1_json", "the page, then json::page_text"),
    ("usage_report", "the month's report over 10 MCP servers"),
    ("usage_report_json", "the report, then json::ok_text"),
    ("recorder_record", "UsageRecorder::record of one event"),
    (
        "recorder_add",
        "UsageRecorder::add(1) of a recorder per resource (for_resource)",
    ),
    (
        "recorder_record_many",
        "UsageRecorder::record_many of 1 000 events (events a second)",
    ),
];

const CLI: Cli = Cli {
    name: "boundary bench",
    usage: "usage: cargo bench --bench boundary -- [--rounds N] [--seconds S] \
            [--workload NAME[,NAME]] [--list]",
    workloads: WORKLOADS,
};

/// The benchmark's data, as `Bench.kt` (and `bindings/python/bench.py`) build it: an
/// enterprise organization of 31 members with 10 MCP servers and a month of usage.
struct Fixture {
    db: Db,
    owner: Actor,
    org: String,
    mcps: Vec<String>,
}

fn fixture(path: &std::path::Path) -> orgdb::Result<Fixture> {
    let start = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let db = Db::open_with(path, Options::with_clock(clock.clone()))?;
    let user = |email: &str, name: &str| {
        db.create_user(&NewUser {
            email: email.into(),
            name: name.into(),
        })
    };
    let owner = user("owner@example.com", "Olivia Owner")?;
    let org = db
        .create_organization(
            &owner.id,
            &NewOrganization {
                name: "Members Org".into(),
                plan: Some("enterprise".into()),
                ..Default::default()
            },
        )?
        .organization
        .id;
    for i in 0..MEMBERS - 1 {
        clock.advance(chrono::TimeDelta::seconds(1));
        let u = user(&format!("member{i}@example.com"), &format!("Member {i}"))?;
        db.add_member(&Actor::System, &org, &u.id, "member")?;
    }
    let mut mcps = Vec::new();
    for i in 0..MCPS {
        let name = format!("MCP {i}");
        mcps.push(
            db.register_resource(&Actor::System, &org, ResourceKind::Mcp, &name)?
                .id,
        );
    }
    for day in 1..=30u32 {
        let at = Utc.with_ymd_and_hms(2026, 1, day, 9, 0, 0).unwrap();
        let events: Vec<UsageEvent> = (0..MCPS)
            .map(|i| {
                UsageEvent::new(u64::from(day) + i as u64)
                    .resource(mcps[i].clone())
                    .at(at)
            })
            .collect();
        db.record_usage_batch(&org, &events)?;
    }
    db.flush()?;
    Ok(Fixture {
        db,
        owner: Actor::user(&owner.id),
        org,
        mcps,
    })
}

fn main() {
    if !from_cargo_bench("boundary") {
        return;
    }
    // `read` is how long each workload runs a round (`--seconds`).
    let defaults = Config {
        rounds: 3,
        durable: Duration::ZERO,
        read: Duration::from_secs(1),
        probe: Duration::ZERO,
        accept_per_round: 0,
        only: Vec::new(),
        keep: false,
        own: (),
    };
    let cfg = CLI.parse(defaults, |cfg, flag, value| {
        if flag != "--seconds" {
            return false;
        }
        let seconds: f64 = CLI.number(flag, value(flag));
        cfg.read = Duration::try_from_secs_f64(seconds)
            .unwrap_or_else(|_| CLI.exit("--seconds needs a positive number"));
        true
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let fx = fixture(&dir.path().join("boundary.redb")).expect("fixture");
    let (db, owner, org) = (&fx.db, &fx.owner, fx.org.as_str());
    let page = MemberQuery {
        per_page: Some(20),
        ..Default::default()
    };
    let month = UsageQuery::default();
    let recorder = db.usage_recorder(org).expect("recorder");
    let on_mcp: Vec<UsageRecorder> = fx
        .mcps
        .iter()
        .map(|m| recorder.for_resource(m).expect("recorder"))
        .collect();
    let batch: Vec<(Option<&str>, u64)> = (0..BATCH)
        .map(|i| (Some(fx.mcps[i % MCPS].as_str()), 1))
        .collect();

    type Op<'a> = Box<dyn FnMut(u64) -> Option<bool> + 'a>;
    let mut workloads: Vec<(&str, f64, Op)> = vec![
        (
            "get_organization",
            1.0,
            Box::new(|_| Some(db.get_organization(owner, org).is_ok())),
        ),
        (
            "get_organization_json",
            1.0,
            Box::new(|_| {
                let d = db.get_organization(owner, org).ok()?;
                Some(!json::ok_text(&d).is_empty())
            }),
        ),
        (
            "list_members_page1",
            1.0,
            Box::new(|_| Some(db.list_members(owner, org, &page).is_ok())),
        ),
        (
            "list_members_page1_json",
            1.0,
            Box::new(|_| {
                let p = db.list_members(owner, org, &page).ok()?;
                Some(!json::page_text(&p).is_empty())
            }),
        ),
        (
            "usage_report",
            1.0,
            Box::new(|_| Some(db.usage_report(owner, org, &month).is_ok())),
        ),
        (
            "usage_report_json",
            1.0,
            Box::new(|_| {
                let r = db.usage_report(owner, org, &month).ok()?;
                Some(!json::ok_text(&r).is_empty())
            }),
        ),
        (
            "recorder_record",
            1.0,
            Box::new(|i| {
                let mcp = fx.mcps[i as usize % MCPS].as_str();
                Some(recorder.record(Some(mcp), 1).is_ok())
            }),
        ),
        (
            "recorder_add",
            1.0,
            Box::new(|i| Some(on_mcp[i as usize % MCPS].add(1).is_ok())),
        ),
        (
            "recorder_record_many",
            BATCH as f64,
            Box::new(|_| Some(recorder.record_many(&batch).is_ok())),
        ),
    ];
    workloads.retain(|(name, _, _)| cfg.wants(name));
    for _ in 0..cfg.rounds {
        for (name, per_call, op) in workloads.iter_mut() {
            let rate = timed(cfg.read, 16, op) * *per_call;
            println!("RATE {name} {rate:.0}");
        }
    }
    db.flush().expect("flush");
}

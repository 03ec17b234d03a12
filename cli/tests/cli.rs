//! The `orgdb` binary, run as a user runs it: every subcommand group with good and bad input
//! (exit codes, stderr), `--format table`, `ORGDB_PATH`, the demo, export → import → export on
//! thousands of records, and `check` catching an index broken behind orgdb's back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use assert_cmd::cargo::cargo_bin_cmd;
use chrono::{TimeDelta, Utc};
use orgdb::{
    Actor, Db, Durability, NewInvitation, NewOrganization, NewProject, NewUser, Options,
    ResourceKind, UsageEvent,
};
use serde_json::{json, Value};
use tempfile::TempDir;

fn small_journal() -> Options {
    Options {
        journal_size: 64 << 10,
        ..Options::default()
    }
}

/// What one run of the binary left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A scratch directory with a database path in it.
struct Cli {
    dir: TempDir,
    db: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("test.redb");
        Cli { dir, db }
    }

    /// With an empty database already made through the library. Its usage journal is the
    /// smallest allowed: each run of the binary reads the whole journal when it opens the
    /// database, and 32 MiB per run adds up over a few hundred runs.
    fn with_db() -> Cli {
        let cli = Cli::new();
        drop(Db::open_with(&cli.db, small_journal()).unwrap());
        cli
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `orgdb --db <db>` with a clean environment.
    fn cmd(&self) -> assert_cmd::Command {
        self.cmd_for(&self.db)
    }

    /// `orgdb --db <db>` for another database file.
    fn cmd_for(&self, db: &Path) -> assert_cmd::Command {
        let mut cmd = cargo_bin_cmd!("orgdb");
        cmd.env_remove("ORGDB_PATH")
            .env_remove("ORGDB_PLANS")
            .current_dir(self.dir.path())
            .arg("--db")
            .arg(db);
        cmd
    }

    /// Runs `args` on the test database (or on the one a leading `--db PATH` names).
    fn run(&self, args: &[&str]) -> Run {
        match args {
            ["--db", db, rest @ ..] => run(self.cmd_for(Path::new(db)).args(rest)),
            _ => run(self.cmd().args(args)),
        }
    }

    /// Runs a command that must succeed; returns the whole JSON envelope.
    #[track_caller]
    fn envelope(&self, args: &[&str]) -> Value {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?} failed: {r:?}");
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", r.stdout));
        assert_eq!(v["success"], true, "{args:?}: {v}");
        v
    }

    /// Runs a command that must succeed; returns `data`.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Value {
        self.envelope(args)["data"].take()
    }

    /// Runs a command that must fail with `exit` and the error `code`; returns stderr.
    #[track_caller]
    fn fail(&self, args: &[&str], exit: i32, code: &str) -> String {
        let r = self.run(args);
        assert_eq!(r.code, exit, "{args:?}: {r:?}");
        assert!(
            r.stderr.starts_with(&format!("error: {code}: ")),
            "{args:?}: stderr {:?}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: nothing on stdout: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
        r.stderr
    }
}

fn run(cmd: &mut assert_cmd::Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `Vec<String>` → `Vec<&str>`.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn help_lists_every_group_and_the_exit_codes() {
    let cli = Cli::new();
    let r = cli.run(&["--help"]);
    assert_eq!(r.code, 0);
    for word in [
        "users",
        "orgs",
        "members",
        "invitations",
        "projects",
        "resources",
        "usage",
        "audit",
        "check",
        "stats",
        "compact",
        "backup",
        "export",
        "import",
        "demo",
        "--as",
        "--format",
        "ORGDB_PATH",
        "Exit codes",
        "validation_error",
    ] {
        assert!(r.stdout.contains(word), "help lacks {word}:\n{}", r.stdout);
    }
    // Bad command lines are clap's: exit 2 with a message.
    let r = cli.run(&["frobnicate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("frobnicate"), "{r:?}");
    let r = cli.run(&["usage", "record", "acme", "--count", "many"]);
    assert_eq!(r.code, 2, "{r:?}");
    // Commands other than the creating ones need an existing database.
    let err = cli.fail(&["users", "get", "user_x"], 9, "storage_error");
    assert!(err.contains("no database at"), "{err}");
    assert!(!cli.db.exists(), "a read never creates the file");
}

#[test]
fn users_and_organizations() {
    let cli = Cli::with_db();
    let alice = cli.ok(&[
        "users",
        "create",
        "--email",
        " Alice@Example.com ",
        "--name",
        "Alice",
    ]);
    assert_eq!(alice["email"], "alice@example.com");
    assert!(alice["last_active"].is_null());
    let alice_id = s(&alice["id"]).to_owned();
    assert!(alice_id.starts_with("user_"));
    cli.ok(&[
        "users",
        "create",
        "--email",
        "bob@example.com",
        "--name",
        "Bob",
    ]);

    // Bad input: the code, the message, the field; nothing on stdout.
    let err = cli.fail(
        &["users", "create", "--email", "nope", "--name", "X"],
        5,
        "validation_error",
    );
    assert!(err.contains("\n  email: "), "{err}");
    let err = cli.fail(
        &[
            "users",
            "create",
            "--email",
            "ALICE@example.com",
            "--name",
            "A",
        ],
        6,
        "conflict",
    );
    assert!(err.to_lowercase().contains("email"), "{err}");
    cli.fail(&["users", "get", "user_missing"], 3, "not_found");

    assert_eq!(cli.ok(&["users", "get", &alice_id])["name"], "Alice");
    assert_eq!(
        cli.ok(&["users", "find", "ALICE@example.com"])["id"],
        alice_id.as_str()
    );
    assert_eq!(
        cli.ok(&["users", "get", "alice@example.com"])["id"],
        alice_id.as_str()
    );
    let updated = cli.ok(&["users", "update", &alice_id, "--name", "Alice Smith"]);
    assert_eq!(updated["name"], "Alice Smith");
    assert!(!cli.ok(&["users", "touch", "alice@example.com"])["last_active"].is_null());
    let users = cli.ok(&["users", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 2);
    let page = cli.envelope(&["users", "list", "--per-page", "1", "--page", "2"]);
    assert_eq!(page["pagination"]["total"], 2);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let found = cli.ok(&["users", "list", "--search", "ALICE"]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    cli.fail(
        &["--as", "alice@example.com", "users", "list"],
        4,
        "forbidden",
    );

    // Organizations: the --as user becomes the owner.
    cli.fail(&["orgs", "create", "--name", "Acme"], 5, "validation_error");
    let created = cli.ok(&[
        "--as",
        "alice@example.com",
        "orgs",
        "create",
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
        "--external-id",
        "cust-1",
        "--city",
        "Berlin",
        "--pin-protection",
        "--setting",
        "theme=dark",
        "--meta",
        "tier=gold",
    ]);
    assert_eq!(created["slug"], "acme-corp");
    assert_eq!(created["membership"]["role"], "owner");
    assert_eq!(created["settings"]["theme"], "dark");
    assert_eq!(created["city"], "Berlin");
    let org = s(&created["id"]).to_owned();
    let err = cli.fail(
        &[
            "orgs",
            "create",
            "--owner",
            "bob@example.com",
            "--name",
            "X",
            "--slug",
            "acme-corp",
        ],
        6,
        "conflict",
    );
    assert!(err.contains("lug"), "{err}");
    cli.fail(
        &[
            "orgs", "create", "--owner", &alice_id, "--name", "X", "--plan", "gold",
        ],
        5,
        "validation_error",
    );

    // Get by id, by slug, by external id: the seed's details with limits and usage.
    let by_slug = cli.ok(&["orgs", "get", "acme-corp"]);
    assert_eq!(by_slug["id"], org.as_str());
    assert_eq!(by_slug["limits"]["team_members"], 5);
    assert_eq!(by_slug["usage"]["team_members"], 1);
    assert_eq!(cli.ok(&["orgs", "get", &org])["name"], "Acme Corp");
    assert_eq!(
        cli.ok(&["orgs", "get", "--external-id", "cust-1"])["id"],
        org.as_str()
    );
    cli.fail(&["orgs", "get", "no-such-org"], 3, "not_found");
    // Bob is not a member: forbidden, before anything else.
    cli.fail(
        &["--as", "bob@example.com", "orgs", "get", &org],
        4,
        "forbidden",
    );
    let mine = cli.ok(&["--as", &alice_id, "orgs", "list-for-user"]);
    assert_eq!(mine[0]["membership"]["role"], "owner");
    assert_eq!(
        cli.ok(&["orgs", "list-for-user", "bob@example.com"]),
        Value::Array(vec![])
    );
    assert_eq!(cli.ok(&["orgs", "list"])[0]["slug"], "acme-corp");
    assert_eq!(
        cli.ok(&["orgs", "list", "--search", "acme"])[0]["slug"],
        "acme-corp"
    );
    assert!(cli
        .ok(&["orgs", "list", "--search", "zzz"])
        .as_array()
        .unwrap()
        .is_empty());

    // PATCH: only what is given; '' clears; settings merge; metadata replaces.
    let patched = cli.ok(&[
        "--as",
        "alice@example.com",
        "orgs",
        "update",
        "acme-corp",
        "--description",
        "Rockets",
        "--city",
        "",
        "--setting",
        "lang=de",
        "--meta",
        "tier=silver",
    ]);
    assert_eq!(patched["description"], "Rockets");
    assert!(patched["city"].is_null());
    assert_eq!(patched["settings"]["pin_protection"], true);
    assert_eq!(patched["settings"]["theme"], "dark");
    assert_eq!(patched["settings"]["lang"], "de");
    assert_eq!(patched["metadata"]["tier"], "silver");
    let patched = cli.ok(&[
        "orgs",
        "update",
        &org,
        "--json",
        r#"{"name": "Acme Inc", "description": null}"#,
    ]);
    assert_eq!(patched["name"], "Acme Inc");
    assert!(patched["description"].is_null());
    cli.fail(
        &["orgs", "update", &org, "--json", "{not json"],
        5,
        "validation_error",
    );
    cli.fail(
        &["orgs", "update", &org, "--slug", "Not A Slug"],
        5,
        "validation_error",
    );

    // Plans and limits.
    cli.fail(
        &["--as", "bob@example.com", "orgs", "set-plan", &org, "team"],
        4,
        "forbidden",
    );
    assert_eq!(cli.ok(&["orgs", "set-plan", &org, "team"])["plan"], "team");
    let limited = cli.ok(&[
        "orgs",
        "set-limits",
        &org,
        "--mcps",
        "1",
        "--monthly-requests",
        "unlimited",
    ]);
    assert_eq!(limited["limits"]["mcps"], 1);
    assert!(limited["limits"]["monthly_requests"].is_null());
    assert_eq!(limited["limits"]["team_members"], 25);
    let err = cli.fail(
        &["orgs", "set-limits", &org, "--mcps", "lots"],
        5,
        "validation_error",
    );
    assert!(err.contains("  mcps: "), "{err}");
    cli.fail(
        &["--as", &alice_id, "orgs", "set-limits", &org, "--mcps", "2"],
        4,
        "forbidden",
    );

    // Slugs.
    let taken = cli.ok(&["orgs", "check-slug", "acme-corp"]);
    assert_eq!(taken["available"], false);
    assert_eq!(taken["reason"], "taken");
    assert_eq!(
        cli.ok(&["orgs", "check-slug", "admin"])["reason"],
        "reserved"
    );
    assert_eq!(cli.ok(&["orgs", "check-slug", "fresh"])["available"], true);

    // Deleting a user who is the only owner is refused; the org delete goes through and its
    // audit log stays readable by the operator.
    let err = cli.fail(&["users", "delete", &alice_id], 6, "conflict");
    assert!(err.contains("organizations"), "{err}");
    assert_eq!(
        cli.ok(&["--as", &alice_id, "orgs", "delete", "acme-corp"])["deleted"],
        true
    );
    cli.fail(&["orgs", "get", &org], 3, "not_found");
    let log = cli.ok(&["audit", &org, "--limit", "1000"]);
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "organization.deleted");
    assert_eq!(cli.ok(&["users", "delete", &alice_id])["deleted"], true);
    cli.fail(&["users", "delete", &alice_id], 3, "not_found");
    // An unknown --as user is refused up front.
    cli.fail(
        &["--as", "ghost@example.com", "orgs", "list"],
        3,
        "not_found",
    );
    cli.fail(&["--as", "user_ghost", "orgs", "list"], 3, "not_found");
}

#[test]
fn members_invitations_projects_and_resources() {
    let cli = Cli::with_db();
    for (email, name) in [
        ("owner@example.com", "Olive Owner"),
        ("admin@example.com", "Adam Admin"),
        ("member@example.com", "Mia Member"),
        ("viewer@example.com", "Vic Viewer"),
        ("guest@example.com", "Gus Guest"),
    ] {
        cli.ok(&["users", "create", "--email", email, "--name", name]);
    }
    let org = s(&cli.ok(&[
        "--as",
        "owner@example.com",
        "orgs",
        "create",
        "--name",
        "Acme",
        "--plan",
        "pro",
    ])["id"])
    .to_owned();
    // Runs as the owner.
    let owner = |args: &[&str]| -> Vec<String> {
        ["--as", "owner@example.com"]
            .iter()
            .chain(args)
            .map(|a| (*a).to_owned())
            .collect()
    };

    // Members in all four roles.
    let added = cli.ok(&refs(&owner(&[
        "members",
        "add",
        "acme",
        "admin@example.com",
        "--role",
        "ADMIN",
    ])));
    assert_eq!(added["role"], "admin");
    cli.ok(&refs(&owner(&[
        "members",
        "add",
        "acme",
        "member@example.com",
    ])));
    cli.ok(&refs(&owner(&[
        "members",
        "add",
        "acme",
        "viewer@example.com",
        "--role",
        "viewer",
    ])));
    let err = cli.fail(
        &refs(&owner(&[
            "members",
            "add",
            "acme",
            "guest@example.com",
            "--role",
            "boss",
        ])),
        5,
        "validation_error",
    );
    assert!(err.contains("  role: Must be one of"), "{err}");
    cli.fail(
        &refs(&owner(&["members", "add", "acme", "admin@example.com"])),
        6,
        "conflict",
    );
    cli.fail(
        &[
            "--as",
            "viewer@example.com",
            "members",
            "add",
            "acme",
            "guest@example.com",
        ],
        4,
        "forbidden",
    );

    let page = cli.envelope(&["members", "list", "acme", "--per-page", "2"]);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["pagination"]["total"], 4);
    assert_eq!(page["pagination"]["total_pages"], 2);
    let cursor = s(&page["next_cursor"]).to_owned();
    let next = cli.envelope(&[
        "members",
        "list",
        "acme",
        "--per-page",
        "2",
        "--cursor",
        &cursor,
    ]);
    assert_eq!(next["data"][1]["email"], "viewer@example.com");
    assert!(next.get("next_cursor").is_none());
    let all = cli.ok(&["members", "list", "acme", "--all", "--per-page", "1"]);
    let roles: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(&m["role"]))
        .collect();
    assert_eq!(roles, ["owner", "admin", "member", "viewer"]);
    let admins = cli.envelope(&["members", "list", "acme", "--role", "Admin"]);
    assert_eq!(admins["pagination"]["total"], 1);
    cli.fail(
        &["members", "list", "acme", "--per-page", "500"],
        5,
        "validation_error",
    );
    // A sign-up in one call; the owned-organization cap.
    let made = cli.ok(&[
        "users",
        "create",
        "--email",
        "solo@example.com",
        "--name",
        "Solo",
        "--organization",
        "Solo Co",
        "--plan",
        "pro",
    ]);
    assert_eq!(made["organization"]["plan"], "pro");
    assert_eq!(made["membership"]["role"], "owner");
    cli.fail(
        &[
            "--max-owned-organizations",
            "1",
            "--as",
            "solo@example.com",
            "orgs",
            "create",
            "--name",
            "Again",
        ],
        7,
        "quota_exceeded",
    );
    // What each may do, from the one matrix.
    let perms = cli.ok(&[
        "--as",
        "admin@example.com",
        "members",
        "permissions",
        "acme",
    ]);
    assert_eq!(perms["role"], "admin");
    assert_eq!(
        perms["grantable_roles"],
        json!(["viewer", "member", "admin"])
    );
    assert!(perms["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("manage_invitations")));
    assert!(!perms["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("delete_organization")));
    cli.fail(
        &[
            "--as",
            "guest@example.com",
            "members",
            "permissions",
            "acme",
        ],
        4,
        "forbidden",
    );
    // Deactivation: the member is kept, listed under --status, and comes back.
    let off = cli.ok(&refs(&owner(&[
        "members",
        "deactivate",
        "acme",
        "viewer@example.com",
    ])));
    assert_eq!(off["status"], "deactivated");
    let active = cli.envelope(&["members", "list", "acme"]);
    assert_eq!(active["pagination"]["total"], 3);
    let listed = cli.ok(&["members", "list", "acme", "--status", "deactivated"]);
    assert_eq!(listed[0]["email"], "viewer@example.com");
    let everyone = cli.envelope(&["members", "list", "acme", "--status", "all"]);
    assert_eq!(everyone["pagination"]["total"], 4);
    let hits = cli.ok(&[
        "members", "list", "acme", "--status", "all", "--search", "VIC",
    ]);
    assert_eq!(hits[0]["email"], "viewer@example.com");
    let none = cli.envelope(&["members", "list", "acme", "--search", "vic"]);
    assert_eq!(none["pagination"]["total"], 0);
    cli.fail(
        &["--as", "viewer@example.com", "orgs", "get", "acme"],
        4,
        "forbidden",
    );
    let on = cli.ok(&refs(&owner(&[
        "members",
        "reactivate",
        "acme",
        "viewer@example.com",
    ])));
    assert_eq!(on["status"], "active");
    cli.fail(
        &["members", "list", "acme", "--status", "gone"],
        5,
        "validation_error",
    );
    let member = cli.ok(&["members", "get", "acme", "member@example.com"]);
    let by_membership = cli.ok(&["members", "get", &org, s(&member["membership_id"])]);
    assert_eq!(by_membership["id"], member["id"]);

    // Role changes and their rules.
    cli.fail(
        &[
            "--as",
            "admin@example.com",
            "members",
            "set-role",
            "acme",
            "member@example.com",
            "owner",
        ],
        4,
        "forbidden",
    );
    let changed = cli.ok(&["members", "set-role", "acme", "member@example.com", "admin"]);
    assert_eq!(changed["role"], "admin");
    cli.ok(&[
        "members",
        "set-role",
        "acme",
        "member@example.com",
        "member",
    ]);
    let err = cli.fail(
        &["members", "set-role", "acme", "owner@example.com", "admin"],
        6,
        "conflict",
    );
    assert!(err.to_lowercase().contains("owner"), "{err}");
    cli.fail(&refs(&owner(&["members", "leave", "acme"])), 6, "conflict");
    cli.fail(&["members", "leave", "acme"], 5, "validation_error");

    // Projects.
    let project = cli.ok(&refs(&owner(&[
        "projects",
        "create",
        "acme",
        "--name",
        "Research",
        "--description",
        "R&D",
    ])));
    let proj = s(&project["id"]).to_owned();
    cli.fail(
        &[
            "--as",
            "member@example.com",
            "projects",
            "create",
            "acme",
            "--name",
            "X",
        ],
        4,
        "forbidden",
    );
    cli.fail(
        &["projects", "create", "acme", "--name", "   "],
        5,
        "validation_error",
    );
    assert_eq!(
        cli.ok(&["projects", "get", "acme", &proj])["name"],
        "Research"
    );
    assert_eq!(
        cli.ok(&["projects", "list", "acme"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let updated = cli.ok(&[
        "projects",
        "update",
        "acme",
        &proj,
        "--name",
        "Lab",
        "--description",
        "",
    ]);
    assert_eq!(updated["name"], "Lab");
    assert!(updated["description"].is_null());
    let pm = cli.ok(&[
        "projects",
        "add-member",
        "acme",
        &proj,
        "viewer@example.com",
    ]);
    assert_eq!(pm["role"], "member");
    cli.fail(
        &["projects", "add-member", "acme", &proj, "guest@example.com"],
        3,
        "not_found",
    );
    let pm = cli.ok(&[
        "projects",
        "set-member-role",
        "acme",
        &proj,
        "viewer@example.com",
        "admin",
    ]);
    assert_eq!(pm["role"], "admin");
    assert_eq!(
        cli.ok(&["projects", "members", "acme", &proj])[0]["email"],
        "viewer@example.com"
    );
    let theirs = cli.ok(&["users", "projects", "acme", "viewer@example.com"]);
    assert_eq!(theirs[0]["name"], "Lab");
    assert_eq!(theirs[0]["project_role"], "admin");
    assert_eq!(
        cli.ok(&[
            "projects",
            "remove-member",
            "acme",
            &proj,
            "viewer@example.com"
        ])["removed"],
        true
    );
    cli.fail(
        &[
            "projects",
            "remove-member",
            "acme",
            &proj,
            "viewer@example.com",
        ],
        3,
        "not_found",
    );

    // Invitations: with a project, previewed, listed, accepted by the invitee found by email.
    let created = cli.ok(&refs(&owner(&[
        "invitations",
        "create",
        "acme",
        "--email",
        "guest@example.com",
        "--role",
        "MEMBER",
        "--project",
        &proj,
        "--project-role",
        "viewer",
        "--expires-in",
        "2d",
    ])));
    let token = s(&created["token"]).to_owned();
    let inv = s(&created["invite_id"]).to_owned();
    assert!(s(&created["invite_url"]).ends_with(&token));
    let err = cli.fail(
        &[
            "invitations",
            "create",
            "acme",
            "--email",
            "guest@example.com",
        ],
        6,
        "conflict",
    );
    assert!(err.contains(&format!("  invitation_id: {inv}")), "{err}");
    cli.fail(
        &[
            "invitations",
            "create",
            "acme",
            "--email",
            "x@example.com",
            "--expires-in",
            "soon",
        ],
        5,
        "validation_error",
    );
    cli.fail(
        &["--as", "member@example.com", "invitations", "list", "acme"],
        4,
        "forbidden",
    );
    let preview = cli.ok(&["invitations", "preview", &token]);
    assert_eq!(preview["organization_slug"], "acme");
    assert_eq!(preview["project_name"], "Lab");
    assert_eq!(preview["inviter_email"], "owner@example.com");
    assert!(preview.get("token").is_none());
    cli.fail(&["invitations", "preview", &inv], 3, "not_found");
    let pending = cli.ok(&["invitations", "for-email", "GUEST@example.com"]);
    assert_eq!(pending[0]["organization_name"], "Acme");
    let listed = cli.envelope(&["invitations", "list", "acme", "--status", "pending"]);
    assert_eq!(listed["pagination"]["total"], 1);
    assert_eq!(
        cli.ok(&["invitations", "get", "acme", &inv])["status"],
        "pending"
    );
    cli.fail(
        &[
            "invitations",
            "accept",
            &token,
            "--user",
            "viewer@example.com",
        ],
        4,
        "forbidden",
    );
    let membership = cli.ok(&["invitations", "accept", &token]);
    assert_eq!(membership["role"], "member");
    assert_eq!(
        cli.ok(&["projects", "members", "acme", &proj])[0]["email"],
        "guest@example.com"
    );
    cli.fail(&["invitations", "decline", &token], 6, "conflict");

    // Seats: pro has 5; 5 members now, so one more invitation is over the limit.
    let err = cli.fail(
        &[
            "invitations",
            "create",
            "acme",
            "--email",
            "sixth@example.com",
        ],
        7,
        "quota_exceeded",
    );
    assert!(err.contains("  quota: team_members"), "{err}");
    assert!(err.contains("  limit: 5"), "{err}");
    cli.ok(&["members", "remove", "acme", "guest@example.com"]);
    // Bulk: all or nothing.
    cli.fail(
        &[
            "invitations",
            "create",
            "acme",
            "--email",
            "a@example.com",
            "--email",
            "not-an-email",
        ],
        5,
        "validation_error",
    );
    let bulk = cli.ok(&["invitations", "create", "acme", "--email", "a@example.com"]);
    let a_inv = s(&bulk["invite_id"]).to_owned();
    let resent = cli.ok(&["invitations", "resend", "acme", &a_inv]);
    assert_eq!(resent["invite_id"], a_inv.as_str());
    assert_ne!(resent["token"], bulk["token"]);
    cli.fail(
        &["invitations", "preview", s(&bulk["token"])],
        3,
        "not_found",
    );
    assert_eq!(
        cli.ok(&["invitations", "revoke", "acme", &a_inv])["status"],
        "revoked"
    );
    cli.fail(&["invitations", "revoke", "acme", &a_inv], 6, "conflict");
    let two = cli.ok(&["invitations", "create", "acme", "--email", "b@example.com"]);
    assert_eq!(
        cli.ok(&["invitations", "decline", s(&two["token"])])["status"],
        "declined"
    );
    cli.fail(
        &["invitations", "list", "acme", "--status", "lost"],
        5,
        "validation_error",
    );

    // Resources: limit-checked, renamed, removed.
    cli.ok(&["orgs", "set-limits", "acme", "--mcps", "1"]);
    let mcp = cli.ok(&refs(&owner(&[
        "resources",
        "register",
        "acme",
        "Weather API",
    ])));
    assert_eq!(mcp["kind"], "mcp");
    let res = s(&mcp["id"]).to_owned();
    let err = cli.fail(
        &["resources", "register", "acme", "Second"],
        7,
        "quota_exceeded",
    );
    assert!(err.contains("  quota: mcps"), "{err}");
    let key = cli.ok(&[
        "resources",
        "register",
        "acme",
        "CI key",
        "--kind",
        "api-key",
    ]);
    assert_eq!(key["kind"], "api_key");
    cli.fail(
        &["resources", "register", "acme", "X", "--kind", "disk"],
        5,
        "validation_error",
    );
    cli.fail(
        &[
            "--as",
            "viewer@example.com",
            "resources",
            "register",
            "acme",
            "X",
        ],
        4,
        "forbidden",
    );
    assert_eq!(
        cli.ok(&["resources", "rename", "acme", &res, "Weather v2"])["name"],
        "Weather v2"
    );
    assert_eq!(
        cli.ok(&["resources", "list", "acme", "--kind", "mcp"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cli.ok(&["resources", "list", "acme"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!cli.ok(&["resources", "remove", "acme", &res])["removed_at"].is_null());
    cli.fail(&["resources", "remove", "acme", &res], 3, "not_found");

    // Ownership transfer: the calling owner becomes admin.
    let new_owner = cli.ok(&refs(&owner(&[
        "members",
        "transfer",
        "acme",
        "admin@example.com",
    ])));
    assert_eq!(new_owner["role"], "owner");
    assert_eq!(
        cli.ok(&["members", "get", "acme", "owner@example.com"])["role"],
        "admin"
    );
    cli.fail(
        &["members", "transfer", "acme", "admin@example.com"],
        6,
        "conflict",
    );
    let left = cli.ok(&["members", "leave", "acme", "--user", "viewer@example.com"]);
    assert_eq!(left["removed"], true);

    assert_eq!(
        cli.ok(&["projects", "delete", "acme", &proj])["deleted"],
        true
    );
    cli.fail(&["projects", "get", "acme", &proj], 3, "not_found");
    let r = cli.run(&["check"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn usage_and_audit() {
    let cli = Cli::with_db();
    cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    let org = s(&cli.ok(&[
        "orgs",
        "create",
        "--owner",
        "o@example.com",
        "--name",
        "Acme",
        "--plan",
        "free",
    ])["id"])
    .to_owned();
    let mcp = s(&cli.ok(&["resources", "register", "acme", "Weather"])["id"]).to_owned();

    let now = Utc::now();
    let days_ago = |d: i64| (now - TimeDelta::days(d)).to_rfc3339();
    let receipt = cli.ok(&[
        "usage",
        "record",
        "acme",
        "--count",
        "100",
        "--resource",
        &mcp,
        "--at",
        &days_ago(3),
        "--key",
        "req-1",
    ]);
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(receipt["limit"], 1000);
    // The same key again counts nothing.
    let again = cli.ok(&[
        "usage",
        "record",
        "acme",
        "--count",
        "100",
        "--resource",
        &mcp,
        "--at",
        &days_ago(3),
        "--key",
        "req-1",
    ]);
    assert_eq!(again["duplicate"], true);
    cli.ok(&[
        "usage",
        "record",
        &org,
        "--count",
        "50",
        "--at",
        &days_ago(1),
    ]);
    // A batch from stdin (JSON lines) and from a file (a JSON array).
    let lines = format!(
        "{{\"count\": 5, \"resource_id\": \"{mcp}\"}}\n{{\"count\": 7, \"idempotency_key\": \"b-1\"}}\n"
    );
    let receipts = cli
        .cmd()
        .args(["usage", "record", "acme", "--batch", "-"])
        .write_stdin(lines)
        .output()
        .unwrap();
    assert!(receipts.status.success(), "{receipts:?}");
    let receipts: Value = serde_json::from_slice(&receipts.stdout).unwrap();
    assert_eq!(receipts["data"].as_array().unwrap().len(), 2);
    let batch = cli.path("batch.json");
    std::fs::write(&batch, r#"[{"count": 1}, {"count": 0}]"#).unwrap();
    let err = cli.fail(
        &[
            "usage",
            "record",
            "acme",
            "--batch",
            batch.to_str().unwrap(),
        ],
        5,
        "validation_error",
    );
    assert!(err.contains("events[1].count"), "{err}");

    // Bad input.
    let err = cli.fail(
        &["usage", "record", "acme", "--count", "0"],
        5,
        "validation_error",
    );
    assert!(err.contains("  count: "), "{err}");
    let err = cli.fail(
        &["usage", "record", "acme", "--at", &days_ago(40)],
        5,
        "validation_error",
    );
    assert!(err.contains("  at: "), "{err}");
    cli.fail(
        &["usage", "record", "acme", "--at", "yesterday"],
        5,
        "validation_error",
    );
    cli.fail(
        &["usage", "record", "acme", "--resource", "res_nope"],
        3,
        "not_found",
    );

    // The month holds what was recorded this month; a range report holds all of it.
    let start = (now - TimeDelta::days(6)).date_naive().to_string();
    let end = now.date_naive().to_string();
    let report = cli.ok(&["usage", "report", "acme", "--start", &start, "--end", &end]);
    assert_eq!(report["requests"]["total"], 162);
    assert_eq!(report["requests"]["limit"], 1000);
    assert_eq!(report["requests"]["percentage"], 16);
    assert_eq!(report["by_mcp"][0]["requests"], 105);
    assert_eq!(report["by_mcp"][0]["name"], "Weather");
    assert_eq!(report["by_day"].as_array().unwrap().len(), 7);
    let day = cli.ok(&["usage", "report", "acme", "--period", "day"]);
    assert_eq!(day["by_day"].as_array().unwrap().len(), 1);
    assert_eq!(day["requests"]["total"], 12);
    let week = cli.ok(&["usage", "report", "acme", "--period", "WEEK"]);
    assert_eq!(week["by_day"].as_array().unwrap().len(), 7);
    let err = cli.fail(
        &["usage", "report", "acme", "--period", "decade"],
        5,
        "validation_error",
    );
    assert!(err.contains("  period: "), "{err}");
    cli.fail(
        &["usage", "report", "acme", "--start", "2024-13-01"],
        5,
        "validation_error",
    );
    let err = cli.fail(
        &["usage", "report", "acme", "--start", &end, "--end", &start],
        5,
        "validation_error",
    );
    assert!(err.contains("  end_date: "), "{err}");
    cli.fail(
        &["--as", "o@example.com", "usage", "report", "nope"],
        3,
        "not_found",
    );

    // Quota: free has 1000 a month.
    let month_used = cli.ok(&["orgs", "get", "acme"])["usage"]["monthly_requests"]
        .as_u64()
        .unwrap();
    let quota = cli.ok(&["usage", "check-quota", "acme", "--count", "10"]);
    assert_eq!(quota["used"].as_u64().unwrap(), month_used + 10);
    assert_eq!(quota["duplicate"], false);
    let err = cli.fail(
        &["usage", "record", "acme", "--count", "1000"],
        7,
        "quota_exceeded",
    );
    assert!(err.contains("  quota: monthly_requests"), "{err}");
    assert!(err.contains("  requested: 1000"), "{err}");
    cli.fail(
        &["usage", "check-quota", "acme", "--count", "1000"],
        7,
        "quota_exceeded",
    );

    // A correction of today's count outside any resource.
    let today = Utc::now().date_naive().to_string();
    let fixed = cli.ok(&[
        "usage",
        "correct",
        "acme",
        "--date",
        &today,
        "--delta=-1",
        "--key",
        "fix-1",
        "--reason",
        "double count",
    ]);
    assert_eq!(fixed["month_total"].as_u64().unwrap(), month_used - 1);
    assert_eq!(fixed["duplicate"], false);
    cli.fail(
        &[
            "usage", "correct", "acme", "--date", &today, "--delta", "-1000000",
        ],
        5,
        "validation_error",
    );
    cli.fail(
        &[
            "usage", "correct", "acme", "--date", "someday", "--delta", "1",
        ],
        5,
        "validation_error",
    );

    let pruned = cli.ok(&["usage", "prune", "--before", "2000-01-01"]);
    assert_eq!(pruned["day_rows"], 0);
    cli.fail(
        &["usage", "prune", "--before", "soon"],
        5,
        "validation_error",
    );

    // Audit: in order, paged by sequence; admins and the operator only.
    let log = cli.ok(&["audit", "acme"]);
    let events = log.as_array().unwrap();
    assert!(events.len() >= 2, "{log}");
    assert_eq!(events[0]["action"], "organization.created");
    let first_seq = events[0]["seq"].as_u64().unwrap();
    let after = cli.ok(&[
        "audit",
        "acme",
        "--after",
        &first_seq.to_string(),
        "--limit",
        "1",
    ]);
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["action"], "resource.registered");
    cli.fail(&["audit", "acme", "--limit", "0"], 5, "validation_error");
    cli.ok(&["users", "create", "--email", "m@example.com", "--name", "M"]);
    cli.ok(&["members", "add", "acme", "m@example.com"]);
    cli.fail(&["--as", "m@example.com", "audit", "acme"], 4, "forbidden");
}

#[test]
fn quota_periods_from_the_command_line() {
    let cli = Cli::with_db();
    let owner = cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    let org = cli.ok(&[
        "orgs",
        "create",
        "--name",
        "Acme",
        "--owner",
        s(&owner["id"]),
    ]);
    let org = s(&org["id"]).to_owned();
    let today = chrono::Utc::now().date_naive().to_string();
    let calendar = cli.ok(&["orgs", "billing-period", &org]);
    assert_eq!(calendar["rule"], json!({"kind": "calendar_month"}));
    let daily = cli.ok(&["orgs", "set-billing-anchor", &org, "--every", "day"]);
    assert_eq!(daily["rule"], json!({"kind": "day"}));
    assert_eq!(
        (s(&daily["period_start"]), s(&daily["period_end"])),
        (&*today, &*today)
    );
    let receipt = cli.ok(&["usage", "record", &org, "--count", "3"]);
    assert_eq!(
        (receipt["used"].clone(), receipt["period_start"].clone()),
        (json!(3), json!(today))
    );
    let report = cli.ok(&["usage", "report", &org]);
    assert_eq!(report["period"], "billing");
    assert_eq!(report["by_day"].as_array().unwrap().len(), 1);
    let anchored = cli.ok(&["orgs", "set-billing-anchor", &org, "--anchor", "2024-01-31"]);
    assert_eq!(
        anchored["rule"],
        json!({"kind": "anchored", "anchor": "2024-01-31"})
    );
    assert_eq!(
        cli.ok(&["orgs", "get", &org])["usage"]["monthly_requests"],
        3
    );
    let err = cli.fail(
        &["orgs", "set-billing-anchor", &org, "--anchor", "31/01/2024"],
        5,
        "validation_error",
    );
    assert!(err.contains("anchor"), "{err}");
    cli.fail(
        &["orgs", "set-billing-anchor", &org, "--every", "fortnight"],
        5,
        "validation_error",
    );
    cli.fail(
        &[
            "--as",
            "o@example.com",
            "orgs",
            "set-billing-anchor",
            &org,
            "--every",
            "year",
        ],
        4,
        "forbidden",
    );
    assert_eq!(
        cli.ok(&["orgs", "billing-period", &org])["rule"],
        anchored["rule"]
    );
}

#[test]
fn usage_alerts_from_the_command_line() {
    let cli = Cli::with_db();
    let owner = cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    let org = cli.ok(&[
        "orgs",
        "create",
        "--name",
        "Acme",
        "--owner",
        s(&owner["id"]),
    ]);
    let org = s(&org["id"]).to_owned();
    let defaults = cli.ok(&["orgs", "usage-alerts", &org]);
    assert_eq!(defaults["default_thresholds"], true);
    let percents = |v: &Value| -> Vec<u64> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["threshold_percent"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(percents(&defaults), [80, 100]);
    let set = cli.ok(&[
        "--as",
        "o@example.com",
        "orgs",
        "set-usage-alerts",
        &org,
        "--thresholds",
        "90,50",
    ]);
    assert_eq!(percents(&set), [50, 90]);
    let limit = set["limit"].as_u64().unwrap();
    let half = (limit / 2).to_string();
    cli.ok(&["usage", "record", &org, "--count", &half]);
    let now = cli.ok(&["orgs", "usage-alerts", &org]);
    assert_eq!(now["alerts"][0]["fired_this_period"], true, "{now}");
    assert_eq!(now["alerts"][1]["reached"], false, "{now}");
    let audit = cli.ok(&["audit", &org]);
    assert!(audit.to_string().contains("usage.threshold"), "{audit}");
    assert_eq!(
        percents(&cli.ok(&["orgs", "set-usage-alerts", &org, "--none"])),
        Vec::<u64>::new()
    );
    let back = cli.ok(&["orgs", "set-usage-alerts", &org, "--defaults"]);
    assert_eq!(back["default_thresholds"], true);
    let err = cli.fail(
        &["orgs", "set-usage-alerts", &org, "--thresholds", "50,0"],
        5,
        "validation_error",
    );
    assert!(err.contains("thresholds[1]"), "{err}");
    cli.fail(
        &["orgs", "set-usage-alerts", &org, "--thresholds", "half"],
        5,
        "validation_error",
    );
    assert_eq!(
        cli.ok(&["orgs", "usage-alerts", &org])["default_thresholds"],
        true
    );
}

#[test]
fn reservations_from_the_command_line() {
    let cli = Cli::with_db();
    let owner = cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    let org = cli.ok(&[
        "orgs",
        "create",
        "--name",
        "Acme",
        "--owner",
        s(&owner["id"]),
        "--plan",
        "free",
    ]);
    let org = s(&org["id"]).to_owned();
    let hold = cli.ok(&[
        "usage",
        "reserve",
        &org,
        "--count",
        "900",
        "--expires-in",
        "60",
    ]);
    let id = s(&hold["id"]).to_owned();
    assert!(id.starts_with("rsv_"), "{hold}");
    assert_eq!(hold["count"], 900);
    // The hold counts at once: 101 more do not fit in 1 000.
    cli.fail(
        &["usage", "check-quota", &org, "--count", "101"],
        7,
        "quota_exceeded",
    );
    let receipt = cli.ok(&["usage", "commit", &org, &id, "--actual", "700"]);
    assert_eq!(
        (receipt["used"].clone(), receipt["duplicate"].clone()),
        (json!(700), json!(false))
    );
    let again = cli.ok(&["usage", "commit", &org, &id, "--actual", "700"]);
    assert_eq!(again["duplicate"], true);
    let second = cli.ok(&["usage", "reserve", &org, "--count", "300"]);
    let released = cli.ok(&["usage", "release", &org, s(&second["id"])]);
    assert_eq!(released["released"], true);
    cli.fail(
        &["usage", "reserve", &org, "--count", "0"],
        5,
        "validation_error",
    );
    cli.fail(
        &["usage", "commit", &org, "rsv_nope", "--actual", "1"],
        3,
        "not_found",
    );
    assert_eq!(
        cli.ok(&["orgs", "get", &org])["usage"]["monthly_requests"],
        700
    );
}

#[test]
fn entitlements_with_a_plan_catalog_file() {
    let cli = Cli::with_db();
    let catalog = cli.path("plans.json");
    std::fs::write(
        &catalog,
        json!({
            "default_plan": "starter",
            "plans": {
                "starter": {"limits": {"team_members": 5, "monthly_requests": 10},
                    "features": ["audit_export"], "named_limits": {"projects": 1},
                    "enforcement": {"monthly_requests": {"mode": "soft", "overage_cap": 5}}},
                "scale": {"features": ["sso"]}
            }
        })
        .to_string(),
    )
    .unwrap();
    let plans = catalog.to_str().unwrap();
    let owner = cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    let org = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "create",
        "--name",
        "Acme",
        "--owner",
        s(&owner["id"]),
    ]);
    let org = s(&org["id"]).to_owned();
    let audit = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "entitlement",
        &org,
        "audit_export",
    ]);
    assert_eq!(audit["has_access"], true);
    assert_eq!(audit["source"], "plan");
    assert_eq!(audit["plan"], "starter");
    // The projects limit of the catalog holds.
    cli.ok(&[
        "--plans", plans, "projects", "create", &org, "--name", "One",
    ]);
    let err = cli.fail(
        &[
            "--plans", plans, "projects", "create", &org, "--name", "Two",
        ],
        7,
        "quota_exceeded",
    );
    assert!(err.contains("projects"), "{err}");
    // The operator overrides it and switches a feature on; a member may not.
    let raised = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "set-entitlement",
        &org,
        "projects",
        "--limit",
        "2",
    ]);
    assert_eq!(
        (raised["limit"].clone(), raised["used"].clone()),
        (json!(2), json!(1))
    );
    cli.ok(&[
        "--plans", plans, "projects", "create", &org, "--name", "Two",
    ]);
    let sso = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "set-entitlement",
        &org,
        "sso",
        "--on",
    ]);
    assert_eq!(sso["source"], "override");
    cli.fail(
        &[
            "--plans",
            plans,
            "--as",
            "o@example.com",
            "orgs",
            "set-entitlement",
            &org,
            "sso",
            "--off",
        ],
        4,
        "forbidden",
    );
    let all = cli.ok(&["--plans", plans, "orgs", "entitlements", &org]);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["name"]))
        .collect();
    assert_eq!(
        names,
        [
            "mcps",
            "api_keys",
            "team_members",
            "monthly_requests",
            "audit_export",
            "projects",
            "sso"
        ]
    );
    let table = cli.run(&[
        "--plans",
        plans,
        "--format",
        "table",
        "orgs",
        "entitlements",
        &org,
    ]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.starts_with("NAME "), "{}", table.stdout);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("sso ") && l.ends_with("override")),
        "{}",
        table.stdout
    );
    // Clearing gives the plan's back; bad input names its field.
    let cleared = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "set-entitlement",
        &org,
        "sso",
        "--clear",
    ]);
    assert_eq!(cleared["has_access"], false);
    let err = cli.fail(
        &[
            "--plans",
            plans,
            "orgs",
            "set-entitlement",
            &org,
            "sso",
            "--limit",
            "3",
        ],
        5,
        "validation_error",
    );
    assert!(err.contains("\n  value: "), "{err}");
    let err = cli.fail(
        &["--plans", plans, "orgs", "entitlement", &org, "No Name"],
        5,
        "validation_error",
    );
    assert!(err.contains("\n  name: "), "{err}");
    // A soft monthly limit: past it up to the cap, the receipt says so; past the cap, refused.
    let over = cli.ok(&["--plans", plans, "usage", "record", &org, "--count", "12"]);
    assert_eq!(
        (over["over"].clone(), over["overage"].clone()),
        (json!(true), json!(2))
    );
    cli.fail(
        &["--plans", plans, "usage", "record", &org, "--count", "4"],
        7,
        "quota_exceeded",
    );
    let quota = cli.ok(&[
        "--plans",
        plans,
        "orgs",
        "entitlement",
        &org,
        "monthly_requests",
    ]);
    assert_eq!(
        quota["enforcement"],
        json!({"mode": "soft", "overage_cap": 5})
    );
    // A catalog that cannot be read, or breaks the rules, is refused before anything runs.
    std::fs::write(&catalog, "{not json").unwrap();
    let err = cli.fail(
        &["--plans", plans, "orgs", "entitlements", &org],
        5,
        "validation_error",
    );
    assert!(err.contains("\n  plans: "), "{err}");
    std::fs::write(
        &catalog,
        json!({"default_plan": "a", "plans": {"a": {"features": ["mcps"]}}}).to_string(),
    )
    .unwrap();
    cli.fail(
        &["--plans", plans, "orgs", "entitlements", &org],
        5,
        "validation_error",
    );
}

#[test]
fn table_format_and_orgdb_path() {
    let cli = Cli::new();
    // ORGDB_PATH names the database when --db is not given.
    let env_db = cli.path("env.redb");
    let mut cmd = cargo_bin_cmd!("orgdb");
    cmd.current_dir(cli.dir.path())
        .env("ORGDB_PATH", &env_db)
        .args([
            "users",
            "create",
            "--email",
            "t@example.com",
            "--name",
            "Tess Table",
        ]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(env_db.exists());
    assert!(!cli.db.exists());
    let mut cmd = cargo_bin_cmd!("orgdb");
    cmd.current_dir(cli.dir.path())
        .env("ORGDB_PATH", &env_db)
        .args([
            "orgs",
            "create",
            "--owner",
            "t@example.com",
            "--name",
            "Tables Inc",
        ]);
    assert_eq!(run(&mut cmd).code, 0);
    // --db wins over ORGDB_PATH.
    let mut cmd = cargo_bin_cmd!("orgdb");
    cmd.current_dir(cli.dir.path())
        .env("ORGDB_PATH", cli.path("elsewhere.redb"))
        .arg("--db")
        .arg(&env_db)
        .args(["--format", "table", "members", "list", "tables-inc"]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("EMAIL") && lines[0].contains("ROLE"),
        "{}",
        r.stdout
    );
    assert!(lines[1].contains("t@example.com") && lines[1].contains("owner"));
    assert!(lines[1].contains("Tess Table"));
    assert!(lines[2].starts_with("page 1 of 1"), "{}", r.stdout);
    // The default is ./orgdb.redb in the working directory.
    let mut cmd = cargo_bin_cmd!("orgdb");
    cmd.current_dir(cli.dir.path())
        .env_remove("ORGDB_PATH")
        .args(["users", "create", "--email", "d@example.com", "--name", "D"]);
    assert_eq!(run(&mut cmd).code, 0);
    assert!(cli.path("orgdb.redb").exists());

    // A record reads as key/value lines; nested objects flatten with dots.
    let table = |args: &[&str]| -> Run {
        let mut cmd = cargo_bin_cmd!("orgdb");
        cmd.current_dir(cli.dir.path())
            .env("ORGDB_PATH", &env_db)
            .arg("--format")
            .arg("table")
            .args(args);
        run(&mut cmd)
    };
    let r = table(&["orgs", "get", "tables-inc"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\nslug "), "{}", r.stdout);
    assert!(r.stdout.contains("limits.team_members"), "{}", r.stdout);
    assert!(r
        .stdout
        .lines()
        .any(|l| l.starts_with("name") && l.ends_with("Tables Inc")));
    let r = table(&["usage", "report", "tables-inc", "--period", "week"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("requests.total"), "{}", r.stdout);
    assert!(r.stdout.contains("by_day:\nDATE"), "{}", r.stdout);
    let r = table(&["projects", "list", "tables-inc"]);
    assert_eq!(r.stdout, "(none)\n");
    // Errors stay on stderr in the same shape.
    let r = table(&["orgs", "get", "nope"]);
    assert_eq!(r.code, 3);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("error: not_found: "), "{r:?}");
    let r = table(&["audit", "tables-inc"]);
    assert!(
        r.stdout.lines().next().unwrap().starts_with("SEQ  AT"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("organization.created") && r.stdout.contains(r#"{"name":"Tables Inc""#),
        "{}",
        r.stdout
    );
    let r = table(&["stats"]);
    assert!(r.stdout.contains("tables.users"), "{}", r.stdout);
}

/// A file database with thousands of records of every kind, built through the library (bulk
/// invitations keep the number of transactions, and so the time, down).
fn populate(path: &Path) {
    let db = Db::open_with(
        path,
        Options {
            durability: Durability::Eventual,
            ..small_journal()
        },
    )
    .unwrap();
    for o in 0..8 {
        let owner = db
            .create_user(&NewUser {
                email: format!("owner{o}@example.com"),
                name: format!("Owner {o}"),
            })
            .unwrap();
        let org = db
            .create_organization(
                &owner.id,
                &NewOrganization {
                    name: format!("Org {o}"),
                    plan: Some("enterprise".into()),
                    ..Default::default()
                },
            )
            .unwrap()
            .organization
            .id;
        let a = Actor::user(&owner.id);
        let project = db
            .create_project(
                &a,
                &org,
                &NewProject {
                    name: format!("P{o}"),
                    description: None,
                },
            )
            .unwrap();
        let mcp = db
            .register_resource(&a, &org, ResourceKind::Mcp, "Weather")
            .unwrap();
        let gone = db
            .register_resource(&a, &org, ResourceKind::Mcp, "Old")
            .unwrap();
        for m in 0..25 {
            let u = db
                .create_user(&NewUser {
                    email: format!("m{o}-{m}@example.com"),
                    name: format!("Member {o} {m}"),
                })
                .unwrap();
            db.add_member(&a, &org, &u.id, if m % 5 == 0 { "admin" } else { "member" })
                .unwrap();
            if m % 3 == 0 {
                db.add_project_member(
                    &a,
                    &org,
                    &project.id,
                    &u.id,
                    Some(orgdb::Role::Viewer.into()),
                )
                .unwrap();
            }
        }
        let batch: Vec<NewInvitation> = (0..150)
            .map(|i| NewInvitation {
                email: format!("inv{o}-{i}@example.com"),
                project_id: (i % 10 == 0).then(|| project.id.clone()),
                ..Default::default()
            })
            .collect();
        let created = db.create_invitations(&a, &org, &batch).unwrap();
        db.revoke_invitation(&a, &org, &created[0].invite_id)
            .unwrap();
        let events: Vec<UsageEvent> = (0..6)
            .map(|d| {
                UsageEvent::new(10 + d)
                    .resource(if d % 2 == 0 { &mcp.id } else { &gone.id })
                    .key(format!("k{o}-{d}"))
                    .at(Utc::now() - TimeDelta::days(d as i64))
            })
            .collect();
        db.record_usage_batch(&org, &events).unwrap();
        db.record_usage(&org, &UsageEvent::new(1)).unwrap();
        db.remove_resource(&a, &org, &gone.id).unwrap();
    }
    db.flush().unwrap();
}

/// Asserts that an export run succeeded and printed `expected`; a failure names the first line
/// that differs (exports run to thousands of lines).
#[track_caller]
fn same_export(r: &Run, expected: &str, what: &str) {
    assert_eq!(r.code, 0, "exporting {what} failed: {}", r.stderr);
    if r.stdout != expected {
        let (ours, theirs) = (r.stdout.lines(), expected.lines());
        let first = ours
            .zip(theirs)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "one export is a prefix of the other".to_owned(),
                |(n, (a, b))| format!("line {}:\n  got      {a}\n  expected {b}", n + 1),
            );
        panic!(
            "the export of {what} differs ({} lines against {}); {first}\nstderr: {}",
            r.stdout.lines().count(),
            expected.lines().count(),
            r.stderr
        );
    }
}

#[test]
fn export_import_round_trip_and_maintenance() {
    let cli = Cli::new();
    populate(&cli.db);
    let first = cli.path("first.jsonl");
    let exported = cli.ok(&["export", first.to_str().unwrap()]);
    let text = std::fs::read_to_string(&first).unwrap();
    let lines = text.lines().count();
    assert!(lines > 3_000, "{lines} records");
    assert_eq!(exported["records"], lines as u64);
    assert!(text.starts_with(r#"{"type":"header""#));
    assert!(!text.contains("token"), "no secret is exported");
    // Stdout export is the same bytes.
    let r = cli.run(&["export"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, text);
    // An existing file is not overwritten without --force.
    let err = cli.fail(&["export", first.to_str().unwrap()], 5, "validation_error");
    assert!(err.contains("--force"), "{err}");
    cli.ok(&["export", first.to_str().unwrap(), "--force"]);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), text);

    // Import in one transaction and in batches: each copy exports identically. No progress
    // bar when stderr is not a terminal.
    for (name, batch) in [("one.redb", None), ("batched.redb", Some("500"))] {
        let copy = cli.path(name);
        let mut args = vec!["import", first.to_str().unwrap()];
        if let Some(n) = batch {
            args.extend(["--batch-size", n]);
        }
        let r = run(cli.cmd_for(&copy).args(&args));
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stderr.is_empty(),
            "no progress bar when piped: {:?}",
            r.stderr
        );
        let report: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(report["data"]["records"], lines as u64);
        let transactions = report["data"]["transactions"].as_u64().unwrap();
        if batch.is_some() {
            assert!(transactions >= (lines / 500) as u64, "{report}");
        } else {
            assert_eq!(transactions, 1);
        }
        same_export(&run(cli.cmd_for(&copy).arg("export")), &text, name);
    }
    // From stdin too.
    let piped = cli.path("piped.redb");
    let r = run(cli
        .cmd_for(&piped)
        .args(["import", "-"])
        .write_stdin(text.clone()));
    assert_eq!(r.code, 0, "{r:?}");
    // Not into a database with data; bad input changes nothing and leaves no file behind.
    let err = cli.fail(&["import", first.to_str().unwrap()], 6, "conflict");
    assert!(err.contains("empty"), "{err}");
    let garbage = cli.path("garbage.jsonl");
    std::fs::write(&garbage, "{not json\n").unwrap();
    let fresh = cli.path("fresh.redb");
    let err = cli.fail(
        &[
            "--db",
            fresh.to_str().unwrap(),
            "import",
            garbage.to_str().unwrap(),
        ],
        5,
        "validation_error",
    );
    assert!(err.contains("  line: 1"), "{err}");
    assert!(!fresh.exists(), "a failed import leaves no empty database");
    cli.fail(
        &["--db", fresh.to_str().unwrap(), "import", "missing.jsonl"],
        9,
        "storage_error",
    );

    // A closed stdout (`orgdb export | head -1`) ends quietly.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("orgdb"))
        .arg("--db")
        .arg(&cli.db)
        .arg("export")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(first_line.starts_with(r#"{"type":"header""#));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stats, compact, backup.
    let stats = cli.ok(&["stats"]);
    assert_eq!(stats["tables"]["orgs"], 8);
    assert!(stats["file_bytes"].as_u64().unwrap() > 0);
    let compacted = cli.ok(&["compact"]);
    assert!(compacted["compacted"].is_boolean());
    same_export(&cli.run(&["export"]), &text, "the compacted database");
    let backup = cli.path("backup.redb");
    let b = cli.ok(&["backup", backup.to_str().unwrap()]);
    assert!(b["bytes"].as_u64().unwrap() > 0);
    cli.fail(&["backup", backup.to_str().unwrap()], 5, "validation_error");
    same_export(
        &run(cli.cmd_for(&backup).arg("export")),
        &text,
        "the backup",
    );
    let check = cli.ok(&["check"]);
    assert_eq!(check["problems"], Value::Array(vec![]));
    assert_eq!(check["organizations"], 8);
}

#[test]
fn a_file_of_another_format_is_not_an_orgdb_database() {
    let cli = Cli::new();
    // An SQLite header and a page of zeros: SQLite's format, not orgdb's.
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(4096, 0);
    let path = cli.path("notadb.bin");
    std::fs::write(&path, &sqlite).unwrap();
    let err = cli.fail(&["--db", path.to_str().unwrap(), "stats"], 11, "corrupted");
    assert!(
        err.contains(&format!("not an orgdb database: {}: ", path.display())),
        "{err}"
    );
    assert!(!err.contains("magic number"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), sqlite, "left as found");
}

#[test]
fn backup_help_and_the_in_use_error_say_how_to_copy_a_live_database() {
    let cli = Cli::with_db();
    let r = cli.run(&["backup", "--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Another process cannot open a database a host holds, so the CLI's backup is no
    // backup of a live database: the help says so and names the way that works. (Words
    // joined by single spaces: however the help is wrapped.)
    let help = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!help.contains("safe while others use it"), "{help}");
    assert!(help.contains("while this command holds it"), "{help}");
    assert!(
        help.contains("from inside that process with Db::backup_to(PATH)"),
        "{help}"
    );
    // A database held by a host (this test process): the CLI is told it is in use, and how
    // to back it up.
    let _host = Db::open_with(&cli.db, small_journal()).unwrap();
    let target = cli.path("copy.redb");
    let err = cli.fail(&["backup", target.to_str().unwrap()], 9, "storage_error");
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains("Db::backup_to"), "{err}");
    assert!(!target.exists(), "nothing written");
}

#[test]
fn check_exits_non_zero_on_a_broken_index() {
    let cli = Cli::with_db();
    cli.ok(&["users", "create", "--email", "o@example.com", "--name", "O"]);
    cli.ok(&[
        "orgs",
        "create",
        "--owner",
        "o@example.com",
        "--name",
        "Acme",
    ]);
    assert_eq!(cli.run(&["check"]).code, 0);
    {
        // Remove the slug index entry behind orgdb's back (the database is closed).
        let raw = redb::Database::open(&cli.db).unwrap();
        let txn = raw.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("org_slug");
            let mut t = txn.open_table(def).unwrap();
            assert!(t.remove(&b"acme\0"[..]).unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    let r = cli.run(&["check"]);
    assert_eq!(r.code, 1, "{r:?}");
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = report["data"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| s(p).contains("org_slug") && s(p).contains("missing")),
        "{problems:?}"
    );
    assert!(r.stderr.starts_with("check failed: 1 problem"), "{r:?}");
    let r = cli.run(&["--format", "table", "check"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("problems"), "{}", r.stdout);
    // The slug no longer resolves; the id still does.
    cli.fail(&["orgs", "get", "acme"], 3, "not_found");
}

#[test]
fn demo_plays_both_seeds_and_runs_again() {
    let cli = Cli::new();
    let r = cli.run(&["demo", "--fresh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for step in [
        "## create organization",
        "## add admin (200)",
        "## add member (200)",
        "## add viewer (200)",
        "## register MCP server (200)",
        "counted once) (200)",
        "(429)",
        "## GET /v1/organization/usage?period=month (200)",
        "## GET /v1/organization/members?role=admin (200)",
        "(forbidden) (403)",
        "with a bad role (422)",
        "## accept invitation (200)",
        "## check: 0 problems",
    ] {
        assert!(r.stdout.contains(step), "demo lacks {step:?}");
    }
    assert!(r.stdout.contains(r#""duplicate": true"#));
    assert!(r.stdout.contains(r#""by_mcp": ["#));
    assert!(r.stdout.contains(r#""name": "Web Search""#));
    assert!(r.stdout.contains(r#""project_role": "admin""#));
    assert!(r.stdout.contains(r#""quota": "monthly_requests""#));
    // Usage on several days of the last week.
    let busy_days = r
        .stdout
        .split("usage?start_date=")
        .nth(1)
        .unwrap()
        .split("## ")
        .next()
        .unwrap()
        .matches(r#""requests": "#)
        .count();
    assert!(busy_days >= 7, "{busy_days}");
    // Owner, admin, member, viewer.
    for role in ["owner", "admin", "member", "viewer"] {
        assert!(r.stdout.contains(&format!(r#""role": "{role}""#)), "{role}");
    }
    // Again without --fresh: a second set beside the first.
    let r = cli.run(&["demo"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("## note: "), "{}", &r.stdout[..200]);
    assert!(r.stdout.contains("alice+2@example.com"));
    assert_eq!(cli.ok(&["orgs", "list"]).as_array().unwrap().len(), 4);
    // In tables.
    let r = cli.run(&["--format", "table", "demo", "--fresh"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("by_mcp:\nMCP_ID"), "{}", r.stdout);
    assert_eq!(cli.ok(&["orgs", "list"]).as_array().unwrap().len(), 2);
    // --fresh never deletes a file that is not an orgdb database.
    let notes = cli.path("notes.txt");
    std::fs::write(&notes, "precious").unwrap();
    let err = cli.fail(
        &["--db", notes.to_str().unwrap(), "demo", "--fresh"],
        9,
        "storage_error",
    );
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "precious");
}

/// The documented move of a file database to PostgreSQL: `export` from the file, `import`
/// into a server URL (given as `--db` like a path), then every command works on the server.
/// Runs when `ORGDB_TEST_BACKEND=postgres` (scripts/pg-server.sh sets the server's URL).
#[test]
fn a_file_database_moves_to_postgres_through_export_and_import() {
    if std::env::var("ORGDB_TEST_BACKEND").as_deref() != Ok("postgres") {
        eprintln!("skipped: no PostgreSQL server (run through scripts/pg-server.sh)");
        return;
    }
    let server = std::env::var("ORGDB_TEST_POSTGRES_URL").unwrap();
    // A schema of its own, which orgdb creates on open.
    let url = format!("{server}?schema=cli_{}", std::process::id());

    let cli = Cli::with_db();
    cli.ok(&[
        "users",
        "create",
        "--email",
        "alice@example.com",
        "--name",
        "Alice",
    ]);
    cli.ok(&[
        "users",
        "create",
        "--email",
        "bob@example.com",
        "--name",
        "Bob",
    ]);
    cli.ok(&[
        "--as",
        "alice@example.com",
        "orgs",
        "create",
        "--name",
        "Acme",
        "--plan",
        "pro",
    ]);
    cli.ok(&[
        "members",
        "add",
        "acme",
        "bob@example.com",
        "--role",
        "admin",
    ]);
    cli.ok(&["usage", "record", "acme", "--count", "5", "--key", "req-1"]);
    let dump = cli.path("dump.jsonl");
    cli.ok(&["export", dump.to_str().unwrap()]);

    // A URL is not a file: the CLI opens it without asking for one to exist.
    let report = cli.ok(&[
        "--db",
        &url,
        "import",
        dump.to_str().unwrap(),
        "--batch-size",
        "3",
    ]);
    assert!(report["transactions"].as_u64().unwrap() > 1, "{report}");
    let members = cli.ok(&["--db", &url, "members", "list", "acme"]);
    let emails: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["alice@example.com", "bob@example.com"]);
    let again = cli.ok(&[
        "--db", &url, "usage", "record", "acme", "--count", "5", "--key", "req-1",
    ]);
    assert_eq!(
        again["duplicate"], true,
        "the idempotency key moved too: {again}"
    );
    assert_eq!(cli.run(&["--db", &url, "check"]).code, 0);
    let stats = cli.ok(&["--db", &url, "stats"]);
    assert_eq!(stats["tables"]["memberships"], 2, "{stats}");
    // A password in the URL is never printed.
    let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
    let stats = cli.ok(&["--db", &with_password, "stats"]);
    let shown = stats["path"].as_str().unwrap();
    assert!(
        shown.contains("postgres:***@") && !shown.contains("hunter2"),
        "{shown}"
    );
}

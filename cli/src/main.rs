//! The orgdb command-line tool: every operation of the library on one database file, JSON
//! envelopes by default, tables for people, and the maintenance set.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orgdb::{Db, Error, Result};

mod commands;
mod demo;
mod output;
mod table;

use commands::{audit, invitations, maintenance, members, orgs, projects, resources, usage, users};
use output::{Format, Out};

/// `check` (or the demo's final check) found problems.
pub(crate) const EXIT_CHECK_FAILED: u8 = 1;

const AFTER_HELP: &str = "\
Organizations are named by id (org_…) or slug; users by id (user_…) or email; members by
user id, membership id (mem_…) or email.

Output: the seeds' JSON envelope {\"success\": true, \"data\": …} on stdout (lists of members
and invitations add \"pagination\"); --format table prints aligned tables instead.
Errors: `error: <code>: <message>` on stderr, then one `  <field>: <reason>` line per detail.

Exit codes:
   0  success
   1  check found problems
   2  bad command line (unknown command or flag, missing argument)
   3  not_found              7  quota_exceeded        10  incompatible_version
   4  forbidden              8  invitation_expired    11  corrupted
   5  validation_error       9  storage_error (also: no database at --db, file in use)
   6  conflict

Examples:
  orgdb demo --fresh
  orgdb users create --email alice@example.com --name Alice
  orgdb --as alice@example.com orgs create --name \"My Company\" --plan pro
  orgdb members list my-company --format table
  orgdb usage record my-company --count 10 --key req-42
  orgdb export backup.jsonl && orgdb --db copy.redb import backup.jsonl
  orgdb --db app.redb export app.jsonl && \\
    orgdb --db postgres://orgdb@db.internal/app import app.jsonl --batch-size 1000";

/// Operate an orgdb database: organizations, users, members, invitations, projects,
/// resources, usage quotas, audit log, and maintenance.
#[derive(Debug, Parser)]
#[command(name = "orgdb", version, after_help = AFTER_HELP)]
struct Cli {
    /// Database file, or a PostgreSQL URL (`postgres://user:password@host/db`) that several
    /// processes may use at once.
    #[arg(
        long,
        global = true,
        env = "ORGDB_PATH",
        default_value = "./orgdb.redb",
        value_name = "PATH|URL"
    )]
    db: PathBuf,
    /// Act as this user (id or email), checked against their role; default: the operator
    /// (`system`), who is never permission-checked but still bound by invariants and limits.
    #[arg(long = "as", global = true, value_name = "USER")]
    actor: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// How many organizations one user may own (creating or becoming an owner past it is
    /// quota_exceeded); default: no cap.
    #[arg(
        long,
        global = true,
        value_name = "N",
        env = "ORGDB_MAX_OWNED_ORGANIZATIONS"
    )]
    max_owned_organizations: Option<u64>,
    /// A plan catalog in JSON, replacing the default one (free, pro, team, enterprise):
    /// `{"default_plan": "free", "plans": {"free": {"limits": {"mcps": 3, …}, "features":
    /// ["sso"], "named_limits": {"projects": 5}}, …}}`.
    #[arg(long, global = true, value_name = "FILE", env = "ORGDB_PLANS")]
    plans: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Users: create, get, find, update, touch, delete, list.
    #[command(subcommand, visible_alias = "user")]
    Users(users::Cmd),
    /// Organizations: create, get, list, update, plans and limits, delete, slugs.
    #[command(subcommand, visible_alias = "org")]
    Orgs(orgs::Cmd),
    /// Members: list, get, add, set-role, remove, leave, transfer.
    #[command(subcommand, visible_alias = "member")]
    Members(members::Cmd),
    /// Invitations: create, list, get, preview, accept, decline, revoke, resend, for-email.
    #[command(subcommand, visible_alias = "invitation")]
    Invitations(invitations::Cmd),
    /// Projects and project members.
    #[command(subcommand, visible_alias = "project")]
    Projects(projects::Cmd),
    /// MCP servers and API keys.
    #[command(subcommand, visible_alias = "resource")]
    Resources(resources::Cmd),
    /// Usage: record, report, check-quota, prune.
    #[command(subcommand)]
    Usage(usage::Cmd),
    /// An organization's audit log.
    Audit(audit::Cmd),
    /// Verify every invariant and index; exits 1 on any violation.
    Check,
    /// Rows per table and file sizes.
    Stats,
    /// Rewrite the file without free space.
    Compact,
    /// Write a consistent copy of the database to a new file, while this command holds it.
    ///
    /// The copy is taken while this command holds the database, so no other process may have
    /// it open. A live database that a host process holds cannot be opened here (the error
    /// says it is in use): back it up from inside that process with Db::backup_to(PATH)
    /// (backup_to in Python, backupTo in Kotlin), or stop the host and run this command.
    Backup {
        /// Target file (must not exist).
        path: PathBuf,
    },
    /// Write everything as JSON lines (no secrets: invitation tokens are never exported).
    Export {
        /// Target file; `-` or nothing: stdout.
        file: Option<PathBuf>,
        /// Overwrite FILE when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Load an export into an empty (or new) database. Pending invitations arrive without a
    /// usable token: resend them. A progress bar shows on a terminal.
    Import {
        /// Source file; `-` or nothing: stdin.
        file: Option<PathBuf>,
        /// Commit every N records (default: the whole import in one transaction, all or
        /// nothing; with batches a failure keeps the batches before it).
        #[arg(long, value_name = "N")]
        batch_size: Option<usize>,
    },
    /// Build a database that plays both seed APIs' flows and print each step's JSON.
    Demo {
        /// Delete the database file first.
        #[arg(long)]
        fresh: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let out = Out { format: cli.format };
    let path = cli.db;
    let command = match cli.command {
        Command::Demo { fresh } => return demo::run(&path, fresh, out),
        Command::Import { file, batch_size } => {
            maintenance::import(&path, out, file.as_deref(), batch_size)?;
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };
    let creates = matches!(command, Command::Users(users::Cmd::Create { .. }));
    let opts = orgdb::Options {
        max_owned_organizations: cli.max_owned_organizations,
        plans: match &cli.plans {
            Some(file) => plan_catalog(file)?,
            None => orgdb::PlanCatalog::default(),
        },
        ..orgdb::Options::default()
    };
    let db = open(&path, creates, opts)?;
    let app = commands::App::new(db, cli.actor.as_deref(), out)?;
    match command {
        Command::Users(cmd) => users::run(&app, cmd)?,
        Command::Orgs(cmd) => orgs::run(&app, cmd)?,
        Command::Members(cmd) => members::run(&app, cmd)?,
        Command::Invitations(cmd) => invitations::run(&app, cmd)?,
        Command::Projects(cmd) => projects::run(&app, cmd)?,
        Command::Resources(cmd) => resources::run(&app, cmd)?,
        Command::Usage(cmd) => usage::run(&app, cmd)?,
        Command::Audit(cmd) => audit::run(&app, cmd)?,
        Command::Check => return maintenance::check(&app),
        Command::Stats => maintenance::stats(&app, &path)?,
        Command::Compact => maintenance::compact(&app, &path)?,
        Command::Backup { path: target } => maintenance::backup(&app, &target)?,
        Command::Export { file, force } => maintenance::export(&app, file.as_deref(), force)?,
        Command::Import { .. } | Command::Demo { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the database; only commands that start one may create the file.
/// The plan catalog of `--plans`: `validation_error` on `plans` when unreadable.
fn plan_catalog(file: &Path) -> Result<orgdb::PlanCatalog> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| commands::invalid("plans", format!("{}: {e}", file.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| commands::invalid("plans", format!("{}: {e}", file.display())))
}

fn open(path: &Path, create: bool, opts: orgdb::Options) -> Result<Db> {
    if !create && !commands::is_url(path) && !path.exists() {
        return Err(Error::Storage {
            message: format!(
                "no database at {} (start one with `orgdb users create`, `orgdb import` or \
                 `orgdb demo`, or point --db / ORGDB_PATH at one)",
                path.display()
            ),
        });
    }
    Db::open_with(path, opts)
}

/// `error: <code>: <message>` and one line per detail, on stderr.
fn report(err: &Error) {
    output::warn(&format!("error: {}: {}", err.code(), err.message()));
    for (field, value) in err.details() {
        let text = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        output::warn(&format!("  {field}: {text}"));
    }
}

/// A distinct exit code per error class (listed in `orgdb --help`).
fn exit_code(err: &Error) -> u8 {
    match err.code() {
        "not_found" => 3,
        "forbidden" => 4,
        "validation_error" => 5,
        "conflict" => 6,
        "quota_exceeded" => 7,
        "invitation_expired" => 8,
        "storage_error" => 9,
        "incompatible_version" => 10,
        "corrupted" => 11,
        _ => 1,
    }
}

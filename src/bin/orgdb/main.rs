//! The orgdb command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// Operate an orgdb database file.
#[derive(Debug, Parser)]
#[command(name = "orgdb", version, about)]
struct Cli {
    /// Database file.
    #[arg(
        long,
        global = true,
        env = "ORGDB_PATH",
        default_value = "./orgdb.redb"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a database that plays both seed APIs' flows and print each step's JSON.
    Demo {
        /// Delete the database file first.
        #[arg(long)]
        fresh: bool,
    },
    /// Verify every invariant and index; exits non-zero on any violation.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { fresh } => demo::run(&cli.db, fresh),
        Command::Check => check(&cli.db),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}: {}", err.code(), err.message());
            ExitCode::FAILURE
        }
    }
}

/// Prints a line; a closed pipe (`orgdb demo | head`) ends the program quietly.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

fn check(path: &std::path::Path) -> orgdb::Result<ExitCode> {
    let db = orgdb::Db::open(path)?;
    let report = db.check()?;
    emit(&serde_json::to_string_pretty(&report).unwrap_or_default());
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! The subcommands, one module per noun, and what they share: the open database, the actor,
//! the printer, and parsing of the values clap leaves as text (so that bad values are the
//! library's own `validation_error`, naming the field).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use orgdb::{Actor, Db, Details, Error, ListQuery, MemberRef, Page, Result};
use serde_json::Value;

use crate::output::{Out, View};

pub(crate) mod audit;
pub(crate) mod invitations;
pub(crate) mod maintenance;
pub(crate) mod members;
pub(crate) mod orgs;
pub(crate) mod projects;
pub(crate) mod resources;
pub(crate) mod usage;
pub(crate) mod users;

/// One command's context.
pub(crate) struct App {
    pub(crate) db: Db,
    /// Who acts (`--as`); `Actor::System` by default.
    pub(crate) actor: Actor,
    pub(crate) out: Out,
}

impl App {
    /// Opens the database and resolves `--as` (a user id, an email, or `system`).
    pub(crate) fn new(db: Db, actor: Option<&str>, out: Out) -> Result<App> {
        let actor = match actor.map(str::trim) {
            None => Actor::System,
            Some(s) if s.eq_ignore_ascii_case("system") => Actor::System,
            // An unknown user is `not_found` here rather than `forbidden` everywhere.
            Some(s) => Actor::User(db.get_user(&user_id(&db, s)?)?.id),
        };
        Ok(App { db, actor, out })
    }

    /// An organization by id (`org_…`) or slug.
    pub(crate) fn org(&self, reference: &str) -> Result<String> {
        let reference = reference.trim();
        if reference.starts_with("org_") {
            return Ok(reference.to_owned());
        }
        // Slugs never contain `_`, so an id and a slug cannot be mistaken for each other.
        Ok(self
            .db
            .get_organization_by_slug(&Actor::System, reference)?
            .organization
            .id)
    }

    /// A user by id (`user_…`) or email.
    pub(crate) fn user(&self, reference: &str) -> Result<String> {
        user_id(&self.db, reference)
    }

    /// A member by user id, membership id (`mem_…`) or email.
    pub(crate) fn member(&self, reference: &str) -> Result<MemberRef> {
        let reference = reference.trim();
        if reference.contains('@') {
            return Ok(MemberRef::User(self.user(reference)?));
        }
        Ok(MemberRef::parse(reference))
    }

    /// The user a command is about: `--user` when given, else the `--as` user.
    pub(crate) fn acting_user(&self, given: Option<&str>, flag: &str) -> Result<String> {
        match (given, &self.actor) {
            (Some(user), _) => self.user(user),
            (None, Actor::User(id)) => Ok(id.clone()),
            (None, Actor::System) => Err(invalid(
                flag.trim_start_matches('-'),
                format!("Required: give {flag} USER or --as USER"),
            )),
        }
    }
}

fn user_id(db: &Db, reference: &str) -> Result<String> {
    let reference = reference.trim();
    if reference.contains('@') {
        Ok(db.find_user_by_email(reference)?.id)
    } else {
        Ok(reference.to_owned())
    }
}

/// A `validation_error` naming `field`, as the library words them.
/// Whether `--db` names a PostgreSQL server rather than a file.
pub(crate) fn is_url(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|p| p.starts_with("postgres://") || p.starts_with("postgresql://"))
}

/// `--db` as it may be printed: a URL's password replaced by `***`.
pub(crate) fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if !is_url(path) {
        return text;
    }
    let (scheme, rest) = text.split_once("://").unwrap_or(("", &text));
    let Some((credentials, host)) = rest.split_once('@') else {
        return text;
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => text,
    }
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    Error::Validation {
        message: format!("Invalid {field}: {reason}"),
        details: Details::from([(field.to_owned(), Value::from(reason))]),
    }
}

pub(crate) fn storage(message: impl Into<String>) -> Error {
    Error::Storage {
        message: message.into(),
    }
}

/// `KEY=VALUE` pairs into a map.
pub(crate) fn key_values(field: &str, pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(invalid(field, format!("Expected KEY=VALUE, got {pair:?}"))),
        })
        .collect()
}

/// A calendar date, `YYYY-MM-DD`.
pub(crate) fn date(field: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, "Must be a date (YYYY-MM-DD)"))
}

/// An instant: RFC 3339 (`2024-01-15T10:30:00Z`) or a date (its midnight, UTC).
pub(crate) fn instant(field: &str, text: &str) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| {
            invalid(
                field,
                "Must be an RFC 3339 time (2024-01-15T10:30:00Z) or a date",
            )
        })
}

/// A duration in seconds: `3600`, `90m`, `48h`, `7d`.
pub(crate) fn seconds(field: &str, text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| invalid(field, "Must be a duration: 3600, 90m, 48h or 7d"))
}

/// `-` or nothing: stdin; otherwise the file.
pub(crate) fn input(file: Option<&Path>) -> Result<Box<dyn BufRead>> {
    match file {
        None => Ok(Box::new(BufReader::new(std::io::stdin()))),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(BufReader::new(std::io::stdin()))),
        Some(p) => File::open(p)
            .map(|f| Box::new(BufReader::new(f)) as Box<dyn BufRead>)
            .map_err(|e| storage(format!("opening {}: {e}", p.display()))),
    }
}

/// `{"deleted": true, "id": …}` for calls that return nothing.
pub(crate) fn deleted(id: &str) -> Value {
    serde_json::json!({ "deleted": true, "id": id })
}

/// Paging and search of the system lists (`orgs list`, `users list`).
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only rows whose slug or email, whole name, or a later word of their name starts with
    /// this (case-insensitive).
    #[arg(long)]
    search: Option<String>,
    /// One page (from 1) instead of every row.
    #[arg(long)]
    page: Option<u32>,
    /// Rows per page, 1–100 (default 20 for one page, 100 when following every page).
    #[arg(long)]
    per_page: Option<u32>,
    /// One page, starting after this cursor (the `next_cursor` of a previous page).
    #[arg(long)]
    cursor: Option<String>,
}

/// Prints one page of a system list when a page or cursor is asked for, else every row,
/// following the cursors.
pub(crate) fn print_list<T: serde::Serialize>(
    out: &Out,
    columns: &[&str],
    args: ListArgs,
    fetch: impl Fn(&ListQuery) -> Result<Page<T>>,
) -> Result<()> {
    let one_page = args.page.is_some() || args.cursor.is_some();
    let mut query = ListQuery {
        page: args.page,
        per_page: args.per_page,
        search: args.search,
        cursor: args.cursor,
    };
    if one_page {
        out.page(&fetch(&query)?, columns);
        return Ok(());
    }
    query.per_page = Some(query.per_page.unwrap_or(100));
    let mut rows = Vec::new();
    loop {
        let page = fetch(&query)?;
        rows.extend(page.data);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    out.ok(&rows, View::Rows(columns));
    Ok(())
}

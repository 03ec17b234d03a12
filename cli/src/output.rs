//! Printing results: the seeds' JSON envelopes (default) or human tables (`--format table`).
//!
//! Everything goes through [`emit`], which survives a closed stdout (`orgdb export | head`):
//! the first failed write marks stdout closed and later output is dropped, so the command
//! still finishes its work and closes the database cleanly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;
use orgdb::{json, Page};
use serde::Serialize;
use serde_json::Value;

use crate::table;
pub(crate) use crate::table::View;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout; a closed pipe turns all later output off.
pub(crate) fn emit(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes a line to stderr; never panics (unlike `eprintln!`) when stderr is gone.
pub(crate) fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Whether a write to stdout has failed (the reader went away).
pub(crate) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Marks stdout closed (a streaming writer met a broken pipe).
pub(crate) fn mark_stdout_closed() {
    STDOUT_CLOSED.store(true, Ordering::Relaxed);
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// The seeds' JSON envelopes, pretty-printed.
    #[default]
    Json,
    /// Aligned text tables for people.
    Table,
}

/// The printer of one command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) format: Format,
}

impl Out {
    /// A successful result: `{"success": true, "data": …}` or a table.
    pub(crate) fn ok<T: Serialize>(&self, value: &T, view: View<'_>) {
        match self.format {
            Format::Json => emit(&pretty(&json::ok(value))),
            Format::Table => emit_table(&table::render(&to_value(value), view)),
        }
    }

    /// A page, as seed 000 lists members: rows plus `pagination` (and `next_cursor`).
    pub(crate) fn page<T: Serialize>(&self, page: &Page<T>, columns: &[&str]) {
        match self.format {
            Format::Json => emit(&pretty(&json::page(page))),
            Format::Table => {
                let rows = to_value(&page.data);
                emit_table(&table::render(&rows, View::Rows(columns)));
                let p = &page.pagination;
                let mut footer = format!(
                    "page {} of {} ({} per page, {} in all)",
                    p.page,
                    p.total_pages.max(1),
                    p.per_page,
                    p.total
                );
                if let Some(cursor) = &page.next_cursor {
                    footer.push_str(&format!("; next: --cursor {cursor}"));
                }
                emit(&footer);
            }
        }
    }
}

/// A rendered table without its trailing newline (an empty table prints "(none)").
fn emit_table(text: &str) {
    emit(text.strip_suffix('\n').unwrap_or(text));
}

pub(crate) fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(crate) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

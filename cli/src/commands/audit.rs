//! `orgdb audit ORG`

use clap::Args;
use orgdb::Result;

use super::App;
use crate::output::View;

/// Read an organization's audit log in order (admins, owners, the operator; the operator can
/// still read it after the organization is deleted).
#[derive(Debug, Args)]
pub(crate) struct Cmd {
    /// Organization id (or slug while it exists).
    org: String,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many events (1–1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

const COLUMNS: &[&str] = &["seq", "at", "actor", "action", "target", "details"];

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let org = app.org(&cmd.org)?;
    let events = app.db.audit_log(&app.actor, &org, cmd.after, cmd.limit)?;
    app.out.ok(&events, View::Rows(COLUMNS));
    Ok(())
}

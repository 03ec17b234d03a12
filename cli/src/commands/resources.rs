//! `orgdb resources …`

use clap::Subcommand;
use orgdb::{ResourceKind, Result};

use super::{invalid, App};
use crate::output::View;

/// MCP servers and API keys, counted by the `mcps` / `api_keys` limits.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Register an MCP server or API key (limit-checked).
    Register {
        /// Organization id or slug.
        org: String,
        /// Display name.
        name: String,
        /// `mcp` or `api_key`.
        #[arg(long, default_value = "mcp")]
        kind: String,
    },
    /// Rename a resource.
    Rename {
        /// Organization id or slug.
        org: String,
        /// Resource id (`res_…`).
        resource: String,
        /// New name.
        name: String,
    },
    /// Remove a resource (it keeps its name in usage reports).
    Remove {
        /// Organization id or slug.
        org: String,
        /// Resource id.
        resource: String,
    },
    /// Live resources of an organization.
    List {
        /// Organization id or slug.
        org: String,
        /// Only this kind: `mcp` or `api_key`.
        #[arg(long)]
        kind: Option<String>,
    },
}

const COLUMNS: &[&str] = &["id", "kind", "name", "created_at"];

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::Register { org, name, kind } => {
            let org = app.org(&org)?;
            let kind = parse_kind(&kind)?;
            out.ok(
                &db.register_resource(actor, &org, kind, &name)?,
                View::Record,
            );
        }
        Cmd::Rename {
            org,
            resource,
            name,
        } => {
            let org = app.org(&org)?;
            out.ok(
                &db.rename_resource(actor, &org, &resource, &name)?,
                View::Record,
            );
        }
        Cmd::Remove { org, resource } => {
            let org = app.org(&org)?;
            out.ok(&db.remove_resource(actor, &org, &resource)?, View::Record);
        }
        Cmd::List { org, kind } => {
            let org = app.org(&org)?;
            let kind = kind.as_deref().map(parse_kind).transpose()?;
            out.ok(&db.list_resources(actor, &org, kind)?, View::Rows(COLUMNS));
        }
    }
    Ok(())
}

fn parse_kind(text: &str) -> Result<ResourceKind> {
    ResourceKind::parse(&text.replace('-', "_"))
        .ok_or_else(|| invalid("kind", "Must be one of: mcp, api_key"))
}

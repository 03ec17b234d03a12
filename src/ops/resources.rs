//! Resources (MCP servers and API keys), counted by the `mcps` / `api_keys` limits.

use serde_json::json;

use super::{record, Ctx};
use crate::authz::{authorize, Action, Actor};
use crate::error::{Error, Result};
use crate::model::resource::{Resource, ResourceKind};
use crate::store::{Reads, Writes};
use crate::validate::Validator;

fn load_live(tx: &dyn Reads, org: &str, id: &str) -> Result<Resource> {
    tx.resource(id.trim())?
        .filter(|r| r.is_live_in(org))
        .ok_or_else(|| Error::not_found("Resource"))
}

pub(crate) fn register(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    kind: ResourceKind,
    name: &str,
) -> Result<Resource> {
    let cleared = authorize(tx, actor, org, Action::ManageResources)?;
    let mut validator = Validator::new();
    let name = validator.name("name", name);
    validator.finish()?;
    let used = tx.org_stats(org)?.resource_count(kind);
    let limits = super::ceilings(ctx, &cleared.org);
    let limit = match kind {
        ResourceKind::Mcp => limits.mcps,
        ResourceKind::ApiKey => limits.api_keys,
    };
    if let Some(limit) = limit {
        if used >= limit {
            return Err(Error::quota(kind.limit_name(), limit, used, 1));
        }
    }
    let res = Resource {
        id: ctx.id("res"),
        organization_id: org.to_owned(),
        kind,
        name,
        created_at: ctx.now,
        removed_at: None,
    };
    tx.insert_resource(&res)?;
    let details = json!({ "kind": kind, "name": res.name });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "resource.registered",
        &res.id,
        details,
    )?;
    Ok(res)
}

pub(crate) fn rename(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
    name: &str,
) -> Result<Resource> {
    authorize(tx, actor, org, Action::ManageResources)?;
    let mut validator = Validator::new();
    let name = validator.name("name", name);
    validator.finish()?;
    let old = load_live(tx, org, id)?;
    if old.name == name {
        return Ok(old);
    }
    let new = Resource {
        name,
        ..old.clone()
    };
    tx.put_resource(&new)?;
    let details = json!({ "name": { "before": old.name, "after": new.name } });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "resource.renamed",
        &new.id,
        details,
    )?;
    Ok(new)
}

pub(crate) fn remove(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
) -> Result<Resource> {
    authorize(tx, actor, org, Action::ManageResources)?;
    let old = load_live(tx, org, id)?;
    let new = Resource {
        removed_at: Some(ctx.now),
        ..old
    };
    tx.retire_resource(&new)?;
    let details = json!({ "kind": new.kind, "name": new.name });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "resource.removed",
        &new.id,
        details,
    )?;
    Ok(new)
}

pub(crate) fn list(
    tx: &dyn Reads,
    actor: &Actor,
    org: &str,
    kind: Option<ResourceKind>,
) -> Result<Vec<Resource>> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    Ok(tx
        .resources_of_org(org, kind, false)?
        .into_iter()
        .map(|r| r.resource)
        .collect())
}

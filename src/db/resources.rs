//! `Db`: Resources (MCP servers, API keys).

use crate::authz::Actor;
use crate::error::Result;
use crate::model::resource::{Resource, ResourceKind};
use crate::ops;

use super::Db;

impl Db {
    /// Registers an MCP server or API key, checked against the `mcps` / `api_keys` limit.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`name`), `quota_exceeded`.
    pub fn register_resource(
        &self,
        actor: &Actor,
        org: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Resource> {
        self.write(|tx, ctx| ops::resources::register(tx, ctx, actor, org, kind, name))
    }

    /// Renames a resource.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn rename_resource(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        name: &str,
    ) -> Result<Resource> {
        self.write(|tx, ctx| ops::resources::rename(tx, ctx, actor, org, id, name))
    }

    /// Removes a resource: it stops counting against its limit and keeps its name in reports.
    ///
    /// # Errors
    /// `forbidden`, `not_found` (also when already removed).
    pub fn remove_resource(&self, actor: &Actor, org: &str, id: &str) -> Result<Resource> {
        let removed = self.write(|tx, ctx| ops::resources::remove(tx, ctx, actor, org, id))?;
        self.inner
            .ledger
            .forget_resource(&removed.organization_id, &removed.id);
        Ok(removed)
    }

    /// Live resources of an organization, of one kind or all.
    ///
    /// # Errors
    /// `forbidden`.
    pub fn list_resources(
        &self,
        actor: &Actor,
        org: &str,
        kind: Option<ResourceKind>,
    ) -> Result<Vec<Resource>> {
        self.read(|tx, _| ops::resources::list(tx, actor, org, kind))
    }
}

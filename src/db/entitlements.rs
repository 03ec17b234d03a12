//! `Db`: Entitlements: what an organization has of a feature or a limit, and overrides.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::entitlement::{Entitlement, EntitlementValue, SEED_LIMITS};
use crate::ops;

use super::Db;

impl Db {
    /// What the organization has of one feature or limit (`sso`, `projects`, `mcps`…), and
    /// why: its plan, a per-organization override (which wins), or neither (a feature is
    /// off, a limit unlimited). Limits orgdb counts (the four seed limits and `projects`)
    /// come with `used`, and `has_access` says whether one more fits. Any member may ask.
    ///
    /// ```
    /// use orgdb::{Actor, Db, EntitlementSource, EntitlementValue, NewOrganization, NewUser};
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let acme = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     plan: Some("team".into()),
    ///     ..Default::default()
    /// })?;
    /// let org = acme.organization;
    /// let sso = db.entitlement(&Actor::user(&ada.id), &org.id, "sso")?;
    /// assert!(sso.has_access);
    /// assert_eq!(sso.source, EntitlementSource::Plan);
    /// // The operator switches it off for this organization only.
    /// let off = EntitlementValue::Feature { enabled: false };
    /// db.set_entitlement_override(&Actor::System, &org.id, "sso", Some(&off))?;
    /// assert!(!db.entitlement(&Actor::System, &org.id, "sso")?.has_access);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found` (the organization, or a name neither the plan catalog nor an override
    /// knows), `forbidden` for a non-member, `validation_error` for a malformed `name`.
    pub fn entitlement(&self, actor: &Actor, org: &str, name: &str) -> Result<Entitlement> {
        self.read(|tx, ctx| ops::entitlements::get(tx, ctx, actor, org, name))
    }

    /// Every entitlement of the organization: the four seed limits, then every other name
    /// the plan catalog or one of the organization's overrides knows, by name.
    ///
    /// # Errors
    /// `not_found`, `forbidden` for a non-member.
    pub fn entitlements(&self, actor: &Actor, org: &str) -> Result<Vec<Entitlement>> {
        self.read(|tx, ctx| ops::entitlements::list(tx, ctx, actor, org))
    }

    /// Sets (`Some`) or clears (`None`) the organization's override of one feature or limit
    /// (`Actor::System` only, like [`Db::set_limit_overrides`]), and returns the entitlement
    /// as it now is. A name the plan catalog knows takes a value of its kind; other names
    /// may be set as either, for what the host checks itself. Overrides of the four seed
    /// limits are the same as [`Db::set_limit_overrides`]'. Audited
    /// (`organization.entitlement_changed`, or `organization.limits_changed` for the four).
    ///
    /// # Errors
    /// `forbidden` for a user actor, `not_found`, `validation_error` (`name`, or `value` of
    /// the wrong kind).
    pub fn set_entitlement_override(
        &self,
        actor: &Actor,
        org: &str,
        name: &str,
        value: Option<&EntitlementValue>,
    ) -> Result<Entitlement> {
        let out = self
            .write(|tx, ctx| ops::entitlements::set_override(tx, ctx, actor, org, name, value))?;
        if SEED_LIMITS.contains(&out.name.as_str()) {
            self.inner.ledger.refresh_limit(org);
        }
        Ok(out)
    }
}

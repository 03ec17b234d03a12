//! Entitlements (SPEC section 13): what an organization has of a feature or a limit, from
//! its plan or an override, and the overrides themselves.
//!
//! The four seed limits keep their overrides in the organization's record
//! (`LimitOverrides`, read by every check); every other name lives in the
//! `entitlement_overrides` table, one row per organization and name.

use serde_json::json;

use super::{orgs, record, Ctx};
use crate::authz::{authorize, Action, Actor};
use crate::error::{Error, Result};
pub(crate) use crate::model::entitlement::PROJECTS;
use crate::model::entitlement::{
    valid_name, Enforcement, Entitlement, EntitlementKind, EntitlementSource, EntitlementValue,
    LIMIT_MAX, NAME_MAX, SEED_LIMITS,
};
use crate::model::org::{Limit, LimitOverridesPatch, Limits, Usage};
use crate::store::{OrgRecord, Reads, Writes};
use crate::validate::Validator;

/// A name as given, or `validation_error` naming `name`.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if valid_name(name) {
        Ok(name)
    } else {
        let mut v = Validator::new();
        v.fail(
            "name",
            format!(
                "Must be lower-case letters, digits and underscores, a letter first, at most \
                 {NAME_MAX} characters"
            ),
        );
        v.finish().map(|()| name)
    }
}

fn seed_limit(limits: &Limits, name: &str) -> Option<u64> {
    match name {
        "mcps" => limits.mcps,
        "api_keys" => limits.api_keys,
        "team_members" => limits.team_members,
        _ => limits.monthly_requests,
    }
}

fn seed_used(usage: &Usage, name: &str) -> u64 {
    match name {
        "mcps" => usage.mcps,
        "api_keys" => usage.api_keys,
        "team_members" => usage.team_members,
        _ => usage.monthly_requests,
    }
}

fn limit_value(limit: Limit) -> Option<u64> {
    match limit {
        Limit::Unlimited => None,
        Limit::Count(n) => Some(n),
    }
}

/// What the organization has of `name` (already checked), or `None` when neither the
/// catalog nor an override knows the name.
fn resolve(tx: &dyn Reads, ctx: &Ctx, rec: &OrgRecord, name: &str) -> Result<Option<Entitlement>> {
    let org = &rec.org.id;
    let plan = ctx.opts.plans.plan(&rec.org.plan);
    let (kind, value, source, used) = if SEED_LIMITS.contains(&name) {
        let over = match name {
            "mcps" => rec.overrides.mcps,
            "api_keys" => rec.overrides.api_keys,
            "team_members" => rec.overrides.team_members,
            _ => rec.overrides.monthly_requests,
        };
        let (limit, source) = match (over, plan) {
            (Some(limit), _) => (limit_value(limit), EntitlementSource::Override),
            (None, Some(plan)) => (seed_limit(&plan.limits, name), EntitlementSource::Plan),
            (None, None) => (None, EntitlementSource::Default),
        };
        let used = seed_used(&orgs::usage(tx, ctx, rec)?, name);
        (
            EntitlementKind::Limit,
            EntitlementValue::Limit { limit },
            source,
            Some(used),
        )
    } else {
        let from_plan = plan.and_then(|p| {
            if p.features.contains(name) {
                Some(EntitlementValue::Feature { enabled: true })
            } else {
                p.named_limits
                    .get(name)
                    .map(|&limit| EntitlementValue::Limit { limit })
            }
        });
        let (value, source) = match (tx.entitlement_override(org, name)?, from_plan) {
            (Some(value), _) => (value, EntitlementSource::Override),
            (None, Some(value)) => (value, EntitlementSource::Plan),
            (None, None) => match ctx.opts.plans.kind_of(name) {
                Some(EntitlementKind::Feature) => (
                    EntitlementValue::Feature { enabled: false },
                    EntitlementSource::Default,
                ),
                Some(EntitlementKind::Limit) => (
                    EntitlementValue::Limit { limit: None },
                    EntitlementSource::Default,
                ),
                None => return Ok(None),
            },
        };
        let used = match value {
            EntitlementValue::Limit { .. } if name == PROJECTS => Some(tx.project_count(org)?),
            _ => None,
        };
        (value.kind(), value, source, used)
    };
    let enforcement = match kind {
        EntitlementKind::Limit => ctx.opts.plans.enforcement(&rec.org.plan, name),
        EntitlementKind::Feature => Enforcement::Hard,
    };
    let (has_access, limit) = match value {
        EntitlementValue::Feature { enabled } => (enabled, None),
        EntitlementValue::Limit { limit } => {
            let room = match (enforcement.ceiling(limit), used) {
                (None, _) => true,
                (Some(bound), Some(used)) => used < bound,
                (Some(bound), None) => bound > 0,
            };
            (room, limit)
        }
    };
    Ok(Some(Entitlement {
        name: name.to_owned(),
        kind,
        has_access,
        limit,
        used,
        source,
        enforcement,
        plan: rec.org.plan.clone(),
    }))
}

/// `entitlement`: what the organization has of `name`, and why. Any member may ask.
pub(crate) fn get(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    name: &str,
) -> Result<Entitlement> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    let name = checked_name(name)?;
    resolve(tx, ctx, &cleared.org, name)?.ok_or_else(|| Error::not_found("Entitlement"))
}

/// `entitlements`: every name the catalog or an override of the organization knows: the
/// four seed limits first, then the others by name.
pub(crate) fn list(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
) -> Result<Vec<Entitlement>> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    let mut names = ctx.opts.plans.entitlement_names();
    for (name, _) in tx.entitlement_overrides(org)? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names[SEED_LIMITS.len()..].sort();
    names
        .iter()
        .filter_map(|name| resolve(tx, ctx, &cleared.org, name).transpose())
        .collect()
}

/// `set_entitlement_override`: sets (`Some`) or clears (`None`) the organization's override
/// of `name`. The operator's (`Actor::System`) alone, like `set_limit_overrides`. The value's
/// kind must be the catalog's for that name; the four seed limits take limits only and are
/// stored as their `LimitOverrides` field (audited as `organization.limits_changed`); other
/// names are audited as `organization.entitlement_changed` with `before` and `after`.
pub(crate) fn set_override(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    name: &str,
    value: Option<&EntitlementValue>,
) -> Result<Entitlement> {
    if *actor != Actor::System {
        return Err(Error::forbidden());
    }
    authorize(tx, actor, org, Action::ChangePlan)?;
    let name = checked_name(name)?;
    let known = ctx.opts.plans.kind_of(name);
    let mut v = Validator::new();
    if let (Some(kind), Some(value)) = (known, value) {
        if value.kind() != kind {
            v.fail(
                "value",
                format!("{name:?} is a {} in the plan catalog", kind.as_str()),
            );
        }
    }
    if let Some(EntitlementValue::Limit { limit: Some(n) }) = value {
        if *n > LIMIT_MAX {
            v.fail("value", format!("Must be at most {LIMIT_MAX}"));
        }
    }
    v.finish()?;
    let before = tx.entitlement_override(org, name)?;
    if SEED_LIMITS.contains(&name) {
        let limit = value.map(|v| match *v {
            EntitlementValue::Limit { limit: Some(n) } => Limit::Count(n),
            _ => Limit::Unlimited,
        });
        let mut patch = LimitOverridesPatch::default();
        match name {
            "mcps" => patch.mcps = Some(limit),
            "api_keys" => patch.api_keys = Some(limit),
            "team_members" => patch.team_members = Some(limit),
            _ => patch.monthly_requests = Some(limit),
        }
        orgs::set_limit_overrides(tx, ctx, actor, org, &patch)?;
    } else if before.as_ref() != value {
        tx.put_entitlement_override(org, name, value)?;
        let details = json!({ "name": name, "before": before, "after": value });
        record(
            tx,
            ctx,
            actor.label(),
            Some(org),
            "organization.entitlement_changed",
            org,
            details,
        )?;
    }
    let rec = tx
        .org(org)?
        .ok_or_else(|| Error::not_found("Organization"))?;
    // A name nothing knows any more (an override cleared, of a name outside the catalog):
    // what it now is, the default of its kind.
    let kind = value
        .or(before.as_ref())
        .map_or(EntitlementKind::Feature, |v| v.kind());
    Ok(
        resolve(tx, ctx, &rec, name)?.unwrap_or_else(|| Entitlement {
            name: name.to_owned(),
            kind,
            has_access: kind == EntitlementKind::Limit,
            limit: None,
            used: None,
            source: EntitlementSource::Default,
            enforcement: Enforcement::Hard,
            plan: rec.org.plan.clone(),
        }),
    )
}

/// The organization's named limit `name` (override, then plan), `None` when unlimited.
pub(crate) fn named_limit(
    tx: &dyn Reads,
    ctx: &Ctx,
    rec: &OrgRecord,
    name: &str,
) -> Result<Option<u64>> {
    if let Some(value) = tx.entitlement_override(&rec.org.id, name)? {
        return Ok(match value {
            EntitlementValue::Limit { limit } => limit,
            EntitlementValue::Feature { .. } => None,
        });
    }
    Ok(ctx
        .opts
        .plans
        .plan(&rec.org.plan)
        .and_then(|p| p.named_limits.get(name).copied().flatten()))
}

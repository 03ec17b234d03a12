//! Organizations.

use serde_json::json;

use super::{limits, record, seats, Changes, Ctx};
use crate::authz::{authorize, clear, Action, Actor};
use crate::error::{Error, Result};
use crate::ledger::PeriodTotal;
use crate::model::entitlement::LIMIT_MAX;
use crate::model::membership::Membership;
use crate::model::org::{
    Limit, LimitOverrides, LimitOverridesPatch, NewOrganization, Organization, OrganizationDetails,
    OrganizationPatch, OrganizationSettings, OrganizationWithMembership, SlugCheck, Usage,
};
use crate::model::role::Role;
use crate::store::{OrgRecord, Reads, Writes};
use crate::validate::{self, Validator, EXTERNAL_ID_MAX, NAME_MAX, TEXT_MAX};

/// Suffixes tried before giving up on a derived slug.
const SLUG_ATTEMPTS: u32 = 10_000;

fn is_reserved(ctx: &Ctx, slug: &str) -> bool {
    ctx.opts.reserved_slugs.iter().any(|r| r == slug)
}

/// `validation_error` for a reserved explicit slug (it is never available, unlike a taken one).
fn refuse_reserved(ctx: &Ctx, validator: &mut Validator, slug: &str) {
    if is_reserved(ctx, slug) {
        validator.fail("slug", "Is reserved");
    }
}

fn slug_taken(slug: &str) -> Error {
    Error::conflict_with("Slug already taken", "slug", slug)
}

fn external_taken(external_id: &str) -> Error {
    Error::conflict_with("External id already in use", "external_id", external_id)
}

/// The derived slug, made unique with `-2`, `-3`… (shortening the base to keep ≤ 64).
fn unique_slug(tx: &dyn Reads, ctx: &Ctx, name: &str) -> Result<String> {
    let base = validate::derive_slug(name);
    for n in 1..=SLUG_ATTEMPTS {
        let candidate = if n == 1 {
            base.clone()
        } else {
            let suffix = format!("-{n}");
            let keep = validate::SLUG_MAX - suffix.len();
            let stem = base[..base.len().min(keep)].trim_end_matches('-');
            format!("{stem}{suffix}")
        };
        if !is_reserved(ctx, &candidate) && tx.org_id_by_slug(&candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(Error::conflict(
        "No free slug could be derived from the name",
    ))
}

pub(crate) fn create(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    owner: &str,
    new: &NewOrganization,
) -> Result<OrganizationWithMembership> {
    let mut validator = Validator::new();
    let name = validator.name("name", &new.name);
    let slug = new.slug.as_deref().map(|s| validator.slug("slug", s));
    if let Some(slug) = &slug {
        refuse_reserved(ctx, &mut validator, slug);
    }
    let external_id = new
        .external_id
        .as_deref()
        .map(|e| validator.token_text("external_id", e, EXTERNAL_ID_MAX));
    let description = validator.text("description", new.description.as_deref(), TEXT_MAX);
    let plan = match &new.plan {
        Some(plan) => validate_plan(ctx, &mut validator, plan),
        None => ctx.opts.plans.default_plan.clone(),
    };
    let a = new;
    let mut line = |field: &str, v: &Option<String>| validator.text(field, v.as_deref(), NAME_MAX);
    let address = [
        line("address_line1", &a.address_line1),
        line("address_line2", &a.address_line2),
        line("city", &a.city),
        line("state", &a.state),
        line("zipcode", &a.zipcode),
        line("country", &a.country),
    ];
    validator.metadata("metadata", &new.metadata);
    if let Some(settings) = &new.settings {
        validator.metadata("settings", &settings.extra);
    }
    validator.finish()?;

    let user = super::load_user(tx, owner)?;
    seats::require_ownership_room(tx, ctx, &user.id)?;
    let slug = match slug {
        Some(slug) if tx.org_id_by_slug(&slug)?.is_some() => return Err(slug_taken(&slug)),
        Some(slug) => slug,
        None => unique_slug(tx, ctx, &name)?,
    };
    if let Some(ext) = &external_id {
        if tx.org_id_by_external(ext)?.is_some() {
            return Err(external_taken(ext));
        }
    }
    let [address_line1, address_line2, city, state, zipcode, country] = address;
    let org = Organization {
        id: ctx.id("org"),
        name,
        slug,
        external_id,
        description,
        plan,
        address_line1,
        address_line2,
        city,
        state,
        zipcode,
        country,
        settings: new.settings.clone().unwrap_or_default(),
        metadata: new.metadata.clone(),
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    tx.insert_org(&OrgRecord {
        org: org.clone(),
        overrides: LimitOverrides::default(),
        period: Default::default(),
        alerts: None,
    })?;
    let membership = Membership::joined(ctx.id("mem"), &org.id, &user.id, Role::Owner, ctx.now);
    tx.insert_membership(&membership, &user)?;
    let details = json!({ "name": org.name, "slug": org.slug, "plan": org.plan, "owner": user.id });
    record(
        tx,
        ctx,
        &user.id,
        Some(&org.id),
        "organization.created",
        &org.id,
        details,
    )?;
    Ok(OrganizationWithMembership {
        organization: org,
        membership,
    })
}

/// The catalog's name of `plan` (matched case-insensitively), or a `plan` failure.
fn validate_plan(ctx: &Ctx, validator: &mut Validator, plan: &str) -> String {
    match ctx.opts.plans.resolve(plan) {
        Some(name) => name.to_owned(),
        None => {
            let names = ctx.opts.plans.names().join(", ");
            validator.fail("plan", format!("Must be one of: {names}"));
            plan.to_owned()
        }
    }
}

pub(crate) fn usage(tx: &dyn Reads, ctx: &Ctx, rec: &OrgRecord) -> Result<Usage> {
    let org = rec.org.id.as_str();
    let stats = tx.org_stats(org)?;
    let today = crate::store::day_number(ctx.now.date_naive());
    let start = crate::store::Span::of(rec.period, today).start;
    Ok(Usage {
        mcps: stats.mcps,
        api_keys: stats.api_keys,
        team_members: seats::seats_counted(tx, ctx, org, &stats)?,
        monthly_requests: period_total(tx, ctx, org, &|| tx.period_usage(org, start))?,
    })
}

/// The current quota period's total: the ledger's where it counts in memory, else
/// `stored`'s (the stored total of that period, read in `tx`). When this process's leases
/// stored the organization's usage since the call began, `tx` runs again
/// ([`Reads::run_again`]).
fn period_total(
    tx: &dyn Reads,
    ctx: &Ctx,
    org: &str,
    stored: &dyn Fn() -> Result<u64>,
) -> Result<u64> {
    let today = crate::store::day_number(ctx.now.date_naive());
    let Some(ledger) = ctx.ledger else {
        return stored();
    };
    match ledger.period_total(org, today, &ctx.leases, stored)? {
        PeriodTotal::Exact(total) => Ok(total),
        PeriodTotal::Moved => {
            Err(tx.run_again("buffered usage was stored while the period total was read"))
        }
    }
}

pub(crate) fn details(tx: &dyn Reads, ctx: &Ctx, rec: OrgRecord) -> Result<OrganizationDetails> {
    let usage = usage(tx, ctx, &rec)?;
    Ok(OrganizationDetails {
        limits: limits(ctx, &rec),
        organization: rec.org,
        usage,
    })
}

/// `get_organization`: everything it needs in one read ([`Reads::org_overview`]).
pub(crate) fn get(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
) -> Result<OrganizationDetails> {
    let user = match actor {
        Actor::User(user) => Some(user.as_str()),
        Actor::System => None,
    };
    let today = crate::store::day_number(ctx.now.date_naive());
    let stored_needed = ctx.ledger.is_none_or(|l| l.reads_stored_period(org, today));
    let view = tx
        .org_overview(org, user, ctx.now, stored_needed.then_some(today))?
        .ok_or_else(|| Error::not_found("Organization"))?;
    let cleared = clear(view.rec, actor, view.role, Action::ReadOrganization)?;
    let usage = Usage {
        mcps: view.stats.mcps,
        api_keys: view.stats.api_keys,
        team_members: view.stats.members + view.pending,
        monthly_requests: period_total(tx, ctx, org, &|| Ok(view.period_total))?,
    };
    Ok(OrganizationDetails {
        limits: limits(ctx, &cleared.org),
        organization: cleared.org.org,
        usage,
    })
}

pub(crate) fn id_by_slug(tx: &dyn Reads, slug: &str) -> Result<String> {
    tx.org_id_by_slug(slug.trim())?
        .ok_or_else(|| Error::not_found("Organization"))
}

pub(crate) fn id_by_external(tx: &dyn Reads, external_id: &str) -> Result<String> {
    tx.org_id_by_external(external_id)?
        .ok_or_else(|| Error::not_found("Organization"))
}

pub(crate) fn list_for_user(tx: &dyn Reads, user: &str) -> Result<Vec<OrganizationWithMembership>> {
    super::load_user(tx, user)?;
    let mut out = Vec::new();
    for org_id in tx.user_org_ids(user)? {
        let rec = tx
            .org(&org_id)?
            .ok_or_else(|| Error::corrupted("user_orgs names a missing organization"))?;
        let membership = tx
            .membership(&org_id, user)?
            .ok_or_else(|| Error::corrupted("user_orgs names a missing membership"))?;
        out.push(OrganizationWithMembership {
            organization: rec.org,
            membership,
        });
    }
    out.sort_by_key(|o| o.membership.joined_at);
    Ok(out)
}

/// Writes a changed organization record with `updated_at` and an audit event of the changes.
fn save(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    old: &OrgRecord,
    mut new: OrgRecord,
    action: &str,
) -> Result<Organization> {
    let mut changes = Changes::default();
    let (o, n) = (&old.org, &new.org);
    changes.diff("name", &o.name, &n.name);
    changes.diff("slug", &o.slug, &n.slug);
    changes.diff("external_id", &o.external_id, &n.external_id);
    changes.diff("description", &o.description, &n.description);
    changes.diff("plan", &o.plan, &n.plan);
    changes.diff("address", &o.address(), &n.address());
    changes.diff("settings", &o.settings, &n.settings);
    changes.diff("metadata", &o.metadata, &n.metadata);
    changes.diff("limit_overrides", &old.overrides, &new.overrides);
    if changes.is_empty() {
        return Ok(old.org.clone());
    }
    new.org.updated_at = ctx.now;
    tx.replace_org(old, &new)?;
    let id = new.org.id.clone();
    record(
        tx,
        ctx,
        actor.label(),
        Some(&id),
        action,
        &id,
        changes.into_value(),
    )?;
    Ok(new.org)
}

pub(crate) fn update(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    patch: &OrganizationPatch,
) -> Result<Organization> {
    let old = authorize(tx, actor, org, Action::UpdateOrganization)?.org;
    let mut validator = Validator::new();
    let mut new = old.clone();
    let n = &mut new.org;
    if let Some(name) = &patch.name {
        n.name = validator.name("name", name);
    }
    if let Some(slug) = &patch.slug {
        n.slug = validator.slug("slug", slug);
        if n.slug != old.org.slug {
            refuse_reserved(ctx, &mut validator, &n.slug);
        }
    }
    if let Some(ext) = &patch.external_id {
        n.external_id = ext
            .as_deref()
            .map(|e| validator.token_text("external_id", e, EXTERNAL_ID_MAX));
    }
    if let Some(d) = &patch.description {
        n.description = validator.text("description", d.as_deref(), TEXT_MAX);
    }
    let lines = [
        ("address_line1", &patch.address_line1, &mut n.address_line1),
        ("address_line2", &patch.address_line2, &mut n.address_line2),
        ("city", &patch.city, &mut n.city),
        ("state", &patch.state, &mut n.state),
        ("zipcode", &patch.zipcode, &mut n.zipcode),
        ("country", &patch.country, &mut n.country),
    ];
    for (field, given, target) in lines {
        if let Some(value) = given {
            *target = validator.text(field, value.as_deref(), NAME_MAX);
        }
    }
    if let Some(settings) = &patch.settings {
        validator.metadata("settings", &settings.extra);
        n.settings = settings.clone();
    }
    if let Some(metadata) = &patch.metadata {
        validator.metadata("metadata", metadata);
        n.metadata = metadata.clone();
    }
    validator.finish()?;
    if n.slug != old.org.slug && tx.org_id_by_slug(&n.slug)?.is_some() {
        return Err(slug_taken(&n.slug));
    }
    if n.external_id != old.org.external_id {
        if let Some(ext) = &n.external_id {
            if tx.org_id_by_external(ext)?.is_some() {
                return Err(external_taken(ext));
            }
        }
    }
    save(tx, ctx, actor, &old, new, "organization.updated")
}

pub(crate) fn update_settings(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    settings: &OrganizationSettings,
) -> Result<Organization> {
    let patch = OrganizationPatch {
        settings: Some(settings.clone()),
        ..OrganizationPatch::default()
    };
    update(tx, ctx, actor, org, &patch)
}

pub(crate) fn set_plan(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    plan: &str,
) -> Result<Organization> {
    let old = authorize(tx, actor, org, Action::ChangePlan)?.org;
    let mut validator = Validator::new();
    let plan = validate_plan(ctx, &mut validator, plan);
    validator.finish()?;
    let mut new = old.clone();
    new.org.plan = plan;
    save(tx, ctx, actor, &old, new, "organization.plan_changed")
}

pub(crate) fn set_limit_overrides(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    patch: &LimitOverridesPatch,
) -> Result<OrganizationDetails> {
    // Overrides are the host's (billing's) business alone.
    if *actor != Actor::System {
        return Err(Error::forbidden());
    }
    let old = authorize(tx, actor, org, Action::ChangePlan)?.org;
    // Every backend stores a count as a signed 64-bit number.
    let mut validator = Validator::new();
    for (field, change) in [
        ("mcps", patch.mcps),
        ("api_keys", patch.api_keys),
        ("team_members", patch.team_members),
        ("monthly_requests", patch.monthly_requests),
    ] {
        if let Some(Some(Limit::Count(n))) = change {
            if n > LIMIT_MAX {
                validator.fail(field, format!("Must be at most {LIMIT_MAX}"));
            }
        }
    }
    validator.finish()?;
    let mut new = old.clone();
    new.overrides = patch.apply(old.overrides);
    save(
        tx,
        ctx,
        actor,
        &old,
        new.clone(),
        "organization.limits_changed",
    )?;
    let rec = tx
        .org(org)?
        .ok_or_else(|| Error::not_found("Organization"))?;
    details(tx, ctx, rec)
}

pub(crate) fn limit_overrides(tx: &dyn Reads, actor: &Actor, org: &str) -> Result<LimitOverrides> {
    Ok(authorize(tx, actor, org, Action::ReadOrganization)?
        .org
        .overrides)
}

/// One transaction removes the organization and everything scoped to it. Its audit history
/// stays, ending with `organization.deleted`.
pub(crate) fn delete(tx: &mut dyn Writes, ctx: &Ctx, actor: &Actor, org: &str) -> Result<()> {
    let rec = authorize(tx, actor, org, Action::DeleteOrganization)?.org;
    let stats = tx.org_stats(org)?;
    for user in tx.member_user_ids(org)? {
        let m = tx
            .membership(org, &user)?
            .ok_or_else(|| Error::corrupted("member index names a missing membership"))?;
        tx.remove_membership(&m)?;
    }
    tx.remove_org_scoped(org)?;
    tx.remove_org(&rec)?;
    let details = json!({ "name": rec.org.name, "slug": rec.org.slug, "members": stats.members });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "organization.deleted",
        org,
        details,
    )
}

pub(crate) fn check_slug(tx: &dyn Reads, ctx: &Ctx, slug: &str) -> Result<SlugCheck> {
    let slug = slug.trim().to_owned();
    let reason = if validate::slug_problem(&slug).is_some() {
        Some("invalid")
    } else if is_reserved(ctx, &slug) {
        Some("reserved")
    } else if tx.org_id_by_slug(&slug)?.is_some() {
        Some("taken")
    } else {
        None
    };
    Ok(SlugCheck {
        available: reason.is_none(),
        reason: reason.map(str::to_owned),
        slug,
    })
}

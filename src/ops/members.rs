//! Memberships: list, get, add, change role, deactivate and reactivate, remove, leave,
//! transfer ownership.

use serde_json::json;

use super::{record, seats, Ctx};
use crate::authz::{authorize, clear, may_manage, require_grant, Action, Actor};
use crate::error::{Error, Result};
use crate::model::membership::{
    Member, MemberQuery, MemberRef, MemberStatus, Membership, RemovedMember,
};
use crate::model::page::{Page, Pagination};
use crate::model::permission::Permissions;
use crate::model::role::{Role, RoleArg};
use crate::model::time;
use crate::store::{MemberPage, MemberPos, MemberSet, Reads, Writes};
use crate::validate::Validator;

fn member_not_found() -> Error {
    Error::not_found("Member")
}

/// The refusal of a change that needs an active member (a role change, an ownership
/// transfer, an invitation accepted by a deactivated member).
pub(crate) fn deactivated(m: &Membership) -> Error {
    Error::conflict_with(
        "Member is deactivated; reactivate them first",
        "user_id",
        m.user_id.as_str(),
    )
}

/// Resolves a member reference inside one organization (a membership of another organization
/// is `not_found` here).
pub(crate) fn resolve(tx: &dyn Reads, org: &str, who: &MemberRef) -> Result<Membership> {
    let found = match who {
        MemberRef::User(user) => tx.membership(org, user.trim())?,
        MemberRef::Membership(id) => tx
            .membership_by_id(id.trim())?
            .filter(|m| m.organization_id == org),
    };
    found.ok_or_else(member_not_found)
}

fn row(tx: &dyn Reads, m: Membership) -> Result<Member> {
    let user = tx
        .user(&m.user_id)?
        .ok_or_else(|| Error::corrupted("membership names a missing user"))?;
    Ok(member(m, user))
}

fn member(m: Membership, user: crate::model::user::User) -> Member {
    Member {
        id: user.id,
        membership_id: m.id,
        email: user.email,
        name: user.name,
        role: m.role,
        joined_at: m.joined_at,
        updated_at: m.updated_at,
        last_active: user.last_active,
        status: m.status,
        deactivated_at: m.deactivated_at,
    }
}

/// `micros.user` in the active part of a list, `d.micros.user` in the deactivated part.
fn encode_cursor((deactivated, at, user): &MemberPos) -> String {
    let part = if *deactivated { "d." } else { "" };
    format!("{part}{}.{}", at.timestamp_micros(), user)
}

fn decode_cursor(cursor: &str) -> Option<MemberPos> {
    let (deactivated, rest) = match cursor.strip_prefix("d.") {
        Some(rest) => (true, rest),
        None => (false, cursor),
    };
    let (micros, user) = rest.split_once('.')?;
    let at = time::from_micros(micros.parse().ok()?)?;
    (!user.is_empty() && !user.contains('\0')).then(|| (deactivated, at, user.to_owned()))
}

/// The status filter of a member list: `active` (default), `deactivated` or `all`.
fn member_set(validator: &mut Validator, text: Option<&str>) -> MemberSet {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "active") => MemberSet::Active,
        Some("deactivated") => MemberSet::Deactivated,
        Some("all") => MemberSet::All,
        Some(_) => {
            validator.fail("status", "Must be one of: active, deactivated, all");
            MemberSet::Active
        }
    }
}

pub(crate) fn list(
    tx: &dyn Reads,
    actor: &Actor,
    org: &str,
    query: &MemberQuery,
) -> Result<Page<Member>> {
    let mut validator = Validator::new();
    let (page, per_page) = validator.paging(query.page, query.per_page);
    let role = match query.role.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => validator.role("role", text),
    };
    let set = member_set(&mut validator, query.status.as_deref());
    let cursor = match query.cursor.as_deref() {
        None => None,
        Some(text) => {
            // A cursor of the other part of the list is not one this list returned.
            let pos = decode_cursor(text).filter(|(off, ..)| set.includes(*off));
            if pos.is_none() {
                validator.fail("cursor", "Is not a cursor returned by a previous page");
            }
            pos
        }
    };
    let search = validator.search("search", query.search.as_deref());
    if let Err(invalid) = validator.finish() {
        // Authorization answers first: bad input from a non-member is `forbidden`.
        authorize(tx, actor, org, Action::ReadOrganization)?;
        return Err(invalid);
    }

    let skip = if cursor.is_some() {
        0
    } else {
        u64::from(page - 1) * u64::from(per_page)
    };
    // One row more than the page tells whether a next page exists.
    let want = per_page as usize + 1;
    let (total, mut rows) = match search {
        Some(prefix) => {
            authorize(tx, actor, org, Action::ReadOrganization)?;
            tx.member_search(org, set, role, &prefix, cursor.as_ref(), skip, want)?
        }
        None => {
            // The organization, the actor's role and the page in one read; the page is
            // dropped unless the actor may see it.
            let user = match actor {
                Actor::User(user) => Some(user.as_str()),
                Actor::System => None,
            };
            let ask = MemberPage {
                set,
                role,
                after: cursor.as_ref(),
                skip,
                limit: want,
            };
            let (rec, acting, rows) = tx
                .org_with_members(org, user, &ask)?
                .ok_or_else(|| Error::not_found("Organization"))?;
            clear(rec, actor, acting, Action::ReadOrganization)?;
            let active = if set.includes(false) {
                let stats = tx.org_stats(org)?;
                role.map_or(stats.members, |r| stats.with_role(r))
            } else {
                0
            };
            let total = if set.includes(true) {
                active + tx.deactivated_count(org, role)?
            } else {
                active
            };
            (total, rows)
        }
    };
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    let next_cursor = if more {
        rows.last()
            .map(|(m, _)| encode_cursor(&(!m.is_active(), m.joined_at, m.user_id.clone())))
    } else {
        None
    };
    let data = rows.into_iter().map(|(m, user)| member(m, user)).collect();
    Ok(Page {
        data,
        pagination: Pagination::new(page, per_page, total),
        next_cursor,
    })
}

/// What the actor may do in the organization (`forbidden` for a non-member, like every read).
pub(crate) fn permissions(tx: &dyn Reads, actor: &Actor, org: &str) -> Result<Permissions> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    // Whether an owner may leave depends on how many owners there are; nobody else asks.
    let owners = match cleared.role {
        Some(Role::Owner) => tx.org_stats(org)?.owners(),
        _ => 0,
    };
    Ok(crate::authz::permissions(&cleared, owners))
}

pub(crate) fn get(tx: &dyn Reads, actor: &Actor, org: &str, who: &MemberRef) -> Result<Member> {
    authorize(tx, actor, org, Action::ReadOrganization)?;
    let m = resolve(tx, org, who)?;
    row(tx, m)
}

/// Adds a user directly (seat-checked). A pending invitation of that user in this organization
/// is marked accepted in the same transaction, so it neither blocks nor counts twice.
pub(crate) fn add(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    user_id: &str,
    role: RoleArg<'_>,
) -> Result<Member> {
    let cleared = authorize(tx, actor, org, Action::AddMember)?;
    let role = role.resolve("role")?;
    require_grant(cleared.role, role)?;
    let user = super::load_user(tx, user_id.trim())?;
    if tx.membership(org, &user.id)?.is_some() {
        return Err(Error::conflict_with(
            "User is already a member",
            "user_id",
            user.id.as_str(),
        ));
    }
    let pending = seats::pending_for_email(tx, ctx, org, &user.email)?;
    // The user's own pending invitation turns into their membership: not counted twice.
    seats::require_seat(ctx, &cleared, || {
        Ok(seats::seats_used(tx, ctx, org)? - u64::from(pending.is_some()))
    })?;
    if role == Role::Owner {
        seats::require_ownership_room(tx, ctx, &user.id)?;
    }
    let m = Membership::joined(ctx.id("mem"), org, &user.id, role, ctx.now);
    tx.insert_membership(&m, &user)?;
    if let Some(inv) = pending {
        seats::mark_accepted(tx, ctx, actor, inv)?;
    }
    let details = json!({ "user_id": user.id, "role": role });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "member.added",
        &m.id,
        details,
    )?;
    row(tx, m)
}

/// Refuses a change that would leave the organization without an active owner (`new_role`:
/// the role `m` acts with after it, `None` when it no longer acts). A deactivated owner is no
/// longer counted, so changing them never loses one.
fn keep_an_owner(tx: &dyn Reads, m: &Membership, new_role: Option<Role>) -> Result<()> {
    let losing_owner = m.acting_role() == Some(Role::Owner) && new_role != Some(Role::Owner);
    if losing_owner && tx.org_stats(&m.organization_id)?.owners() <= 1 {
        return Err(Error::conflict_with(
            "An organization must keep at least one owner",
            "organization_id",
            m.organization_id.as_str(),
        ));
    }
    Ok(())
}

fn set_role(tx: &mut dyn Writes, ctx: &Ctx, old: &Membership, role: Role) -> Result<Membership> {
    let new = Membership {
        role,
        updated_at: ctx.now,
        ..old.clone()
    };
    tx.replace_membership(old, &new)?;
    Ok(new)
}

pub(crate) fn update_role(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    who: &MemberRef,
    role: RoleArg<'_>,
) -> Result<Member> {
    let cleared = authorize(tx, actor, org, Action::ChangeRole)?;
    let old = resolve(tx, org, who)?;
    // Permission is decided before the value is parsed: an admin acting on an owner is
    // `forbidden` whatever role string it sends.
    if !may_manage(cleared.role, old.role) {
        return Err(Error::forbidden());
    }
    let role = role.resolve("role")?;
    require_grant(cleared.role, role)?;
    if !old.is_active() {
        return Err(deactivated(&old));
    }
    if old.role == role {
        return row(tx, old);
    }
    keep_an_owner(tx, &old, Some(role))?;
    if role == Role::Owner {
        seats::require_ownership_room(tx, ctx, &old.user_id)?;
    }
    let new = set_role(tx, ctx, &old, role)?;
    let details = json!({ "user_id": old.user_id, "role": { "before": old.role, "after": role } });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "member.role_changed",
        &old.id,
        details,
    )?;
    row(tx, new)
}

/// Deactivates a member: the membership, its history and project memberships stay; the
/// member holds no seat and cannot act in the organization. Who may remove a member may
/// deactivate them; the last active owner cannot be deactivated. Deactivating a deactivated
/// member changes nothing.
pub(crate) fn deactivate(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    who: &MemberRef,
) -> Result<Member> {
    let cleared = authorize(tx, actor, org, Action::RemoveMember)?;
    let old = resolve(tx, org, who)?;
    if !may_manage(cleared.role, old.role) {
        return Err(Error::forbidden());
    }
    if !old.is_active() {
        return row(tx, old);
    }
    keep_an_owner(tx, &old, None)?;
    let new = Membership {
        status: MemberStatus::Deactivated,
        deactivated_at: Some(ctx.now),
        updated_at: ctx.now,
        ..old.clone()
    };
    set_status(tx, ctx, actor, &old, new, "member.deactivated")
}

/// Reactivates a deactivated member with their role, seat-checked like an add. Who may add
/// a member with that role may reactivate them (an admin never brings back an owner).
/// Reactivating an active member changes nothing.
pub(crate) fn reactivate(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    who: &MemberRef,
) -> Result<Member> {
    let cleared = authorize(tx, actor, org, Action::AddMember)?;
    let old = resolve(tx, org, who)?;
    if !may_manage(cleared.role, old.role) {
        return Err(Error::forbidden());
    }
    require_grant(cleared.role, old.role)?;
    if old.is_active() {
        return row(tx, old);
    }
    seats::require_seat(ctx, &cleared, || seats::seats_used(tx, ctx, org))?;
    if old.role == Role::Owner {
        seats::require_ownership_room(tx, ctx, &old.user_id)?;
    }
    let new = Membership {
        status: MemberStatus::Active,
        deactivated_at: None,
        updated_at: ctx.now,
        ..old.clone()
    };
    set_status(tx, ctx, actor, &old, new, "member.reactivated")
}

/// Writes a member's new status and audits it with its before and after.
fn set_status(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    old: &Membership,
    new: Membership,
    action: &str,
) -> Result<Member> {
    tx.replace_membership(old, &new)?;
    let details = json!({
        "user_id": old.user_id,
        "role": old.role,
        "status": { "before": old.status, "after": new.status },
    });
    record(
        tx,
        ctx,
        actor.label(),
        Some(&old.organization_id),
        action,
        &old.id,
        details,
    )?;
    row(tx, new)
}

/// Removes a membership with its project memberships (no audit; callers audit).
pub(crate) fn remove_membership_everywhere(tx: &mut dyn Writes, m: &Membership) -> Result<()> {
    tx.remove_project_memberships_of(&m.organization_id, &m.user_id)?;
    tx.remove_membership(m)
}

pub(crate) fn remove(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    who: &MemberRef,
) -> Result<RemovedMember> {
    let cleared = authorize(tx, actor, org, Action::RemoveMember)?;
    let m = resolve(tx, org, who)?;
    if !may_manage(cleared.role, m.role) {
        return Err(Error::forbidden());
    }
    keep_an_owner(tx, &m, None)?;
    remove_membership_everywhere(tx, &m)?;
    let details = json!({ "user_id": m.user_id, "role": m.role });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "member.removed",
        &m.id,
        details,
    )?;
    Ok(RemovedMember {
        removed: true,
        user_id: m.user_id,
        membership_id: m.id,
    })
}

pub(crate) fn leave(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    user: &str,
    org: &str,
) -> Result<RemovedMember> {
    if tx.org(org)?.is_none() {
        return Err(Error::not_found("Organization"));
    }
    let m = tx.membership(org, user)?.ok_or_else(member_not_found)?;
    // Leaving is acting in the organization, which a deactivated member cannot.
    if !m.is_active() {
        return Err(Error::forbidden());
    }
    keep_an_owner(tx, &m, None)?;
    remove_membership_everywhere(tx, &m)?;
    let details = json!({ "user_id": m.user_id, "role": m.role });
    record(tx, ctx, user, Some(org), "member.left", &m.id, details)?;
    Ok(RemovedMember {
        removed: true,
        user_id: m.user_id,
        membership_id: m.id,
    })
}

/// Makes `to` an owner; the calling owner becomes `admin`. `Actor::System` only promotes.
pub(crate) fn transfer_ownership(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    to: &str,
) -> Result<Member> {
    authorize(tx, actor, org, Action::TransferOwnership)?;
    let to = to.trim();
    if let Actor::User(me) = actor {
        if me == to {
            return Err(Error::invalid("to_user_id", "Must be another member"));
        }
    }
    let target = tx.membership(org, to)?.ok_or_else(member_not_found)?;
    if !target.is_active() {
        return Err(deactivated(&target));
    }
    if target.role == Role::Owner {
        return Err(Error::conflict_with(
            "User is already an owner",
            "user_id",
            to,
        ));
    }
    seats::require_ownership_room(tx, ctx, to)?;
    let new_owner = set_role(tx, ctx, &target, Role::Owner)?;
    let mut details = json!({
        "user_id": to,
        "role": { "before": target.role, "after": Role::Owner },
    });
    if let Actor::User(me) = actor {
        let mine = tx.membership(org, me)?.ok_or_else(Error::forbidden)?;
        set_role(tx, ctx, &mine, Role::Admin)?;
        details["previous_owner"] = json!({
            "user_id": me,
            "role": { "before": mine.role, "after": Role::Admin },
        });
    }
    // Audited like a role change: the event targets the new owner's membership and carries
    // the before/after role of everyone whose role changed.
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "organization.ownership_transferred",
        &target.id,
        details,
    )?;
    row(tx, new_owner)
}

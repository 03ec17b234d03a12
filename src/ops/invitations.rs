//! Invitations: create (one or many), list, get, accept, decline, revoke, resend.

use chrono::TimeDelta;
use serde_json::json;

use super::{record, seats, Ctx};
use crate::authz::{authorize, require_grant, Action, Actor, Cleared};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::invitation::{
    CreatedInvitation, Invitation, InvitationPreview, InvitationQuery, InvitationStatus,
    NewInvitation, PendingInvitation, MAX_LIFETIME, MIN_LIFETIME,
};
use crate::model::membership::Membership;
use crate::model::page::{Page, Pagination};
use crate::model::project::ProjectMembership;
use crate::model::role::Role;
use crate::store::{InvitationRecord, Reads, Writes};
use crate::validate::{normalize_email, Validator};

fn invitation_not_found() -> Error {
    Error::not_found("Invitation")
}

/// The invitation as of now (expiry applied to its status).
fn view(ctx: &Ctx, rec: &InvitationRecord) -> Invitation {
    let mut inv = rec.invitation.clone();
    inv.status = inv.status_at(ctx.now);
    inv
}

fn invite_url(ctx: &Ctx, token: &str) -> String {
    ctx.opts.invite_url_template.replace("{token}", token)
}

/// If an expired invitation still sits in the pending index for this email, stores it as
/// `expired` so a new invitation can take its place (it holds no seat and blocks nothing).
fn retire_expired(tx: &mut dyn Writes, ctx: &Ctx, org: &str, email: &str) -> Result<()> {
    if let Some(id) = tx.pending_invitation_id(org, email)? {
        let old = tx
            .invitation(&id)?
            .ok_or_else(|| Error::corrupted("pending index names a missing invitation"))?;
        if old.invitation.status_at(ctx.now) == InvitationStatus::Expired {
            let mut new = old.clone();
            new.invitation.status = InvitationStatus::Expired;
            tx.replace_invitation(&old, &new)?;
        }
    }
    Ok(())
}

fn lifetime(ctx: &Ctx, validator: &mut Validator, asked: Option<std::time::Duration>) -> TimeDelta {
    match asked {
        None => ctx.opts.invitation_lifetime,
        Some(asked) => match TimeDelta::from_std(asked).ok() {
            Some(l) if (MIN_LIFETIME..=MAX_LIFETIME).contains(&l) => l,
            _ => {
                validator.fail("expires_in", "Must be between 1 hour and 30 days");
                ctx.opts.invitation_lifetime
            }
        },
    }
}

/// An invitation for someone who is already a member is a `conflict`: they would be counted
/// twice.
fn refuse_member(tx: &dyn Reads, org: &str, email: &str) -> Result<()> {
    if let Some(user) = tx.user_id_by_email(email)? {
        if tx.membership(org, &user)?.is_some() {
            return Err(Error::conflict_with(
                "User is already a member",
                "email",
                email,
            ));
        }
    }
    Ok(())
}

/// Validated input of one invitation.
struct Checked {
    email: String,
    role: Role,
    project: Option<(String, Role)>,
    lifetime: TimeDelta,
}

fn validate_new(ctx: &Ctx, cleared: &Cleared, new: &NewInvitation) -> Result<Checked> {
    let mut validator = Validator::new();
    let email = validator.email("email", &new.email);
    let role = new
        .role
        .as_deref()
        .map_or(Some(Role::Member), |text| validator.role("role", text))
        .unwrap_or(Role::Member);
    let project_role = new
        .project_role
        .as_deref()
        .map_or(Some(Role::Member), |text| {
            validator.role("project_role", text)
        })
        .unwrap_or(Role::Member);
    if new.project_role.is_some() && new.project_id.is_none() {
        validator.fail("project_id", "Is required when project_role is given");
    }
    let lifetime = lifetime(ctx, &mut validator, new.expires_in);
    validator.finish()?;
    require_grant(cleared.role, role)?;
    require_grant(cleared.role, project_role)?;
    let project = new
        .project_id
        .as_ref()
        .map(|p| (p.trim().to_owned(), project_role));
    Ok(Checked {
        email,
        role,
        project,
        lifetime,
    })
}

/// Creates one invitation inside the caller's (already authorized) transaction.
fn create_one(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    cleared: &Cleared,
    input: Checked,
) -> Result<CreatedInvitation> {
    let org = cleared.org.org.id.as_str();
    if let Some((project, _)) = &input.project {
        match tx.project(project)? {
            Some(p) if p.organization_id == org => {}
            _ => return Err(Error::not_found("Project")),
        }
    }
    refuse_member(tx, org, &input.email)?;
    if let Some(existing) = seats::pending_for_email(tx, ctx, org, &input.email)? {
        return Err(Error::Conflict {
            message: "A pending invitation already exists for this email".to_owned(),
            details: crate::error::Details::from([
                ("invitation_id".to_owned(), existing.invitation.id.into()),
                ("email".to_owned(), input.email.into()),
            ]),
        });
    }
    retire_expired(tx, ctx, org, &input.email)?;
    seats::require_seat(ctx, cleared, || seats::seats_used(tx, ctx, org))?;

    let token = ids::new_token()?;
    let (project_id, project_role) = match input.project {
        Some((p, r)) => (Some(p), Some(r)),
        None => (None, None),
    };
    let invitation = Invitation {
        id: ctx.id("inv"),
        organization_id: org.to_owned(),
        email: input.email,
        role: input.role,
        project_id,
        project_role,
        status: InvitationStatus::Pending,
        invited_by: actor.label().to_owned(),
        created_at: ctx.now,
        expires_at: crate::model::time::plus(ctx.now, input.lifetime),
        accepted_at: None,
    };
    tx.insert_invitation(&InvitationRecord {
        invitation: invitation.clone(),
        token_hash: ids::token_hash(&token),
        lifetime_secs: input.lifetime.num_seconds(),
    })?;
    let details = json!({
        "email": invitation.email, "role": invitation.role,
        "project_id": invitation.project_id, "expires_at": crate::model::time::format(&invitation.expires_at),
    });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "invitation.created",
        &invitation.id,
        details,
    )?;
    Ok(CreatedInvitation {
        invite_id: invitation.id.clone(),
        invite_url: invite_url(ctx, &token),
        invitation,
        token,
    })
}

pub(crate) fn create(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    new: &NewInvitation,
) -> Result<CreatedInvitation> {
    let cleared = authorize(tx, actor, org, Action::ManageInvitations)?;
    let input = validate_new(ctx, &cleared, new)?;
    create_one(tx, ctx, actor, &cleared, input)
}

/// All or nothing: the first bad, duplicate or over-seat email refuses the whole batch, and
/// the error names it in `details.email`.
pub(crate) fn create_many(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    batch: &[NewInvitation],
) -> Result<Vec<CreatedInvitation>> {
    let cleared = authorize(tx, actor, org, Action::ManageInvitations)?;
    let mut out = Vec::with_capacity(batch.len());
    for new in batch {
        let created = validate_new(ctx, &cleared, new)
            .and_then(|input| create_one(tx, ctx, actor, &cleared, input));
        out.push(created.map_err(|e| name_email(e, &new.email))?);
    }
    Ok(out)
}

fn name_email(err: Error, email: &str) -> Error {
    err.with_detail("email", normalize_email(email))
}

pub(crate) fn list(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    query: &InvitationQuery,
) -> Result<Page<Invitation>> {
    authorize(tx, actor, org, Action::ManageInvitations)?;
    let mut validator = Validator::new();
    let (page, per_page) = validator.paging(query.page, query.per_page);
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let parsed = InvitationStatus::parse(text);
            if parsed.is_none() {
                validator.fail(
                    "status",
                    "Must be one of: pending, accepted, declined, revoked, expired",
                );
            }
            parsed
        }
    };
    validator.finish()?;
    let skip = u64::from(page - 1) * u64::from(per_page);
    let (ids, total) = tx.invitation_page(org, status, ctx.now, skip, per_page as usize)?;
    let mut data = Vec::with_capacity(ids.len());
    for id in ids {
        let rec = tx
            .invitation(&id)?
            .ok_or_else(|| Error::corrupted("invitation index names a missing invitation"))?;
        data.push(view(ctx, &rec));
    }
    Ok(Page {
        data,
        pagination: Pagination::new(page, per_page, total),
        next_cursor: None,
    })
}

fn load_in_org(tx: &dyn Reads, org: &str, id: &str) -> Result<InvitationRecord> {
    tx.invitation(id.trim())?
        .filter(|r| r.invitation.organization_id == org)
        .ok_or_else(invitation_not_found)
}

pub(crate) fn get(
    tx: &dyn Reads,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
) -> Result<Invitation> {
    authorize(tx, actor, org, Action::ManageInvitations)?;
    Ok(view(ctx, &load_in_org(tx, org, id)?))
}

/// Finds an invitation by its secret token (an unknown token, or an id, is `not_found`).
fn by_token(tx: &dyn Reads, token: &str) -> Result<InvitationRecord> {
    found_by_token(token, |hash| tx.invitation_by_token_hash(hash), |rec| rec)
}

/// What `lookup` finds by the token's hash, when the invitation in it (`invitation`) has that
/// hash, compared in constant time; else the invitation's `not_found`.
fn found_by_token<T>(
    token: &str,
    lookup: impl FnOnce(&[u8; 32]) -> Result<Option<T>>,
    invitation: impl Fn(&T) -> &InvitationRecord,
) -> Result<T> {
    let hash = ids::token_hash(token.trim());
    lookup(&hash)?
        .filter(|found| ids::hashes_equal(&invitation(found).token_hash, &hash))
        .ok_or_else(invitation_not_found)
}

pub(crate) fn preview(tx: &dyn Reads, ctx: &Ctx, token: &str) -> Result<InvitationPreview> {
    let rec = by_token(tx, token)?;
    let inv = view(ctx, &rec);
    let org = tx
        .org(&inv.organization_id)?
        .ok_or_else(|| Error::corrupted("invitation names a missing organization"))?
        .org;
    let project_name = match &inv.project_id {
        Some(p) => tx.project(p)?.map(|p| p.name),
        None => None,
    };
    let inviter = tx.user(&inv.invited_by)?;
    Ok(InvitationPreview {
        id: inv.id,
        status: inv.status,
        email: inv.email,
        role: inv.role,
        project_id: inv.project_id,
        project_name,
        project_role: inv.project_role,
        expires_at: inv.expires_at,
        organization_id: org.id,
        organization_name: org.name,
        organization_slug: org.slug,
        inviter_name: inviter.as_ref().map(|u| u.name.clone()),
        inviter_email: inviter.map(|u| u.email),
    })
}

/// Accepts an invitation for `user_id`, whose email must match. Creates the membership and the
/// project membership in one transaction; a retry by the same user returns the membership.
pub(crate) fn accept(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    token: &str,
    user_id: &str,
) -> Result<Membership> {
    let (rec, found) = found_by_token(
        token,
        |hash| tx.invitation_with_user(hash, user_id.trim()),
        |(rec, _)| rec,
    )?;
    let (user, existing) = found.ok_or_else(|| Error::not_found("User"))?;
    let inv = view(ctx, &rec);
    let org = inv.organization_id.clone();
    match inv.status {
        InvitationStatus::Pending => {}
        InvitationStatus::Accepted if inv.email == user.email => {
            return existing.ok_or_else(|| Error::conflict("Invitation was already accepted"));
        }
        InvitationStatus::Expired => {
            return Err(Error::InvitationExpired {
                invitation_id: inv.id,
            })
        }
        other => {
            return Err(Error::conflict_with(
                format!("Invitation is {}", other.as_str()),
                "status",
                other.as_str(),
            ))
        }
    }
    if inv.email != user.email {
        return Err(Error::forbidden_because(
            "This invitation was sent to another email address",
        ));
    }
    let actor = Actor::User(user.id.clone());
    let membership = match existing {
        // Only an admin brings a deactivated member back (seat-checked), never an invitation.
        Some(m) if !m.is_active() => return Err(super::members::deactivated(&m)),
        Some(m) => m,
        None => {
            let cleared = authorize(tx, &Actor::System, &org, Action::AddMember)?;
            // Members after the accept must fit; this invitation's own seat turns into the
            // member's, so it is not counted twice.
            seats::require_seat(ctx, &cleared, || Ok(tx.org_stats(&org)?.members))?;
            if inv.role == Role::Owner {
                seats::require_ownership_room(tx, ctx, &user.id)?;
            }
            let m = Membership::joined(ctx.id("mem"), &org, &user.id, inv.role, ctx.now);
            tx.insert_membership(&m, &user)?;
            let details = json!({ "user_id": user.id, "role": m.role, "invitation_id": inv.id });
            record(
                tx,
                ctx,
                actor.label(),
                Some(&org),
                "member.added",
                &m.id,
                details,
            )?;
            m
        }
    };
    if let (Some(project), Some(role)) = (&inv.project_id, inv.project_role) {
        let live = tx
            .project(project)?
            .is_some_and(|p| p.organization_id == org);
        if live && tx.project_membership(project, &user.id)?.is_none() {
            let pm = ProjectMembership {
                project_id: project.clone(),
                user_id: user.id.clone(),
                role,
                added_at: ctx.now,
                updated_at: ctx.now,
            };
            tx.put_project_membership(&org, &pm)?;
        }
    }
    seats::mark_accepted(tx, ctx, &actor, rec)?;
    Ok(membership)
}

/// Moves a pending or expired invitation to `to`; anything else is `conflict`.
fn close(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    rec: InvitationRecord,
    to: InvitationStatus,
    action: &str,
) -> Result<Invitation> {
    let status = rec.invitation.status_at(ctx.now);
    if !matches!(
        status,
        InvitationStatus::Pending | InvitationStatus::Expired
    ) {
        return Err(Error::conflict_with(
            format!("Invitation is {}", status.as_str()),
            "status",
            status.as_str(),
        ));
    }
    let mut new = rec.clone();
    new.invitation.status = to;
    tx.replace_invitation(&rec, &new)?;
    let inv = new.invitation;
    let details = json!({ "email": inv.email, "status": { "before": status, "after": to } });
    record(
        tx,
        ctx,
        actor.label(),
        Some(&inv.organization_id),
        action,
        &inv.id,
        details,
    )?;
    Ok(inv)
}

pub(crate) fn decline(tx: &mut dyn Writes, ctx: &Ctx, token: &str) -> Result<Invitation> {
    let rec = by_token(tx, token)?;
    let actor = match tx.user_id_by_email(&rec.invitation.email)? {
        Some(user) => Actor::User(user),
        None => Actor::System,
    };
    close(
        tx,
        ctx,
        &actor,
        rec,
        InvitationStatus::Declined,
        "invitation.declined",
    )
}

pub(crate) fn revoke(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
) -> Result<Invitation> {
    authorize(tx, actor, org, Action::ManageInvitations)?;
    let rec = load_in_org(tx, org, id)?;
    close(
        tx,
        ctx,
        actor,
        rec,
        InvitationStatus::Revoked,
        "invitation.revoked",
    )
}

/// New token (the old one stops working) and a new expiry of the invitation's own lifetime.
pub(crate) fn resend(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    id: &str,
) -> Result<CreatedInvitation> {
    let cleared = authorize(tx, actor, org, Action::ManageInvitations)?;
    let rec = load_in_org(tx, org, id)?;
    let old = &rec.invitation;
    let status = old.status_at(ctx.now);
    if matches!(
        status,
        InvitationStatus::Pending | InvitationStatus::Expired
    ) {
        refuse_member(tx, org, &old.email)?;
    }
    match status {
        InvitationStatus::Pending => {}
        InvitationStatus::Expired => {
            // An expired invitation holds no seat and may have been superseded.
            if let Some(other) = seats::pending_for_email(tx, ctx, org, &old.email)? {
                return Err(Error::conflict_with(
                    "A pending invitation already exists for this email",
                    "invitation_id",
                    other.invitation.id,
                ));
            }
            seats::require_seat(ctx, &cleared, || seats::seats_used(tx, ctx, org))?;
            retire_expired(tx, ctx, org, &old.email)?;
        }
        other => {
            return Err(Error::conflict_with(
                format!("Invitation is {}", other.as_str()),
                "status",
                other.as_str(),
            ))
        }
    }
    // Re-read: retire_expired may have rewritten this very record.
    let rec = load_in_org(tx, org, id)?;
    let lifetime = TimeDelta::try_seconds(rec.lifetime_secs)
        .unwrap_or(ctx.opts.invitation_lifetime)
        .clamp(MIN_LIFETIME, MAX_LIFETIME);
    let token = ids::new_token()?;
    let mut new = rec.clone();
    new.token_hash = ids::token_hash(&token);
    new.invitation.status = InvitationStatus::Pending;
    new.invitation.expires_at = crate::model::time::plus(ctx.now, lifetime);
    tx.replace_invitation(&rec, &new)?;
    let inv = new.invitation;
    let details =
        json!({ "email": inv.email, "expires_at": crate::model::time::format(&inv.expires_at) });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "invitation.resent",
        &inv.id,
        details,
    )?;
    Ok(CreatedInvitation {
        invite_id: inv.id.clone(),
        invite_url: invite_url(ctx, &token),
        invitation: inv,
        token,
    })
}

/// Pending, unexpired invitations of an email across organizations.
pub(crate) fn for_email(tx: &dyn Reads, ctx: &Ctx, email: &str) -> Result<Vec<PendingInvitation>> {
    let email = normalize_email(email);
    let mut out = Vec::new();
    for id in tx.pending_invitation_ids_for_email(&email)? {
        let rec = tx
            .invitation(&id)?
            .ok_or_else(|| Error::corrupted("email index names a missing invitation"))?;
        let inv = view(ctx, &rec);
        if inv.status != InvitationStatus::Pending {
            continue;
        }
        let org = tx
            .org(&inv.organization_id)?
            .ok_or_else(|| Error::corrupted("invitation names a missing organization"))?
            .org;
        out.push(PendingInvitation {
            invitation: inv,
            organization_name: org.name,
            organization_slug: org.slug,
        });
    }
    Ok(out)
}

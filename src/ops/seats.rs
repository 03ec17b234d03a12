//! The seat rule, in one place: who holds a seat of the `team_members` limit (members plus
//! pending, unexpired invitations), the check before one more is taken, and how a pending
//! invitation turns into its invitee's membership so that nobody holds two.
//!
//! The areas that add people (members, invitations, users, orgs) call down into this file;
//! it calls none of them.

use serde_json::json;

use super::{ceilings, record, Ctx};
use crate::authz::{Actor, Cleared};
use crate::error::{Error, Result};
use crate::model::invitation::InvitationStatus;
use crate::store::{InvitationRecord, OrgStats, Reads, Writes};

/// Members plus pending, unexpired invitations: what the `team_members` limit counts.
pub(crate) fn seats_used(tx: &dyn Reads, ctx: &Ctx, org: &str) -> Result<u64> {
    seats_counted(tx, ctx, org, &tx.org_stats(org)?)
}

/// [`seats_used`] with the organization's counters already read.
pub(crate) fn seats_counted(tx: &dyn Reads, ctx: &Ctx, org: &str, stats: &OrgStats) -> Result<u64> {
    Ok(stats.members + tx.pending_unexpired_count(org, ctx.now)?)
}

/// Refuses when `user` becoming one more organization's owner would pass
/// `Options::max_owned_organizations` (active owner memberships count).
pub(crate) fn require_ownership_room(tx: &dyn Reads, ctx: &Ctx, user: &str) -> Result<()> {
    if let Some(limit) = ctx.opts.max_owned_organizations {
        let owned = tx.owned_org_count(user)?;
        if owned.saturating_add(1) > limit {
            return Err(Error::quota("owned_organizations", limit, owned, 1));
        }
    }
    Ok(())
}

/// Refuses when one more seat would pass the `team_members` limit (with the overage cap of
/// a soft one). `used` counts the seats taken; it runs only when there is a limit (an
/// unlimited plan never scans the pending invitations).
pub(crate) fn require_seat(
    ctx: &Ctx,
    cleared: &Cleared,
    used: impl FnOnce() -> Result<u64>,
) -> Result<()> {
    if let Some(limit) = ceilings(ctx, &cleared.org).team_members {
        let used = used()?;
        if used.saturating_add(1) > limit {
            return Err(Error::quota("team_members", limit, used, 1));
        }
    }
    Ok(())
}

/// The pending, unexpired invitation of `email` in `org`, if any.
pub(crate) fn pending_for_email(
    tx: &dyn Reads,
    ctx: &Ctx,
    org: &str,
    email: &str,
) -> Result<Option<InvitationRecord>> {
    let Some(id) = tx.pending_invitation_id(org, email)? else {
        return Ok(None);
    };
    let rec = tx
        .invitation(&id)?
        .ok_or_else(|| Error::corrupted("pending index names a missing invitation"))?;
    Ok((rec.invitation.status_at(ctx.now) == InvitationStatus::Pending).then_some(rec))
}

/// Marks an invitation accepted (used by accept and by a direct add of the invitee).
pub(crate) fn mark_accepted(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    old: InvitationRecord,
) -> Result<()> {
    let mut new = old.clone();
    new.invitation.status = InvitationStatus::Accepted;
    new.invitation.accepted_at = Some(ctx.now);
    tx.replace_invitation(&old, &new)?;
    let inv = &new.invitation;
    let details = json!({ "email": inv.email, "role": inv.role, "project_id": inv.project_id });
    record(
        tx,
        ctx,
        actor.label(),
        Some(&inv.organization_id),
        "invitation.accepted",
        &inv.id,
        details,
    )
}

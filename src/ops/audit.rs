//! Reading the audit log.

use crate::authz::{authorize, Action, Actor};
use crate::error::{Error, Result};
use crate::model::audit::AuditEvent;
use crate::store::Reads;

/// Largest page of `audit_log`.
pub(crate) const LIMIT_MAX: u32 = 1_000;

/// Events of one organization after `after_seq`. Admins and owners read a live organization's
/// log; after the organization is deleted only `Actor::System` can (the log outlives it).
pub(crate) fn log(
    tx: &dyn Reads,
    actor: &Actor,
    org: &str,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<AuditEvent>> {
    if tx.org(org)?.is_some() {
        authorize(tx, actor, org, Action::ReadAudit)?;
    } else if *actor != Actor::System {
        return Err(Error::not_found("Organization"));
    }
    if limit == 0 || limit > LIMIT_MAX {
        return Err(Error::invalid(
            "limit",
            format!("Must be between 1 and {LIMIT_MAX}"),
        ));
    }
    let events = tx.audit_events(Some(org), after_seq, limit as usize)?;
    if events.is_empty() && *actor == Actor::System && after_seq == 0 && tx.org(org)?.is_none() {
        return Err(Error::not_found("Organization"));
    }
    Ok(events)
}

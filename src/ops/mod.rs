//! The operations, one file per area. Each is a function over a backend transaction
//! (`&mut dyn Writes` or `&dyn Reads`) and a [`Ctx`]; none names a storage type or opens a
//! table.

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod directory;
pub(crate) mod entitlements;
pub(crate) mod invitations;
pub(crate) mod members;
pub(crate) mod orgs;
pub(crate) mod periods;
pub(crate) mod projects;
pub(crate) mod reservations;
pub(crate) mod resources;
pub(crate) mod seats;
pub(crate) mod usage;
pub(crate) mod users;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::IdGen;
use crate::model::audit::AuditEvent;
use crate::model::org::Limits;
use crate::model::user::User;
use crate::options::Options;
use crate::store::{OrgRecord, Reads, Writes};

/// What every operation may use besides its transaction: one clock reading (so every timestamp
/// a call writes is the same instant), the options, and the id generator.
pub(crate) struct Ctx<'a> {
    pub(crate) now: DateTime<Utc>,
    pub(crate) opts: &'a Options,
    pub(crate) ids: &'a IdGen,
    /// The usage ledger, whose month totals are ahead of the stored ones until folded.
    pub(crate) ledger: Option<&'a crate::ledger::Ledger>,
    /// What the call saw of this process's leases before its first transaction
    /// ([`Ledger::lease_view`](crate::ledger::Ledger::lease_view)).
    pub(crate) leases: crate::ledger::LeaseView<'a>,
}

impl Ctx<'_> {
    pub(crate) fn id(&self, prefix: &str) -> String {
        self.ids.next(prefix, self.now)
    }
}

/// Effective limits: the plan's (none when the catalog lost the plan), then the overrides.
pub(crate) fn limits(ctx: &Ctx, rec: &OrgRecord) -> Limits {
    let plan = ctx.opts.plans.limits(&rec.org.plan).unwrap_or_default();
    rec.overrides.apply(plan)
}

/// What admission enforces of each effective limit: the limit when the plan enforces it
/// hard, the limit plus the overage cap when soft
/// ([`Enforcement::ceiling`](crate::Enforcement::ceiling)).
pub(crate) fn ceilings(ctx: &Ctx, rec: &OrgRecord) -> Limits {
    let limits = limits(ctx, rec);
    let ceiling = |name: &str, limit: Option<u64>| {
        ctx.opts
            .plans
            .enforcement(&rec.org.plan, name)
            .ceiling(limit)
    };
    Limits {
        mcps: ceiling("mcps", limits.mcps),
        api_keys: ceiling("api_keys", limits.api_keys),
        team_members: ceiling("team_members", limits.team_members),
        monthly_requests: ceiling("monthly_requests", limits.monthly_requests),
    }
}

/// The user, or `not_found`.
pub(crate) fn load_user(tx: &dyn Reads, id: &str) -> Result<User> {
    tx.user(id)?.ok_or_else(|| Error::not_found("User"))
}

/// Appends an audit event in the caller's transaction.
pub(crate) fn record(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &str,
    org: Option<&str>,
    action: &str,
    target: &str,
    details: Value,
) -> Result<()> {
    tx.append_audit(AuditEvent {
        id: ctx.id("evt"),
        seq: 0,
        at: ctx.now,
        actor: actor.to_owned(),
        organization_id: org.map(str::to_owned),
        action: action.to_owned(),
        target: target.to_owned(),
        details,
    })?;
    Ok(())
}

/// `{"field": {"before": a, "after": b}}` for each field that changed.
#[derive(Default)]
pub(crate) struct Changes(serde_json::Map<String, Value>);

impl Changes {
    pub(crate) fn diff<T: serde::Serialize + PartialEq>(
        &mut self,
        field: &str,
        before: &T,
        after: &T,
    ) {
        if before != after {
            self.0.insert(
                field.to_owned(),
                serde_json::json!({ "before": before, "after": after }),
            );
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

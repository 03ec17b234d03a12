//! Usage alerts: an organization's thresholds, and where its current period stands against
//! them. The crossing itself is announced by the fold (`UsageEnv::period_total_grew`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{record, Ctx};
use crate::authz::{authorize, Action, Actor};
use crate::error::Result;
use crate::model::alert::{
    self, UsageAlert, UsageAlerts, DEFAULT_THRESHOLDS, THRESHOLDS_MAX, THRESHOLD_PERCENT_MAX,
};
use crate::store::{day_from_number, day_number, OrgRecord, Reads, Span, Writes};
use crate::validate::Validator;

/// `usage_alerts`: any member may read them.
pub(crate) fn get(tx: &dyn Reads, ctx: &Ctx, actor: &Actor, org: &str) -> Result<UsageAlerts> {
    let cleared = authorize(tx, actor, org, Action::ReadOrganization)?;
    state(tx, ctx, &cleared.org)
}

/// The organization's thresholds against its current period.
fn state(tx: &dyn Reads, ctx: &Ctx, rec: &OrgRecord) -> Result<UsageAlerts> {
    let used = super::orgs::usage(tx, ctx, rec)?.monthly_requests;
    let limit = super::limits(ctx, rec).monthly_requests;
    let span = Span::of(rec.period, day_number(ctx.now.date_naive()));
    // Each threshold's latest announced period, and whether this period's (under this limit)
    // was announced.
    let mut last: BTreeMap<u32, u32> = BTreeMap::new();
    let mut now: BTreeSet<u32> = BTreeSet::new();
    for fired in tx.alert_states(&rec.org.id)? {
        let start = last.entry(fired.percent).or_default();
        *start = (*start).max(fired.span.start);
        if fired.span == span && Some(fired.limit) == limit {
            now.insert(fired.percent);
        }
    }
    let thresholds = rec.alerts.as_deref().unwrap_or(&DEFAULT_THRESHOLDS);
    let alerts = thresholds
        .iter()
        .map(|&percent| {
            let mark = limit.and_then(|l| alert::mark(l, percent));
            UsageAlert {
                threshold_percent: percent,
                mark,
                reached: mark.is_some_and(|m| used >= m),
                fired_period_start: last.get(&percent).copied().and_then(day_from_number),
                fired_this_period: now.contains(&percent),
            }
        })
        .collect();
    let (period_start, period_end) = span.dates();
    Ok(UsageAlerts {
        alerts,
        default_thresholds: rec.alerts.is_none(),
        used,
        limit,
        percentage: limit
            .filter(|l| *l > 0)
            .map(|l| (u128::from(used) * 100 / u128::from(l)) as u64),
        period_start,
        period_end,
    })
}

/// Validates thresholds: at most ten, each 1 to 1 000 percent, no repeats. Returns them
/// ascending.
fn checked(thresholds: &[u32]) -> Result<Vec<u32>> {
    let mut v = Validator::new();
    if thresholds.len() > THRESHOLDS_MAX {
        v.fail("thresholds", format!("At most {THRESHOLDS_MAX} thresholds"));
    }
    for (i, &t) in thresholds.iter().enumerate() {
        if !(1..=THRESHOLD_PERCENT_MAX).contains(&t) {
            v.fail(
                &format!("thresholds[{i}]"),
                format!("Must be a percentage from 1 to {THRESHOLD_PERCENT_MAX}"),
            );
        } else if thresholds[..i].contains(&t) {
            v.fail(&format!("thresholds[{i}]"), "Is repeated");
        }
    }
    v.finish()?;
    let mut sorted = thresholds.to_vec();
    sorted.sort_unstable();
    Ok(sorted)
}

/// `set_usage_alerts`: the organization's thresholds (`None`: back to the defaults, 80 % and
/// 100 %; an empty list: no alerts). Owners and `Actor::System`. A threshold that stays keeps
/// the period it was last announced in, so nothing is announced twice in a period; one that
/// goes forgets it. Audited as `organization.usage_alerts_changed` (`before`, `after`; null is
/// the defaults). The caller reads the new state after the commit ([`get`]): the state asks
/// the ledger for the period total, which the ledger's own write holds.
pub(crate) fn set(
    tx: &mut dyn Writes,
    ctx: &Ctx,
    actor: &Actor,
    org: &str,
    thresholds: Option<&[u32]>,
) -> Result<()> {
    let cleared = authorize(tx, actor, org, Action::ChangePlan)?;
    let wanted = thresholds.map(checked).transpose()?;
    let old = cleared.org;
    if old.alerts == wanted {
        return Ok(());
    }
    let kept = wanted.as_deref().unwrap_or(&DEFAULT_THRESHOLDS);
    let gone: BTreeSet<u32> = tx
        .alert_states(org)?
        .into_iter()
        .map(|f| f.percent)
        .filter(|p| !kept.contains(p))
        .collect();
    for percent in gone {
        tx.forget_alerts(org, percent)?;
    }
    let new = OrgRecord {
        alerts: wanted,
        ..old.clone()
    };
    tx.replace_org(&old, &new)?;
    let details = json!({ "before": old.alerts, "after": new.alerts });
    record(
        tx,
        ctx,
        actor.label(),
        Some(org),
        "organization.usage_alerts_changed",
        org,
        details,
    )
}

//! The plan catalog: what each plan grants.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::entitlement::{
    valid_name, Enforcement, EntitlementKind, LIMIT_MAX, PROJECTS, SEED_LIMITS,
};
use super::org::Limits;

/// What one plan grants: the seed's four limits, any number of named limits (`projects`…),
/// and boolean features (`sso`, `audit_export`…).
///
/// ```
/// use orgdb::{Limits, Plan};
/// let team = Plan::from(Limits { team_members: Some(25), ..Limits::default() })
///     .feature("sso")
///     .limit("projects", Some(50));
/// assert!(team.features.contains("sso"));
/// assert_eq!(team.named_limits["projects"], Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The four limits of the seed (`None`: unlimited).
    #[serde(default)]
    pub limits: Limits,
    /// Named limits beside the four: name → at most this many (`None`: unlimited). orgdb
    /// enforces `projects` in `create_project`; the host enforces the others, reading them
    /// with `entitlement`. A name no plan lists is unlimited.
    #[serde(default)]
    pub named_limits: BTreeMap<String, Option<u64>>,
    /// Features the plan includes. A feature no plan lists is off.
    #[serde(default)]
    pub features: BTreeSet<String>,
    /// How each limit is enforced, by name (a seed limit or a named limit of this plan); a
    /// limit not listed is hard.
    #[serde(default)]
    pub enforcement: BTreeMap<String, Enforcement>,
}

impl Plan {
    /// The plan with `name` among its features.
    pub fn feature(mut self, name: &str) -> Plan {
        self.features.insert(name.to_owned());
        self
    }

    /// The plan with the named limit `name` (`None`: unlimited).
    pub fn limit(mut self, name: &str, limit: Option<u64>) -> Plan {
        self.named_limits.insert(name.to_owned(), limit);
        self
    }

    /// The plan with the limit `name` soft: admitted past the limit up to `overage_cap` more
    /// (`None`: without bound).
    pub fn soft(mut self, name: &str, overage_cap: Option<u64>) -> Plan {
        self.enforcement
            .insert(name.to_owned(), Enforcement::Soft { overage_cap });
        self
    }

    /// How the limit `name` is enforced.
    pub fn enforcement_of(&self, name: &str) -> Enforcement {
        self.enforcement.get(name).copied().unwrap_or_default()
    }
}

impl From<Limits> for Plan {
    /// A plan of the four seed limits only, no features or named limits.
    fn from(limits: Limits) -> Plan {
        Plan {
            limits,
            ..Plan::default()
        }
    }
}

/// Plan name → what the plan grants. Hosts may replace the whole catalog in `Options`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCatalog {
    /// The plans.
    pub plans: BTreeMap<String, Plan>,
    /// Plan given to organizations created without one.
    pub default_plan: String,
}

impl PlanCatalog {
    /// The four seed limits of `plan`, if the catalog has it.
    pub fn limits(&self, plan: &str) -> Option<Limits> {
        self.plans.get(plan).map(|p| p.limits)
    }

    /// The plan, if the catalog has it.
    pub fn plan(&self, plan: &str) -> Option<&Plan> {
        self.plans.get(plan)
    }

    /// The catalog's own spelling of a plan name given in any case (`PRO` → `pro`).
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let name = name.trim();
        self.plans
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// Plan names, sorted, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.plans.keys().map(String::as_str).collect()
    }

    /// Whether any plan names `name`, and as what: the four seed limits, `projects` and every
    /// named limit are limits, every feature a feature.
    pub fn kind_of(&self, name: &str) -> Option<EntitlementKind> {
        if SEED_LIMITS.contains(&name) || name == PROJECTS {
            return Some(EntitlementKind::Limit);
        }
        self.plans.values().find_map(|p| {
            if p.features.contains(name) {
                Some(EntitlementKind::Feature)
            } else if p.named_limits.contains_key(name) {
                Some(EntitlementKind::Limit)
            } else {
                None
            }
        })
    }

    /// Every name the catalog knows (the four seed limits first, then the others sorted).
    pub fn entitlement_names(&self) -> Vec<String> {
        let mut others = BTreeSet::new();
        for p in self.plans.values() {
            others.extend(p.features.iter().cloned());
            others.extend(p.named_limits.keys().cloned());
        }
        SEED_LIMITS
            .iter()
            .map(|n| (*n).to_owned())
            .chain(others)
            .collect()
    }

    /// The catalog's own rules: names of features and named limits are `[a-z][a-z0-9_]*` of at
    /// most 64 characters, never one of the four seed limits; `projects` is a limit; a name is
    /// a feature in every plan that lists it or a limit in every one; a named limit is at
    /// most [`LIMIT_MAX`]; `enforcement` names limits of its plan. The first broken rule, as
    /// text.
    pub(crate) fn problem(&self) -> Option<String> {
        let mut kinds: BTreeMap<&str, (EntitlementKind, &str)> = BTreeMap::new();
        for (plan, p) in &self.plans {
            let named = p.named_limits.keys().map(|n| (n, EntitlementKind::Limit));
            let features = p.features.iter().map(|n| (n, EntitlementKind::Feature));
            for (name, kind) in named.chain(features) {
                if !valid_name(name) {
                    return Some(format!(
                        "plan {plan:?}: {name:?} is not a name of lower-case letters, digits \
                         and underscores (at most 64, a letter first)"
                    ));
                }
                if SEED_LIMITS.contains(&name.as_str()) {
                    return Some(format!(
                        "plan {plan:?}: {name:?} is one of the four seed limits, set in `limits`"
                    ));
                }
                if name == PROJECTS && kind == EntitlementKind::Feature {
                    return Some(format!(
                        "plan {plan:?}: {PROJECTS:?} is a limit, not a feature"
                    ));
                }
                if p.named_limits.get(name).copied().flatten() > Some(LIMIT_MAX) {
                    return Some(format!(
                        "plan {plan:?}: the limit {name:?} is above {LIMIT_MAX}"
                    ));
                }
                match kinds.get(name.as_str()) {
                    Some((seen, other)) if *seen != kind => {
                        return Some(format!(
                            "{name:?} is a {} in plan {other:?} and a {} in plan {plan:?}",
                            seen.as_str(),
                            kind.as_str()
                        ))
                    }
                    _ => {
                        kinds.insert(name, (kind, plan));
                    }
                }
            }
        }
        for (plan, p) in &self.plans {
            let l = p.limits;
            for (name, limit) in [
                ("mcps", l.mcps),
                ("api_keys", l.api_keys),
                ("team_members", l.team_members),
                ("monthly_requests", l.monthly_requests),
            ] {
                if limit > Some(LIMIT_MAX) {
                    return Some(format!(
                        "plan {plan:?}: the limit {name:?} is above {LIMIT_MAX}"
                    ));
                }
            }
            for name in p.enforcement.keys() {
                if !SEED_LIMITS.contains(&name.as_str()) && !p.named_limits.contains_key(name) {
                    return Some(format!(
                        "plan {plan:?}: `enforcement` names {name:?}, which is not one of its \
                         limits"
                    ));
                }
            }
        }
        None
    }

    /// How the plan `plan` enforces the limit `name` (hard when the catalog lacks either).
    pub fn enforcement(&self, plan: &str, name: &str) -> Enforcement {
        self.plans
            .get(plan)
            .map(|p| p.enforcement_of(name))
            .unwrap_or_default()
    }
}

impl Default for PlanCatalog {
    /// `free` (3, 2, 3, 1 000), `pro` (10, 10, 5, 50 000; `audit_export`), `team` (50, 50, 25,
    /// 1 000 000; `audit_export`, `sso`), `enterprise` (unlimited; `audit_export`, `sso`);
    /// default plan `free`. No plan limits `projects`.
    fn default() -> PlanCatalog {
        let limits = |m, a, t, r| Limits {
            mcps: Some(m),
            api_keys: Some(a),
            team_members: Some(t),
            monthly_requests: Some(r),
        };
        PlanCatalog {
            plans: BTreeMap::from([
                ("free".to_owned(), Plan::from(limits(3, 2, 3, 1_000))),
                (
                    "pro".to_owned(),
                    Plan::from(limits(10, 10, 5, 50_000)).feature("audit_export"),
                ),
                (
                    "team".to_owned(),
                    Plan::from(limits(50, 50, 25, 1_000_000))
                        .feature("audit_export")
                        .feature("sso"),
                ),
                (
                    "enterprise".to_owned(),
                    Plan::from(Limits::default())
                        .feature("audit_export")
                        .feature("sso"),
                ),
            ]),
            default_plan: "free".to_owned(),
        }
    }
}

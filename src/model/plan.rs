//! The plan catalog.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::org::Limits;

/// Plan name → limits. Hosts may replace the whole catalog in `Options`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCatalog {
    /// The plans.
    pub plans: BTreeMap<String, Limits>,
    /// Plan given to organizations created without one.
    pub default_plan: String,
}

impl PlanCatalog {
    /// The limits of `plan`, if the catalog has it.
    pub fn limits(&self, plan: &str) -> Option<Limits> {
        self.plans.get(plan).copied()
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
}

impl Default for PlanCatalog {
    /// `free` (3, 2, 3, 1 000), `pro` (10, 10, 5, 50 000), `team` (50, 50, 25, 1 000 000),
    /// `enterprise` (unlimited); default plan `free`.
    fn default() -> PlanCatalog {
        let limits = |m, a, t, r| Limits {
            mcps: Some(m),
            api_keys: Some(a),
            team_members: Some(t),
            monthly_requests: Some(r),
        };
        PlanCatalog {
            plans: BTreeMap::from([
                ("free".to_owned(), limits(3, 2, 3, 1_000)),
                ("pro".to_owned(), limits(10, 10, 5, 50_000)),
                ("team".to_owned(), limits(50, 50, 25, 1_000_000)),
                ("enterprise".to_owned(), Limits::default()),
            ]),
            default_plan: "free".to_owned(),
        }
    }
}

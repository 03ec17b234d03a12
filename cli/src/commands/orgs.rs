//! `orgdb orgs …`

use chrono::NaiveDate;
use clap::{ArgGroup, Args, Subcommand};
use orgdb::{
    EntitlementValue, Limit, LimitOverridesPatch, NewOrganization, OrganizationPatch,
    OrganizationSettings, QuotaPeriod, Result,
};

use super::{deleted, invalid, key_values, App};
use crate::output::View;

/// Postal address flags (seed 001's fields).
#[derive(Debug, Args, Default)]
pub(crate) struct AddressArgs {
    /// Address, first line.
    #[arg(long)]
    address_line1: Option<String>,
    /// Address, second line.
    #[arg(long)]
    address_line2: Option<String>,
    /// City.
    #[arg(long)]
    city: Option<String>,
    /// State or province.
    #[arg(long)]
    state: Option<String>,
    /// Postal code.
    #[arg(long)]
    zipcode: Option<String>,
    /// Country.
    #[arg(long)]
    country: Option<String>,
}

/// Organizations (tenants), their plans and limits.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create an organization; its owner becomes the first owner.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// The first owner (user id or email); default: the --as user.
        #[arg(long)]
        owner: Option<String>,
        /// Explicit slug (derived from the name when absent).
        #[arg(long)]
        slug: Option<String>,
        /// The host's own id for the organization.
        #[arg(long)]
        external_id: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Plan name (free, pro, team, enterprise); default: free.
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        address: AddressArgs,
        /// Turn PIN protection on.
        #[arg(long)]
        pin_protection: bool,
        /// A host-defined setting (repeatable).
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// A metadata entry (repeatable).
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Show an organization with its limits and usage (seed 000's GET /v1/organization).
    #[command(group(ArgGroup::new("which").required(true).args(["org", "external_id"])))]
    Get {
        /// Organization id (`org_…`) or slug.
        org: Option<String>,
        /// Look the organization up by the host's external id instead.
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Organizations a user belongs to, with the user's membership.
    ListForUser {
        /// User id or email; default: the --as user.
        user: Option<String>,
    },
    /// List every organization, oldest first (the operator's list: not with --as).
    List {
        #[command(flatten)]
        list: super::ListArgs,
    },
    /// Change an organization's details (PATCH: only what is given changes; an empty value
    /// clears an optional field).
    Update {
        /// Organization id or slug.
        org: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New slug.
        #[arg(long)]
        slug: Option<String>,
        /// New external id ('' clears it).
        #[arg(long)]
        external_id: Option<String>,
        /// New description ('' clears it).
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        address: AddressArgs,
        /// Turn PIN protection on or off.
        #[arg(long, value_name = "BOOL")]
        pin_protection: Option<bool>,
        /// Set a host-defined setting (repeatable; an empty value removes it).
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Replace the metadata with these entries (repeatable).
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// Remove all metadata.
        #[arg(long, conflicts_with = "metadata")]
        clear_metadata: bool,
        /// A JSON PATCH body (seed field names, null clears); flags override it.
        #[arg(long, value_name = "JSON")]
        json: Option<String>,
    },
    /// Change the plan (owners).
    SetPlan {
        /// Organization id or slug.
        org: String,
        /// Plan name.
        plan: String,
    },
    /// Change the limit overrides (operator only), as a patch: each limit given is a number,
    /// `unlimited`, or `plan` (remove the override: follow the plan); an omitted limit stays.
    SetLimits {
        /// Organization id or slug.
        org: String,
        /// MCP servers.
        #[arg(long, value_name = "N|unlimited|plan")]
        mcps: Option<String>,
        /// API keys.
        #[arg(long, value_name = "N|unlimited|plan")]
        api_keys: Option<String>,
        /// Members plus pending invitations.
        #[arg(long, value_name = "N|unlimited|plan")]
        team_members: Option<String>,
        /// Requests per quota period (the calendar month unless `set-billing-anchor` says
        /// otherwise).
        #[arg(long, value_name = "N|unlimited|plan")]
        monthly_requests: Option<String>,
    },
    /// What the organization has of one feature or limit (`sso`, `projects`, `mcps`…), and
    /// why: its plan, an override, or neither.
    Entitlement {
        /// Organization id or slug.
        org: String,
        /// The feature's or limit's name.
        name: String,
    },
    /// Every entitlement of the organization: the four seed limits, then the others by name.
    Entitlements {
        /// Organization id or slug.
        org: String,
    },
    /// Override one feature or limit for this organization (operator only).
    #[command(group(ArgGroup::new("value").required(true).args(["on", "off", "limit", "clear"])))]
    SetEntitlement {
        /// Organization id or slug.
        org: String,
        /// The feature's or limit's name.
        name: String,
        /// Switch the feature on.
        #[arg(long)]
        on: bool,
        /// Switch the feature off.
        #[arg(long)]
        off: bool,
        /// Set the limit: a number or `unlimited`.
        #[arg(long, value_name = "N|unlimited")]
        limit: Option<String>,
        /// Remove the override: follow the plan.
        #[arg(long)]
        clear: bool,
    },
    /// How the organization's usage quota resets, and the period that holds today.
    BillingPeriod {
        /// Organization id or slug.
        org: String,
    },
    /// Set how the organization's usage quota resets (operator only): monthly from a billing
    /// anchor (`--anchor 2024-01-31`: periods start on its day of the month, clamped to short
    /// months), or every calendar `month` (the default), `day`, ISO `week` or `year`.
    #[command(group(ArgGroup::new("rule").required(true).args(["anchor", "every"])))]
    SetBillingAnchor {
        /// Organization id or slug.
        org: String,
        /// The billing start date (YYYY-MM-DD).
        #[arg(long, value_name = "YYYY-MM-DD")]
        anchor: Option<String>,
        /// A calendar period instead.
        #[arg(long, value_name = "month|day|week|year")]
        every: Option<String>,
    },
    /// The organization's usage alerts: each threshold (percent of `monthly_requests`), its
    /// mark, whether the current period reached it and when it was last announced.
    UsageAlerts {
        /// Organization id or slug.
        org: String,
    },
    /// Set the usage alert thresholds (owners): `--thresholds 50,90,100`, `--defaults` (80
    /// and 100) or `--none`. Each crossing appends a `usage.threshold` audit event, once per
    /// quota period.
    #[command(group(ArgGroup::new("alerts").required(true).args(["thresholds", "defaults", "none"])))]
    SetUsageAlerts {
        /// Organization id or slug.
        org: String,
        /// Percentages, comma-separated (1 to 1000; above 100 announces overage).
        #[arg(long, value_name = "P,P,...")]
        thresholds: Option<String>,
        /// Back to the defaults, 80 % and 100 %.
        #[arg(long)]
        defaults: bool,
        /// No alerts.
        #[arg(long)]
        none: bool,
    },
    /// Delete an organization with everything in it (owners); its audit log stays.
    Delete {
        /// Organization id or slug.
        org: String,
    },
    /// Whether a slug is free, and why not.
    CheckSlug {
        /// The slug.
        slug: String,
    },
}

const LIST: &[&str] = &["id", "name", "slug", "plan", "created_at"];
const ENTITLEMENTS: &[&str] = &["name", "kind", "has_access", "limit", "used", "source"];
const FOR_USER: &[&str] = &[
    "id",
    "name",
    "slug",
    "plan",
    "membership.role",
    "membership.joined_at",
];

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::Create {
            name,
            owner,
            slug,
            external_id,
            description,
            plan,
            address,
            pin_protection,
            settings,
            metadata,
        } => {
            let owner = app.acting_user(owner.as_deref(), "--owner")?;
            let new = NewOrganization {
                name,
                slug,
                external_id,
                description,
                plan,
                address_line1: address.address_line1,
                address_line2: address.address_line2,
                city: address.city,
                state: address.state,
                zipcode: address.zipcode,
                country: address.country,
                settings: Some(OrganizationSettings {
                    pin_protection,
                    extra: key_values("setting", &settings)?,
                }),
                metadata: key_values("meta", &metadata)?,
            };
            out.ok(&db.create_organization(&owner, &new)?, View::Record);
        }
        Cmd::Get { org, external_id } => {
            let details = match (org, external_id) {
                (_, Some(ext)) => db.get_organization_by_external_id(actor, &ext)?,
                (Some(org), None) => db.get_organization(actor, &app.org(&org)?)?,
                (None, None) => return Err(invalid("org", "Required")),
            };
            out.ok(&details, View::Record);
        }
        Cmd::ListForUser { user } => {
            let user = app.acting_user(user.as_deref(), "USER")?;
            out.ok(
                &db.list_organizations_for_user(&user)?,
                View::Rows(FOR_USER),
            );
        }
        Cmd::List { list } => {
            super::print_list(out, LIST, list, |q| db.list_organizations(&app.actor, q))?;
        }
        Cmd::Update {
            org,
            name,
            slug,
            external_id,
            description,
            address,
            pin_protection,
            settings,
            metadata,
            clear_metadata,
            json,
        } => {
            let org = app.org(&org)?;
            let mut patch = match json {
                Some(body) => serde_json::from_str::<OrganizationPatch>(&body)
                    .map_err(|e| invalid("json", e.to_string()))?,
                None => OrganizationPatch::default(),
            };
            let clearable = |v: Option<String>| v.map(|s| Some(s).filter(|s| !s.is_empty()));
            patch.name = name.or(patch.name);
            patch.slug = slug.or(patch.slug);
            patch.external_id = clearable(external_id).or(patch.external_id);
            patch.description = clearable(description).or(patch.description);
            patch.address_line1 = clearable(address.address_line1).or(patch.address_line1);
            patch.address_line2 = clearable(address.address_line2).or(patch.address_line2);
            patch.city = clearable(address.city).or(patch.city);
            patch.state = clearable(address.state).or(patch.state);
            patch.zipcode = clearable(address.zipcode).or(patch.zipcode);
            patch.country = clearable(address.country).or(patch.country);
            if pin_protection.is_some() || !settings.is_empty() {
                // Settings are replaced whole: start from what is stored.
                let mut current = match patch.settings.take() {
                    Some(s) => s,
                    None => db.get_organization(actor, &org)?.organization.settings,
                };
                if let Some(on) = pin_protection {
                    current.pin_protection = on;
                }
                for (k, v) in key_values("setting", &settings)? {
                    if v.is_empty() {
                        current.extra.remove(&k);
                    } else {
                        current.extra.insert(k, v);
                    }
                }
                patch.settings = Some(current);
            }
            if clear_metadata {
                patch.metadata = Some(Default::default());
            } else if !metadata.is_empty() {
                patch.metadata = Some(key_values("meta", &metadata)?);
            }
            out.ok(&db.update_organization(actor, &org, &patch)?, View::Record);
        }
        Cmd::SetPlan { org, plan } => {
            out.ok(&db.set_plan(actor, &app.org(&org)?, &plan)?, View::Record);
        }
        Cmd::SetLimits {
            org,
            mcps,
            api_keys,
            team_members,
            monthly_requests,
        } => {
            let overrides = LimitOverridesPatch {
                mcps: limit("mcps", mcps)?,
                api_keys: limit("api_keys", api_keys)?,
                team_members: limit("team_members", team_members)?,
                monthly_requests: limit("monthly_requests", monthly_requests)?,
            };
            let org = app.org(&org)?;
            out.ok(
                &db.set_limit_overrides(actor, &org, &overrides)?,
                View::Record,
            );
        }
        Cmd::Entitlement { org, name } => {
            let org = app.org(&org)?;
            out.ok(&db.entitlement(actor, &org, &name)?, View::Record);
        }
        Cmd::Entitlements { org } => {
            let org = app.org(&org)?;
            out.ok(&db.entitlements(actor, &org)?, View::Rows(ENTITLEMENTS));
        }
        Cmd::SetEntitlement {
            org,
            name,
            on,
            off,
            limit: count,
            clear: _,
        } => {
            let value = match (on, off, count) {
                (true, _, _) => Some(EntitlementValue::Feature { enabled: true }),
                (_, true, _) => Some(EntitlementValue::Feature { enabled: false }),
                (_, _, Some(text)) => Some(EntitlementValue::Limit {
                    limit: match text.trim().to_ascii_lowercase().as_str() {
                        "unlimited" | "none" => None,
                        n => Some(
                            n.parse::<u64>()
                                .map_err(|_| invalid("limit", "Must be a number or `unlimited`"))?,
                        ),
                    },
                }),
                _ => None,
            };
            let org = app.org(&org)?;
            out.ok(
                &db.set_entitlement_override(actor, &org, &name, value.as_ref())?,
                View::Record,
            );
        }
        Cmd::BillingPeriod { org } => {
            let org = app.org(&org)?;
            out.ok(&db.billing_period(actor, &org)?, View::Record);
        }
        Cmd::SetBillingAnchor { org, anchor, every } => {
            let rule = match (anchor, every) {
                (Some(text), _) => QuotaPeriod::Anchored {
                    anchor: NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                        .map_err(|_| invalid("anchor", "Must be a date, YYYY-MM-DD"))?,
                },
                (_, Some(text)) => match text.trim().to_ascii_lowercase().as_str() {
                    "month" => QuotaPeriod::CalendarMonth,
                    "day" => QuotaPeriod::Day,
                    "week" => QuotaPeriod::Week,
                    "year" => QuotaPeriod::Year,
                    _ => return Err(invalid("every", "Must be month, day, week or year")),
                },
                (None, None) => return Err(invalid("anchor", "Give --anchor or --every")),
            };
            let org = app.org(&org)?;
            out.ok(&db.set_billing_anchor(actor, &org, rule)?, View::Record);
        }
        Cmd::UsageAlerts { org } => {
            let org = app.org(&org)?;
            out.ok(&db.usage_alerts(actor, &org)?, View::Record);
        }
        Cmd::SetUsageAlerts {
            org,
            thresholds,
            defaults,
            none,
        } => {
            let list: Option<Vec<u32>> = match (thresholds, defaults, none) {
                (Some(text), _, _) => Some(
                    text.split(',')
                        .filter(|t| !t.trim().is_empty())
                        .map(|t| {
                            t.trim().trim_end_matches('%').parse::<u32>().map_err(|_| {
                                invalid("thresholds", "Must be percentages, e.g. 50,90,100")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                (None, true, _) => None,
                (None, false, true) => Some(Vec::new()),
                (None, false, false) => {
                    return Err(invalid(
                        "thresholds",
                        "Give --thresholds, --defaults or --none",
                    ))
                }
            };
            let org = app.org(&org)?;
            out.ok(
                &db.set_usage_alerts(actor, &org, list.as_deref())?,
                View::Record,
            );
        }
        Cmd::Delete { org } => {
            let org = app.org(&org)?;
            db.delete_organization(actor, &org)?;
            out.ok(&deleted(&org), View::Record);
        }
        Cmd::CheckSlug { slug } => out.ok(&db.check_slug(&slug)?, View::Record),
    }
    Ok(())
}

/// `N`, `unlimited`, or `plan` (no override).
/// One field of a limit-overrides patch: absent keeps it, `plan` clears it.
fn limit(field: &str, text: Option<String>) -> Result<Option<Option<Limit>>> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().to_ascii_lowercase().as_str() {
        "plan" => Ok(Some(None)),
        "unlimited" | "none" => Ok(Some(Some(Limit::Unlimited))),
        n => n
            .parse::<u64>()
            .map(|n| Some(Some(Limit::Count(n))))
            .map_err(|_| invalid(field, "Must be a number, `unlimited` or `plan`")),
    }
}

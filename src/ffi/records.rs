//! What orgdb returns, as UniFFI records and enums: field for field the Rust model types, with
//! timestamps as `SystemTime`, dates as `YYYY-MM-DD` text and generic pages made concrete.

use std::collections::HashMap;
use std::time::SystemTime;

use super::convert::{date_text, hash_map, system_time, system_time_opt};
use crate::model;

/// A role in an organization or a project: `OWNER > ADMIN > MEMBER > VIEWER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Role {
    /// Read-only access.
    Viewer,
    /// Regular member.
    Member,
    /// Manages members, invitations, projects and resources.
    Admin,
    /// Full control.
    Owner,
}

impl From<model::role::Role> for Role {
    fn from(role: model::role::Role) -> Role {
        match role {
            model::role::Role::Viewer => Role::Viewer,
            model::role::Role::Member => Role::Member,
            model::role::Role::Admin => Role::Admin,
            model::role::Role::Owner => Role::Owner,
        }
    }
}

/// Where an invitation stands (expiry applied at read time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum InvitationStatus {
    /// Waiting for the invitee; holds a seat.
    Pending,
    /// The invitee joined.
    Accepted,
    /// The invitee said no.
    Declined,
    /// An admin withdrew it.
    Revoked,
    /// Its expiry passed while pending.
    Expired,
}

impl From<model::invitation::InvitationStatus> for InvitationStatus {
    fn from(status: model::invitation::InvitationStatus) -> InvitationStatus {
        use model::invitation::InvitationStatus as S;
        match status {
            S::Pending => InvitationStatus::Pending,
            S::Accepted => InvitationStatus::Accepted,
            S::Declined => InvitationStatus::Declined,
            S::Revoked => InvitationStatus::Revoked,
            S::Expired => InvitationStatus::Expired,
        }
    }
}

/// The two kinds of limited resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ResourceKind {
    /// An MCP server (limit `mcps`).
    Mcp,
    /// An API key (limit `api_keys`).
    ApiKey,
}

impl From<model::resource::ResourceKind> for ResourceKind {
    fn from(kind: model::resource::ResourceKind) -> ResourceKind {
        match kind {
            model::resource::ResourceKind::Mcp => ResourceKind::Mcp,
            model::resource::ResourceKind::ApiKey => ResourceKind::ApiKey,
        }
    }
}

impl From<ResourceKind> for model::resource::ResourceKind {
    fn from(kind: ResourceKind) -> model::resource::ResourceKind {
        match kind {
            ResourceKind::Mcp => model::resource::ResourceKind::Mcp,
            ResourceKind::ApiKey => model::resource::ResourceKind::ApiKey,
        }
    }
}

/// Usage report granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Period {
    /// One UTC day.
    Day,
    /// One ISO week, Monday first.
    Week,
    /// One UTC calendar month.
    Month,
}

impl From<model::usage::Period> for Period {
    fn from(period: model::usage::Period) -> Period {
        match period {
            model::usage::Period::Day => Period::Day,
            model::usage::Period::Week => Period::Week,
            model::usage::Period::Month => Period::Month,
        }
    }
}

impl From<Period> for model::usage::Period {
    fn from(period: Period) -> model::usage::Period {
        match period {
            Period::Day => model::usage::Period::Day,
            Period::Week => model::usage::Period::Week,
            Period::Month => model::usage::Period::Month,
        }
    }
}

/// A person who can belong to organizations.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct User {
    /// `user_…`
    pub id: String,
    /// Normalized email, unique.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Set by `touch_user`; null until then.
    pub last_active: Option<SystemTime>,
}

impl From<model::user::User> for User {
    fn from(u: model::user::User) -> User {
        User {
            id: u.id,
            email: u.email,
            name: u.name,
            created_at: system_time(u.created_at),
            last_active: system_time_opt(u.last_active),
        }
    }
}

/// Organization settings: `pin_protection` plus host-defined string settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct OrganizationSettings {
    /// Whether a PIN protects sensitive actions.
    #[uniffi(default)]
    pub pin_protection: bool,
    /// Host-defined settings.
    #[uniffi(default)]
    pub extra: HashMap<String, String>,
}

impl From<model::org::OrganizationSettings> for OrganizationSettings {
    fn from(s: model::org::OrganizationSettings) -> OrganizationSettings {
        OrganizationSettings {
            pin_protection: s.pin_protection,
            extra: hash_map(s.extra),
        }
    }
}

impl From<OrganizationSettings> for model::org::OrganizationSettings {
    fn from(s: OrganizationSettings) -> model::org::OrganizationSettings {
        model::org::OrganizationSettings {
            pin_protection: s.pin_protection,
            extra: super::convert::btree_map(s.extra),
        }
    }
}

/// An organization (tenant), its address flattened in.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Organization {
    /// `org_…`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique URL-safe name.
    pub slug: String,
    /// The host's own id (unique when set).
    pub external_id: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Plan name.
    pub plan: String,
    /// Address, first line.
    pub address_line1: Option<String>,
    /// Address, second line.
    pub address_line2: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Postal code.
    pub zipcode: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Feature settings.
    pub settings: OrganizationSettings,
    /// Host metadata.
    pub metadata: HashMap<String, String>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

impl From<model::org::Organization> for Organization {
    fn from(o: model::org::Organization) -> Organization {
        Organization {
            id: o.id,
            name: o.name,
            slug: o.slug,
            external_id: o.external_id,
            description: o.description,
            plan: o.plan,
            address_line1: o.address_line1,
            address_line2: o.address_line2,
            city: o.city,
            state: o.state,
            zipcode: o.zipcode,
            country: o.country,
            settings: o.settings.into(),
            metadata: hash_map(o.metadata),
            created_at: system_time(o.created_at),
            updated_at: system_time(o.updated_at),
        }
    }
}

/// The four limits; null is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, uniffi::Record)]
pub struct Limits {
    /// Registered MCP servers.
    #[uniffi(default)]
    pub mcps: Option<u64>,
    /// Registered API keys.
    #[uniffi(default)]
    pub api_keys: Option<u64>,
    /// Members plus pending, unexpired invitations.
    #[uniffi(default)]
    pub team_members: Option<u64>,
    /// Requests in the current UTC calendar month.
    #[uniffi(default)]
    pub monthly_requests: Option<u64>,
}

impl From<model::org::Limits> for Limits {
    fn from(l: model::org::Limits) -> Limits {
        Limits {
            mcps: l.mcps,
            api_keys: l.api_keys,
            team_members: l.team_members,
            monthly_requests: l.monthly_requests,
        }
    }
}

impl From<Limits> for model::org::Limits {
    fn from(l: Limits) -> model::org::Limits {
        model::org::Limits {
            mcps: l.mcps,
            api_keys: l.api_keys,
            team_members: l.team_members,
            monthly_requests: l.monthly_requests,
        }
    }
}

/// Live counts of the four limited things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Usage {
    /// Registered MCP servers.
    pub mcps: u64,
    /// Registered API keys.
    pub api_keys: u64,
    /// Members plus pending, unexpired invitations.
    pub team_members: u64,
    /// Requests in the current UTC calendar month.
    pub monthly_requests: u64,
}

impl From<model::org::Usage> for Usage {
    fn from(u: model::org::Usage) -> Usage {
        Usage {
            mcps: u.mcps,
            api_keys: u.api_keys,
            team_members: u.team_members,
            monthly_requests: u.monthly_requests,
        }
    }
}

/// An organization with its effective limits and live usage.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrganizationDetails {
    /// The organization.
    pub organization: Organization,
    /// Effective limits (plan, then overrides).
    pub limits: Limits,
    /// Live counts.
    pub usage: Usage,
}

impl From<model::org::OrganizationDetails> for OrganizationDetails {
    fn from(d: model::org::OrganizationDetails) -> OrganizationDetails {
        OrganizationDetails {
            organization: d.organization.into(),
            limits: d.limits.into(),
            usage: d.usage.into(),
        }
    }
}

/// A user's membership in an organization.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Membership {
    /// `mem_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// The member.
    pub user_id: String,
    /// Organization role.
    pub role: Role,
    /// When the user joined.
    pub joined_at: SystemTime,
    /// Last role change (or `joined_at`).
    pub updated_at: SystemTime,
}

impl From<model::membership::Membership> for Membership {
    fn from(m: model::membership::Membership) -> Membership {
        Membership {
            id: m.id,
            organization_id: m.organization_id,
            user_id: m.user_id,
            role: m.role.into(),
            joined_at: system_time(m.joined_at),
            updated_at: system_time(m.updated_at),
        }
    }
}

/// An organization with one user's membership in it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrganizationWithMembership {
    /// The organization.
    pub organization: Organization,
    /// The user's membership.
    pub membership: Membership,
}

impl From<model::org::OrganizationWithMembership> for OrganizationWithMembership {
    fn from(o: model::org::OrganizationWithMembership) -> OrganizationWithMembership {
        OrganizationWithMembership {
            organization: o.organization.into(),
            membership: o.membership.into(),
        }
    }
}

/// Whether a slug is free, and why not.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SlugCheck {
    /// The slug asked about.
    pub slug: String,
    /// Whether an organization could take it now.
    pub available: bool,
    /// Why not: `invalid`, `reserved` or `taken`.
    pub reason: Option<String>,
}

impl From<model::org::SlugCheck> for SlugCheck {
    fn from(s: model::org::SlugCheck) -> SlugCheck {
        SlugCheck {
            slug: s.slug,
            available: s.available,
            reason: s.reason,
        }
    }
}

/// One row of a member list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// The user's id.
    pub id: String,
    /// The membership's id (`mem_…`).
    pub membership_id: String,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// Organization role.
    pub role: Role,
    /// When the user joined.
    pub joined_at: SystemTime,
    /// Last role change (or `joined_at`).
    pub updated_at: SystemTime,
    /// Last activity; null until `touch_user`.
    pub last_active: Option<SystemTime>,
}

impl From<model::membership::Member> for Member {
    fn from(m: model::membership::Member) -> Member {
        Member {
            id: m.id,
            membership_id: m.membership_id,
            email: m.email,
            name: m.name,
            role: m.role.into(),
            joined_at: system_time(m.joined_at),
            updated_at: system_time(m.updated_at),
            last_active: system_time_opt(m.last_active),
        }
    }
}

/// The result of `remove_member` / `leave_organization`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RemovedMember {
    /// Always true.
    pub removed: bool,
    /// The removed user.
    pub user_id: String,
    /// The removed membership.
    pub membership_id: String,
}

impl From<model::membership::RemovedMember> for RemovedMember {
    fn from(r: model::membership::RemovedMember) -> RemovedMember {
        RemovedMember {
            removed: r.removed,
            user_id: r.user_id,
            membership_id: r.membership_id,
        }
    }
}

/// Paging figures of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Pagination {
    /// Page number, from 1.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// Rows matching the query, over all pages.
    pub total: u64,
    /// `ceil(total / per_page)`.
    pub total_pages: u64,
}

impl From<model::page::Pagination> for Pagination {
    fn from(p: model::page::Pagination) -> Pagination {
        Pagination {
            page: p.page,
            per_page: p.per_page,
            total: p.total,
            total_pages: p.total_pages,
        }
    }
}

/// One page of members.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MemberPage {
    /// The rows.
    pub data: Vec<Member>,
    /// Paging figures.
    pub pagination: Pagination,
    /// Keyset cursor of the next page (`MemberQuery.cursor`); null on the last page.
    pub next_cursor: Option<String>,
}

impl From<model::page::Page<model::membership::Member>> for MemberPage {
    fn from(p: model::page::Page<model::membership::Member>) -> MemberPage {
        MemberPage {
            data: p.data.into_iter().map(Into::into).collect(),
            pagination: p.pagination.into(),
            next_cursor: p.next_cursor,
        }
    }
}

/// An invitation (the admin view).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Invitation {
    /// `inv_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Invitee's normalized email.
    pub email: String,
    /// Organization role given on acceptance.
    pub role: Role,
    /// Project joined on acceptance, if any.
    pub project_id: Option<String>,
    /// Role in that project.
    pub project_role: Option<Role>,
    /// Status as of the read.
    pub status: InvitationStatus,
    /// Who invited (`user_…` or `system`).
    pub invited_by: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Pending until this instant.
    pub expires_at: SystemTime,
    /// When it was accepted.
    pub accepted_at: Option<SystemTime>,
}

impl From<model::invitation::Invitation> for Invitation {
    fn from(i: model::invitation::Invitation) -> Invitation {
        Invitation {
            id: i.id,
            organization_id: i.organization_id,
            email: i.email,
            role: i.role.into(),
            project_id: i.project_id,
            project_role: i.project_role.map(Into::into),
            status: i.status.into(),
            invited_by: i.invited_by,
            created_at: system_time(i.created_at),
            expires_at: system_time(i.expires_at),
            accepted_at: system_time_opt(i.accepted_at),
        }
    }
}

/// One page of invitations.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InvitationPage {
    /// The rows.
    pub data: Vec<Invitation>,
    /// Paging figures.
    pub pagination: Pagination,
    /// Cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl From<model::page::Page<model::invitation::Invitation>> for InvitationPage {
    fn from(p: model::page::Page<model::invitation::Invitation>) -> InvitationPage {
        InvitationPage {
            data: p.data.into_iter().map(Into::into).collect(),
            pagination: p.pagination.into(),
            next_cursor: p.next_cursor,
        }
    }
}

/// A new (or re-sent) invitation with its secret token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CreatedInvitation {
    /// The invitation's id.
    pub invite_id: String,
    /// The invitation.
    pub invitation: Invitation,
    /// The secret token (64 hex characters); only its hash is stored.
    pub token: String,
    /// The invite URL built from the template in the options.
    pub invite_url: String,
}

impl From<model::invitation::CreatedInvitation> for CreatedInvitation {
    fn from(c: model::invitation::CreatedInvitation) -> CreatedInvitation {
        CreatedInvitation {
            invite_id: c.invite_id,
            invitation: c.invitation.into(),
            token: c.token,
            invite_url: c.invite_url,
        }
    }
}

/// What an accept page shows for a token: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InvitationPreview {
    /// `inv_…`
    pub id: String,
    /// Status as of now.
    pub status: InvitationStatus,
    /// Invitee email.
    pub email: String,
    /// Organization role offered.
    pub role: Role,
    /// Project offered, if any.
    pub project_id: Option<String>,
    /// Its name.
    pub project_name: Option<String>,
    /// Project role offered.
    pub project_role: Option<Role>,
    /// Expiry.
    pub expires_at: SystemTime,
    /// Organization id.
    pub organization_id: String,
    /// Organization name.
    pub organization_name: String,
    /// Organization slug.
    pub organization_slug: String,
    /// Inviter's name (null when the system invited or the inviter is gone).
    pub inviter_name: Option<String>,
    /// Inviter's email.
    pub inviter_email: Option<String>,
}

impl From<model::invitation::InvitationPreview> for InvitationPreview {
    fn from(p: model::invitation::InvitationPreview) -> InvitationPreview {
        InvitationPreview {
            id: p.id,
            status: p.status.into(),
            email: p.email,
            role: p.role.into(),
            project_id: p.project_id,
            project_name: p.project_name,
            project_role: p.project_role.map(Into::into),
            expires_at: system_time(p.expires_at),
            organization_id: p.organization_id,
            organization_name: p.organization_name,
            organization_slug: p.organization_slug,
            inviter_name: p.inviter_name,
            inviter_email: p.inviter_email,
        }
    }
}

/// A pending invitation with its organization's name and slug.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// Organization name.
    pub organization_name: String,
    /// Organization slug.
    pub organization_slug: String,
}

impl From<model::invitation::PendingInvitation> for PendingInvitation {
    fn from(p: model::invitation::PendingInvitation) -> PendingInvitation {
        PendingInvitation {
            invitation: p.invitation.into(),
            organization_name: p.organization_name,
            organization_slug: p.organization_slug,
        }
    }
}

/// A project inside an organization.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Project {
    /// `proj_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

impl From<model::project::Project> for Project {
    fn from(p: model::project::Project) -> Project {
        Project {
            id: p.id,
            organization_id: p.organization_id,
            name: p.name,
            description: p.description,
            created_at: system_time(p.created_at),
            updated_at: system_time(p.updated_at),
        }
    }
}

/// A row of `list_project_members`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProjectMember {
    /// The user's id.
    pub id: String,
    /// The project.
    pub project_id: String,
    /// The user's email.
    pub email: String,
    /// The user's name.
    pub name: String,
    /// Project role.
    pub role: Role,
    /// When added.
    pub added_at: SystemTime,
    /// Last role change.
    pub updated_at: SystemTime,
}

impl From<model::project::ProjectMember> for ProjectMember {
    fn from(p: model::project::ProjectMember) -> ProjectMember {
        ProjectMember {
            id: p.id,
            project_id: p.project_id,
            email: p.email,
            name: p.name,
            role: p.role.into(),
            added_at: system_time(p.added_at),
            updated_at: system_time(p.updated_at),
        }
    }
}

/// A registered MCP server or API key.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Resource {
    /// `res_…`
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// MCP server or API key.
    pub kind: ResourceKind,
    /// Display name.
    pub name: String,
    /// Registration time.
    pub created_at: SystemTime,
    /// Removal time (removed resources stop counting against limits).
    pub removed_at: Option<SystemTime>,
}

impl From<model::resource::Resource> for Resource {
    fn from(r: model::resource::Resource) -> Resource {
        Resource {
            id: r.id,
            organization_id: r.organization_id,
            kind: r.kind.into(),
            name: r.name,
            created_at: system_time(r.created_at),
            removed_at: system_time_opt(r.removed_at),
        }
    }
}

/// The month's figures after a recorded (or checked) usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct UsageReceipt {
    /// The idempotency key had already been recorded: nothing was counted.
    pub duplicate: bool,
    /// Usage of the event's month after it.
    pub used: u64,
    /// The `monthly_requests` limit (null when unlimited).
    pub limit: Option<u64>,
    /// `limit - used` (null when unlimited).
    pub remaining: Option<u64>,
}

impl From<model::usage::UsageReceipt> for UsageReceipt {
    fn from(r: model::usage::UsageReceipt) -> UsageReceipt {
        UsageReceipt {
            duplicate: r.duplicate,
            used: r.used,
            limit: r.limit,
            remaining: r.remaining,
        }
    }
}

/// Totals of a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct RequestTotals {
    /// Requests in the range.
    pub total: u64,
    /// The `monthly_requests` limit (null when unlimited).
    pub limit: Option<u64>,
    /// `total * 100 / limit` rounded down; null when unlimited or the limit is 0.
    pub percentage: Option<u64>,
}

/// One resource's requests in a report's range.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResourceUsage {
    /// The resource's id.
    pub mcp_id: String,
    /// Its name (kept after removal).
    pub name: String,
    /// Requests in the range.
    pub requests: u64,
}

/// One API key's requests in a report.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApiKeyUsage {
    /// The API key resource's id.
    pub api_key_id: String,
    /// Its name (kept after removal).
    pub name: String,
    /// Requests in the range.
    pub requests: u64,
}

/// One day's requests.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DayUsage {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// Requests that day.
    pub requests: u64,
}

/// Seed 000's usage report.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UsageReport {
    /// Granularity.
    pub period: Period,
    /// Start of the first day.
    pub start_date: SystemTime,
    /// Last second of the last day.
    pub end_date: SystemTime,
    /// Totals.
    pub requests: RequestTotals,
    /// Per MCP server with usage in the range, most used first.
    pub by_mcp: Vec<ResourceUsage>,
    /// Per API key with usage in the range, most used first.
    pub by_api_key: Vec<ApiKeyUsage>,
    /// Every day of the range, zero days included.
    pub by_day: Vec<DayUsage>,
}

impl From<model::usage::UsageReport> for UsageReport {
    fn from(r: model::usage::UsageReport) -> UsageReport {
        UsageReport {
            period: r.period.into(),
            start_date: system_time(r.start_date),
            end_date: system_time(r.end_date),
            requests: RequestTotals {
                total: r.requests.total,
                limit: r.requests.limit,
                percentage: r.requests.percentage,
            },
            by_mcp: r
                .by_mcp
                .into_iter()
                .map(|m| ResourceUsage {
                    mcp_id: m.mcp_id,
                    name: m.name,
                    requests: m.requests,
                })
                .collect(),
            by_api_key: r
                .by_api_key
                .into_iter()
                .map(|k| ApiKeyUsage {
                    api_key_id: k.api_key_id,
                    name: k.name,
                    requests: k.requests,
                })
                .collect(),
            by_day: r
                .by_day
                .into_iter()
                .map(|d| DayUsage {
                    date: date_text(d.date),
                    requests: d.requests,
                })
                .collect(),
        }
    }
}

/// What `prune_usage` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct PruneReport {
    /// Day rows (one per organization and day) removed.
    pub day_rows: u64,
    /// Month totals removed.
    pub month_rows: u64,
    /// Idempotency keys past their retention removed.
    pub idempotency_keys: u64,
}

impl From<crate::PruneReport> for PruneReport {
    fn from(p: crate::PruneReport) -> PruneReport {
        PruneReport {
            day_rows: p.day_rows,
            month_rows: p.month_rows,
            idempotency_keys: p.idempotency_keys,
        }
    }
}

/// One audited mutation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuditEvent {
    /// `evt_…`
    pub id: String,
    /// Position in the database's log, from 1, without gaps.
    pub seq: u64,
    /// When it happened.
    pub at: SystemTime,
    /// `user_…` or `system`.
    pub actor: String,
    /// The organization concerned, if any.
    pub organization_id: Option<String>,
    /// What happened (`member.role_changed`).
    pub action: String,
    /// The id acted on.
    pub target: String,
    /// Before/after values that changed, as JSON text (an object).
    pub details: String,
}

impl From<model::audit::AuditEvent> for AuditEvent {
    fn from(e: model::audit::AuditEvent) -> AuditEvent {
        AuditEvent {
            id: e.id,
            seq: e.seq,
            at: system_time(e.at),
            actor: e.actor,
            organization_id: e.organization_id,
            action: e.action,
            target: e.target,
            details: e.details.to_string(),
        }
    }
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CheckReport {
    /// Whether no violation was found.
    pub ok: bool,
    /// Every violation found; empty when the database is sound.
    pub problems: Vec<String>,
    /// Users checked.
    pub users: u64,
    /// Organizations checked.
    pub organizations: u64,
    /// Memberships checked.
    pub memberships: u64,
    /// Invitations checked.
    pub invitations: u64,
    /// Projects checked.
    pub projects: u64,
    /// Resources checked.
    pub resources: u64,
    /// Audit events checked.
    pub audit_events: u64,
}

impl From<crate::CheckReport> for CheckReport {
    fn from(c: crate::CheckReport) -> CheckReport {
        CheckReport {
            ok: c.is_ok(),
            problems: c.problems,
            users: c.users,
            organizations: c.organizations,
            memberships: c.memberships,
            invitations: c.invitations,
            projects: c.projects,
            resources: c.resources,
            audit_events: c.audit_events,
        }
    }
}

/// Rows of one table (`stats`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TableStats {
    /// The table's name.
    pub table: String,
    /// Its rows.
    pub rows: u64,
}

/// What `import_jsonl` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct ImportReport {
    /// Records read.
    pub records: u64,
    /// Transactions committed.
    pub transactions: u64,
}

impl From<model::transfer::ImportReport> for ImportReport {
    fn from(r: model::transfer::ImportReport) -> ImportReport {
        ImportReport {
            records: r.records,
            transactions: r.transactions,
        }
    }
}

//! The results UniFFI cannot derive from the model types: the concrete pages (UniFFI
//! records cannot be generic) and the maintenance reports of `Db`, whose Rust types live in
//! the storage and usage layers (`CheckReport` also gains `ok`, a method in Rust).
//! Everything else orgdb returns is a model type deriving `uniffi::Record` (see
//! `crate::model`) with the custom types of [`super::custom`].

use crate::model;
use crate::model::page::Pagination;

/// A concrete page record (UniFFI records cannot be generic) and its conversion from
/// `Page<T>`.
macro_rules! page_record {
    ($(#[$doc:meta])* $name:ident, $row:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
        pub struct $name {
            /// The rows.
            pub data: Vec<$row>,
            /// Paging figures.
            pub pagination: Pagination,
            /// Keyset cursor of the next page (the query's `cursor`); null on the last page.
            pub next_cursor: Option<String>,
        }

        impl From<model::page::Page<$row>> for $name {
            fn from(p: model::page::Page<$row>) -> $name {
                $name {
                    data: p.data,
                    pagination: p.pagination,
                    next_cursor: p.next_cursor,
                }
            }
        }
    };
}

page_record!(
    /// One page of members.
    MemberPage,
    model::membership::Member
);
page_record!(
    /// One page of invitations.
    InvitationPage,
    model::invitation::Invitation
);
page_record!(
    /// One page of the organizations list (`list_organizations`).
    OrganizationPage,
    model::org::Organization
);
page_record!(
    /// One page of the users list (`list_users`).
    UserPage,
    model::user::User
);

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

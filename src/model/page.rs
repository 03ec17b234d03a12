//! Paged results.

use serde::{Deserialize, Serialize};

/// Paging figures, seed 000's `pagination` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
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

impl Pagination {
    pub(crate) fn new(page: u32, per_page: u32, total: u64) -> Pagination {
        Pagination {
            page,
            per_page,
            total,
            total_pages: total.div_ceil(u64::from(per_page.max(1))),
        }
    }
}

/// One page of rows, with the figures and a cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page<T> {
    /// The rows.
    pub data: Vec<T>,
    /// Paging figures.
    pub pagination: Pagination,
    /// Opaque keyset cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of the system lists (`Db::list_organizations`, `Db::list_users`): all rows in
/// creation order, optionally only those a search finds, paged by offset or by cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct ListQuery {
    /// Page number, from 1 (default 1).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub page: Option<u32>,
    /// Rows per page, 1–100 (default 20).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub per_page: Option<u32>,
    /// Case-insensitive prefix: of an organization's slug, whole name or a later word of its
    /// name; of a user's email, whole name or a later word of their name. Blank: no search.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub search: Option<String>,
    /// Keyset cursor from a previous page's `next_cursor` (the last row's id).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub cursor: Option<String>,
}

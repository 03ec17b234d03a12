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

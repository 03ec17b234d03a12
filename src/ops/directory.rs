//! The system lists: every organization and every user, for `Actor::System` (admin tools,
//! the CLI), in creation order, optionally searched by prefix, paged by offset or cursor.

use crate::authz::Actor;
use crate::error::{Error, Result};
use crate::model::org::Organization;
use crate::model::page::{ListQuery, Page, Pagination};
use crate::model::user::User;
use crate::store::{Directory, Reads};
use crate::validate::Validator;

/// One page of a system list; `load` reads a row by id.
fn page<T>(
    tx: &dyn Reads,
    actor: &Actor,
    which: Directory,
    query: &ListQuery,
    load: impl Fn(&str) -> Result<Option<T>>,
) -> Result<Page<T>> {
    // The host's own lists: no user may read every organization or user.
    if !matches!(actor, Actor::System) {
        return Err(Error::forbidden());
    }
    let mut validator = Validator::new();
    let (page, per_page) = validator.paging(query.page, query.per_page);
    let prefix = validator.search("search", query.search.as_deref());
    let cursor = query.cursor.as_deref().map(str::trim);
    if cursor.is_some_and(|c| c.is_empty() || c.contains('\0')) {
        validator.fail("cursor", "Is not a cursor returned by a previous page");
    }
    validator.finish()?;
    let skip = if cursor.is_some() {
        0
    } else {
        u64::from(page - 1) * u64::from(per_page)
    };
    // One row more than the page tells whether a next page exists.
    let (total, mut ids) = tx.directory(
        which,
        prefix.as_deref(),
        cursor,
        skip,
        per_page as usize + 1,
    )?;
    let more = ids.len() > per_page as usize;
    ids.truncate(per_page as usize);
    let next_cursor = if more { ids.last().cloned() } else { None };
    let mut data = Vec::with_capacity(ids.len());
    for id in &ids {
        data.push(load(id)?.ok_or_else(|| Error::corrupted("a list names a missing row"))?);
    }
    Ok(Page {
        data,
        pagination: Pagination::new(page, per_page, total),
        next_cursor,
    })
}

pub(crate) fn organizations(
    tx: &dyn Reads,
    actor: &Actor,
    query: &ListQuery,
) -> Result<Page<Organization>> {
    page(tx, actor, Directory::Orgs, query, |id| {
        Ok(tx.org(id)?.map(|rec| rec.org))
    })
}

pub(crate) fn users(tx: &dyn Reads, actor: &Actor, query: &ListQuery) -> Result<Page<User>> {
    page(tx, actor, Directory::Users, query, |id| tx.user(id))
}

//! Input rules of SPEC section 6. A [`Validator`] collects every bad field of one call, so the
//! caller learns all of them at once, each named in `details`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Details, Error, Result};
use crate::model::role::Role;

pub(crate) const NAME_MAX: usize = 200;
pub(crate) const SLUG_MAX: usize = 64;
pub(crate) const TEXT_MAX: usize = 2_000;
pub(crate) const EXTERNAL_ID_MAX: usize = 255;
pub(crate) const EMAIL_MAX: usize = 254;
pub(crate) const METADATA_MAX_KEYS: usize = 64;
pub(crate) const METADATA_KEY_MAX: usize = 64;
pub(crate) const METADATA_VALUE_MAX: usize = 1_000;
pub(crate) const PER_PAGE_MAX: u32 = 100;
/// Longest prefix search accepted (characters, after normalizing).
pub(crate) const SEARCH_MAX: usize = 200;
pub(crate) const PER_PAGE_DEFAULT: u32 = 20;

/// Collects validation failures.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    details: Details,
    /// The message of a field's own error (`"Invalid role specified"`), used when that field
    /// is the only one that failed, so every call answers one rule with one message.
    messages: BTreeMap<String, &'static str>,
}

impl Validator {
    pub(crate) fn new() -> Validator {
        Validator::default()
    }

    pub(crate) fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.details
            .entry(field.to_owned())
            .or_insert_with(|| Value::from(reason.into()));
    }

    /// A role name (case-insensitive); a bad one fails `field` as every call that takes a
    /// role does.
    pub(crate) fn role(&mut self, field: &str, text: &str) -> Option<Role> {
        let parsed = text.parse::<Role>().ok();
        if parsed.is_none() {
            self.fail(field, Role::CHOICES);
            self.messages.insert(field.to_owned(), Role::INVALID);
        }
        parsed
    }

    /// A required name: trimmed, 1–200 characters, no control characters.
    pub(crate) fn name(&mut self, field: &str, value: &str) -> String {
        let trimmed = value.trim();
        let count = trimmed.chars().count();
        if count == 0 {
            self.fail(field, "Must not be empty");
        } else if count > NAME_MAX {
            self.fail(field, format!("Must be at most {NAME_MAX} characters"));
        } else if has_control(trimmed) {
            self.fail(field, "Must not contain control characters");
        }
        trimmed.to_owned()
    }

    /// Optional free text: trimmed; empty becomes `None`.
    pub(crate) fn text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let trimmed = value?.trim();
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.chars().count() > max {
            self.fail(field, format!("Must be at most {max} characters"));
        } else if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            self.fail(field, "Must not contain control characters");
        }
        Some(trimmed.to_owned())
    }

    /// An email, normalized (trimmed, lower-cased).
    pub(crate) fn email(&mut self, field: &str, value: &str) -> String {
        let email = normalize_email(value);
        if let Err(reason) = email_problem(&email) {
            self.fail(field, reason);
        }
        email
    }

    pub(crate) fn slug(&mut self, field: &str, value: &str) -> String {
        let slug = value.trim().to_owned();
        if let Some(reason) = slug_problem(&slug) {
            self.fail(field, reason);
        }
        slug
    }

    /// An identifier supplied by the host (external ids, idempotency keys).
    pub(crate) fn token_text(&mut self, field: &str, value: &str, max: usize) -> String {
        let count = value.chars().count();
        if count == 0 || count > max {
            self.fail(field, format!("Must be 1 to {max} characters"));
        } else if has_control(value) {
            self.fail(field, "Must not contain control characters");
        }
        value.to_owned()
    }

    pub(crate) fn metadata(&mut self, field: &str, map: &BTreeMap<String, String>) {
        if map.len() > METADATA_MAX_KEYS {
            self.fail(field, format!("Must have at most {METADATA_MAX_KEYS} keys"));
            return;
        }
        for (k, v) in map {
            let klen = k.chars().count();
            if klen == 0 || klen > METADATA_KEY_MAX || has_control(k) {
                self.fail(
                    field,
                    format!("Keys must be 1 to {METADATA_KEY_MAX} characters without control characters"),
                );
                return;
            }
            if v.chars().count() > METADATA_VALUE_MAX || has_control(v) {
                self.fail(
                    field,
                    format!("Values must be at most {METADATA_VALUE_MAX} characters without control characters"),
                );
                return;
            }
        }
    }

    /// A prefix search (member lists, system lists): normalized like the terms it is matched
    /// against, at most [`SEARCH_MAX`] characters, no control characters; `None` when not
    /// given or blank.
    pub(crate) fn search(&mut self, field: &str, text: Option<&str>) -> Option<String> {
        let search = crate::model::user::normalize_search(text?);
        if search.chars().count() > SEARCH_MAX {
            self.fail(field, format!("Must be at most {SEARCH_MAX} characters"));
        } else if has_control(&search) {
            self.fail(field, "Must not contain control characters");
        }
        (!search.is_empty()).then_some(search)
    }

    /// `page` ≥ 1 (default 1) and `per_page` 1–100 (default 20).
    pub(crate) fn paging(&mut self, page: Option<u32>, per_page: Option<u32>) -> (u32, u32) {
        let page = page.unwrap_or(1);
        if page == 0 {
            self.fail("page", "Must be at least 1");
        }
        let per_page = per_page.unwrap_or(PER_PAGE_DEFAULT);
        if per_page == 0 || per_page > PER_PAGE_MAX {
            self.fail("per_page", format!("Must be between 1 and {PER_PAGE_MAX}"));
        }
        (page, per_page)
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.details.is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = self.details.keys().map(String::as_str).collect();
        let message = match (fields.as_slice(), self.messages.len()) {
            ([only], 1) if self.messages.contains_key(*only) => self.messages[*only].to_owned(),
            _ => format!("Invalid {}", fields.join(", ")),
        };
        Err(Error::Validation {
            message,
            details: self.details,
        })
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Trims and lower-cases an email.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn email_problem(email: &str) -> std::result::Result<(), &'static str> {
    const BAD: &str = "Must be a valid email address";
    if email.is_empty() || email.len() > EMAIL_MAX {
        return Err(BAD);
    }
    let (local, domain) = email.rsplit_once('@').ok_or(BAD)?;
    let plausible_domain = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    let plausible_local = !local.is_empty()
        && !local.contains('@')
        && !local.chars().any(|c| c.is_whitespace() || c.is_control());
    if plausible_local && plausible_domain {
        Ok(())
    } else {
        Err(BAD)
    }
}

/// Why a slug is malformed, if it is.
pub(crate) fn slug_problem(slug: &str) -> Option<String> {
    if slug.is_empty() || slug.len() > SLUG_MAX {
        return Some(format!("Must be 1 to {SLUG_MAX} characters"));
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("Must contain only a-z, 0-9 and -".to_owned());
    }
    None
}

/// Derives a slug from a name: ASCII-folded, lower-case, runs of anything else become one `-`,
/// no leading or trailing `-`, at most 64 characters; `org` when nothing is left.
pub(crate) fn derive_slug(name: &str) -> String {
    let folded = deunicode::deunicode(name).to_lowercase();
    let mut slug = String::with_capacity(folded.len());
    for c in folded.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.truncate(SLUG_MAX);
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "org".to_owned()
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_folded_and_bounded() {
        assert_eq!(derive_slug("My Company"), "my-company");
        assert_eq!(derive_slug("  Ærøskøbing  Café!! "), "aeroskobing-cafe");
        assert_eq!(derive_slug("!!!"), "org");
        assert_eq!(derive_slug("日本"), "ri-ben");
        assert_eq!(derive_slug(&"a".repeat(100)).len(), 64);
        assert_eq!(
            derive_slug(&format!("{}-b", "a".repeat(63))),
            "a".repeat(63)
        );
    }

    #[test]
    fn emails() {
        assert_eq!(normalize_email("  Alice@Example.COM "), "alice@example.com");
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(email_problem(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "@b.co", "a@", "a@b", "a b@c.de", "a@b..c", "a@.b.c", "a@b.c.",
        ] {
            assert!(email_problem(bad).is_err(), "{bad}");
        }
    }
}

//! Users.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person who can belong to organizations. Emails are unique and normalized (trimmed,
/// lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
#[non_exhaustive]
pub struct User {
    /// `user_…`
    pub id: String,
    /// Normalized email, unique in the database.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the user was created.
    #[serde(with = "crate::model::time")]
    pub created_at: DateTime<Utc>,
    /// Set by `touch_user`; null until then.
    #[serde(with = "crate::model::time::option")]
    pub last_active: Option<DateTime<Utc>>,
}

/// Input of `create_user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct NewUser {
    /// Email; normalized before it is stored.
    pub email: String,
    /// Display name, 1–200 characters after trimming.
    pub name: String,
}

/// Input of `update_user`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct UserPatch {
    /// New email (must stay unique).
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub email: Option<String>,
    /// New display name.
    #[serde(default)]
    #[cfg_attr(feature = "ffi", uniffi(default))]
    pub name: Option<String>,
}

/// A search string as [`search_terms`] are matched against: lower-cased character by
/// character (Unicode, without context rules, so that a prefix of a word lower-cases to a
/// prefix of the lower-cased word), the final sigma `ς` folded to `σ` (`ΟΔΥΣ` and `οδυς`
/// both find "Οδυσσευς"), its whitespace trimmed and collapsed to single spaces.
pub(crate) fn normalize_search(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .flat_map(char::to_lowercase)
                .map(|c| if c == 'ς' { 'σ' } else { c })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a prefix search finds a user by: the email, the whole name, and each later word of
/// the name (so `love` finds "Ada Lovelace"), normalized like [`normalize_search`], without
/// duplicates, in a stable order.
pub(crate) fn search_terms(email: &str, name: &str) -> Vec<String> {
    let name = normalize_search(name);
    let mut terms = vec![normalize_search(email)];
    if !name.is_empty() {
        terms.push(name.clone());
    }
    terms.extend(name.split(' ').skip(1).map(str::to_owned));
    let mut seen = std::collections::BTreeSet::new();
    terms.retain(|t| !t.is_empty() && seen.insert(t.clone()));
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_cover_the_email_the_name_and_its_later_words() {
        assert_eq!(
            search_terms("ada@example.com", "  Ada   LOVELACE "),
            ["ada@example.com", "ada lovelace", "lovelace"]
        );
        assert_eq!(
            search_terms("x@y.io", "Émile Zola Zola"),
            ["x@y.io", "émile zola zola", "zola"]
        );
        assert_eq!(normalize_search("  Ada \t Lov "), "ada lov");
        // A prefix of a word is a prefix of the word, in every script: no final sigma.
        let odysseus = search_terms("o@x.io", "ΟΔΥΣΣΕΥΣ");
        for prefix in ["ΟΔΥ", "ΟΔΥΣ", "ΟΔΥΣΣ", "οδυσ", "ΟΔΥΣΣΕΥΣ", "οδυσσευς"]
        {
            let q = normalize_search(prefix);
            assert!(odysseus.iter().any(|t| t.starts_with(&q)), "{prefix}");
        }
        assert_eq!(normalize_search("   "), "");
    }
}

//! Counted indexes: positional access (skip the first N entries) into an ordered index
//! without walking it, and its size under a prefix without counting it.
//!
//! The entries of an index under one prefix (an organization's members in list order, or
//! those of one role; an organization's invitations, or those of one stored status) are split
//! into buckets of consecutive keys. `member_counts` (named after its first use; it holds the
//! buckets of every counted index) holds one row per bucket: key `[index tag][bucket start]`, value the number of index entries from
//! that start up to the next bucket's start. The first bucket of a prefix starts at the bare
//! prefix (which sorts before every entry under it), so every entry has a bucket; a prefix
//! with no entries has no bucket; no bucket is empty. A bucket that grows past
//! [`BUCKET_MAX`] splits in two at its middle entry.
//!
//! A non-first bucket that shrinks below [`BUCKET_MIN`] merges into the one before it when
//! both fit in one.
//!
//! Skipping N entries then reads about N / 256 bucket rows and at most [`BUCKET_MAX`] index
//! keys, instead of N index keys. Every write that adds or removes an entry of a counted
//! index goes through [`insert`] / [`remove`], in the same transaction.

use super::{codec, prefix_end, KeyReader, KvRead, KvWrite, Table};
use crate::error::{Error, Result};

/// Entries a bucket may hold before it splits.
pub(crate) const BUCKET_MAX: u64 = 512;

/// Entries per bucket when buckets are built in one pass (migration).
const BUCKET_FILL: u64 = 256;

/// A bucket that shrinks below this merges into the one before it when both fit in
/// [`BUCKET_MAX`], so removals cannot leave a long run of tiny buckets.
const BUCKET_MIN: u64 = 64;

/// The tables whose entries are counted, with the first byte of their bucket keys.
pub(crate) const COUNTED: [(Table, u8); 6] = [
    (Table::MembersByJoin, 0),
    (Table::MembersByRole, 1),
    (Table::InvitationsByOrg, 2),
    (Table::InvitationsByStatus, 3),
    (Table::DeactivatedByJoin, 4),
    (Table::DeactivatedByRole, 5),
];

fn tag(table: Table) -> Result<u8> {
    COUNTED
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, tag)| *tag)
        .ok_or_else(|| Error::storage(format!("{} is not a counted index", table.name())))
}

/// The bucket-table key of `index_key` (a bucket start) in counted index `table`.
fn bucket_key(tag: u8, index_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(index_key.len() + 1);
    k.push(tag);
    k.extend_from_slice(index_key);
    k
}

/// Length of the prefix an index key is counted under: the organization id (and its NUL) for
/// `members_by_join`, `deactivated_by_join` and `invitations_by_org`, plus the role or status
/// byte for `members_by_role`, `deactivated_by_role` and `invitations_by_status`.
pub(crate) fn prefix_len(table: Table, index_key: &[u8]) -> Option<usize> {
    let org_end = index_key.iter().position(|&b| b == 0)? + 1;
    match table {
        Table::MembersByRole | Table::DeactivatedByRole | Table::InvitationsByStatus
            if index_key.len() > org_end =>
        {
            Some(org_end + 1)
        }
        Table::MembersByRole | Table::DeactivatedByRole | Table::InvitationsByStatus => None,
        _ => Some(org_end),
    }
}

/// How many entries counted index `table` holds under `prefix` (one of its counted
/// prefixes): the sum of its bucket rows, about N / 256 of them.
pub(crate) fn count<R: KvRead + ?Sized>(tx: &R, table: Table, prefix: &[u8]) -> Result<u64> {
    let low = bucket_key(tag(table)?, prefix);
    let high = prefix_end(&low);
    let mut total = 0u64;
    tx.scan(
        Table::MemberCounts,
        &low,
        high.as_deref(),
        false,
        &mut |_, v| {
            total += codec::decode_u64(v)?;
            Ok(true)
        },
    )?;
    Ok(total)
}

/// The bucket holding `key` (under `prefix`): its bucket-table key and count.
fn bucket_of<R: KvRead + ?Sized>(
    tx: &R,
    tag: u8,
    prefix: &[u8],
    key: &[u8],
) -> Result<Option<(Vec<u8>, u64)>> {
    let low = bucket_key(tag, prefix);
    // The smallest key after `key`: the scan's exclusive end.
    let mut high = bucket_key(tag, key);
    high.push(0);
    bucket_row(tx, &low, Some(&high), true)
}

/// The first bucket row in `[low, high)` (the last one when `reverse`), with its count.
fn bucket_row<R: KvRead + ?Sized>(
    tx: &R,
    low: &[u8],
    high: Option<&[u8]>,
    reverse: bool,
) -> Result<Option<(Vec<u8>, u64)>> {
    let mut found = None;
    tx.scan(Table::MemberCounts, low, high, reverse, &mut |k, v| {
        found = Some((k.to_vec(), codec::decode_u64(v)?));
        Ok(false)
    })?;
    Ok(found)
}

/// Where the entry at position `skip` (0-based) of `table` under `prefix` lies: an index key
/// to start scanning from, and how many entries to skip from there (fewer than a bucket).
pub(crate) fn seek<R: KvRead + ?Sized>(
    tx: &R,
    table: Table,
    prefix: &[u8],
    skip: u64,
) -> Result<(Vec<u8>, u64)> {
    let low = bucket_key(tag(table)?, prefix);
    let high = prefix_end(&low);
    let mut passed = 0u64;
    let mut at = (prefix.to_vec(), skip);
    tx.scan(
        Table::MemberCounts,
        &low,
        high.as_deref(),
        false,
        &mut |k, v| {
            let n = codec::decode_u64(v)?;
            at = (k[1..].to_vec(), skip - passed);
            if passed + n > skip {
                return Ok(false);
            }
            passed += n;
            Ok(true)
        },
    )?;
    // Past the last entry, `at` names the last bucket: the scan from it finds too few.
    Ok(at)
}

/// Adds `key` (under `prefix`, with `value`) to counted index `table`: the entry and its
/// bucket's count. An entry already there only takes the new value.
pub(crate) fn insert<W: KvWrite + ?Sized>(
    tx: &mut W,
    table: Table,
    prefix: &[u8],
    key: &[u8],
    value: &[u8],
) -> Result<()> {
    let tag = tag(table)?;
    let known = tx.contains(table, key)?;
    tx.put(table, key, value)?;
    if known {
        return Ok(());
    }
    let Some((bucket, n)) = bucket_of(tx, tag, prefix, key)? else {
        return tx.put(
            Table::MemberCounts,
            &bucket_key(tag, prefix),
            &codec::encode_u64(1),
        );
    };
    let n = n + 1;
    if n <= BUCKET_MAX {
        return tx.put(Table::MemberCounts, &bucket, &codec::encode_u64(n));
    }
    // Split: the second half starts at the entry after the first `half`.
    let half = n / 2;
    let end = prefix_end(prefix);
    let mut seen = 0u64;
    let mut middle = None;
    tx.scan(table, &bucket[1..], end.as_deref(), false, &mut |k, _| {
        if seen == half {
            middle = Some(k.to_vec());
            return Ok(false);
        }
        seen += 1;
        Ok(true)
    })?;
    let middle = middle.ok_or_else(|| {
        Error::corrupted(format!(
            "{}: a bucket holds fewer entries than its count",
            table.name()
        ))
    })?;
    tx.put(Table::MemberCounts, &bucket, &codec::encode_u64(half))?;
    tx.put(
        Table::MemberCounts,
        &bucket_key(tag, &middle),
        &codec::encode_u64(n - half),
    )
}

/// Removes `key` (under `prefix`) from counted index `table`, and from its bucket's count.
pub(crate) fn remove<W: KvWrite + ?Sized>(
    tx: &mut W,
    table: Table,
    prefix: &[u8],
    key: &[u8],
) -> Result<()> {
    let tag = tag(table)?;
    if !tx.delete(table, key)? {
        return Ok(());
    }
    let (bucket, n) = bucket_of(tx, tag, prefix, key)?
        .ok_or_else(|| Error::corrupted(format!("{}: an entry has no bucket", table.name())))?;
    let first = bucket[1..] == *prefix;
    if n > 1 {
        let n = n - 1;
        if n < BUCKET_MIN && !first {
            // Merge into the bucket before, when both fit.
            let before = bucket_row(tx, &bucket_key(tag, prefix), Some(&bucket), true)?;
            if let Some((before, m)) = before.filter(|(_, m)| m + n <= BUCKET_MAX) {
                tx.delete(Table::MemberCounts, &bucket)?;
                return tx.put(Table::MemberCounts, &before, &codec::encode_u64(m + n));
            }
        }
        return tx.put(Table::MemberCounts, &bucket, &codec::encode_u64(n));
    }
    tx.delete(Table::MemberCounts, &bucket)?;
    if first {
        // The first bucket emptied: the next one, if any, becomes the first.
        let mut after = bucket.clone();
        after.push(0);
        let end = prefix_end(&bucket);
        if let Some((next, m)) = bucket_row(tx, &after, end.as_deref(), false)? {
            tx.delete(Table::MemberCounts, &next)?;
            tx.put(Table::MemberCounts, &bucket, &codec::encode_u64(m))?;
        }
    }
    Ok(())
}

/// Builds the buckets of counted indexes `tables` from their entries, [`BUCKET_FILL`] a
/// bucket (schema migrations). The bucket table must hold none of theirs.
pub(crate) fn rebuild<W: KvWrite + ?Sized>(tx: &mut W, tables: &[Table]) -> Result<()> {
    for &table in tables {
        let tag = tag(table)?;
        let mut buckets: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        tx.scan(table, &[], None, false, &mut |k, _| {
            // A damaged key is left out (`check()` reports it with the index); a migration
            // must not fail the open over it.
            let Some(len) = prefix_len(table, k) else {
                return Ok(true);
            };
            let prefix = &k[..len];
            match buckets.last_mut() {
                Some((_, n)) if current.as_deref() == Some(prefix) && *n < BUCKET_FILL => {
                    *n += 1;
                }
                Some(_) if current.as_deref() == Some(prefix) => {
                    buckets.push((bucket_key(tag, k), 1));
                }
                _ => {
                    current = Some(prefix.to_vec());
                    buckets.push((bucket_key(tag, prefix), 1));
                }
            }
            Ok(true)
        })?;
        for (key, n) in buckets {
            tx.put(Table::MemberCounts, &key, &codec::encode_u64(n))?;
        }
    }
    Ok(())
}

/// What `check()` finds wrong with the buckets of counted index `table`, given its entries
/// in key order and the bucket table's rows.
pub(crate) fn verify<'a>(
    table: Table,
    entries: impl Iterator<Item = &'a Vec<u8>>,
    buckets: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let tag = tag(table)?;
    let mut tally: std::collections::BTreeMap<&[u8], u64> = std::collections::BTreeMap::new();
    for key in entries {
        let Some(len) = prefix_len(table, key) else {
            continue; // reported with the index itself
        };
        let own = bucket_key(tag, key);
        let first = bucket_key(tag, &key[..len]);
        match buckets.range(first.clone()..=own).next_back() {
            Some((bucket, _)) if buckets.contains_key(&first) => {
                *tally.entry(bucket.as_slice()).or_default() += 1;
            }
            _ => problems.push(format!(
                "member_counts: no bucket for an entry of {}",
                table.name()
            )),
        }
    }
    for (bucket, value) in buckets.iter().filter(|(k, _)| k.first() == Some(&tag)) {
        let stored = codec::decode_u64(value).ok();
        let counted = tally.get(bucket.as_slice()).copied().unwrap_or(0);
        if stored != Some(counted) || counted == 0 {
            problems.push(format!(
                "member_counts: a bucket of {} counts {stored:?}, holds {counted}",
                table.name()
            ));
        }
    }
    Ok(())
}

/// The id that follows `prefix_len` bytes of an index key.
pub(crate) fn entry_id(table: Table, key: &[u8], prefix_len: usize) -> Result<String> {
    KeyReader::new(&key[prefix_len..])
        .str()
        .map(str::to_owned)
        .ok_or_else(|| Error::corrupted(format!("bad key in {}", table.name())))
}

/// Ids `skip..skip + limit` of counted index `table` under `prefix`, seeking past the skipped
/// ones through its buckets.
pub(crate) fn counted_ids<R: KvRead + ?Sized>(
    tx: &R,
    table: Table,
    prefix: &[u8],
    skip: u64,
    limit: usize,
) -> Result<Vec<String>> {
    let (start, skip) = if skip > 0 {
        seek(tx, table, prefix, skip)?
    } else {
        (prefix.to_vec(), 0)
    };
    let end = prefix_end(prefix);
    let mut page = Paging::new(skip, limit);
    if limit == 0 {
        return Ok(page.out);
    }
    tx.scan(table, &start, end.as_deref(), false, &mut |k, _| {
        Ok(page.offer(entry_id(table, k, prefix.len())?))
    })?;
    Ok(page.out)
}

/// An offset page gathered from a stream: skips `skip` items, keeps up to `limit`.
pub(crate) struct Paging {
    skip: u64,
    limit: usize,
    pub(crate) out: Vec<String>,
}

impl Paging {
    pub(crate) fn new(skip: u64, limit: usize) -> Paging {
        Paging {
            skip,
            limit,
            out: Vec::with_capacity(limit.min(128)),
        }
    }

    /// Takes the next item; false once the page is full.
    pub(crate) fn offer(&mut self, id: String) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.out.len() < self.limit {
            self.out.push(id);
        }
        self.out.len() < self.limit
    }
}

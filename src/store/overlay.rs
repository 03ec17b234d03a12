//! The write overlay: journaled writes kept in memory, in front of the file, until a checkpoint
//! writes them into it (ARCHITECTURE.md, "The write overlay").
//!
//! A journaled write transaction is durable through its journal record; writing its changes
//! into redb's trees right away costs more than the rest of the call (an accept: three quarters
//! of its CPU in B-tree inserts and redb's commit). So its changes go into a [`Generation`]
//! instead, where every later transaction reads them, and a durable checkpoint writes the
//! generation's latest values into the file in one commit and starts an empty one.
//!
//! Readers never wait for writers: each change is kept as a version numbered by the
//! generation's commit counter, and a reader sees the versions up to the number it took when it
//! began (with the file as of the same moment or later: a version the file holds too reads
//! the same). Writers are one at a time (the store's writer lock), as redb's are.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::journal::Change;
use super::tables::Table;
use super::{read_found, KvRead, KvWrite, ReadValue, Visit, Writes};
use crate::error::{Error, Result};

/// A key's versions, oldest first: (commit number, value or `None` for deleted).
type Versions = Vec<(u64, Option<Vec<u8>>)>;

/// One table's changed keys.
type TableVersions = BTreeMap<Vec<u8>, Versions>;

/// The meta value naming the newest generation the file holds (written by every commit that
/// writes generations into it): a transaction skips the generations its snapshot holds.
pub(crate) const META_OVERLAY_THROUGH: &str = "overlay_through";

/// The journaled writes since the last checkpoint.
pub(crate) struct Generation {
    /// Numbers the store's generations in order (`META_OVERLAY_THROUGH`).
    id: u64,
    tables: RwLock<Vec<TableVersions>>,
    /// The last commit whose versions are all in `tables` (0: none).
    published: AtomicU64,
    /// Tables a transaction made sure exist (`touch`), for the checkpoint to create.
    touched: RwLock<Vec<bool>>,
}

/// The value of a key's newest version as of commit `at` (`None`: no version then).
fn visible(versions: &Versions, at: u64) -> Option<&Option<Vec<u8>>> {
    versions
        .iter()
        .rev()
        .find(|(n, _)| *n <= at)
        .map(|(_, v)| v)
}

/// Writes `value` at `key` into `tx` (`None`: deletes it).
fn write_value(tx: &mut dyn KvWrite, table: Table, key: &[u8], value: Option<&[u8]>) -> Result<()> {
    match value {
        Some(value) => tx.put(table, key, value),
        None => tx.delete(table, key).map(|_| ()),
    }
}

/// Adds the first [`CHUNK`] entries of `range` in the scan's order to `out`, over what it
/// holds.
fn take_first<'m>(
    range: impl DoubleEndedIterator<Item = (&'m Vec<u8>, &'m Option<Vec<u8>>)>,
    reverse: bool,
    out: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) {
    let mut take = |(k, v): (&Vec<u8>, &Option<Vec<u8>>)| {
        out.insert(k.clone(), v.clone());
    };
    if reverse {
        range.rev().take(CHUNK).for_each(&mut take);
    } else {
        range.take(CHUNK).for_each(&mut take);
    }
}

/// One transaction's own changes, before they are published.
#[derive(Default)]
pub(crate) struct Local {
    tables: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    touched: Vec<Table>,
}

impl Local {
    fn table(&self, table: Table) -> Option<&BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
        self.tables.get(table as usize)
    }

    fn table_mut(&mut self, table: Table) -> &mut BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        if self.tables.is_empty() {
            self.tables = vec![BTreeMap::new(); Table::ALL.len()];
        }
        &mut self.tables[table as usize]
    }

    /// Writes these changes into `tx` (a durable commit's, after the generation's).
    pub(crate) fn write_into(self, tx: &mut dyn KvWrite) -> Result<()> {
        for table in self.touched {
            tx.touch(table)?;
        }
        for (i, changes) in self.tables.into_iter().enumerate() {
            for (key, value) in changes {
                write_value(tx, Table::ALL[i], &key, value.as_deref())?;
            }
        }
        Ok(())
    }
}

impl Generation {
    /// An empty generation numbered `id`.
    pub(crate) fn new(id: u64) -> Generation {
        Generation {
            id,
            tables: RwLock::new(vec![BTreeMap::new(); Table::ALL.len()]),
            published: AtomicU64::new(0),
            touched: RwLock::new(vec![false; Table::ALL.len()]),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<TableVersions>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit number a reader starting now reads at.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Whether no change waits for a checkpoint.
    pub(crate) fn is_empty(&self) -> bool {
        self.published() == 0
    }

    /// Publishes `local` as the next commit. Only the writer (under the store's writer lock)
    /// calls this, so commit numbers follow one another.
    pub(crate) fn publish(&self, local: Local) {
        let at = self.published() + 1;
        {
            let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
            for (i, changes) in local.tables.into_iter().enumerate() {
                for (key, value) in changes {
                    tables[i].entry(key).or_default().push((at, value));
                }
            }
        }
        if !local.touched.is_empty() {
            let mut touched = self.touched.write().unwrap_or_else(|p| p.into_inner());
            for t in local.touched {
                touched[t as usize] = true;
            }
        }
        self.published.store(at, Ordering::Release);
    }

    /// Writes every changed key's latest value, and makes sure every touched table exists,
    /// in `tx` (a checkpoint's, under the writer lock: nothing is published meanwhile), and
    /// names the generation in the file's mark (`META_OVERLAY_THROUGH`).
    pub(crate) fn write_into(&self, tx: &mut dyn KvWrite) -> Result<()> {
        let touched = self
            .touched
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for table in Table::ALL {
            if touched[table as usize] {
                tx.touch(table)?;
            }
        }
        let tables = self.read();
        for table in Table::ALL {
            for (key, versions) in &tables[table as usize] {
                if let Some((_, value)) = versions.last() {
                    write_value(tx, table, key, value.as_deref())?;
                }
            }
        }
        tx.set_meta_u64(META_OVERLAY_THROUGH, self.id)
    }

    /// Runs `read` on the value of `key` as of commit `at` (see [`KvRead::get_with`]):
    /// `None` when the generation has no version of it then (read the file).
    fn get_with(
        &self,
        table: Table,
        key: &[u8],
        at: u64,
        read: ReadValue<'_>,
    ) -> Option<Result<bool>> {
        let tables = self.read();
        let value = visible(tables[table as usize].get(key)?, at)?;
        Some(read_found(value.as_deref(), read))
    }

    /// Adds the first [`CHUNK`] keys within `bounds` with a version as of commit `at`, in
    /// the scan's order, to `out`.
    fn first_into(
        &self,
        span: &Span<'_>,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
        at: u64,
        out: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) {
        if at == 0 {
            return;
        }
        let tables = self.read();
        let range = tables[span.table as usize]
            .range::<[u8], _>(bounds)
            .filter_map(|(k, vs)| visible(vs, at).map(|v| (k, v)));
        take_first(range, span.reverse, out);
    }
}

/// The generations a transaction reads: the current one (`top`), and the one before while a
/// checkpoint writes it into the file (`below`, no longer changing).
#[derive(Clone)]
pub(crate) struct Stack {
    pub(crate) top: Arc<Generation>,
    pub(crate) below: Option<Arc<Generation>>,
}

impl Stack {
    /// One empty generation numbered `id`.
    pub(crate) fn new(id: u64) -> Stack {
        Stack {
            top: Arc::new(Generation::new(id)),
            below: None,
        }
    }

    /// Whether nothing waits for a checkpoint.
    pub(crate) fn is_empty(&self) -> bool {
        self.top.is_empty() && self.below.is_none()
    }

    /// Writes both generations' changes into `tx` (the one below first), the mark naming
    /// the top one.
    pub(crate) fn write_into(&self, tx: &mut dyn KvWrite) -> Result<()> {
        for generation in self.below.iter().chain(std::iter::once(&self.top)) {
            generation.write_into(tx)?;
        }
        Ok(())
    }

    /// The generations a snapshot holding those up to `through` lacks, oldest first, each
    /// with the commit it is read at (`top` at `at`).
    fn layers(&self, at: u64, through: u64) -> impl Iterator<Item = (&Generation, u64)> {
        self.below
            .as_deref()
            .map(|b| (b, b.published()))
            .into_iter()
            .chain(std::iter::once((&*self.top, at)))
            .filter(move |(g, _)| g.id > through)
    }
}

/// Up to [`CHUNK`] changed keys of `span` after `after` (the last key of the chunk before),
/// the generations' as of their commits with `local`'s changes over them, in the scan's order.
fn chunk(span: &Span<'_>, after: Option<&[u8]>, view: &View<'_>, local: Option<&Local>) -> Chunk {
    if span.end.is_some_and(|end| end < span.start) {
        // An empty range (the maps' `range` would panic on it; redb's is empty).
        return Chunk {
            rows: Default::default(),
            more: false,
        };
    }
    let bounds = span.bounds(after);
    // The first `CHUNK` keys of each source, newer over older: the first `CHUNK` of their
    // union are among them.
    let mut out: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for (generation, at) in view.stack.layers(view.at, view.through) {
        generation.first_into(span, bounds, at, &mut out);
    }
    if let Some(changes) = local.and_then(|l| l.table(span.table)) {
        take_first(changes.range::<[u8], _>(bounds), span.reverse, &mut out);
    }
    let mut rows: Vec<_> = out.into_iter().collect();
    if span.reverse {
        rows.reverse();
    }
    let more = rows.len() >= CHUNK;
    rows.truncate(CHUNK);
    Chunk {
        rows: rows.into(),
        more,
    }
}

/// How many changed keys a scan takes from the overlay at a time: a scan that stops early
/// (a page) copies few, and none is copied under the lock while the scan's visitor runs.
#[cfg(not(test))]
const CHUNK: usize = 64;
/// Small in tests, so their scans cross chunks.
#[cfg(test)]
const CHUNK: usize = 3;

/// What one scan covers.
struct Span<'s> {
    table: Table,
    start: &'s [u8],
    end: Option<&'s [u8]>,
    reverse: bool,
}

impl<'s> Span<'s> {
    /// The bounds after `after` (exclusive) in the scan's direction.
    fn bounds<'b>(&'b self, after: Option<&'b [u8]>) -> (Bound<&'b [u8]>, Bound<&'b [u8]>) {
        let high = self.end.map_or(Bound::Unbounded, Bound::Excluded);
        match (after, self.reverse) {
            (None, _) => (Bound::Included(self.start), high),
            (Some(a), false) => (Bound::Excluded(a), high),
            (Some(a), true) => (Bound::Included(self.start), Bound::Excluded(a)),
        }
    }
}

/// Changed keys in a scan's order, and whether more may follow.
struct Chunk {
    rows: std::collections::VecDeque<(Vec<u8>, Option<Vec<u8>>)>,
    more: bool,
}

/// Which generations a transaction reads, and as of which commit.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) stack: &'a Stack,
    /// The commit of `stack.top` read at (read after the file's snapshot was taken).
    pub(crate) at: u64,
    /// The newest generation the file's snapshot holds (`META_OVERLAY_THROUGH`): those up to
    /// it are skipped (ARCHITECTURE.md, "The write overlay").
    pub(crate) through: u64,
}

/// A reader or a writer's view: the file (`base`), the generation as of commit `at`, and a
/// writer's own changes.
pub(crate) struct Layered<'a, B: KvRead> {
    base: &'a B,
    view: View<'a>,
    /// A writer's changes; `None` for a reader.
    local: Option<RefCell<Local>>,
    /// A writer's changes in order, for its journal record.
    log: Vec<(Table, Vec<u8>, Change)>,
}

impl<'a, B: KvRead> Layered<'a, B> {
    /// A reader.
    pub(crate) fn reader(base: &'a B, view: View<'a>) -> Self {
        Layered {
            base,
            view,
            local: None,
            log: Vec::new(),
        }
    }

    /// A writer over everything published (the caller holds the writer lock).
    pub(crate) fn writer(base: &'a B, stack: &'a Stack, through: u64) -> Self {
        Layered {
            base,
            view: View {
                stack,
                at: stack.top.published(),
                through,
            },
            local: Some(RefCell::new(Local::default())),
            log: Vec::new(),
        }
    }

    /// A writer's changes: the set to publish and the log for its record.
    pub(crate) fn into_changes(self) -> (Local, Vec<(Table, Vec<u8>, Change)>) {
        (
            self.local.map(RefCell::into_inner).unwrap_or_default(),
            self.log,
        )
    }

    fn local_mut(&mut self) -> Result<&mut Local> {
        self.local
            .as_mut()
            .map(RefCell::get_mut)
            .ok_or_else(|| Error::storage("a read transaction cannot write"))
    }
}

impl<B: KvRead> KvRead for Layered<'_, B> {
    fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool> {
        if let Some(local) = &self.local {
            if let Some(value) = local.borrow().table(table).and_then(|t| t.get(key)) {
                return read_found(value.as_deref(), read);
            }
        }
        let (stack, at, through) = (self.view.stack, self.view.at, self.view.through);
        if stack.top.id > through && at > 0 {
            if let Some(found) = stack.top.get_with(table, key, at, read) {
                return found;
            }
        }
        if let Some(below) = stack.below.as_deref().filter(|b| b.id > through) {
            if let Some(found) = below.get_with(table, key, below.published(), read) {
                return found;
            }
        }
        self.base.get_with(table, key, read)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        let span = Span {
            table,
            start,
            end,
            reverse,
        };
        let fetch = |after: Option<&[u8]>| {
            let local = self.local.as_ref().map(|l| l.borrow());
            chunk(&span, after, &self.view, local.as_deref())
        };
        let mut over = fetch(None);
        if over.rows.is_empty() {
            return self.base.scan(table, start, end, reverse, visit);
        }
        // Before `b` in the scan's order.
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        // The last changed key taken: the next chunk starts after it.
        let mut last: Option<Vec<u8>> = None;
        // The next changed key, without taking it (a chunk is refilled once all of it was
        // taken).
        let next = |over: &mut Chunk, last: &Option<Vec<u8>>| {
            if over.rows.is_empty() && over.more {
                *over = fetch(last.as_deref());
            }
            over.rows.front().cloned()
        };
        let mut stopped = false;
        self.base.scan(table, start, end, reverse, &mut |k, v| {
            while let Some((key, value)) = next(&mut over, &last) {
                if !before(&key, k) {
                    break;
                }
                over.rows.pop_front();
                if let Some(value) = &value {
                    if !visit(&key, value)? {
                        stopped = true;
                        return Ok(false);
                    }
                }
                last = Some(key);
            }
            if let Some((key, value)) = next(&mut over, &last) {
                if key.as_slice() == k {
                    over.rows.pop_front();
                    last = Some(key);
                    return match value {
                        Some(value) => {
                            let go_on = visit(k, &value)?;
                            stopped = !go_on;
                            Ok(go_on)
                        }
                        None => Ok(true),
                    };
                }
            }
            let go_on = visit(k, v)?;
            stopped = !go_on;
            Ok(go_on)
        })?;
        while !stopped {
            let Some((key, value)) = next(&mut over, &last) else {
                break;
            };
            over.rows.pop_front();
            if let Some(value) = &value {
                stopped = !visit(&key, value)?;
            }
            last = Some(key);
        }
        Ok(())
    }

    fn len(&self, table: Table) -> Result<u64> {
        let mut len = self.base.len(table)? as i64;
        let span = Span {
            table,
            start: &[],
            end: None,
            reverse: false,
        };
        let local = self.local.as_ref().map(|l| l.borrow());
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = chunk(&span, after.as_deref(), &self.view, local.as_deref());
            for (key, value) in &chunk.rows {
                let in_base = self.base.contains(table, key)?;
                len += i64::from(value.is_some()) - i64::from(in_base);
            }
            if !chunk.more {
                break;
            }
            after = chunk.rows.back().map(|(key, _)| key.clone());
        }
        Ok(len.max(0) as u64)
    }
}

impl<B: KvRead> KvWrite for Layered<'_, B> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.local_mut()?
            .table_mut(table)
            .insert(key.to_vec(), Some(value.to_vec()));
        self.log
            .push((table, key.to_vec(), Change::Put(value.to_vec())));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        if !self.contains(table, key)? {
            return Ok(false);
        }
        self.local_mut()?
            .table_mut(table)
            .insert(key.to_vec(), None);
        self.log.push((table, key.to_vec(), Change::Delete));
        Ok(true)
    }

    fn touch(&mut self, table: Table) -> Result<()> {
        self.local_mut()?.touched.push(table);
        self.log.push((table, Vec::new(), Change::Touch));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The overlay against a reference: every view (readers taken at any moment, a writer's
    //! own view while it writes) reads what a plain ordered map holding the same commits
    //! reads, through checkpoints, aborted writers and generations replaced under readers.

    use super::*;
    use crate::store::Reads;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A store in memory: one ordered map per table (what the file holds).
    #[derive(Clone, Default, Debug, PartialEq)]
    struct Map(BTreeMap<(usize, Vec<u8>), Vec<u8>>);

    impl KvRead for Map {
        fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool> {
            read_found(
                self.0
                    .get(&(table as usize, key.to_vec()))
                    .map(Vec::as_slice),
                read,
            )
        }

        fn scan(
            &self,
            table: Table,
            start: &[u8],
            end: Option<&[u8]>,
            reverse: bool,
            visit: Visit<'_>,
        ) -> Result<()> {
            let t = table as usize;
            let mut rows: Vec<_> = self
                .0
                .iter()
                .filter(|((tt, k), _)| {
                    *tt == t && k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e)
                })
                .collect();
            if reverse {
                rows.reverse();
            }
            for ((_, k), v) in rows {
                if !visit(k, v)? {
                    break;
                }
            }
            Ok(())
        }

        fn len(&self, table: Table) -> Result<u64> {
            Ok(self.0.keys().filter(|(t, _)| *t == table as usize).count() as u64)
        }
    }

    impl KvWrite for Map {
        fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
            self.0
                .insert((table as usize, key.to_vec()), value.to_vec());
            Ok(())
        }

        fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
            Ok(self.0.remove(&(table as usize, key.to_vec())).is_some())
        }

        fn touch(&mut self, _table: Table) -> Result<()> {
            Ok(())
        }
    }

    const TABLES: [Table; 2] = [Table::Users, Table::Orgs];

    #[derive(Clone, Debug)]
    enum Op {
        Put(usize, u8, u8),
        Delete(usize, u8),
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A writer's changes, then publish (`true`) or abandon them.
        Write(Vec<Op>, bool),
        /// A durable commit: every generation into the file, then these changes of its own,
        /// and a new generation (writers wait).
        Durable(Vec<Op>),
        /// A checkpoint that lets writers go on begins: the generation moves below a new
        /// one.
        FlushBegin,
        /// It ends: the generation below is in the file, and drops out.
        FlushEnd,
        /// A reader begins (kept for the end, with what it must read).
        Read,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..2usize, 0..12u8, any::<u8>()).prop_map(|(t, k, v)| Op::Put(t, k, v)),
            (0..2usize, 0..12u8).prop_map(|(t, k)| Op::Delete(t, k)),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (prop::collection::vec(op(), 0..10), any::<bool>())
                .prop_map(|(ops, publish)| Step::Write(ops, publish)),
            1 => prop::collection::vec(op(), 0..4).prop_map(Step::Durable),
            1 => Just(Step::FlushBegin),
            1 => Just(Step::FlushEnd),
            3 => Just(Step::Read),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        vec![b'k', k]
    }

    /// Everything `view` reads of the test's tables, compared with `model`: gets, scans
    /// both ways from each start with and without an end, stopping early, and lengths.
    fn same(view: &dyn KvRead, model: &Map) -> std::result::Result<(), TestCaseError> {
        for table in TABLES {
            prop_assert_eq!(view.len(table).unwrap(), model.len(table).unwrap());
            for k in 0..13u8 {
                prop_assert_eq!(
                    view.get(table, &key(k)).unwrap(),
                    model.get(table, &key(k)).unwrap()
                );
            }
            for (start, end) in [(vec![], None), (key(3), Some(key(9))), (key(5), None)] {
                for reverse in [false, true] {
                    for limit in [1usize, 3, usize::MAX] {
                        let collect = |kv: &dyn KvRead| {
                            let mut out = Vec::new();
                            kv.scan(table, &start, end.as_deref(), reverse, &mut |k, v| {
                                out.push((k.to_vec(), v.to_vec()));
                                Ok(out.len() < limit)
                            })
                            .unwrap();
                            out
                        };
                        prop_assert_eq!(collect(view), collect(model));
                    }
                }
            }
        }
        Ok(())
    }

    /// Everything a view holds of the test's tables.
    fn digest(view: &dyn KvRead) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, table) in TABLES.into_iter().enumerate() {
            view.scan(table, &[], None, false, &mut |k, v| {
                out.push((i, k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn views_read_what_a_plain_map_holds(steps in prop::collection::vec(step(), 1..60)) {
            // The store: the file (its mark names the newest generation it holds), the
            // generations, and the next generation's number.
            let mut file = Map::default();
            let mut through = 0u64;
            let mut stack = Stack::new(1);
            let mut next_id = 2u64;
            let mut fresh = || {
                next_id += 1;
                Arc::new(Generation::new(next_id - 1))
            };
            let mut model = Map::default();
            fn view(stack: &Stack, through: u64) -> View<'_> {
                View {
                    stack,
                    at: stack.top.published(),
                    through,
                }
            }
            // Readers: the file as of their start, their view, and the model then.
            let mut readers = Vec::new();
            // Every state a transaction could read, in commit order, and transactions that
            // took the generations at some step and take their snapshot later: (generations,
            // index of the state then).
            let mut history = vec![model.clone()];
            let mut pending: Vec<(Stack, usize)> = Vec::new();
            for step in steps {
                // A transaction that took the generations just before this step and the
                // file's snapshot just after it.
                let before = stack.clone();
                pending.push((stack.clone(), history.len() - 1));
                let through_before = through;
                match step {
                    Step::Write(ops, publish) => {
                        let mut writer = Layered::writer(&file, &stack, through);
                        let mut expect = model.clone();
                        for op in ops {
                            match op {
                                Op::Put(t, k, v) => {
                                    writer.put(TABLES[t], &key(k), &[v]).unwrap();
                                    expect.put(TABLES[t], &key(k), &[v]).unwrap();
                                }
                                Op::Delete(t, k) => {
                                    prop_assert_eq!(
                                        writer.delete(TABLES[t], &key(k)).unwrap(),
                                        expect.delete(TABLES[t], &key(k)).unwrap()
                                    );
                                }
                            }
                        }
                        same(&writer, &expect)?;
                        let (local, _log) = writer.into_changes();
                        if publish {
                            stack.top.publish(local);
                            model = expect;
                        }
                    }
                    Step::Durable(ops) => {
                        if !stack.is_empty() {
                            stack.write_into(&mut file).unwrap();
                        }
                        prop_assert_eq!(digest(&file), digest(&model));
                        for op in ops {
                            for map in [&mut file, &mut model] {
                                match op {
                                    Op::Put(t, k, v) => map.put(TABLES[t], &key(k), &[v]).unwrap(),
                                    Op::Delete(t, k) => {
                                        map.delete(TABLES[t], &key(k)).unwrap();
                                    }
                                }
                            }
                        }
                        stack = Stack {
                            top: fresh(),
                            below: None,
                        };
                    }
                    Step::FlushBegin if stack.below.is_none() => {
                        let old = std::mem::replace(&mut stack.top, fresh());
                        stack.below = Some(old);
                    }
                    Step::FlushEnd => {
                        if let Some(below) = stack.below.take() {
                            below.write_into(&mut file).unwrap();
                        }
                    }
                    Step::FlushBegin => {}
                    Step::Read => {
                        readers.push((file.clone(), stack.clone(), stack.top.published(), through, model.clone()));
                    }
                }
                // The generations the file holds, as the file names them.
                through = file.meta_u64(META_OVERLAY_THROUGH).unwrap().unwrap_or(0);
                same(&Layered::reader(&file, view(&before, through)), &model)?;
                same(&Layered::reader(&file, view(&stack, through)), &model)?;
                // The file's mark never goes back, and no generation a transaction can take
                // now is one the file holds.
                prop_assert!(through >= through_before);
                prop_assert!(stack.top.id > through);
                prop_assert!(stack.below.as_ref().is_none_or(|b| b.id > through));
                if history.last() != Some(&model) {
                    history.push(model.clone());
                }
                // Transactions that took their generations steps ago and their snapshot
                // now (`at` read now too) read one of the states in between.
                for (taken, from) in &pending {
                    let read = digest(&Layered::reader(&file, view(taken, through)));
                    prop_assert!(
                        history[*from..].iter().any(|m| digest(m) == read),
                        "a view taken at state {} read none of the states since", from
                    );
                }
                if pending.len() > 6 {
                    pending.remove(0);
                }
            }
            for (file, stack, at, through, model) in &readers {
                let view = View { stack, at: *at, through: *through };
                same(&Layered::reader(file, view), model)?;
            }
        }
    }

    /// As redb does: a range whose end lies before its start is empty (`BTreeMap::range`
    /// would panic on it).
    #[test]
    fn a_scan_ending_before_it_starts_is_empty() {
        let mut file = Map::default();
        file.put(Table::Users, &key(4), b"f").unwrap();
        let stack = Stack::new(1);
        let mut local = Local::default();
        local
            .table_mut(Table::Users)
            .insert(key(5), Some(b"o".to_vec()));
        stack.top.publish(local);
        let view = View {
            stack: &stack,
            at: stack.top.published(),
            through: 0,
        };
        let reader = Layered::reader(&file, view);
        for reverse in [false, true] {
            let mut seen = 0;
            reader
                .scan(
                    Table::Users,
                    &key(9),
                    Some(&key(2)),
                    reverse,
                    &mut |_, _| {
                        seen += 1;
                        Ok(true)
                    },
                )
                .unwrap();
            assert_eq!(seen, 0);
        }
        assert_eq!(reader.len(Table::Users).unwrap(), 2);
    }

    #[test]
    fn a_reader_cannot_write() {
        let file = Map::default();
        let stack = Stack::new(1);
        let mut reader = Layered::reader(
            &file,
            View {
                stack: &stack,
                at: 0,
                through: 0,
            },
        );
        assert!(reader.put(Table::Users, b"k", b"v").is_err());
        assert!(reader.touch(Table::Users).is_err());
    }
}

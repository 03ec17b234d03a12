//! What a read of a period total on a shared backend adds from memory: each leased
//! organization's usage admitted and not yet stored, posted where readers find it without the
//! leases' lock (which a sync holds through a transaction).
//!
//! A read adds two figures taken at different moments: the stored total, from its snapshot,
//! and the unstored usage, from memory. A sync that commits in between moves usage from one to
//! the other, and the read would miss it (snapshot before the commit, memory after) or count it
//! twice. So:
//! - A sync that stores usage marks the organization `storing` before its transaction; after
//!   it, in one step, it clears the mark, raises the board's epoch, marks the organization with
//!   it (`moved`) and posts the unstored usage left.
//! - A read takes the epoch before its transaction ([`LeaseView`]), and when it adds the
//!   unstored usage, checks that no sync of the organization is storing nor stored since: a
//!   sync whose transaction overlapped the read in any way. If one did, the read runs again on
//!   a fresh snapshot ([`Reads::run_again`](crate::store::Reads::run_again)); if none did, the
//!   snapshot holds exactly what syncs moved out of the unstored figure.
//! - So that it cannot be overtaken for ever, a read that had to run again registers as
//!   waiting: a sync of that organization that has not begun waits for it (at most
//!   [`READER_WAIT`]) before its transaction. Only a sync already under way can move the
//!   organization again; the run after that one finds it still.
//!
//! Lock order: the leases' lock, then a connection, then the board's lock (held for a few
//! instructions, never across I/O). A reader holds a connection and takes only the board's lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::store::Span;

use super::lock;

/// The longest a sync waits for a reader that is running again (one read's round trip is
/// about a millisecond): a safety net, short because the waiting sync holds the leases' lock
/// (a reader lets go as soon as its read succeeds, and when its call ends whatever happened).
const READER_WAIT: Duration = Duration::from_millis(100);

/// One organization as readers see it.
#[derive(Debug, Default)]
struct Posted {
    /// The period its lease admits into (`None`: no lease now).
    span: Option<Span>,
    /// Admitted and not yet stored (the lease's own counter, updated by admissions).
    used: Arc<AtomicU64>,
    /// The epoch of the last sync that stored its usage.
    moved: u64,
    /// A sync storing its usage is under way (its commit may be visible any moment).
    storing: bool,
    /// Readers running again after a move, whom syncs of it wait for.
    readers: usize,
}

#[derive(Debug, Default)]
struct Posts {
    /// Raised by every sync that stored usage.
    epoch: u64,
    orgs: HashMap<String, Posted>,
}

/// The unstored usage of one database handle's leases, for readers.
#[derive(Debug, Default)]
pub(crate) struct Board {
    posts: Mutex<Posts>,
    readers_gone: Condvar,
}

impl Board {
    /// The epoch now.
    pub(crate) fn epoch(&self) -> u64 {
        lock(&self.posts).epoch
    }

    /// A lease on `span` opened: its unstored usage is counted by `used`.
    pub(crate) fn opened(&self, org: &str, span: Span, used: Arc<AtomicU64>) {
        let mut posts = lock(&self.posts);
        let posted = posts.orgs.entry(org.to_owned()).or_default();
        posted.span = Some(span);
        posted.used = used;
    }

    /// Before a sync that stores the organization's usage: waits for readers running again,
    /// then marks it as storing (a read that meets the mark runs again). Called under the
    /// leases' lock, so no admission adds to `used` meanwhile.
    pub(crate) fn before_storing(&self, org: &str) {
        self.before_storing_within(org, READER_WAIT);
    }

    fn before_storing_within(&self, org: &str, wait: Duration) {
        let started = Instant::now();
        let mut posts = lock(&self.posts);
        while posts.orgs.get(org).is_some_and(|p| p.readers > 0) {
            let Some(left) = wait.checked_sub(started.elapsed()) else {
                break;
            };
            posts = self
                .readers_gone
                .wait_timeout(posts, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        posts.orgs.entry(org.to_owned()).or_default().storing = true;
    }

    /// After a sync that stored the organization's usage (committed, or with an outcome the
    /// client does not know): raises the epoch and marks it; `left` is its unstored usage
    /// now, `span` its lease's period (`None`: the lease is gone).
    pub(crate) fn stored(&self, org: &str, left: u64, span: Option<Span>) {
        let mut posts = lock(&self.posts);
        posts.epoch += 1;
        let epoch = posts.epoch;
        let posted = posts.orgs.entry(org.to_owned()).or_default();
        posted.moved = epoch;
        posted.storing = false;
        posted.used.store(left, Ordering::Release);
        posted.span = span;
    }

    /// The organization's lease is gone without storing anything (released idle, or the
    /// organization deleted, also by a sync that found it so).
    pub(crate) fn closed(&self, org: &str) {
        if let Some(posted) = lock(&self.posts).orgs.get_mut(org) {
            posted.span = None;
            posted.storing = false;
            posted.used.store(0, Ordering::Release);
        }
    }

    /// The unstored usage of the organization's period that holds day number `day`, read by
    /// `view` (whose epoch was taken before the snapshot this is added to); `None` when a
    /// sync stored its usage since, after which the read must run again. The view then
    /// waits for its next read (see the module's rules) and sees the epoch of now.
    pub(crate) fn unstored<'a>(&'a self, org: &str, day: u32, view: &LeaseView<'a>) -> Option<u64> {
        let mut posts = lock(&self.posts);
        let epoch = posts.epoch;
        let seen = view.seen.load(Ordering::Acquire);
        let mut waits = lock(&view.waits);
        let waiting = waits.iter().position(|w| w.org == org);
        let Some(posted) = posts.orgs.get_mut(org) else {
            // Never leased by this handle: nothing unstored, nothing moved.
            return Some(0);
        };
        if posted.storing || posted.moved > seen {
            view.seen.store(epoch, Ordering::Release);
            if waiting.is_none() {
                posted.readers += 1;
                waits.push(ReaderWait {
                    board: self,
                    org: org.to_owned(),
                });
            }
            return None;
        }
        let unstored = match posted.span {
            Some(span) if span.holds(day) => posted.used.load(Ordering::Acquire),
            _ => 0,
        };
        if let Some(i) = waiting {
            drop(posts);
            // Dropped after the board's lock is let go: it takes that lock.
            let done = waits.swap_remove(i);
            drop(waits);
            drop(done);
        }
        Some(unstored)
    }

    fn stop_waiting(&self, org: &str) {
        let mut posts = lock(&self.posts);
        if let Some(posted) = posts.orgs.get_mut(org) {
            posted.readers = posted.readers.saturating_sub(1);
        }
        drop(posts);
        self.readers_gone.notify_all();
    }
}

/// What one call saw of the board: the epoch before its first transaction, and the
/// organizations whose syncs wait for it (let go when it is dropped, at the latest).
#[derive(Debug, Default)]
pub(crate) struct LeaseView<'a> {
    seen: AtomicU64,
    waits: Mutex<Vec<ReaderWait<'a>>>,
}

impl LeaseView<'_> {
    /// A view of `board` as it is now (of nothing: `None`, off a shared backend).
    pub(crate) fn of(board: Option<&Board>) -> LeaseView<'_> {
        LeaseView {
            seen: AtomicU64::new(board.map_or(0, Board::epoch)),
            waits: Mutex::default(),
        }
    }
}

/// A reader registered as waiting: syncs of `org` wait until this is dropped.
#[derive(Debug)]
struct ReaderWait<'a> {
    board: &'a Board,
    org: String,
}

impl Drop for ReaderWait<'_> {
    fn drop(&mut self) {
        self.board.stop_waiting(&self.org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span { start: 10, end: 40 }
    }

    #[test]
    fn a_read_overlapping_a_sync_runs_again_and_then_sees_it_stored() {
        let board = Board::default();
        let used = Arc::new(AtomicU64::new(0));
        board.opened("o", span(), used.clone());
        used.store(7, Ordering::Release);
        // A view from before any sync: the unstored usage of the lease's period only.
        let view = LeaseView::of(Some(&board));
        assert_eq!(board.unstored("o", 12, &view), Some(7));
        assert_eq!(board.unstored("o", 45, &view), Some(0));
        assert_eq!(board.unstored("other", 12, &view), Some(0));
        // A sync under way, then done: either way the read runs again, once.
        board.before_storing("o");
        assert_eq!(board.unstored("o", 12, &view), None);
        board.stored("o", 0, Some(span()));
        assert_eq!(board.unstored("o", 12, &view), None);
        assert_eq!(board.unstored("o", 12, &view), Some(0));
        // A view taken after the sync is not troubled by it.
        let later = LeaseView::of(Some(&board));
        assert_eq!(board.unstored("o", 12, &later), Some(0));
        // A sync whose outcome is unknown keeps what it did not reset.
        board.before_storing("o");
        board.stored("o", 3, Some(span()));
        assert_eq!(board.unstored("o", 12, &later), None);
        assert_eq!(board.unstored("o", 12, &later), Some(3));
        board.closed("o");
        assert_eq!(board.unstored("o", 12, &later), Some(0));
        // A sync that found the organization deleted stored nothing: no read runs again.
        board.before_storing("o");
        board.closed("o");
        assert_eq!(board.unstored("o", 12, &later), Some(0));
    }

    #[test]
    fn a_sync_waits_for_a_reader_that_runs_again_until_it_lets_go() {
        let board = Board::default();
        board.opened("o", span(), Arc::default());
        let view = LeaseView::of(Some(&board));
        board.before_storing("o");
        board.stored("o", 0, Some(span()));
        assert_eq!(board.unstored("o", 12, &view), None, "registers as waiting");
        let synced = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // A long wait here: the test must not depend on how fast it runs.
                board.before_storing_within("o", Duration::from_secs(60));
                synced.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !synced.load(Ordering::SeqCst),
                "the sync waits for the reader"
            );
            // The reader's next read succeeds and lets go.
            assert_eq!(board.unstored("o", 12, &view), Some(0));
        });
        assert!(synced.load(Ordering::SeqCst));
        // A view dropped while waiting lets go too.
        board.stored("o", 0, Some(span()));
        let view = LeaseView::of(Some(&board));
        board.before_storing("o");
        assert_eq!(board.unstored("o", 12, &view), None);
        drop(view);
        let started = Instant::now();
        board.before_storing_within("o", Duration::from_secs(60));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no reader left to wait for"
        );
    }
}

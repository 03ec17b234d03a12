//! The journal: the durable record, between checkpoints, of admitted usage and of the write
//! transactions of a file opened with `Durability::Immediate` (ARCHITECTURE.md, "Journaled
//! writes").
//!
//! A pre-zeroed file of fixed size, overwritten in place (no size change, so an fdatasync
//! flushes data only). Each record is `[crc32][len][generation][format][seq][payload]`, 8-byte
//! aligned; the crc covers everything after itself. `format` is [`RECORD_FORMAT`] (records
//! written before it existed hold 0 there, the same layout): a whole record of a newer format
//! is refused with `incompatible_version`, never taken for a torn one (which would end the
//! replay and drop the acknowledged records after it). Records of one generation start at
//! offset 0 with contiguous sequence numbers. A checkpoint folds everything into the database
//! with a durable commit that names the next generation; only then does writing restart at
//! offset 0 under it, so stale records of older generations are never replayed.
//!
//! Durability is group commit: a writer returns once an fdatasync that started after its
//! record was written has finished. Whoever finds no sync running issues it for every record
//! written so far; the others wait for it. When the last sync released several waiters, the
//! next leader first gives them up to [`GATHER_WINDOW`] to write their next records, so one
//! fdatasync carries many callers' records instead of the few that were scheduled in time;
//! a lone caller (the last sync released only itself) never waits.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::tables::Table;
use crate::error::{Error, Result};

const HEADER: usize = 24;
const ZERO_CHUNK: usize = 1 << 20;
const READ_CHUNK: usize = 1 << 20;
/// The newest record layout this build reads and writes. Bump it when a payload changes or a
/// kind is added, and keep decoding the older ones.
pub(crate) const RECORD_FORMAT: u32 = 2;
/// A usage call's events (0: the same, written before the format field existed).
const USAGE_FORMAT: u32 = 1;
/// The changes of one write transaction.
const WRITES_FORMAT: u32 = 2;

/// `meta` names: the generation the journal writes, the last sequence the usage folds cover,
/// and the last journaled write the file holds (records at or below are never replayed).
pub(crate) const META_GENERATION: &str = "journal_generation";
pub(crate) const META_SEQ: &str = "journal_seq";
pub(crate) const META_WRITE_SEQ: &str = "write_seq";

/// Smallest journal; a larger one checkpoints less often.
pub(crate) const MIN_SIZE: u64 = 64 * 1024;

/// One admitted call: events of one organization, applied whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalBatch {
    pub(crate) seq: u64,
    pub(crate) org: String,
    pub(crate) events: Vec<JournalEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalEvent {
    pub(crate) resource: Option<String>,
    /// Day number (`store::day_number`).
    pub(crate) day: u32,
    pub(crate) count: u64,
    pub(crate) key: Option<String>,
    /// When the event was admitted, for the idempotency record (micros).
    pub(crate) at_micros: i64,
}

/// One change a write transaction made, as the raw key-value store took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Put(Vec<u8>),
    Delete,
    /// The table was opened for writing (redb creates it): nothing else.
    Touch,
}

/// The changes of one committed write transaction, in the order it made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteSet {
    pub(crate) seq: u64,
    pub(crate) changes: Vec<(Table, Vec<u8>, Change)>,
}

/// A record of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Usage(JournalBatch),
    Writes(WriteSet),
}

impl Record {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Record::Usage(batch) => batch.seq,
            Record::Writes(set) => set.seq,
        }
    }
}

/// Where the next record goes, and the last sequence number given (under [`Journal::tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) generation: u32,
    pub(crate) offset: u64,
    pub(crate) seq: u64,
}

/// Longest a sync leader waits for the callers the previous sync released.
pub(crate) const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_micros(100);

#[derive(Debug, Default)]
struct SyncState {
    synced: u64,
    syncing: bool,
    failed: Option<String>,
    /// Callers inside `wait_durable` now.
    waiting: u64,
    /// Callers waiting when the last sync finished (the ones it released, roughly).
    released: u64,
    /// No record arrived during the last gathering window.
    missed: bool,
}

pub(crate) struct Journal {
    file: File,
    size: u64,
    /// Known to hold only zeros (created or cleared by this handle, nothing written since).
    fresh: AtomicBool,
    /// `None` until the ledger's replay at open has started a generation: nothing is written
    /// before.
    tail: Mutex<Option<Tail>>,
    /// The last sequence a durable commit of the database covered (its writes are on disk
    /// without the journal).
    durable_through: AtomicU64,
    written: AtomicU64,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
}

/// The record did not fit before the end of the file: checkpoint and restart at offset 0.
#[derive(Debug)]
pub(crate) struct Full;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn encode(generation: u32, batch: &JournalBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 64 + batch.events.len() * 48);
    out.extend_from_slice(&[0u8; HEADER]);
    put_str(&mut out, &batch.org);
    out.extend_from_slice(&(batch.events.len() as u32).to_le_bytes());
    for e in &batch.events {
        put_str(&mut out, e.resource.as_deref().unwrap_or(""));
        out.extend_from_slice(&e.day.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.at_micros.to_le_bytes());
        match &e.key {
            Some(k) => {
                out.push(1);
                put_str(&mut out, k);
            }
            None => out.push(0),
        }
    }
    seal(out, generation, USAGE_FORMAT, batch.seq)
}

/// Pads a record to 8 bytes and fills in its header.
fn seal(mut out: Vec<u8>, generation: u32, format: u32, seq: u64) -> Vec<u8> {
    out.resize(out.len().div_ceil(8) * 8, 0);
    let len = out.len() as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..12].copy_from_slice(&generation.to_le_bytes());
    out[12..16].copy_from_slice(&format.to_le_bytes());
    out[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&out[4..]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// `b` after its length; `None` when the length does not fit its field.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(b.len()).ok()?.to_le_bytes());
    out.extend_from_slice(b);
    Some(())
}

/// A write transaction's record: `[count]` then per change `[table name][key][kind][value]`.
/// `None` when a key or value is too long for its length field (the caller commits durably
/// instead).
pub(crate) fn encode_writes(generation: u32, set: &WriteSet) -> Option<Vec<u8>> {
    let bytes: usize = set
        .changes
        .iter()
        .map(|(_, k, c)| {
            24 + k.len()
                + match c {
                    Change::Put(v) => v.len(),
                    _ => 0,
                }
        })
        .sum();
    let mut out = Vec::with_capacity(HEADER + 8 + bytes);
    out.extend_from_slice(&[0u8; HEADER]);
    out.extend_from_slice(&u32::try_from(set.changes.len()).ok()?.to_le_bytes());
    for (table, key, change) in &set.changes {
        put_str(&mut out, table.name());
        put_bytes(&mut out, key)?;
        match change {
            Change::Put(value) => {
                out.push(1);
                put_bytes(&mut out, value)?;
            }
            Change::Delete => out.push(0),
            Change::Touch => out.push(2),
        }
    }
    Some(seal(out, generation, WRITES_FORMAT, set.seq))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Decodes the record at the start of `bytes` if it is whole, of `generation`, and its
/// checksum holds. Returns the record and its length; `None` for a torn, foreign or
/// missing record (the end of the log).
///
/// # Errors
/// `incompatible_version` for a whole, checksummed record of a format newer than
/// [`RECORD_FORMAT`].
pub(crate) fn decode(generation: u32, bytes: &[u8]) -> Result<Option<(Record, usize)>> {
    let Some(header) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    let mut head = Reader(header);
    let (Some(crc), Some(len), Some(gen), Some(format), Some(seq)) =
        (head.u32(), head.u32(), head.u32(), head.u32(), head.u64())
    else {
        return Ok(None);
    };
    let len = len as usize;
    if gen != generation || len < HEADER || !len.is_multiple_of(8) || len > bytes.len() {
        return Ok(None);
    }
    if crc32fast::hash(&bytes[4..len]) != crc {
        return Ok(None);
    }
    if format > RECORD_FORMAT {
        return Err(Error::IncompatibleVersion {
            format: "journal record",
            found: format,
            supported: RECORD_FORMAT,
        });
    }
    let body = &bytes[HEADER..len];
    let record = if format == WRITES_FORMAT {
        decode_writes(seq, body)?.map(Record::Writes)
    } else {
        decode_body(seq, body).map(Record::Usage)
    };
    Ok(record.map(|r| (r, len)))
}

/// The payload of a format-2 record; `None` when it does not parse (taken as torn).
///
/// # Errors
/// `corrupted` for a whole record that names a table this build does not know: ending the
/// log there would drop the acknowledged records after it.
fn decode_writes(seq: u64, body: &[u8]) -> Result<Option<WriteSet>> {
    let mut r = Reader(body);
    let Some(n) = r.u32() else {
        return Ok(None);
    };
    let mut changes = Vec::with_capacity((n as usize).min(1 << 16));
    for _ in 0..n {
        let Some(name) = r.str() else {
            return Ok(None);
        };
        let Some(table) = Table::by_name(&name) else {
            return Err(Error::corrupted(format!(
                "journal record {seq} names a table this build does not know ({name}): \
                 written by a newer orgdb?"
            )));
        };
        let Some((key, change)) = decode_change(&mut r) else {
            return Ok(None);
        };
        changes.push((table, key, change));
    }
    Ok(Some(WriteSet { seq, changes }))
}

/// One change's key and what was done, after its table name.
fn decode_change(r: &mut Reader<'_>) -> Option<(Vec<u8>, Change)> {
    let key = r.bytes()?;
    let change = match r.take(1)?[0] {
        0 => Change::Delete,
        1 => Change::Put(r.bytes()?),
        2 => Change::Touch,
        _ => return None,
    };
    Some((key, change))
}

/// The payload of a format-1 record (format 0: the same, written before the field existed).
fn decode_body(seq: u64, body: &[u8]) -> Option<JournalBatch> {
    let mut r = Reader(body);
    let org = r.str()?;
    let n = r.u32()? as usize;
    let mut events = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let resource = r.str()?;
        let day = r.u32()?;
        let count = r.u64()?;
        let at_micros = r.u64()? as i64;
        let key = match r.take(1)?[0] {
            0 => None,
            1 => Some(r.str()?),
            _ => return None,
        };
        events.push(JournalEvent {
            resource: (!resource.is_empty()).then_some(resource),
            day,
            count,
            key,
            at_micros,
        });
    }
    Some(JournalBatch { seq, org, events })
}

/// Writes zeros over the first `len` bytes.
fn zero_fill(file: &File, len: u64) -> Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = 0;
    while at < len {
        let n = ZERO_CHUNK.min((len - at) as usize);
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| io_err("zero-fill", e))?;
        at += n as u64;
    }
    Ok(())
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::storage(format!("journal: {what}: {e}"))
}

/// Whether the journal at `path` holds anything but the zeros it is created with: then a
/// database has written records through it. A missing journal holds none; one that cannot be
/// read is an error, never a "no" (the caller would then take a truncated database for new).
pub(crate) fn holds_records(path: &Path) -> Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("open", e)),
    };
    let mut buf = vec![0u8; ZERO_CHUNK];
    let mut at = 0u64;
    loop {
        match file.read_at(&mut buf, at) {
            Ok(0) => return Ok(false),
            Ok(n) if buf[..n].iter().any(|b| *b != 0) => return Ok(true),
            Ok(n) => at += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", e)),
        }
    }
}

impl Journal {
    /// Opens the journal, creating and zero-filling it (then syncing) when missing. A file
    /// shorter than [`MIN_SIZE`] was never fully created (records are written only after the
    /// fill is durable), so it is filled again.
    pub(crate) fn open(path: &Path, size: u64) -> Result<Journal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open", e))?;
        let existing = file.metadata().map_err(|e| io_err("stat", e))?.len();
        let fresh = existing < MIN_SIZE;
        let size = if !fresh {
            existing
        } else {
            // Real zeros, not a sparse file: writing into holes would allocate blocks and make
            // every fdatasync flush metadata as well.
            let want = size.max(MIN_SIZE).div_ceil(8) * 8;
            zero_fill(&file, want)?;
            file.sync_all().map_err(|e| io_err("sync", e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            want
        };
        Ok(Journal {
            file,
            size,
            fresh: AtomicBool::new(fresh),
            tail: Mutex::new(None),
            durable_through: AtomicU64::new(0),
            written: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            synced_cv: Condvar::new(),
        })
    }

    /// The journal's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Every record of `generation`, in order, from offset 0; stops at the first record that is
    /// missing, torn, of another generation, or out of sequence.
    pub(crate) fn read_generation(&self, generation: u32) -> Result<(Vec<Record>, u64)> {
        // Read only as far as records go (an open must not read a 32 MiB journal whose first
        // record is stale), in chunks, with positional reads: the file's cursor must not matter.
        let mut bytes: Vec<u8> = Vec::new();
        let load_to = |bytes: &mut Vec<u8>, want: usize| -> Result<()> {
            let want = want.min(self.size as usize);
            while bytes.len() < want {
                let from = bytes.len();
                let to = (from + READ_CHUNK).min(self.size as usize);
                bytes.resize(to, 0);
                self.file
                    .read_exact_at(&mut bytes[from..], from as u64)
                    .map_err(|e| io_err("read", e))?;
            }
            Ok(())
        };
        let mut out: Vec<Record> = Vec::new();
        let mut at = 0usize;
        loop {
            load_to(&mut bytes, at + HEADER)?;
            let field = |from: usize| {
                bytes
                    .get(at + from..at + from + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
            };
            // A record of another generation (or zeros) ends the log: stop before reading on.
            let (Some(len), Some(gen)) = (field(4), field(8)) else {
                break;
            };
            if gen != generation {
                break;
            }
            let len = len as usize;
            load_to(&mut bytes, at.saturating_add(len.max(HEADER)))?;
            let Some((record, len)) = decode(generation, &bytes[at..])? else {
                break;
            };
            if let Some(last) = out.last() {
                if record.seq() != last.seq() + 1 {
                    break;
                }
            }
            out.push(record);
            at += len;
        }
        Ok((out, at as u64))
    }

    /// The tail: where the next record goes. Held while a record is encoded and written, so
    /// records are written in sequence order; a write transaction holds it across its commit
    /// too (ARCHITECTURE.md, "Journaled writes"). Nothing else is locked while it is held.
    pub(crate) fn tail(&self) -> MutexGuard<'_, Option<Tail>> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Zeroes the whole journal, durably, unless it is known to hold nothing: a database that
    /// never opened its ledger owns nothing in a journal that lies beside it (left by a
    /// deleted database of the same name), and its generations and sequences could match.
    pub(crate) fn clear(&self) -> Result<()> {
        if self.fresh.load(Ordering::Acquire) {
            return Ok(());
        }
        zero_fill(&self.file, self.size)?;
        self.file.sync_data().map_err(|e| io_err("sync", e))?;
        self.fresh.store(true, Ordering::Release);
        Ok(())
    }

    /// Starts writing generation `generation` at offset 0, after sequence `seq` (the open's
    /// replay committed the generation).
    pub(crate) fn start(&self, generation: u32, seq: u64) {
        *self.tail() = Some(Tail {
            generation,
            offset: 0,
            seq,
        });
    }

    /// The last sequence number given (0 before the journal started).
    pub(crate) fn last_seq(&self) -> u64 {
        self.tail().map_or(0, |t| t.seq)
    }

    /// A durable commit of the database holds every journaled write up to `seq`.
    pub(crate) fn committed_durably(&self, seq: u64) {
        self.durable_through.fetch_max(seq, Ordering::AcqRel);
    }

    /// Whether records were written since the last durable commit of the database.
    pub(crate) fn undurable(&self) -> bool {
        self.last_seq() > self.durable_through.load(Ordering::Acquire)
    }

    /// Fraction of the journal in use.
    pub(crate) fn fill(&self) -> f64 {
        self.tail()
            .map_or(0.0, |t| t.offset as f64 / self.size as f64)
    }

    /// Writes `record`, encoded with sequence `tail.seq + 1`, at the tail.
    pub(crate) fn append(&self, tail: &mut Tail, record: &[u8]) -> Result<Result<u64, Full>> {
        self.refuse_if_failed()?;
        let len = record.len() as u64;
        if tail.offset + len > self.size {
            return Ok(Err(Full));
        }
        if let Err(e) = self.file.write_all_at(record, tail.offset) {
            let err = io_err("write", e);
            self.fail(&err);
            return Err(err);
        }
        self.fresh.store(false, Ordering::Release);
        tail.offset += len;
        tail.seq += 1;
        self.written.store(tail.seq, Ordering::Release);
        Ok(Ok(tail.seq))
    }

    pub(crate) fn refuse_if_failed(&self) -> Result<()> {
        let state = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        match &state.failed {
            Some(msg) => Err(Error::storage(msg.clone())),
            None => Ok(()),
        }
    }

    /// After a journal I/O error nothing more is admitted: the state in memory may be ahead of
    /// what the disk holds.
    fn fail(&self, err: &Error) {
        let mut state = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        state.failed.get_or_insert_with(|| err.to_string());
        self.synced_cv.notify_all();
    }

    /// Returns once record `seq` is on disk (or covered by a durable checkpoint).
    ///
    /// `may_gather`: whether this caller, should it lead a sync, may first wait for the
    /// callers the last sync released. A caller holding the ledger lock must pass `false`:
    /// the usage records it would wait for are written under that lock.
    pub(crate) fn wait_durable(&self, seq: u64, may_gather: bool) -> Result<()> {
        let mut state = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        if state.synced >= seq && state.failed.is_none() {
            return Ok(());
        }
        state.waiting += 1;
        let result = loop {
            if let Some(msg) = &state.failed {
                break Err(Error::storage(msg.clone()));
            }
            if state.synced >= seq {
                break Ok(());
            }
            if state.syncing {
                state = self
                    .synced_cv
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead a sync for everything written so far, after the callers the last sync
            // released have had a moment to write their next records.
            state.syncing = true;
            // Each caller the last sync released is expected to write one record. After a
            // window in which no record at all arrived (the released callers went elsewhere),
            // skip one gathering, so traffic that does not come straight back pays the
            // window at most every other sync.
            let (base, expected) = (state.synced, state.released);
            let gather = may_gather && expected > 1 && !std::mem::take(&mut state.missed);
            drop(state);
            let missed = gather && !self.gather(base.saturating_add(expected));
            let target = self.written.load(Ordering::Acquire);
            let result = self.file.sync_data();
            state = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            state.syncing = false;
            state.missed |= missed;
            match result {
                Ok(()) => {
                    state.synced = state.synced.max(target);
                    state.released = state.waiting;
                }
                Err(e) => {
                    let msg = io_err("fdatasync", e).to_string();
                    state.failed.get_or_insert(msg);
                }
            }
            self.synced_cv.notify_all();
        };
        state.waiting -= 1;
        result
    }

    /// Yields until records up to `seq` are written, or [`GATHER_WINDOW`] passes. Returns
    /// whether any record arrived meanwhile (a window that caught some is worth repeating).
    fn gather(&self, seq: u64) -> bool {
        let start = std::time::Instant::now();
        let before = self.written.load(Ordering::Acquire);
        loop {
            let now = self.written.load(Ordering::Acquire);
            if now >= seq {
                return true;
            }
            if start.elapsed() >= GATHER_WINDOW {
                return now > before;
            }
            std::thread::yield_now();
        }
    }

    /// Records up to `seq` are durable through a checkpoint.
    pub(crate) fn mark_durable(&self, seq: u64) {
        let mut state = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        state.synced = state.synced.max(seq);
        self.written.fetch_max(seq, Ordering::AcqRel);
        self.synced_cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64) -> JournalBatch {
        JournalBatch {
            seq,
            org: "org_1".into(),
            events: vec![
                JournalEvent {
                    resource: Some("res_1".into()),
                    day: 738_900,
                    count: 5,
                    key: Some("k".into()),
                    at_micros: 42,
                },
                JournalEvent {
                    resource: None,
                    day: 738_901,
                    count: 1,
                    key: None,
                    at_micros: 43,
                },
            ],
        }
    }

    fn tail(generation: u32, seq: u64) -> Tail {
        Tail {
            generation,
            offset: 0,
            seq,
        }
    }

    fn writes(seq: u64) -> WriteSet {
        WriteSet {
            seq,
            changes: vec![
                (Table::Orgs, b"org_1".to_vec(), Change::Put(vec![1, 2, 3])),
                (
                    Table::AuditByOrg,
                    b"org_1\0\0".to_vec(),
                    Change::Put(Vec::new()),
                ),
                (Table::UserOrgs, b"u\0o\0".to_vec(), Change::Delete),
                (Table::Reservations, Vec::new(), Change::Touch),
            ],
        }
    }

    #[test]
    fn write_records_round_trip_in_sequence_with_usage_records() {
        let rec = encode_writes(5, &writes(8)).unwrap();
        assert_eq!(rec.len() % 8, 0);
        let (back, len) = decode(5, &rec).unwrap().unwrap();
        assert_eq!((back, len), (Record::Writes(writes(8)), rec.len()));
        let mut bad = rec.clone();
        bad[30] ^= 1;
        assert!(decode(5, &bad).unwrap().is_none(), "damage ends the log");
        // A whole record naming a table this build does not know (a newer build's) is
        // refused, not taken for the end of the log.
        let mut newer = rec.clone();
        let at = newer.windows(4).position(|w| w == b"orgs").unwrap();
        newer[at..at + 4].copy_from_slice(b"zzzz");
        let crc = crc32fast::hash(&newer[4..]);
        newer[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(5, &newer).unwrap_err().code(), "corrupted");

        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), MIN_SIZE).unwrap();
        journal.start(5, 6);
        let mut guard = journal.tail();
        let t = guard.as_mut().unwrap();
        assert_eq!(
            journal.append(t, &encode(5, &batch(7))).unwrap().unwrap(),
            7
        );
        assert_eq!(journal.append(t, &rec).unwrap().unwrap(), 8);
        drop(guard);
        assert_eq!(journal.last_seq(), 8);
        let (read, _) = journal.read_generation(5).unwrap();
        assert_eq!(read, [Record::Usage(batch(7)), Record::Writes(writes(8))]);
    }

    #[test]
    fn records_round_trip_and_reject_damage() {
        let rec = encode(3, &batch(7));
        assert_eq!(rec.len() % 8, 0);
        let (back, len) = decode(3, &rec).unwrap().unwrap();
        assert_eq!((back, len), (Record::Usage(batch(7)), rec.len()));
        assert!(decode(4, &rec).unwrap().is_none(), "another generation");
        for i in [0, 5, 20, rec.len() - 1] {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(decode(3, &bad).unwrap().is_none(), "flipped byte {i}");
        }
        assert!(decode(3, &rec[..rec.len() - 8]).unwrap().is_none(), "torn");
        assert!(
            decode(0, &[0u8; 64]).unwrap().is_none(),
            "zeros are no record"
        );
    }

    /// Rewrites a record's format field and its checksum, as another build would write it.
    fn with_format(mut rec: Vec<u8>, format: u32) -> Vec<u8> {
        rec[12..16].copy_from_slice(&format.to_le_bytes());
        let crc = crc32fast::hash(&rec[4..]);
        rec[0..4].copy_from_slice(&crc.to_le_bytes());
        rec
    }

    #[test]
    fn a_record_of_a_newer_format_is_refused_not_taken_for_torn() {
        // Written before the format field existed: 0 there, the same layout.
        let old = with_format(encode(3, &batch(7)), 0);
        assert_eq!(decode(3, &old).unwrap().unwrap().0, Record::Usage(batch(7)));
        let newer = with_format(encode(3, &batch(7)), RECORD_FORMAT + 1);
        let err = decode(3, &newer).unwrap_err();
        assert_eq!(err.code(), "incompatible_version");
        assert_eq!(err.details()["format"], "journal record");
        assert_eq!(err.details()["found"], RECORD_FORMAT + 1);
        // Damage is still the end of the log, whatever the format field says.
        let mut torn = newer.clone();
        torn[30] ^= 1;
        assert!(decode(3, &torn).unwrap().is_none());
    }

    #[test]
    fn replay_stops_with_an_error_at_a_newer_record() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), MIN_SIZE).unwrap();
        let mut tail = tail(3, 0);
        let first = encode(3, &batch(1));
        journal.append(&mut tail, &first).unwrap().unwrap();
        let second = with_format(encode(3, &batch(2)), RECORD_FORMAT + 1);
        journal.append(&mut tail, &second).unwrap().unwrap();
        let err = journal.read_generation(3).unwrap_err();
        assert_eq!(err.code(), "incompatible_version");
    }

    #[test]
    fn concurrent_callers_all_return_durable() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), 0).unwrap();
        journal.start(1, 0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..40 {
                        let seq = {
                            let mut guard = journal.tail();
                            let tail = guard.as_mut().unwrap();
                            let rec = encode(1, &batch(tail.seq + 1));
                            journal.append(tail, &rec).unwrap().unwrap()
                        };
                        journal.wait_durable(seq, true).unwrap();
                        let state = journal.sync.lock().unwrap();
                        assert!(state.synced >= seq, "returned before its record was synced");
                    }
                });
            }
        });
        let state = journal.sync.lock().unwrap();
        assert_eq!(
            (state.synced, state.waiting, state.syncing),
            (320, 0, false)
        );
        drop(state);
        let (read, _) = journal.read_generation(1).unwrap();
        assert_eq!(read.len(), 320);
        assert!(read
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq() == i as u64 + 1));
    }

    #[test]
    fn replay_reads_one_generation_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), 0).unwrap();
        assert_eq!(journal.size(), MIN_SIZE);
        let mut two = tail(2, 9);
        for seq in 10..13 {
            journal
                .append(&mut two, &encode(2, &batch(seq)))
                .unwrap()
                .unwrap();
        }
        journal.wait_durable(12, true).unwrap();
        let (read, end) = journal.read_generation(2).unwrap();
        assert_eq!(
            read.iter().map(Record::seq).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(end, two.offset);
        // A new generation over the old records: only the new one is read.
        let mut three = tail(3, 12);
        journal
            .append(&mut three, &encode(3, &batch(13)))
            .unwrap()
            .unwrap();
        assert_eq!(journal.read_generation(3).unwrap().0.len(), 1);
        assert_eq!(
            journal.read_generation(2).unwrap().0.len(),
            0,
            "first record overwritten"
        );
    }
}

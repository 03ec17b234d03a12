//! `Db`: Maintenance: export and import, backup, compaction, `check` and `stats`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::CheckReport;

use super::Db;

impl Db {
    /// Writes the whole database as JSON lines (one [`Record`](crate::model::transfer::Record)
    /// a line, header first) and returns how many. Token hashes are never exported.
    ///
    /// # Errors
    /// `storage_error` (also for a failing writer).
    pub fn export_jsonl(&self, mut out: impl std::io::Write) -> Result<u64> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.read_once(|tx| {
            tx.export(&mut |record| {
                serde_json::to_writer(&mut out, &record)
                    .map_err(|e| Error::storage(format!("writing the export: {e}")))?;
                out.write_all(b"\n")
                    .map_err(|e| Error::storage(format!("writing the export: {e}")))
            })
        })
    }

    /// Loads an export into this database, which must be empty. With `batch_size` `None` the
    /// whole import is one transaction (all or nothing); otherwise every `batch_size` records
    /// commit, and a failure leaves the batches before it. The result is checked with
    /// [`Db::check`] before the last commit. `progress` gets the number of records read so far.
    ///
    /// Pending invitations arrive without a usable token: re-send them.
    ///
    /// # Errors
    /// `conflict` when the database is not empty; `validation_error` naming the line for a
    /// malformed or dangling record; `incompatible_version` for an export of a newer schema.
    pub fn import_jsonl(
        &self,
        input: impl std::io::BufRead,
        batch_size: Option<usize>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<crate::model::transfer::ImportReport> {
        self.import_jsonl_with(input, batch_size, &mut |n| {
            progress(n);
            Ok(())
        })
    }

    /// [`Db::import_jsonl`] whose `progress` may stop the import: an error it returns ends the
    /// import with that error, as a bad line would (the current batch is not written; with
    /// `batch_size` `None`, nothing is). `progress` runs as each record is read, before its
    /// batch's transaction (a batch is read whole, then written in one transaction).
    ///
    /// # Errors
    /// As [`Db::import_jsonl`], and whatever `progress` returns.
    pub fn import_jsonl_with(
        &self,
        input: impl std::io::BufRead,
        batch_size: Option<usize>,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<crate::model::transfer::ImportReport> {
        use crate::model::transfer::Record;
        use crate::store::transfer;
        if !self.inner.store.read(|tx| tx.is_empty())? {
            return Err(Error::conflict("Import needs an empty database"));
        }
        let batch = batch_size.unwrap_or(usize::MAX).max(1);
        let mut state = transfer::ImportState::default();
        let mut report = crate::model::transfer::ImportReport::default();
        let mut lines = input.lines();
        let mut done = false;
        while !done {
            // A batch is read before its transaction, so the transaction can run again (a
            // backend retries serialization failures) without reading the input twice.
            let mut records: Vec<(u64, Record)> = Vec::new();
            while records.len() < batch {
                let Some(line) = lines.next() else {
                    done = true;
                    break;
                };
                let at = report.records + 1;
                let line = line.map_err(|e| match e.kind() {
                    // `lines()` reports a line that is not UTF-8 as invalid data.
                    std::io::ErrorKind::InvalidData => {
                        Error::invalid("line", format!("{at}: not valid UTF-8"))
                    }
                    _ => Error::storage(format!("reading the import: {e}")),
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                report.records = at;
                let record = serde_json::from_str(&line)
                    .map_err(|e| Error::invalid("line", format!("{at}: {e}")))?;
                progress(at)?;
                records.push((at, record));
            }
            let now = self.now();
            let last = done;
            state = self.inner.store.write(|tx| {
                let mut state = state.clone();
                for (at, record) in &records {
                    transfer::import(tx, &mut state, record.clone()).map_err(|e| match e {
                        Error::Validation { details, .. } => {
                            let what: Vec<String> = details
                                .iter()
                                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                                .collect();
                            Error::invalid("line", format!("{at}: {}", what.join("; ")))
                        }
                        other => other,
                    })?;
                }
                transfer::finish_batch(tx, &state)?;
                if last {
                    let found = tx.check(now)?;
                    if let Some(problem) = found.problems.first() {
                        return Err(Error::invalid(
                            "import",
                            format!("the result is inconsistent: {problem}"),
                        ));
                    }
                }
                Ok(state)
            })?;
            report.transactions += 1;
        }
        Ok(report)
    }

    /// Writes a consistent copy of the database (as of one moment, usage included) to a new
    /// file at `path`, while this one stays open and in use.
    ///
    /// # Errors
    /// `validation_error` when `path` exists; `storage_error`.
    pub fn backup_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.backup_to(path.as_ref())
    }

    /// Rewrites the file without free space; waits for a moment when no call is running (up
    /// to 30 seconds), and calls made meanwhile wait for it. Returns whether it compacted
    /// anything.
    ///
    /// # Errors
    /// `storage_error`, also when no such moment came in 30 seconds.
    pub fn compact(&self) -> Result<bool> {
        self.flush()?;
        self.inner.store.compact()
    }

    /// Verifies every invariant, index and stored counter against the rows (after folding
    /// admitted usage into them).
    ///
    /// # Errors
    /// Only storage errors; violations are listed in the report.
    pub fn check(&self) -> Result<CheckReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.read(|tx| tx.check(ctx.now))
    }

    /// Rows per table.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn stats(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .inner
            .store
            .table_lens()?
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect())
    }
}

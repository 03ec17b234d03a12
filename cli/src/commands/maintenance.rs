//! Maintenance: `check`, `stats`, `compact`, `backup`, `export`, `import`.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orgdb::{Db, Result};
use serde_json::{json, Map, Value};

use super::{input, invalid, storage, App};
use crate::output::{self, Out, View};

/// Verifies every invariant and index; exit code 1 when anything is wrong.
pub(crate) fn check(app: &App) -> Result<ExitCode> {
    let report = app.db.check()?;
    app.out.ok(&report, View::Record);
    if report.is_ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        output::warn(&format!(
            "check failed: {} problem(s); the first: {}",
            report.problems.len(),
            report.problems[0]
        ));
        Ok(ExitCode::from(crate::EXIT_CHECK_FAILED))
    }
}

/// Rows per table and the sizes of the files.
pub(crate) fn stats(app: &App, path: &Path) -> Result<()> {
    let tables = app.db.stats()?;
    let rows: u64 = tables.iter().map(|(_, n)| n).sum();
    let tables: Map<String, Value> = tables
        .into_iter()
        .map(|(name, n)| (name, Value::from(n)))
        .collect();
    let value = json!({
        "path": super::shown(path),
        "file_bytes": file_len(path),
        "journal_bytes": file_len(&journal_path(path)),
        "rows": rows,
        "tables": tables,
    });
    app.out.ok(&value, View::Record);
    Ok(())
}

/// Rewrites the file without free space.
pub(crate) fn compact(app: &App, path: &Path) -> Result<()> {
    let before = file_len(path);
    let compacted = app.db.compact()?;
    let value = json!({
        "compacted": compacted,
        "bytes_before": before,
        "bytes_after": file_len(path),
    });
    app.out.ok(&value, View::Record);
    Ok(())
}

/// A consistent copy of the open database.
pub(crate) fn backup(app: &App, target: &Path) -> Result<()> {
    app.db.backup_to(target)?;
    let value = json!({ "path": target.display().to_string(), "bytes": file_len(target) });
    app.out.ok(&value, View::Record);
    Ok(())
}

/// JSON lines of everything, to stdout (`-` or nothing) or a new file.
pub(crate) fn export(app: &App, file: Option<&Path>, force: bool) -> Result<()> {
    match file.filter(|f| f.as_os_str() != "-") {
        None => {
            let mut sink = PipeWriter(BufWriter::new(std::io::stdout().lock()));
            let result = app
                .db
                .export_jsonl(&mut sink)
                .and_then(|_| sink.flush().map_err(|e| storage(format!("writing: {e}"))));
            match result {
                // The reader went away (`orgdb export | head`): stop quietly.
                Err(_) if output::stdout_closed() => Ok(()),
                other => other,
            }
        }
        Some(target) => {
            if target.exists() && !force {
                return Err(invalid(
                    "path",
                    format!("{} exists (use --force to overwrite)", target.display()),
                ));
            }
            let written = (|| {
                let file = fs::File::create(target)
                    .map_err(|e| storage(format!("creating {}: {e}", target.display())))?;
                let mut sink = BufWriter::new(file);
                let n = app.db.export_jsonl(&mut sink)?;
                sink.into_inner()
                    .map_err(|e| storage(format!("writing {}: {e}", target.display())))?
                    .sync_all()
                    .map_err(|e| storage(format!("syncing {}: {e}", target.display())))?;
                Ok(n)
            })();
            match written {
                Ok(records) => {
                    let value = json!({ "path": target.display().to_string(), "records": records });
                    app.out.ok(&value, View::Record);
                    Ok(())
                }
                Err(e) => {
                    let _ = fs::remove_file(target);
                    Err(e)
                }
            }
        }
    }
}

/// Loads an export into an empty (or new) database.
pub(crate) fn import(
    path: &Path,
    out: Out,
    file: Option<&Path>,
    batch_size: Option<usize>,
) -> Result<()> {
    if batch_size == Some(0) {
        return Err(invalid("batch_size", "Must be at least 1"));
    }
    if file.is_none() && std::io::stdin().is_terminal() {
        return Err(invalid(
            "file",
            "Give an export file, or `-` / a pipe for stdin",
        ));
    }
    let created = !super::is_url(path) && !path.exists();
    let db = Db::open(path)?;
    let from_file = file.filter(|f| f.as_os_str() != "-");
    let bar = if std::io::stderr().is_terminal() {
        Some(progress_bar(from_file))
    } else {
        None
    };
    let reader = input(from_file)?;
    let result = db.import_jsonl(reader, batch_size, &mut |n| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            out.ok(&report, View::Record);
            Ok(())
        }
        Err(err) => {
            if created && batch_size.is_none() {
                // Nothing was committed: leave no empty database behind.
                drop(db);
                let _ = fs::remove_file(path);
                let _ = fs::remove_file(journal_path(path));
            }
            Err(err)
        }
    }
}

/// A bar over the file's lines, or a spinner for stdin.
fn progress_bar(file: Option<&Path>) -> ProgressBar {
    let lines = file
        .and_then(|f| fs::File::open(f).ok())
        .map(|f| BufReader::new(f).lines().count() as u64);
    let bar = match lines {
        Some(n) => {
            let bar = ProgressBar::new(n);
            if let Ok(style) = ProgressStyle::with_template(
                "importing {wide_bar} {human_pos}/{human_len} records ({eta} left)",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} importing: {human_pos} records")
            {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Stdout that remembers a broken pipe.
struct PipeWriter<W: Write>(W);

impl<W: Write> Write for PipeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(note_pipe)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(note_pipe)
    }
}

fn note_pipe(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        output::mark_stdout_closed();
    }
}

pub(crate) fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

fn file_len(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

//! `orgdb usage …`

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use orgdb::{NewReservation, Period, Result, UsageEvent, UsageQuery};

use super::{date, input, instant, invalid, App};
use crate::output::View;

/// Usage counting against `monthly_requests`, and reports.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Record usage (durable when the command returns). Refused whole with quota_exceeded
    /// when the quota period's total would pass the limit.
    Record {
        /// Organization id or slug.
        org: String,
        /// Number of requests.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// The MCP server or API key used (`res_…`).
        #[arg(long)]
        resource: Option<String>,
        /// When it happened: RFC 3339 or a date (default now; at most 35 days back).
        #[arg(long)]
        at: Option<String>,
        /// Idempotency key: a repeat counts nothing and answers duplicate: true.
        #[arg(long)]
        key: Option<String>,
        /// Record many events in one transaction from a file (`-`: stdin): a JSON array or
        /// JSON lines of {"count", "resource_id", "at", "idempotency_key"}.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["resource", "at", "key"])]
        batch: Option<PathBuf>,
    },
    /// Seed 000's usage report: totals, limit, percentage, per MCP server and per day.
    Report {
        /// Organization id or slug.
        org: String,
        /// day, week (ISO), month, year, or billing (the organization's quota period, the
        /// default).
        #[arg(long)]
        period: Option<String>,
        /// First day (YYYY-MM-DD); alone: the period containing it.
        #[arg(long, alias = "start-date")]
        start: Option<String>,
        /// Last day (YYYY-MM-DD), at most 366 days after the first.
        #[arg(long, alias = "end-date")]
        end: Option<String>,
    },
    /// Hold COUNT requests of the quota before an expensive call (they count at once); settle
    /// with `commit` or `release`, or the hold expires.
    Reserve {
        /// Organization id or slug.
        org: String,
        /// Number of requests to hold.
        #[arg(long)]
        count: u64,
        /// The MCP server or API key the settled usage counts for (`res_…`).
        #[arg(long)]
        resource: Option<String>,
        /// Seconds the hold lives unless settled (1 to 86 400; default 300).
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// Record what a reserved call really cost and free the rest of its hold.
    Commit {
        /// Organization id or slug.
        org: String,
        /// The reservation (`rsv_…`).
        reservation: String,
        /// Requests the call used (beyond the hold only if the quota allows).
        #[arg(long)]
        actual: u64,
    },
    /// Give a reservation's hold back, recording nothing.
    Release {
        /// Organization id or slug.
        org: String,
        /// The reservation (`rsv_…`).
        reservation: String,
    },
    /// Whether COUNT more requests fit this month, without recording anything.
    CheckQuota {
        /// Organization id or slug.
        org: String,
        /// Number of requests.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Correct one day's count (raise or lower; never below zero), inside the last 35 days.
    Correct {
        /// Organization id or slug.
        org: String,
        /// The day (YYYY-MM-DD).
        #[arg(long)]
        date: String,
        /// How much to add; negative removes (e.g. --delta=-5).
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        /// The resource whose count changes (res_…); default: outside any resource.
        #[arg(long)]
        resource: Option<String>,
        /// Idempotency key (a retry counts once).
        #[arg(long)]
        key: Option<String>,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove usage day rows before a date, finished months and expired idempotency keys.
    Prune {
        /// First day to keep (YYYY-MM-DD).
        #[arg(long)]
        before: String,
    },
}

pub(crate) fn run(app: &App, cmd: Cmd) -> Result<()> {
    let (db, out, actor) = (&app.db, &app.out, &app.actor);
    match cmd {
        Cmd::Record {
            org,
            count,
            resource,
            at,
            key,
            batch,
        } => {
            let org = app.org(&org)?;
            if let Some(file) = batch {
                let events = read_events(&file)?;
                out.ok(
                    &db.record_usage_batch(&org, &events)?,
                    View::Rows(&["duplicate", "used", "limit", "remaining"]),
                );
                return Ok(());
            }
            let event = UsageEvent {
                resource_id: resource,
                count,
                at: at.as_deref().map(|t| instant("at", t)).transpose()?,
                idempotency_key: key,
            };
            out.ok(&db.record_usage(&org, &event)?, View::Record);
        }
        Cmd::Report {
            org,
            period,
            start,
            end,
        } => {
            let org = app.org(&org)?;
            let query = UsageQuery {
                period: period
                    .as_deref()
                    .map(|p| {
                        Period::parse(p)
                            .ok_or_else(|| invalid("period", "Must be one of: day, week, month"))
                    })
                    .transpose()?,
                start_date: start
                    .as_deref()
                    .map(|d| date("start_date", d))
                    .transpose()?,
                end_date: end.as_deref().map(|d| date("end_date", d)).transpose()?,
            };
            out.ok(&db.usage_report(actor, &org, &query)?, View::Record);
        }
        Cmd::Reserve {
            org,
            count,
            resource,
            expires_in,
        } => {
            let org = app.org(&org)?;
            let new = NewReservation {
                count,
                resource_id: resource,
                expires_in: expires_in.map(std::time::Duration::from_secs),
            };
            out.ok(&db.reserve_usage(&org, &new)?, View::Record);
        }
        Cmd::Commit {
            org,
            reservation,
            actual,
        } => {
            let org = app.org(&org)?;
            out.ok(
                &db.commit_reservation(&org, &reservation, actual)?,
                View::Record,
            );
        }
        Cmd::Release { org, reservation } => {
            let org = app.org(&org)?;
            let released = db.release_reservation(&org, &reservation)?;
            out.ok(
                &serde_json::json!({ "id": reservation, "released": released }),
                View::Record,
            );
        }
        Cmd::CheckQuota { org, count } => {
            let org = app.org(&org)?;
            out.ok(&db.check_quota(&org, count)?, View::Record);
        }
        Cmd::Correct {
            org,
            date: day,
            delta,
            resource,
            key,
            reason,
        } => {
            let org = app.org(&org)?;
            let correction = orgdb::UsageCorrection {
                date: date("date", &day)?,
                resource_id: resource,
                delta,
                idempotency_key: key,
                reason,
            };
            out.ok(&db.correct_usage(actor, &org, &correction)?, View::Record);
        }
        Cmd::Prune { before } => {
            out.ok(&db.prune_usage(date("before", &before)?)?, View::Record);
        }
    }
    Ok(())
}

/// A JSON array of events, or one event a line.
fn read_events(file: &std::path::Path) -> Result<Vec<UsageEvent>> {
    let mut text = String::new();
    input(Some(file))?
        .read_to_string(&mut text)
        .map_err(|e| super::storage(format!("reading {}: {e}", file.display())))?;
    let bad = |e: serde_json::Error| invalid("batch", e.to_string());
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(bad);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<UsageEvent>(line)
                .map_err(|e| invalid("batch", format!("line {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|events| {
            if events.is_empty() {
                Err(invalid("batch", "No events"))
            } else {
                Ok(events)
            }
        })
}

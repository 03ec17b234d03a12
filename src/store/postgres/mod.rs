//! The PostgreSQL backend: the same typed interface as the embedded one, on plain tables
//! (`schema.rs`), through a pool of connections driven synchronously that pipeline what need
//! not wait (`client.rs`: BEGIN with the first statement, writes with COMMIT), every write
//! transaction SERIALIZABLE and retried when the server reports a serialization failure.
//!
//! Rules of every transaction here:
//! - Writes run at SERIALIZABLE, so every rule an operation checks by reading (seats, limits,
//!   last owner, accept against revoke) holds against other processes exactly as against other
//!   threads: the server aborts one of two transactions whose reads and writes would not
//!   serialize (SQLSTATE 40001), and the runner runs its closure again on a fresh transaction.
//!   Deadlocks (40P01) and unique-key races (23505) are retried the same way; after
//!   [`MAX_ATTEMPTS`] the call fails with `conflict`.
//! - Reads run at REPEATABLE READ, READ ONLY: one snapshot, no locks.
//! - A connection that breaks before COMMIT was sent (or whose server answered a statement
//!   before COMMIT with the session's end) is replaced and the transaction runs again: nothing
//!   was applied (a server restart leaves the pool's idle connections dead). One that breaks
//!   once COMMIT was sent, without the server's answer, fails the call with `storage_error`:
//!   the outcome is unknown to the client, and a retry could apply it twice.

/// Builds a `&'static str` query from a shared column list at compile time.
macro_rules! sql {
    ($head:expr, $tail:expr) => {
        const_format_concat!($head, $tail)
    };
}

macro_rules! const_format_concat {
    ($a:expr, $b:expr) => {{
        const A: &str = $a;
        const B: &str = $b;
        const LEN: usize = A.len() + B.len();
        const BYTES: [u8; LEN] = {
            let mut out = [0u8; LEN];
            let (a, b) = (A.as_bytes(), B.as_bytes());
            let mut i = 0;
            while i < a.len() {
                out[i] = a[i];
                i += 1;
            }
            let mut j = 0;
            while j < b.len() {
                out[a.len() + j] = b[j];
                j += 1;
            }
            out
        };
        const S: &str = match std::str::from_utf8(&BYTES) {
            Ok(s) => s,
            Err(_) => panic!("not UTF-8"),
        };
        S
    }};
}

mod client;
mod rows;
mod schema;
mod tx;
mod whole;

use std::collections::{HashMap, HashSet};
use std::panic::Location;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_postgres::Statement;

use client::Client;

use super::backend::{Backend, Commit};
use super::{Reads, UsageAsk, UsageGuess, Writes};
use crate::error::{Error, Result};

use tx::{Failed, Finished, Open, PgTx};

/// How many times a transaction runs before a serialization failure becomes `conflict`.
pub(crate) const MAX_ATTEMPTS: u32 = 12;

/// Whether `text` names a PostgreSQL server rather than a file.
pub(crate) fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// One pooled connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<tx::SqlKey, Statement>,
}

struct Manager {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn> {
        let mut client = Client::connect(&self.config, self.tls.clone())?;
        // orgdb's statements are prepared once per connection and run with new values every
        // time; left to choose, the server plans many of them afresh on every run (their
        // `= ANY($1)` and `unnest` make the generic plan look dearer than it is), which costs
        // more than running them. A generic plan is made once, with the statistics of that
        // moment: made while a table is empty (a new database) it scans the table, and keeps
        // scanning it as it grows. Every statement of orgdb has an index that leads with its
        // key (the organization's id first), so scans are ruled out unless nothing else can
        // answer (exports and checks). A server without a setting keeps its own choice.
        for setting in [
            "SET plan_cache_mode = force_generic_plan",
            "SET enable_seqscan = off",
        ] {
            let _ = client.batch_execute(setting);
        }
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<()> {
        conn.client.batch_execute("").map_err(pg_err)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// The PostgreSQL store: a connection pool and the durability writes commit with.
pub(crate) struct PgStore {
    pool: r2d2::Pool<Manager>,
    /// `synchronous_commit` stays on for commits as opened (`Durability::Immediate`).
    durable: bool,
    /// Read call sites seen to need more than one statement (the others run without a
    /// transaction: `Kind::Single`).
    multi_statement: RwLock<HashSet<&'static Location<'static>>>,
}

/// What the URL may carry besides what the client understands: `sslrootcert` (PEM file of
/// the certificate authorities to trust instead of the built-in web roots), `pool_max`
/// (connections in the pool, default 16) and `schema` (orgdb's tables in a schema of their
/// own, created when missing).
struct Extras {
    root_cert: Option<String>,
    pool_max: u32,
    schema: Option<String>,
    verify: Verify,
}

/// How much of the server's certificate is checked, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// `prefer` / `require` without `sslrootcert`: encrypted, the certificate not checked.
    Nothing,
    /// `verify-ca`, or `require` with `sslrootcert`: signed by a trusted authority.
    Chain,
    /// `verify-full`: signed by a trusted authority and issued for the host.
    Full,
}

fn split_extras(url: &str) -> Result<(String, Extras)> {
    let mut extras = Extras {
        root_cert: None,
        pool_max: 16,
        schema: None,
        verify: Verify::Nothing,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), extras));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", v)) => extras.root_cert = Some(v.to_owned()),
            // The client knows disable, prefer and require; the verifying modes are orgdb's
            // (TLS required, and the certificate checked).
            Some(("sslmode", "verify-ca")) => {
                extras.verify = Verify::Chain;
                kept.push("sslmode=require");
            }
            Some(("sslmode", "verify-full")) => {
                extras.verify = Verify::Full;
                kept.push("sslmode=require");
            }
            Some(("schema", v)) => {
                let plain = v.len() <= 63
                    && v.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !plain {
                    return Err(Error::invalid(
                        "url",
                        "schema must be 1 to 63 of a-z, 0-9 and _, not starting with a digit",
                    ));
                }
                extras.schema = Some(v.to_owned());
            }
            Some(("pool_max", v)) => {
                extras.pool_max = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| Error::invalid("url", "pool_max must be 1 to 1000"))?;
            }
            _ => kept.push(pair),
        }
    }
    if extras.root_cert.is_some() && extras.verify == Verify::Nothing {
        extras.verify = Verify::Chain;
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, extras))
}

fn tls_config(root_cert: Option<&str>, verify: Verify) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::invalid("url", format!("sslrootcert {path}: {e}")))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| Error::invalid("url", format!("sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::invalid("url", format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::storage(format!("TLS set-up: {e}")))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match verify {
        Verify::Full => webpki,
        Verify::Chain | Verify::Nothing => Arc::new(Lenient {
            webpki,
            check_chain: verify == Verify::Chain,
            schemes: provider.signature_verification_algorithms,
        }),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::storage(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// libpq's weaker modes: `verify-ca` checks the chain but not the host name; `prefer` and
/// `require` check neither (encryption against a passive listener only). The handshake's
/// signatures are always checked against the certificate the server sent.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    check_chain: bool,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::client::danger::ServerCertVerified;
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

impl PgStore {
    /// Connects to the server at `url`, creating or upgrading orgdb's tables.
    ///
    /// `sslmode` as libpq reads it: `disable`; `prefer` (the default: TLS when the server
    /// offers it) and `require` encrypt without checking the certificate; `verify-ca` checks
    /// that a trusted authority signed it; `verify-full` also that it names the host. The
    /// trusted authorities are the web's, or those of `sslrootcert` (which makes `require`
    /// check the chain, as libpq does).
    pub(crate) fn open(url: &str, durable: bool) -> Result<PgStore> {
        let (url, extras) = split_extras(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        if let Some(schema) = &extras.schema {
            // Every connection starts in the schema (one setting sent with the start-up
            // message, no extra round trip).
            let options = match config.get_options() {
                Some(given) => format!("{given} -c search_path={schema}"),
                None => format!("-c search_path={schema}"),
            };
            config.options(&options);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
            extras.root_cert.as_deref(),
            extras.verify,
        )?);
        let manager = Manager { config, tls };
        // Connect once up front, so a wrong address or password is reported by `open` with
        // the server's own words, not as a pool timeout.
        let mut first = r2d2::ManageConnection::connect(&manager)?;
        if let Some(schema) = &extras.schema {
            first
                .client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .map_err(pg_err)?;
        }
        migrate(&mut first.client)?;
        let pool = r2d2::Pool::builder()
            .max_size(extras.pool_max)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(manager);
        Ok(PgStore {
            pool,
            durable,
            multi_statement: RwLock::default(),
        })
    }

    fn is_multi_statement(&self, site: &'static Location<'static>) -> bool {
        self.multi_statement
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(site)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| Error::storage(format!("no PostgreSQL connection within 10 s: {e}")))
    }

    /// Runs one attempt of a transaction on one connection.
    fn attempt(
        &self,
        kind: Kind<'_>,
        run: &mut dyn FnMut(&mut PgTx<'_>) -> Result<()>,
    ) -> std::result::Result<(), Failure> {
        let mut conn = self.conn().map_err(Failure::fatal)?;
        let Conn { client, statements } = &mut *conn;
        if let Kind::Single = kind {
            let mut ptx = PgTx::single(client, statements);
            let result = run(&mut ptx);
            let Finished {
                retry, wants_tx, ..
            } = ptx.finish();
            return match result {
                // Whatever the read made of its refused second statement, it runs again.
                _ if wants_tx => Err(Failure {
                    error: Error::storage("a single-statement read needs a transaction"),
                    retry: true,
                    restart: true,
                }),
                Ok(()) => Ok(()),
                Err(error) => Err(Failure {
                    error,
                    retry,
                    restart: false,
                }),
            };
        }
        let (isolation, commit) = match kind {
            Kind::Read(_) | Kind::Single => ("REPEATABLE READ, READ ONLY", None),
            Kind::Write(commit) => ("SERIALIZABLE", Some(commit)),
            Kind::Usage(commit, ..) => ("READ COMMITTED", Some(commit)),
        };
        let durable = match commit {
            None | Some(Commit::Durable | Commit::Synced | Commit::Restart(_)) => true,
            Some(Commit::AsOpened) => self.durable,
            Some(Commit::Deferred) => false,
        };
        // Sent with the first statement (`Open`): a failure of either is a failed statement.
        let begin = if durable {
            format!("BEGIN ISOLATION LEVEL {isolation}")
        } else {
            format!("BEGIN ISOLATION LEVEL {isolation}; SET LOCAL synchronous_commit = off")
        };
        let tx = Open::new(client, begin);
        let mut ptx = PgTx::new(tx, statements, !matches!(kind, Kind::Usage(..)));
        let result = match kind {
            // Every usage transaction of these organizations locks their rows first, then
            // reads what the one before it committed: read committed sees the newest rows at
            // each statement.
            // With a guess, the lock and the guess's check go with the writes and COMMIT.
            Kind::Usage(_, orgs, prefetch, guesses) => {
                match ptx.lock_guessed(orgs, prefetch, guesses) {
                    Ok(true) => run(&mut ptx).and_then(|()| ptx.before_commit()),
                    Ok(false) => ptx.lock_orgs(orgs, prefetch).and_then(|()| run(&mut ptx)),
                    Err(e) => Err(e),
                }
            }
            _ => run(&mut ptx),
        };
        let Finished {
            tx,
            retry,
            guessed,
            missed,
            ..
        } = ptx.finish();
        let Some(tx) = tx else {
            return Err(Failure::fatal(Error::storage(
                "a transaction was not begun",
            )));
        };
        match result {
            // A run on a guess read beyond it (whatever it made of the refusal): nothing was
            // sent, and it runs again without the guess.
            result if missed => {
                tx.rollback();
                Err(Failure {
                    error: result.err().unwrap_or_else(|| {
                        Error::storage("a usage transaction read beyond its guess")
                    }),
                    retry: false,
                    restart: true,
                })
            }
            Ok(()) => tx.commit().map_err(|failed| match failed {
                // The guess's check found other rows: nothing was applied; it runs again
                // without the guess.
                Failed::Statement { error, .. } if guessed && is_guess_missed(&error) => Failure {
                    retry: false,
                    restart: true,
                    error: pg_error(&error),
                },
                // COMMIT never ran to its end (never sent, or the server refused a statement
                // before it: a write failed, or the session ended while a write ran), or the
                // server refused COMMIT itself as it does a serialization failure: nothing
                // was applied.
                Failed::Statement {
                    error,
                    last_not_run,
                } if last_not_run || is_retryable(&error) => Failure {
                    retry: is_retryable(&error) || is_connection_loss(&error),
                    restart: false,
                    error: pg_error(&error),
                },
                // COMMIT was sent and no answer of the server's says what became of it.
                Failed::Statement { error, .. }
                    if is_connection_loss(&error) || error.as_db_error().is_none() =>
                {
                    Failure::fatal(Error::storage(format!(
                        "PostgreSQL connection lost during COMMIT (the change may or may not \
                         have been applied): {}",
                        describe(&error)
                    )))
                }
                Failed::Statement { error, .. } => {
                    Failure::fatal(Error::storage(format!("PostgreSQL: {}", describe(&error))))
                }
                // A statement failed and the closure went on: nothing was committed, and a
                // failure worth another attempt (a lost connection) gets one.
                Failed::Aborted => Failure {
                    retry,
                    restart: false,
                    error: Error::storage(
                        "PostgreSQL: a statement of the transaction failed; nothing was applied",
                    ),
                },
                Failed::Unanswered => Failure::fatal(Error::storage(
                    "PostgreSQL left COMMIT unanswered (the change may or may not have been \
                     applied)",
                )),
            }),
            Err(error) => {
                tx.rollback();
                Err(Failure {
                    error,
                    retry,
                    restart: false,
                })
            }
        }
    }

    fn run(&self, kind: Kind<'_>, run: &mut dyn FnMut(&mut PgTx<'_>) -> Result<()>) -> Result<()> {
        // A read from a site not known to need more than one statement first runs without a
        // transaction; a site that asks for a second statement is remembered and runs again
        // in one at once (no wait, not counted as an attempt).
        let asked = kind;
        let mut kind = match asked {
            Kind::Read(Some(site)) if !self.is_multi_statement(site) => Kind::Single,
            kind => kind,
        };
        let mut attempt = 0;
        loop {
            match self.attempt(kind, run) {
                Ok(()) => return Ok(()),
                Err(Failure { restart: true, .. }) if matches!(kind, Kind::Single) => {
                    if let Kind::Read(Some(site)) = asked {
                        self.multi_statement
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(site);
                    }
                    kind = asked;
                }
                Err(Failure { restart: true, .. })
                    if matches!(kind, Kind::Usage(_, _, _, [_, ..])) =>
                {
                    if let Kind::Usage(commit, orgs, prefetch, _) = kind {
                        kind = Kind::Usage(commit, orgs, prefetch, &[]);
                    }
                }
                Err(Failure { error, retry, .. }) if retry && attempt + 1 < MAX_ATTEMPTS => {
                    let _ = error;
                    backoff(attempt);
                    attempt += 1;
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
    }
}

/// What a transaction is for, which decides its isolation.
#[derive(Clone, Copy)]
enum Kind<'a> {
    /// Read only, on one snapshot (repeatable read); from this call site, if known.
    Read(Option<&'static Location<'static>>),
    /// A read of one statement, without a transaction (a statement is its own snapshot).
    Single,
    /// Serializable: the server checks that it behaves as if it ran alone.
    Write(Commit),
    /// The usage state of these organizations, whose rows it locks first (read committed:
    /// the lock orders it after every other usage transaction of theirs).
    /// With the usage read to send with the lock (`PgTx::lock_orgs`), if any, and what it
    /// will likely answer (`PgTx::lock_guessed`: one guess per ask), if known.
    Usage(
        Commit,
        &'a [&'a str],
        &'a [(&'a str, UsageAsk<'a>)],
        &'a [UsageGuess],
    ),
}

/// Waits before the next attempt: 1 ms doubling to 128 ms, each wait a random point between
/// half and all of it, so that transactions that collided do not collide again in step.
fn backoff(attempt: u32) {
    let cap_micros = 1_000u64 << attempt.min(7);
    let jitter = getrandom::u64().unwrap_or(0) % (cap_micros / 2 + 1);
    std::thread::sleep(Duration::from_micros(cap_micros / 2 + jitter));
}

/// A failed attempt: the error, and whether running the transaction again is safe and useful.
struct Failure {
    error: Error,
    retry: bool,
    /// A single-statement read asked for a second statement: run it in a transaction.
    restart: bool,
}

impl Failure {
    fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retry: false,
            restart: false,
        }
    }
}

/// Serialization failures, deadlocks and unique-key races: another transaction won; running
/// again sees its result.
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// The error of [`PgTx::lock_guessed`]'s check: the rows it read were not the ones guessed
/// (division by zero, which no other statement of a usage transaction can raise).
fn is_guess_missed(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
}

/// The connection broke (the server went away, restarted, or ended this session): a
/// client-side error from a closed connection or its socket, or the server's own word that it
/// is ending the session.
pub(crate) fn is_connection_loss(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    use tokio_postgres::error::SqlState;
    match e.code() {
        // The server ends the session: class 08 (connection exception), or it is shutting
        // down or was told to end this backend (57P01 admin_shutdown, as
        // `pg_terminate_backend` does; 57P02 crash_shutdown; 57P03 cannot_connect_now).
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        None => {
            e.is_closed()
                || e.source()
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
        }
    }
}

/// The server's message with its detail, or the client's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => {
            use std::error::Error as _;
            match e.source() {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            }
        }
    }
}

/// The orgdb error for a failed statement.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> Error {
    if is_retryable(e) {
        Error::conflict("The change conflicted with concurrent changes; try again")
    } else {
        Error::storage(format!("PostgreSQL: {}", describe(e)))
    }
}

/// [`pg_error`] by value, for `map_err`.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> Error {
    pg_error(&e)
}

/// Runs the migrations; two processes opening a new database at once may race on the same
/// `CREATE … IF NOT EXISTS`, so a failed run is tried again.
fn migrate(client: &mut Client) -> Result<()> {
    let mut attempt = 0;
    loop {
        match schema::migrate(client) {
            Err(Error::Storage { .. } | Error::Conflict { .. }) if attempt + 1 < MAX_ATTEMPTS => {
                backoff(attempt);
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Backend for PgStore {
    fn read_dyn(
        &self,
        site: Option<&'static Location<'static>>,
        f: &mut dyn FnMut(&dyn Reads) -> Result<()>,
    ) -> Result<()> {
        self.run(Kind::Read(site), &mut |tx| f(tx))
    }

    fn write_dyn(
        &self,
        commit: Commit,
        f: &mut dyn FnMut(&mut dyn Writes) -> Result<()>,
    ) -> Result<()> {
        self.run(Kind::Write(commit), &mut |tx| f(tx))
    }

    fn write_usage_dyn(
        &self,
        commit: Commit,
        orgs: &[&str],
        prefetch: &[(&str, UsageAsk<'_>)],
        guesses: &[UsageGuess],
        f: &mut dyn FnMut(&mut dyn Writes) -> Result<()>,
    ) -> Result<()> {
        self.run(Kind::Usage(commit, orgs, prefetch, guesses), &mut |tx| {
            f(tx)
        })
    }

    fn is_memory(&self) -> bool {
        false
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn backup_to(&self, _path: &Path) -> Result<()> {
        Err(Error::invalid(
            "path",
            "A PostgreSQL database is backed up by the server's own tools (pg_dump, \
             pg_basebackup), or exported with `orgdb export`",
        ))
    }

    /// The server reclaims space itself (autovacuum): nothing to do.
    fn compact(&self) -> Result<bool> {
        Ok(false)
    }

    fn table_lens(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        self.run(Kind::Read(None), &mut |tx| {
            out = tx.table_lens()?;
            Ok(())
        })?;
        Ok(out)
    }
}

//! A synchronous PostgreSQL connection that can pipeline: several statements sent together,
//! their answers read after.
//!
//! The engine under it is `tokio_postgres`, driven by a current-thread runtime of the
//! connection's own, as the `postgres` crate drives it; unlike that crate's client this one
//! keeps `tokio_postgres`' pipelining. The steps of one [`Client::pipeline`] leave together and
//! run on the server in order, each with its own Sync: inside a transaction block a failed
//! statement aborts the transaction, so every statement after it fails too (and a COMMIT
//! after it rolls back), and the first error is the one that counts.

use std::future::{poll_fn, Future};
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Error, Row, Socket, Statement, ToStatement};

use super::rows::Params;

/// A call of the inner client, waiting for its answer.
type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + 'c>>;

/// The connection's task, until it ends.
type Driver = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// One connection to the server, used from one thread at a time.
pub(crate) struct Client {
    // Dropped before `driving`: the inner client queues the session's end (Terminate), which
    // `driving` then writes.
    client: tokio_postgres::Client,
    driving: Driving,
}

/// The connection's task (reads and writes the socket while a call waits) and the runtime it
/// runs on.
struct Driving {
    /// Taken only by `drop`, which ends it as the thread allows.
    runtime: ManuallyDrop<tokio::runtime::Runtime>,
    /// `None` once the connection ended.
    driver: Option<Driver>,
}

/// One statement of a [`Client::pipeline`].
#[derive(Clone, Copy)]
pub(crate) enum Step<'a> {
    /// SQL text in the simple protocol (no parameters, no rows kept): BEGIN, COMMIT.
    Simple(&'a str),
    /// A prepared statement whose rows are wanted.
    Query(&'a Statement, Params<'a>),
    /// A prepared statement whose count of rows is wanted.
    Execute(&'a Statement, Params<'a>),
}

/// The answer to one [`Step`].
pub(crate) enum Answer {
    /// A [`Step::Simple`] ran.
    Done,
    /// A [`Step::Query`]'s rows.
    Rows(Vec<Row>),
    /// A [`Step::Execute`]'s count of rows.
    Count(u64),
}

impl Client {
    /// Connects as `config` says, on a runtime of the connection's own.
    pub(crate) fn connect<T>(
        config: &tokio_postgres::Config,
        tls: T,
    ) -> crate::error::Result<Client>
    where
        T: MakeTlsConnect<Socket> + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| crate::error::Error::storage(format!("cannot start I/O: {e}")))?;
        let (client, connection) = runtime.block_on(config.connect(tls)).map_err(|e| {
            crate::error::Error::storage(format!(
                "cannot connect to PostgreSQL: {}",
                super::describe(&e)
            ))
        })?;
        Ok(Client {
            client,
            driving: Driving {
                runtime: ManuallyDrop::new(runtime),
                driver: Some(Box::pin(connection)),
            },
        })
    }

    /// Prepares `sql` on this connection.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        let client = &self.client;
        self.driving.run(Box::pin(client.prepare(sql)))
    }

    /// Runs a statement (prepared, or SQL text prepared for this once) for its rows.
    pub(crate) fn query<T>(&mut self, st: &T, params: Params<'_>) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement + Sync,
    {
        let client = &self.client;
        self.driving.run(Box::pin(client.query(st, params)))
    }

    /// As [`query`](Self::query), for at most one row.
    pub(crate) fn query_opt<T>(&mut self, st: &T, params: Params<'_>) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement + Sync,
    {
        let client = &self.client;
        self.driving.run(Box::pin(client.query_opt(st, params)))
    }

    /// As [`query`](Self::query), for exactly one row.
    pub(crate) fn query_one<T>(&mut self, st: &T, params: Params<'_>) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement + Sync,
    {
        let client = &self.client;
        self.driving.run(Box::pin(client.query_one(st, params)))
    }

    /// Runs a statement for its count of rows.
    pub(crate) fn execute<T>(&mut self, st: &T, params: Params<'_>) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement + Sync,
    {
        let client = &self.client;
        self.driving.run(Box::pin(client.execute(st, params)))
    }

    /// Runs SQL text in the simple protocol (one or more statements, no parameters).
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let client = &self.client;
        self.driving.run(Box::pin(client.batch_execute(sql)))
    }

    /// Runs one step to its end.
    pub(crate) fn step(&mut self, step: Step<'_>) -> Result<Answer, Error> {
        let client = &self.client;
        self.driving.run(call(client, step))
    }

    /// Sends every step at once and waits for all their answers: one per step, in order.
    ///
    /// A step that fails before it is sent (a parameter that does not encode, or a connection
    /// already closed) stops the pipeline there: the steps after it are never sent (`None`),
    /// so a COMMIT after a write that could not be sent never leaves. Also returns how many
    /// steps were sent (the ones before that step).
    ///
    /// What the server sent while the connection was idle is read first: a session it ended
    /// meanwhile (a restart, `pg_terminate_backend`) is then seen as closed before anything is
    /// queued, so none of the steps is sent, rather than queued and lost unanswered.
    pub(crate) fn pipeline(
        &mut self,
        steps: &[Step<'_>],
    ) -> (Vec<Option<Result<Answer, Error>>>, usize) {
        self.driving.read_idle();
        let client = &self.client;
        let mut calls: Vec<Call<'_, Answer>> =
            steps.iter().map(|&step| call(client, step)).collect();
        let mut answers: Vec<Option<Result<Answer, Error>>> = steps.iter().map(|_| None).collect();
        // Each call queues its messages at its first poll, so they leave in the steps' order.
        // Nothing is read before the connection is driven, so a call that is ready at its
        // first poll failed before it was sent: the calls after it are dropped unpolled.
        let mut polled = 0;
        let mut sent = steps.len();
        self.driving.drive(|cx| {
            while polled < calls.len() {
                let i = polled;
                polled += 1;
                if let Poll::Ready(out) = calls[i].as_mut().poll(cx) {
                    let failed = out.is_err();
                    answers[i] = Some(out);
                    if failed {
                        calls.truncate(i + 1);
                        sent = i;
                    }
                }
            }
            for (call, answer) in calls.iter_mut().zip(answers.iter_mut()) {
                if answer.is_none() {
                    if let Poll::Ready(out) = call.as_mut().poll(cx) {
                        *answer = Some(out);
                    }
                }
            }
            if answers[..calls.len()].iter().all(Option::is_some) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        (answers, sent)
    }

    /// Whether the connection ended (the server went away, or closed this session).
    pub(crate) fn is_closed(&self) -> bool {
        self.driving.driver.is_none() || self.client.is_closed()
    }
}

/// The inner client's call that runs `step`.
fn call<'c>(client: &'c tokio_postgres::Client, step: Step<'c>) -> Call<'c, Answer> {
    match step {
        Step::Simple(sql) => {
            Box::pin(async move { client.batch_execute(sql).await.map(|()| Answer::Done) })
        }
        Step::Query(st, params) => {
            Box::pin(async move { client.query(st, params).await.map(Answer::Rows) })
        }
        Step::Execute(st, params) => {
            Box::pin(async move { client.execute(st, params).await.map(Answer::Count) })
        }
    }
}

impl Driving {
    /// Lets the connection handle what arrived while nothing waited (without waiting): a
    /// session's end closes it here.
    fn read_idle(&mut self) {
        let Driving { runtime, driver } = self;
        runtime.block_on(poll_fn(|cx| {
            if let Some(d) = driver.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    *driver = None;
                }
            }
            Poll::Ready(())
        }));
    }

    /// Runs one call to its end.
    fn run<T>(&mut self, mut call: Call<'_, T>) -> Result<T, Error> {
        self.drive(|cx| call.as_mut().poll(cx))
    }

    /// Polls `poll` until it is ready, driving the connection meanwhile: first the calls, so
    /// that their messages are queued before the connection writes; then the connection;
    /// then the calls again, for the answers it read. A connection that ends fails the calls
    /// still waiting on it (closed).
    fn drive<T>(&mut self, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
        let Driving { runtime, driver } = self;
        runtime.block_on(poll_fn(|cx| {
            if let Poll::Ready(out) = poll(cx) {
                return Poll::Ready(out);
            }
            if let Some(d) = driver.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    *driver = None;
                }
            }
            poll(cx)
        }))
    }
}

impl Drop for Driving {
    /// Writes what the dropped client queued (the session's end), for at most a second, then
    /// ends the runtime. On a thread of an async runtime (a host's last handle dropped inside
    /// a task) tokio refuses to block and to wait for a runtime's end, with a panic: there the
    /// socket just closes (the server sees the client go) and the runtime ends without waiting.
    fn drop(&mut self) {
        let driver = self.driver.take();
        // SAFETY: taken once, here, and the field is not used after.
        let runtime = unsafe { ManuallyDrop::take(&mut self.runtime) };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(driver);
            runtime.shutdown_background();
            return;
        }
        if let Some(driver) = driver {
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), driver).await });
        }
    }
}

//! The embedded database behind the local runner's store and queue: one redb file in
//! the data directory, written by one thread that commits concurrent writes together
//! (group commit), so every write is durable when it returns and throughput does not
//! pay one fsync per write. A write that fails does not fail the others of its group:
//! the group is run again without it (redb has no savepoint inside a transaction that
//! has already written, so each write must be able to run more than once).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::oneshot;

/// Writes committed together at most; bounds one commit's latency.
const MAX_GROUP: usize = 512;

/// The page cache: redb's default (1 GiB) would let a busy local runner's memory grow
/// with its file.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

pub const FILE_NAME: &str = "sellerhub.redb";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("embedded database: {0}")]
    Storage(String),
    #[error("embedded database writer stopped")]
    Stopped,
}

impl From<redb::Error> for EmbeddedError {
    fn from(error: redb::Error) -> Self {
        EmbeddedError::Storage(error.to_string())
    }
}

/// A queued write: run in the group's transaction (possibly more than once, when
/// another write of its group failed), then told whether that transaction committed.
trait Job: Send {
    /// Runs the write in `txn`; false when it failed, so its changes must not commit.
    fn run(&mut self, txn: &WriteTransaction) -> bool;
    /// Answers the caller with the last run's outcome, given the commit's.
    fn finish(self: Box<Self>, committed: Result<(), EmbeddedError>);
}

struct Write<F, R> {
    write: F,
    outcome: Option<Result<R, EmbeddedError>>,
    reply: oneshot::Sender<Result<R, EmbeddedError>>,
}

impl<F, R> Job for Write<F, R>
where
    F: FnMut(&WriteTransaction) -> Result<R, redb::Error> + Send,
    R: Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> bool {
        let outcome = match catch_unwind(AssertUnwindSafe(|| (self.write)(txn))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(EmbeddedError::from(error)),
            Err(_) => Err(EmbeddedError::Storage("a write panicked".into())),
        };
        let failed = outcome.is_err();
        self.outcome = Some(outcome);
        !failed
    }

    fn finish(self: Box<Self>, committed: Result<(), EmbeddedError>) {
        let outcome = self.outcome.unwrap_or(Err(EmbeddedError::Stopped));
        let _ = self
            .reply
            .send(outcome.and_then(|value| committed.map(|()| value)));
    }
}

#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has committed what it holds; waiting
        // for it releases the file, so the same process can open it again.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl EmbeddedDb {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EmbeddedError> {
        let path = dir.join(FILE_NAME);
        let open_error = |reason: String| EmbeddedError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|error| open_error(error.to_string()))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|error| open_error(error.to_string()))?;
        let db = Arc::new(db);
        let (jobs, receiver) = mpsc::channel::<Box<dyn Job>>();
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("embedded-db-writer".into())
            .spawn(move || write_loop(&writer_db, &receiver))
            .map_err(|error| open_error(error.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                jobs: Some(jobs),
                writer: Some(writer),
            }),
        })
    }

    /// Runs `write` in a write transaction and returns its result once that transaction is
    /// durably committed. `write` must check everything it needs before it changes
    /// anything: an `Ok` whose changes are partial would be committed as they are. An
    /// `Err` (or a panic) fails this write alone; `write` may then run again, in a fresh
    /// transaction, for the writes it was grouped with, and only its last run counts.
    pub async fn write<R, F>(&self, write: F) -> Result<R, EmbeddedError>
    where
        R: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<R, redb::Error> + Send + 'static,
    {
        let (reply, receiver) = oneshot::channel();
        let job = Box::new(Write {
            write,
            outcome: None,
            reply,
        });
        let jobs = self.inner.jobs.as_ref().ok_or(EmbeddedError::Stopped)?;
        jobs.send(job).map_err(|_| EmbeddedError::Stopped)?;
        receiver.await.map_err(|_| EmbeddedError::Stopped)?
    }

    /// Runs `init` in a write transaction of its own, now, blocking: for adapters to
    /// create their tables when they are built, so reads never meet a missing table.
    pub fn init(
        &self,
        init: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), EmbeddedError> {
        let txn = self.inner.db.begin_write().map_err(redb::Error::from)?;
        init(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Runs `read` on a consistent snapshot, off the async threads.
    pub async fn read<R, F>(&self, read: F) -> Result<R, EmbeddedError>
    where
        R: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<R, redb::Error> + Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(redb::Error::from)?;
            Ok(read(&txn)?)
        })
        .await
        .map_err(|_| EmbeddedError::Storage("a read panicked".into()))?
    }
}

fn write_loop(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

/// Commits the group's writes together. A write that fails is answered with its error
/// and the others run again without it, in a new transaction: each pass drops at least
/// one write, so this ends.
fn commit_group(db: &Database, mut group: Vec<Box<dyn Job>>) {
    while !group.is_empty() {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(error) => {
                tracing::error!(error = %error, "embedded database: cannot begin a write");
                let reason = format!("cannot begin a write: {error}");
                for job in group {
                    job.finish(Err(EmbeddedError::Storage(reason.clone())));
                }
                return;
            }
        };
        let (succeeded, failed): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|mut job| (job.run(&txn), job))
            .partition(|(ok, _)| *ok);
        if failed.is_empty() {
            let committed = txn.commit().map_err(|error| error.to_string());
            for (_, job) in succeeded {
                job.finish(committed.clone().map_err(EmbeddedError::Storage));
            }
            return;
        }
        let _ = txn.abort();
        for (_, job) in failed {
            job.finish(Ok(()));
        }
        group = succeeded.into_iter().map(|(_, job)| job).collect();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use redb::{ReadableTable, TableDefinition};

    use super::*;

    const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("test_counters");

    type Pending<R> = Pin<Box<dyn Future<Output = Result<R, EmbeddedError>> + Send>>;

    /// Starts `write`: once polled, its job is in the writer's queue.
    fn enqueue<R: Send + 'static>(
        db: &EmbeddedDb,
        write: impl FnMut(&WriteTransaction) -> Result<R, redb::Error> + Send + 'static,
    ) -> Pending<R> {
        let db = db.clone();
        let mut pending: Pending<R> = Box::pin(async move { db.write(write).await });
        let polled = pending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(
            matches!(polled, Poll::Pending),
            "the write waits for its commit"
        );
        pending
    }

    fn increment(txn: &WriteTransaction, name: &str) -> Result<u64, redb::Error> {
        let mut counters = txn.open_table(COUNTERS)?;
        let next = counters.get(name)?.map_or(0, |value| value.value()) + 1;
        counters.insert(name, next)?;
        Ok(next)
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_and_its_group_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        db.init(|txn| txn.open_table(COUNTERS).map(drop).map_err(Into::into))
            .unwrap();

        // Hold the writer inside a first group, so the next writes queue up and are
        // committed together as the next group.
        let (started, writer_busy) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let blocker = enqueue(&db, move |_| {
            let _ = started.send(());
            let _ = released.lock().unwrap().recv();
            Ok(())
        });
        writer_busy.recv().unwrap();

        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let before = enqueue(&db, move |txn| {
            counted.fetch_add(1, Ordering::SeqCst);
            increment(txn, "before")
        });
        let failing = enqueue(&db, |txn| {
            increment(txn, "failing")?;
            Err::<(), _>(redb::Error::Corrupted(
                "a deterministic decode error".into(),
            ))
        });
        let panicking = enqueue(&db, |txn| -> Result<(), redb::Error> {
            increment(txn, "panicking")?;
            panic!("a write that panics")
        });
        let after = enqueue(&db, |txn| increment(txn, "after"));
        release.send(()).unwrap();

        blocker.await.unwrap();
        assert_eq!(
            before.await.unwrap(),
            1,
            "its group's failures do not fail it"
        );
        assert_eq!(after.await.unwrap(), 1);
        assert!(
            matches!(failing.await, Err(EmbeddedError::Storage(reason)) if reason.contains("decode"))
        );
        assert!(panicking.await.is_err(), "a panic fails that write");
        assert!(
            runs.load(Ordering::SeqCst) >= 2,
            "a write grouped with a failed one runs again in a fresh transaction"
        );

        let counters = db
            .read(|txn| {
                let table = txn.open_table(COUNTERS)?;
                let value = |name| -> Result<Option<u64>, redb::Error> {
                    Ok(table.get(name)?.map(|value| value.value()))
                };
                Ok([
                    value("before")?,
                    value("failing")?,
                    value("panicking")?,
                    value("after")?,
                ])
            })
            .await
            .unwrap();
        assert_eq!(
            counters,
            [Some(1), None, None, Some(1)],
            "only the last run of each write is committed, failed writes leave nothing"
        );
    }
}

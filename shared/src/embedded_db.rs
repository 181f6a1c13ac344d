//! The embedded database behind the local runner's store and queue: one redb file in
//! the data directory, written by one thread that commits concurrent writes together
//! (group commit), so every write is durable when it returns and throughput does not
//! pay one fsync per write.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::oneshot;

/// Writes committed together at most; bounds one commit's latency.
const MAX_GROUP: usize = 512;

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

/// A write: runs inside the group's transaction, returns how to report its result once
/// the group has committed (or failed to).
type Job = Box<dyn FnOnce(&WriteTransaction) -> Finish + Send>;

struct Finish {
    failed: bool,
    report: Box<dyn FnOnce(Result<(), EmbeddedError>) + Send>,
}

#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    jobs: Option<mpsc::Sender<Job>>,
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
        let db = Arc::new(Database::create(&path).map_err(|error| open_error(error.to_string()))?);
        let (jobs, receiver) = mpsc::channel::<Job>();
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
    /// `Err` fails the whole group it was committed with.
    pub async fn write<R, F>(&self, write: F) -> Result<R, EmbeddedError>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, redb::Error> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let outcome = catch_unwind(AssertUnwindSafe(|| write(txn)));
            let (failed, result) = match outcome {
                Ok(Ok(value)) => (false, Ok(value)),
                Ok(Err(error)) => (true, Err(EmbeddedError::from(error))),
                Err(_) => (true, Err(EmbeddedError::Storage("a write panicked".into()))),
            };
            Finish {
                failed,
                report: Box::new(move |committed| {
                    let _ = sender.send(result.and_then(|value| committed.map(|()| value)));
                }),
            }
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

fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>) {
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

fn commit_group(db: &Database, group: Vec<Job>) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(error) => {
            // Dropping the jobs unblocks their callers with `Stopped`.
            tracing::error!(error = %error, "embedded database: cannot begin a write");
            drop(group);
            return;
        }
    };
    let finishes: Vec<Finish> = group.into_iter().map(|job| job(&txn)).collect();
    let committed = if finishes.iter().any(|finish| finish.failed) {
        let _ = txn.abort();
        Err("aborted with its group: another write in it failed".to_owned())
    } else {
        txn.commit().map_err(|error| error.to_string())
    };
    for finish in finishes {
        let result = match &committed {
            Ok(()) => Ok(()),
            Err(reason) => Err(EmbeddedError::Storage(reason.clone())),
        };
        (finish.report)(result);
    }
}

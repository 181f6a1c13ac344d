//! The embedded database behind the local runner's store and queue: one redb file in
//! the data directory, written by one thread that commits concurrent writes together
//! (group commit), so every write is durable when it returns and throughput does not
//! pay one fsync per write. A write that fails does not fail the others of its group:
//! the group is run again without it (redb has no savepoint inside a transaction that
//! has already written, so each write must be able to run more than once).
//!
//! After an I/O error (a full disk) redb refuses every later write until the database
//! is closed and opened again: the writer then reopens it and runs the group once more,
//! and reports the error if that fails too. The next write tries again, so the database
//! recovers as soon as the disk does, without a restart.
//!
//! The directory is created owner-only (0700) and the file is kept owner-only (0600):
//! they hold login states and PKCE verifiers.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use redb::backends::FileBackend;
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::oneshot;

/// Writes committed together at most; bounds one commit's latency.
const MAX_GROUP: usize = 512;

/// The page cache: redb's default (1 GiB) would let a busy local runner's memory grow
/// with its file.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

pub const FILE_NAME: &str = "sellerhub.redb";

#[derive(Clone, Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// Another process holds the database (it is one process's at a time).
    #[error("{path} is in use by another process (another local runner?)")]
    Locked { path: PathBuf },
    #[error("embedded database: {0}")]
    Storage(String),
    /// The file could not be read or written (a full disk): nothing was written.
    #[error("embedded database I/O error: {0}")]
    Io(String),
    #[error("embedded database writer stopped")]
    Stopped,
}

impl From<redb::Error> for EmbeddedError {
    fn from(error: redb::Error) -> Self {
        match error {
            redb::Error::Io(_) | redb::Error::PreviousIo => EmbeddedError::Io(error.to_string()),
            error => EmbeddedError::Storage(error.to_string()),
        }
    }
}

/// Creates `dir` (and its missing parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A queued write: run in the group's transaction (possibly more than once, when
/// another write of its group failed), then told whether that transaction committed.
trait Job: Send {
    /// Runs the write in `txn`; its failure when it failed, so its changes must not
    /// commit.
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), Failure>;
    /// Answers the caller: the last run's outcome once its transaction committed, else
    /// the commit's error.
    fn finish(self: Box<Self>, committed: Result<(), EmbeddedError>);
}

/// Why a write failed: its own doing, or the file's (every write of the group fails).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Write,
    Io,
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
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), Failure> {
        let outcome = match catch_unwind(AssertUnwindSafe(|| (self.write)(txn))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(EmbeddedError::from(error)),
            Err(_) => Err(EmbeddedError::Storage("a write panicked".into())),
        };
        let failure = match &outcome {
            Ok(_) => Ok(()),
            Err(EmbeddedError::Io(_)) => Err(Failure::Io),
            Err(_) => Err(Failure::Write),
        };
        self.outcome = Some(outcome);
        failure
    }

    fn finish(self: Box<Self>, committed: Result<(), EmbeddedError>) {
        let outcome = match committed {
            Ok(()) => self.outcome.unwrap_or(Err(EmbeddedError::Stopped)),
            Err(error) => Err(error),
        };
        let _ = self.reply.send(outcome);
    }
}

/// How the database is opened, at first and again after an I/O error.
type Opener = Box<dyn Fn() -> Result<Database, EmbeddedError> + Send + Sync>;

/// The open database, shared by the writer thread and the readers. None while closed:
/// after an I/O error, until it is opened again.
struct Shared {
    db: RwLock<Option<Database>>,
    open: Opener,
}

impl Shared {
    /// The open database, opened again first if an I/O error left it closed (a reader
    /// or a writer meeting it closed retries the open: the disk may have room again).
    fn database(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, EmbeddedError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if db.is_some() {
            return Ok(db);
        }
        drop(db);
        {
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if db.is_none() {
                *db = Some((self.open)()?);
            }
        }
        Ok(self.db.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Closes the database and opens it again: redb accepts no write after an I/O error
    /// until then. Waits for the reads in progress (the file is locked while open).
    fn reopen(&self) -> Result<(), EmbeddedError> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        *db = None;
        *db = Some((self.open)()?);
        Ok(())
    }
}

/// The database was closed again (after another I/O error) between opening and use.
fn closed() -> EmbeddedError {
    EmbeddedError::Io("the database is closed after an I/O error".into())
}

#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
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
        create_private_dir(dir).map_err(|error| EmbeddedError::Open {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        Self::open_with(Box::new(move || open_file(&path)))
    }

    /// The database `open` opens (and opens again after an I/O error).
    fn open_with(open: Opener) -> Result<Self, EmbeddedError> {
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(open()?)),
            open,
        });
        let (jobs, receiver) = mpsc::channel::<Box<dyn Job>>();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("embedded-db-writer".into())
            .spawn(move || write_loop(&writer_shared, &receiver))
            .map_err(|error| EmbeddedError::Storage(format!("no writer thread: {error}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
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
        let db = self.inner.shared.database()?;
        let db = db.as_ref().ok_or_else(closed)?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
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
        let shared = Arc::clone(&self.inner.shared);
        tokio::task::spawn_blocking(move || {
            let db = shared.database()?;
            let txn = db
                .as_ref()
                .ok_or_else(closed)?
                .begin_read()
                .map_err(redb::Error::from)?;
            Ok(read(&txn)?)
        })
        .await
        .map_err(|_| EmbeddedError::Storage("a read panicked".into()))?
    }
}

/// The redb file at `path`, created owner-only if new, and kept owner-only.
fn open_file(path: &Path) -> Result<Database, EmbeddedError> {
    let open_error = |reason: String| EmbeddedError::Open {
        path: path.to_owned(),
        reason,
    };
    let mut options = File::options();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|error| open_error(error.to_string()))?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|error| open_error(error.to_string()))?;
    let database_error = |error: redb::DatabaseError| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => EmbeddedError::Locked {
            path: path.to_owned(),
        },
        error => open_error(error.to_string()),
    };
    let backend = FileBackend::new(file).map_err(database_error)?;
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(database_error)
}

fn write_loop(shared: &Shared, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Err((group, error)) = commit(shared, group) else {
            continue;
        };
        tracing::warn!(error = %error, "embedded database: I/O error; reopening it");
        let retried = match shared.reopen() {
            Ok(()) => commit(shared, group),
            Err(reopen) => Err((group, reopen)),
        };
        if let Err((group, error)) = retried {
            // It all began with an I/O error, whatever reopening said.
            let error = match error {
                EmbeddedError::Io(_) => error,
                other => EmbeddedError::Io(other.to_string()),
            };
            tracing::error!(error = %error, "embedded database: writes fail");
            for job in group {
                job.finish(Err(error.clone()));
            }
        }
    }
}

/// A group's writes that the file failed: none of them answered yet.
type IoFailure = (Vec<Box<dyn Job>>, EmbeddedError);

/// [`commit_group`] on the open database.
fn commit(shared: &Shared, group: Vec<Box<dyn Job>>) -> Result<(), IoFailure> {
    let db = match shared.database() {
        Ok(db) => db,
        Err(error) => return Err((group, error)),
    };
    match db.as_ref() {
        Some(db) => commit_group(db, group),
        None => Err((group, closed())),
    }
}

/// Commits the group's writes together. A write that fails is answered with its error
/// and the others run again without it, in a new transaction: each pass drops at least
/// one write, so this ends. When the file fails (I/O), the writes not yet answered are
/// handed back, to run again once the database is reopened.
fn commit_group(db: &Database, mut group: Vec<Box<dyn Job>>) -> Result<(), IoFailure> {
    while !group.is_empty() {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(error) => {
                let error = EmbeddedError::from(redb::Error::from(error));
                if let EmbeddedError::Io(_) = error {
                    return Err((group, error));
                }
                tracing::error!(error = %error, "embedded database: cannot begin a write");
                let reason = format!("cannot begin a write: {error}");
                for job in group {
                    job.finish(Err(EmbeddedError::Storage(reason.clone())));
                }
                return Ok(());
            }
        };
        let runs: Vec<_> = group
            .into_iter()
            .map(|mut job| (job.run(&txn), job))
            .collect();
        if runs.iter().any(|(run, _)| *run == Err(Failure::Io)) {
            let _ = txn.abort();
            let group = runs.into_iter().map(|(_, job)| job).collect();
            return Err((group, EmbeddedError::Io("a write met an I/O error".into())));
        }
        let (succeeded, failed): (Vec<_>, Vec<_>) =
            runs.into_iter().partition(|(run, _)| run.is_ok());
        if failed.is_empty() {
            let jobs = succeeded.into_iter().map(|(_, job)| job);
            match txn
                .commit()
                .map_err(|error| EmbeddedError::from(redb::Error::from(error)))
            {
                Err(EmbeddedError::Io(reason)) => {
                    return Err((jobs.collect(), EmbeddedError::Io(reason)));
                }
                committed => {
                    for job in jobs {
                        job.finish(committed.clone());
                    }
                    return Ok(());
                }
            }
        }
        let _ = txn.abort();
        for (_, job) in failed {
            job.finish(Ok(()));
        }
        group = succeeded.into_iter().map(|(_, job)| job).collect();
    }
    Ok(())
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

    #[tokio::test]
    async fn after_a_full_disk_writes_work_again_once_there_is_room_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let db = full_disk::open(dir.path(), &full);
        db.init(|txn| txn.open_table(COUNTERS).map(drop).map_err(Into::into))
            .unwrap();
        assert_eq!(db.write(|txn| increment(txn, "a")).await.unwrap(), 1);

        full.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            let error = db.write(|txn| increment(txn, "a")).await.unwrap_err();
            assert!(matches!(error, EmbeddedError::Io(_)), "{error}");
        }

        full.store(false, Ordering::SeqCst);
        assert_eq!(db.write(|txn| increment(txn, "a")).await.unwrap(), 2);
        let stored = db
            .read(|txn| Ok(txn.open_table(COUNTERS)?.get("a")?.map(|v| v.value())))
            .await
            .unwrap();
        assert_eq!(
            stored,
            Some(2),
            "the writes refused while full left nothing"
        );
    }

    #[test]
    fn the_directory_and_the_file_are_owner_only() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let parent = tempfile::tempdir().unwrap();
            let dir = parent.path().join("data").join("sellerhub");
            let _db = EmbeddedDb::open(&dir).unwrap();
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&parent.path().join("data")), 0o700);
            assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
        }
    }

    #[test]
    fn a_file_left_readable_by_others_is_made_owner_only() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FILE_NAME);
            drop(EmbeddedDb::open(dir.path()).unwrap());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let _db = EmbeddedDb::open(dir.path()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_database_held_elsewhere_is_reported_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = EmbeddedDb::open(dir.path()).unwrap();
        match EmbeddedDb::open(dir.path()) {
            Err(EmbeddedError::Locked { path }) => assert_eq!(path, dir.path().join(FILE_NAME)),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("opened twice"),
        }
    }
}

/// A database on a disk that fills up when told to, for tests of what a full disk does.
#[cfg(test)]
pub(crate) mod full_disk {
    use std::fs::File;
    use std::ops::Bound;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::backends::FileBackend;
    use redb::{BackendError, StorageBackend};

    use super::{EmbeddedDb, EmbeddedError, FILE_NAME};

    /// While `full`, writing or growing the file fails with "no space left on device", as
    /// ENOSPC does.
    #[derive(Debug)]
    struct Disk {
        file: FileBackend,
        full: Arc<AtomicBool>,
    }

    impl Disk {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                return Err(std::io::ErrorKind::StorageFull.into());
            }
            Ok(())
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }
        fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
            self.file.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.file.try_lock_shared_range(start, end)
        }
        fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
            self.file.lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), BackendError> {
            self.file.lock_shared_range(start, end)
        }
        fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
            self.file.unlock_range(start, end)
        }
        fn query_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.file.query_lock_range(start, end)
        }
    }

    /// The database in `dir` on a disk that `full` fills.
    pub(crate) fn open(dir: &Path, full: &Arc<AtomicBool>) -> EmbeddedDb {
        let path = dir.join(FILE_NAME);
        let full = Arc::clone(full);
        EmbeddedDb::open_with(Box::new(move || {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|error| EmbeddedError::Io(error.to_string()))?;
            let disk = Disk {
                file: FileBackend::new(file)
                    .map_err(|error| EmbeddedError::Io(error.to_string()))?,
                full: Arc::clone(&full),
            };
            redb::Builder::new()
                .create_with_backend(disk)
                .map_err(|error| EmbeddedError::Storage(error.to_string()))
        }))
        .unwrap()
    }
}

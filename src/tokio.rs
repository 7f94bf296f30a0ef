//! Async counterparts of the store's blocking calls, for hosts on a tokio
//! runtime (the `tokio` feature).
//!
//! The store's writing and waiting calls block their thread: on an
//! fdatasync, on the writer's lock, on a condition variable. Called from an
//! async task they would stall every task of that executor thread (all of
//! them, on a current-thread runtime). [`AsyncStore`] runs each of them
//! with [`tokio::task::spawn_blocking`],
//! tokio's answer for blocking I/O: the call runs on the runtime's blocking
//! thread pool and the task awaits its result, so the executor threads
//! never block. Calls that do not block on I/O ([`Store::snapshot`],
//! reads through a snapshot, [`Store::last_lsn`], [`Store::durable_lsn`],
//! [`Store::stats`]) are used directly through [`AsyncStore::store`].
//!
//! Two things follow from running on the blocking pool:
//! - Dropping a returned future does not cancel the call: a write that was
//!   started completes (its LSN is then reported to nobody), and a wait
//!   goes on until it ends. Give waits a timeout, or close the store, to
//!   bound them.
//! - Each call under way holds a thread of the blocking pool (tokio's
//!   default limit is 512): a host with very many concurrent waits should
//!   have few tasks wait with [`AsyncStore::wait_for`] and fan out itself.
//!
//! The futures must be polled within a tokio runtime (`spawn_blocking`
//! panics outside one). A panic in the blocking call is resumed in the
//! awaiting task; a runtime shutting down before the call ran gives an
//! [`Error::Io`].

use std::sync::Arc;
use std::time::Duration;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::options::WriteOptions;
use crate::store::Store;

/// A shared [`Store`] whose blocking calls are async (see the module
/// documentation). Cheap to clone: clones share the store.
///
/// ```
/// # fn main() -> journalstore::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use std::sync::Arc;
/// use journalstore::tokio::AsyncStore;
/// use journalstore::{Store, WriteBatch};
///
/// let store = AsyncStore::new(Arc::new(Store::open(tmp.path(), Default::default())?));
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// runtime.block_on(async {
///     let mut batch = WriteBatch::new();
///     batch.append(b"inv-1", b"step 1");
///     let lsn = store.write(batch).await?; // durable: SyncMode::Always
///     assert!(store.store().snapshot().lsn() >= lsn);
///     store.close().await
/// })
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncStore {
    store: Arc<Store>,
}

impl AsyncStore {
    /// Wraps a shared store; other handles of the `Arc` go on working.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// let store = Arc::new(journalstore::Store::open(tmp.path(), Default::default())?);
    /// let async_store = journalstore::tokio::AsyncStore::new(store.clone());
    /// assert!(Arc::ptr_eq(async_store.store(), &store));
    /// # Ok(()) }
    /// ```
    pub fn new(store: Arc<Store>) -> AsyncStore {
        AsyncStore { store }
    }

    /// The store, for the calls that do not block on I/O (snapshots, LSNs,
    /// stats).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// let async_store = journalstore::tokio::AsyncStore::from(store);
    /// assert_eq!(async_store.store().last_lsn(), 0);
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// [`Store::write`], on the blocking pool.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = runtime.block_on(store.write(batch))?;
    /// assert_eq!(store.store().last_lsn(), lsn);
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, batch: WriteBatch) -> Result<u64> {
        self.blocking(move |store| store.write(&batch)).await
    }

    /// [`Store::write_with`], on the blocking pool.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// use journalstore::WriteOptions;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = runtime.block_on(store.write_with(batch, WriteOptions { sync: false }))?;
    /// runtime.block_on(store.sync_to(lsn))?;
    /// # Ok(()) }
    /// ```
    pub async fn write_with(&self, batch: WriteBatch, options: WriteOptions) -> Result<u64> {
        self.blocking(move |store| store.write_with(&batch, options))
            .await
    }

    /// [`Store::sync_to`], on the blocking pool.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = store.store().write_with(&batch, journalstore::WriteOptions { sync: false })?;
    /// runtime.block_on(store.sync_to(lsn))?;
    /// assert!(store.store().durable_lsn() >= lsn);
    /// # Ok(()) }
    /// ```
    pub async fn sync_to(&self, lsn: u64) -> Result<()> {
        self.blocking(move |store| store.sync_to(lsn)).await
    }

    /// [`Store::wait_for`], on the blocking pool.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// runtime.block_on(async {
    ///     // A follower task waits; the writer runs on the same thread
    ///     // meanwhile, since the wait does not block it.
    ///     let follower = tokio::spawn({
    ///         let store = store.clone();
    ///         async move { store.wait_for(1, None).await }
    ///     });
    ///     let mut batch = journalstore::WriteBatch::new();
    ///     batch.append(b"j", b"e");
    ///     store.write(batch).await?;
    ///     assert!(follower.await.unwrap()?);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn wait_for(&self, lsn: u64, timeout: Option<Duration>) -> Result<bool> {
        self.blocking(move |store| store.wait_for(lsn, timeout))
            .await
    }

    /// [`Store::wait_for_durable`], on the blocking pool.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = runtime.block_on(store.write(batch))?; // SyncMode::Always: durable
    /// assert!(runtime.block_on(store.wait_for_durable(lsn, None))?);
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_durable(&self, lsn: u64, timeout: Option<Duration>) -> Result<bool> {
        self.blocking(move |store| store.wait_for_durable(lsn, timeout))
            .await
    }

    /// [`Store::close`], on the blocking pool: it syncs, and waits for the
    /// calls under way.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::tokio::AsyncStore::from(
    /// #     journalstore::Store::open(tmp.path(), Default::default())?);
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// runtime.block_on(store.close())?;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"late");
    /// let late = runtime.block_on(store.write(batch));
    /// assert!(matches!(late, Err(journalstore::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<()> {
        self.blocking(|store| store.close()).await
    }

    /// Runs `call` on the runtime's blocking pool and awaits its result.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        match ::tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::io(
                "run a blocking call",
                self.store.path(),
                std::io::Error::other(e),
            )),
        }
    }
}

impl From<Arc<Store>> for AsyncStore {
    fn from(store: Arc<Store>) -> AsyncStore {
        AsyncStore::new(store)
    }
}

impl From<Store> for AsyncStore {
    fn from(store: Store) -> AsyncStore {
        AsyncStore::new(Arc::new(store))
    }
}

//! Storage: a small key-value trait. The extension backs it with `chrome.storage.local`, the
//! command-line payer with one SQLite file ([`SqliteStore`]).
//!
//! Every change goes through [`Store::write`]: a [`WriteBatch`] of puts and removes that is
//! durable, all of it or none of it, when `write` returns. Wallet operations do not write
//! themselves; they return a [`Staged`] value whose writes must be committed before the value
//! (a payment header, a receipt) can be taken: "persist, then act" as a type.

use core::cell::RefCell;
use core::fmt;
use std::collections::BTreeMap;

/// Why storage failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage failed: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Puts and removes to be written together by [`Store::write`], by key: a later change of a
/// key replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch(BTreeMap<String, Option<Vec<u8>>>);

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) {
        self.0.insert(key.into(), Some(value));
    }

    /// Removes `key` (nothing if it is absent).
    pub fn remove(&mut self, key: impl Into<String>) {
        self.0.insert(key.into(), None);
    }

    /// Adds `later`'s changes, which win over this batch's for the same key.
    pub fn merge(&mut self, later: WriteBatch) {
        self.0.extend(later.0);
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the batch does to `key`: `Some(Some(value))` sets it, `Some(None)` removes it,
    /// `None` leaves it alone.
    pub fn get(&self, key: &str) -> Option<Option<&[u8]>> {
        self.0.get(key).map(Option::as_deref)
    }

    /// Every change, by key: the value to set, or `None` to remove.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The changes of the keys starting with `prefix`.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.iter().filter(move |(k, _)| k.starts_with(prefix))
    }

    /// The same changes with `prefix` in front of every key.
    pub fn prefixed(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v))
                .collect(),
        )
    }
}

impl IntoIterator for WriteBatch {
    type Item = (String, Option<Vec<u8>>);
    type IntoIter = std::collections::btree_map::IntoIter<String, Option<Vec<u8>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A durable key-value store. Keys are short ASCII paths such as `channel/<id>`.
// Futures are not `Send`: the wasm worker is single-threaded, and native callers run the
// wallet on one task.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key starting with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Applies every change of `batch`, atomically: when it returns `Ok` all of them are
    /// durable; when it fails, none is (see each store for how close it comes).
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Stores `value` under `key`; durable when it returns.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write(batch).await
    }

    /// Removes `key` (no error if it is absent); durable when it returns.
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        batch.remove(key);
        self.write(batch).await
    }
}

impl<S: Store> Store for &S {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        (**self).keys(prefix).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        (**self).write(batch).await
    }
}

/// In-memory state that mirrors part of a store (records read once, then kept): told of every
/// batch once the store has it, and only then.
pub trait Mirror {
    /// `batch` is durable: take its changes of the keys this state mirrors.
    fn committed(&self, batch: &WriteBatch);
}

/// What a staged change is committed to: a store, and the in-memory state that mirrors it,
/// which learns of the change only once the store has it.
#[allow(async_fn_in_trait)]
pub trait Commit {
    /// Writes `batch` atomically, then updates the in-memory state that mirrors the store.
    /// On failure nothing changes, in the store or in memory.
    async fn commit_batch(&self, batch: WriteBatch) -> Result<(), StoreError>;
}

/// A value with the writes that must be durable before it is used: a payment header whose
/// signed state is not stored yet, a receipt whose budget is not committed yet. The only way
/// to the value is [`Staged::commit`], so whatever acts on it (sends the header, shows the
/// receipt) runs after the store has it. Dropping a staged value undoes nothing, because
/// nothing was done: the store and the wallet's memory are as they were.
#[must_use = "commit it to the store, then act on its value"]
#[derive(Debug)]
pub struct Staged<T> {
    value: T,
    writes: WriteBatch,
}

impl<T> Staged<T> {
    /// `value`, usable once `writes` are stored.
    pub fn new(value: T, writes: WriteBatch) -> Self {
        Self { value, writes }
    }

    /// The writes to commit. Further changes may be staged on top of them (the operations
    /// that take a `base` batch read through it) and committed together.
    pub fn writes(&self) -> &WriteBatch {
        &self.writes
    }

    /// The same writes, the value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Staged<U> {
        Staged {
            value: f(self.value),
            writes: self.writes,
        }
    }

    /// This change and `later` (staged on top of it) as one: both values, once the writes of
    /// both are committed in one atomic write.
    pub fn and<U>(mut self, later: Staged<U>) -> Staged<(T, U)> {
        self.writes.merge(later.writes);
        Staged {
            value: (self.value, later.value),
            writes: self.writes,
        }
    }

    /// Stages more writes that depend on this value (a record of it kept elsewhere): `f` sees
    /// the value and returns its own staged change; both values are had once the writes of
    /// both are committed in one atomic write.
    pub fn and_stage<U, E>(
        self,
        f: impl FnOnce(&T) -> Result<Staged<U>, E>,
    ) -> Result<Staged<(T, U)>, E> {
        let later = f(&self.value)?;
        Ok(self.and(later))
    }

    /// Commits this change together with `pending` (writes staged earlier and not yet
    /// committed, such as receipts), under its own changes, if it writes anything; then
    /// `pending` is empty. A change that writes nothing commits for free and leaves `pending`
    /// as it is; so does a failed write.
    pub async fn commit_carrying(
        self,
        to: &impl Commit,
        pending: &mut WriteBatch,
    ) -> Result<T, StoreError> {
        if self.writes.is_empty() {
            return Ok(self.value);
        }
        let mut batch = pending.clone();
        batch.merge(self.writes);
        to.commit_batch(batch).await?;
        *pending = WriteBatch::new();
        Ok(self.value)
    }

    /// The value and the writes apart, for this crate's operations that compose staged changes
    /// into one (the value is still only handed out by a commit of the whole).
    pub(crate) fn into_parts(self) -> (T, WriteBatch) {
        (self.value, self.writes)
    }

    /// Drops the value and keeps the writes, to commit with a later change (a receipt waiting
    /// for the next payment's write).
    pub fn into_writes(self) -> WriteBatch {
        self.writes
    }

    /// Commits the writes in one atomic write and then hands out the value. On failure the
    /// value is gone with the error: nothing that needed the writes can happen.
    pub async fn commit(self, to: &impl Commit) -> Result<T, StoreError> {
        if !self.writes.is_empty() {
            to.commit_batch(self.writes).await?;
        }
        Ok(self.value)
    }
}

/// An in-memory store, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore(RefCell<BTreeMap<String, Vec<u8>>>);

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.borrow().get(key).cloned())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .0
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut map = self.0.borrow_mut();
        for (key, value) in batch {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }
}

/// A directory of files, one per key (`/` in keys becomes a subdirectory), each written to a
/// temporary file, synced and renamed into place so that a crash leaves the old or the new
/// value, never a torn one. Kept to read wallets written before [`SqliteStore`] (which imports
/// them) and for tests: a batch is written key by key, so **a crash in the middle of a
/// [`Store::write`] keeps part of it**; no wallet runs on it.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: impl Into<std::path::PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> Result<std::path::PathBuf, StoreError> {
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !ok {
            return Err(StoreError(format!("invalid key {key:?}")));
        }
        Ok(self.dir.join(key))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl FileStore {
    /// [`Store::get`], blocking the calling thread.
    pub fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError(format!("{key}: {e}"))),
        }
    }

    /// [`Store::put`], blocking the calling thread until the value is durable.
    pub fn put_blocking(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.path(key)?;
        let err = |e: std::io::Error| StoreError(format!("{key}: {e}"));
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(err)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        file.write_all(value).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        // The rename is durable once the directory entry is.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(err)
    }

    /// [`Store::keys`], blocking the calling thread.
    pub fn keys_blocking(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| StoreError(e.to_string()))?;
            for entry in entries {
                let path = entry.map_err(|e| StoreError(e.to_string()))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_none_or(|e| e != "tmp") {
                    let rel = path.strip_prefix(&self.dir).unwrap_or(&path);
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// [`Store::remove`], blocking the calling thread until the removal is durable.
    pub fn remove_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let err = |e: std::io::Error| StoreError(format!("{key}: {e}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(e)),
        }
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(err)
    }
}

/// The store's methods run on the calling thread; an async caller that must not stall (other
/// requests in flight) runs the `_blocking` methods on a thread of its own instead.
#[cfg(not(target_arch = "wasm32"))]
impl Store for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blocking(key)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.keys_blocking(prefix)
    }

    /// Key by key, in order: not atomic (see [`FileStore`]).
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for (key, value) in batch {
            match value {
                Some(value) => self.put_blocking(&key, &value)?,
                None => self.remove_blocking(&key)?,
            }
        }
        Ok(())
    }
}

/// The name of [`SqliteStore`]'s database file in the wallet directory.
#[cfg(not(target_arch = "wasm32"))]
pub const SQLITE_FILE: &str = "wallet.sqlite3";

/// A store in one SQLite file (`wallet.sqlite3` in the wallet directory), in WAL mode with
/// `synchronous=FULL`: a [`Store::write`] is one transaction, on disk when it returns, at the
/// cost of one flush (a [`FileStore`] `put` costs three: the file, the rename and the
/// directory). Readers and writers in other processes see whole batches only.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone)]
pub struct SqliteStore {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
}

#[cfg(not(target_arch = "wasm32"))]
fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

#[cfg(not(target_arch = "wasm32"))]
impl SqliteStore {
    /// The store of the wallet directory `dir`, created if missing. A directory written by a
    /// [`FileStore`] is moved into the database the first time: every key in one transaction,
    /// after which the files are removed.
    pub fn open(dir: impl Into<std::path::PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let mut conn = rusqlite::Connection::open(dir.join(SQLITE_FILE)).map_err(sqlite)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);",
        )
        .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite)?;
        import_files(&mut conn, &dir)?;
        Ok(Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError("connection lock poisoned".into()))
    }

    /// [`Store::get`], blocking the calling thread.
    pub fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.conn()?
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .map_err(sqlite)?
            .query_row([key], |r| r.get(0))
            .optional()
            .map_err(sqlite)
    }

    /// [`Store::write`], blocking the calling thread until the batch is durable: one
    /// transaction, so a crash or an error keeps all of it or none.
    pub fn write_blocking(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(sqlite)?;
        for (key, value) in batch {
            match value {
                Some(value) => tx
                    .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
                    .map_err(sqlite)?
                    .execute(rusqlite::params![key, value]),
                None => tx
                    .prepare_cached("DELETE FROM kv WHERE key = ?1")
                    .map_err(sqlite)?
                    .execute([key]),
            }
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)
    }

    /// [`Store::keys`], blocking the calling thread.
    pub fn keys_blocking(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT key FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
            .map_err(sqlite)?;
        let keys = stmt
            .query_map([prefix], |r| r.get(0))
            .map_err(sqlite)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(sqlite);
        keys
    }
}

/// Moves the keys of a [`FileStore`] in `dir` into the empty database `conn`, in one
/// transaction; the files go once it is committed (a crash in between leaves files that are
/// no longer read).
#[cfg(not(target_arch = "wasm32"))]
fn import_files(conn: &mut rusqlite::Connection, dir: &std::path::Path) -> Result<(), StoreError> {
    let empty: bool = conn
        .query_row("SELECT NOT EXISTS (SELECT 1 FROM kv)", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !empty {
        return Ok(());
    }
    let files = FileStore::open(dir)?;
    let keys: Vec<String> = files
        .keys_blocking("")?
        .into_iter()
        .filter(|k| files.path(k).is_ok() && !k.starts_with(SQLITE_FILE))
        .collect();
    let tx = conn.transaction().map_err(sqlite)?;
    for key in &keys {
        if let Some(value) = files.get_blocking(key)? {
            tx.execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)",
                rusqlite::params![key, value],
            )
            .map_err(sqlite)?;
        }
    }
    tx.commit().map_err(sqlite)?;
    for key in &keys {
        let path = files.path(key)?;
        std::fs::remove_file(&path).map_err(|e| StoreError(format!("{key}: {e}")))?;
    }
    Ok(())
}

/// The store's methods run on the calling thread; an async caller that must not stall runs the
/// `_blocking` methods on a thread of its own instead.
#[cfg(not(target_arch = "wasm32"))]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blocking(key)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.keys_blocking(prefix)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write_blocking(batch)
    }
}

//! Storage: a small key-value trait. The extension backs it with `chrome.storage.local`, the
//! command-line payer with one SQLite file ([`SqliteStore`]). Every `put` is durable when it
//! returns: callers store state before they act on it.

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

/// A durable key-value store. Keys are short ASCII paths such as `channel/<id>`.
// Futures are not `Send`: the wasm worker is single-threaded, and native callers run the
// wallet on one task.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`; durable when it returns.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError>;
    /// Every key starting with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `key` (no error if it is absent); durable when it returns.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
}

impl<S: Store> Store for &S {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        (**self).put(key, value).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        (**self).keys(prefix).await
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        (**self).remove(key).await
    }
}

/// An in-memory store, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore(RefCell<BTreeMap<String, Vec<u8>>>);

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.borrow().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.0.borrow_mut().insert(key.to_owned(), value);
        Ok(())
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

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
}

/// A directory of files, one per key (`/` in keys becomes a subdirectory), each written to a
/// temporary file, synced and renamed into place so that a crash leaves the old or the new
/// value, never a torn one.
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

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.put_blocking(key, &value)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.keys_blocking(prefix)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.remove_blocking(key)
    }
}

/// The name of [`SqliteStore`]'s database file in the wallet directory.
#[cfg(not(target_arch = "wasm32"))]
pub const SQLITE_FILE: &str = "wallet.sqlite3";

/// A store in one SQLite file (`wallet.sqlite3` in the wallet directory), in WAL mode with
/// `synchronous=FULL`: a `put` is one transaction, on disk when it returns, at the cost of one
/// flush (a [`FileStore`] `put` costs three: the file, the rename and the directory). Readers
/// and writers in other processes see whole values only.
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

    /// [`Store::put`], blocking the calling thread until the value is durable.
    pub fn put_blocking(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
            .map_err(sqlite)?
            .execute(rusqlite::params![key, value])
            .map_err(sqlite)?;
        Ok(())
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

    /// [`Store::remove`], blocking the calling thread until the removal is durable.
    pub fn remove_blocking(&self, key: &str) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(sqlite)?
            .execute([key])
            .map_err(sqlite)?;
        Ok(())
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

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.put_blocking(key, &value)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.keys_blocking(prefix)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.remove_blocking(key)
    }
}

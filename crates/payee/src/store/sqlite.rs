//! The default store: one SQLite file. Reads run on tokio's blocking pool; writes go to one
//! writer thread that commits every write waiting for it in one transaction (group commit), so
//! that concurrent payments share one `fsync` instead of queueing for one each.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use bitcoin::{Amount, Txid};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;
use trickle_channel::credit::Ledger;
use trickle_channel::PayeeState;

use super::{
    contract_txid, decode_state, encode_state, with_best, ChannelStore, ChannelUpdate, StoreError,
    StoredChannel,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, channels with their ledger, charged nonces.
    "CREATE TABLE pending_sessions (
        id TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE channels (
        txid TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        paid INTEGER NOT NULL,
        consumed INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE TABLE charged_nonces (
        channel TEXT NOT NULL REFERENCES channels(txid),
        nonce TEXT NOT NULL,
        price INTEGER NOT NULL,
        PRIMARY KEY (channel, nonce)
    );
    CREATE INDEX pending_sessions_created ON pending_sessions(created_at);",
    // 2: the resource a ticket paid for (a pre-armed ticket reloads only that one).
    "ALTER TABLE charged_nonces ADD COLUMN resource TEXT NOT NULL DEFAULT '';",
    // 3: a channel's ledger, revision and best payment in a narrow row of their own, so that a
    // charge writes that row and its tickets, not the state document. Existing channels keep
    // their document's best payment (the row's is NULL until a charge writes one).
    "CREATE TABLE ledger (
        txid TEXT PRIMARY KEY NOT NULL REFERENCES channels(txid),
        revision INTEGER NOT NULL,
        paid INTEGER NOT NULL,
        consumed INTEGER NOT NULL,
        best_change INTEGER,
        best_signature BLOB
    ) WITHOUT ROWID;
    INSERT INTO ledger (txid, revision, paid, consumed)
        SELECT txid, revision, paid, consumed FROM channels;
    ALTER TABLE channels DROP COLUMN paid;
    ALTER TABLE channels DROP COLUMN consumed;
    ALTER TABLE channels DROP COLUMN revision;",
];

/// A channel's columns as [`row_channel`] reads them: the document joined with its ledger row.
const CHANNEL_COLUMNS: &str = "SELECT c.state, l.paid, l.consumed, l.revision, l.best_change,
    l.best_signature FROM channels c JOIN ledger l ON l.txid = c.txid";

/// Channels in one SQLite file (WAL, `synchronous=FULL`: a commit is on disk when it returns).
#[derive(Clone)]
pub struct SqliteStore {
    reader: Arc<Mutex<Connection>>,
    writer: mpsc::Sender<Box<dyn Write>>,
}

/// The most writes one transaction takes: bounds how long a batch holds the database.
const MAX_BATCH: usize = 512;

/// One caller's write, as the writer thread sees it.
trait Write: Send {
    /// Runs the write's statements inside the batch's transaction; whether they succeeded.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's commit has returned (or failed).
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Pending<T, F> {
    run: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let result = self.run.take().map_or_else(
            || Err(StoreError::Backend("write applied twice".into())),
            |run| run(conn),
        );
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Self { result, reply, .. } = *self;
        let result = committed.and_then(|()| {
            result.unwrap_or_else(|| Err(StoreError::Backend("write not applied".into())))
        });
        // The caller is gone only if its request was dropped.
        let _ = reply.send(result);
    }
}

/// The writer thread: takes every write waiting, applies each in its own savepoint (a failed
/// write undoes only itself), commits once, then answers each caller. Nobody hears that a write
/// succeeded before the commit holding it has returned.
fn run_writer(conn: Connection, writes: mpsc::Receiver<Box<dyn Write>>) {
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match writes.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        if let Err(e) = run(&conn, "BEGIN IMMEDIATE") {
            let e = backend(e);
            for w in batch {
                w.answer(Err(e.clone()));
            }
            continue;
        }
        for w in &mut batch {
            let applied = run(&conn, "SAVEPOINT write").is_ok() && {
                let ok = w.apply(&conn);
                let undone = ok || run(&conn, "ROLLBACK TO write").is_ok();
                undone && run(&conn, "RELEASE write").is_ok() && ok
            };
            if !applied {
                tracing::debug!("a write was refused; the rest of its batch goes on");
            }
        }
        let committed = run(&conn, "COMMIT").map_err(backend);
        if committed.is_err() {
            // Nothing of the batch is kept; the connection is ready for the next one.
            let _ = run(&conn, "ROLLBACK");
        }
        for w in batch {
            w.answer(committed.clone());
        }
    }
}

/// Runs one statement of the writer's, parsed once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn sat(a: Amount) -> Result<i64, StoreError> {
    i64::try_from(a.to_sat()).map_err(|_| StoreError::InvalidState("amount out of range"))
}

fn amount(v: i64) -> Result<Amount, StoreError> {
    u64::try_from(v)
        .map(Amount::from_sat)
        .map_err(|_| StoreError::Corrupt(format!("negative amount {v}")))
}

fn revision(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative revision {v}")))
}

/// Creates the database file readable by its owner only, if it does not exist: it holds
/// clients' payment signatures. SQLite gives its `-wal` and `-shm` files the same mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(e)),
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    // Room for every statement the writer and the reader run, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(backend)?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let mut writer = connect(path)?;
        migrate(&mut writer)?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("payee-sqlite".into())
            .spawn(move || run_writer(writer, rx))
            .map_err(backend)?;
        Ok(Self {
            reader: Arc::new(Mutex::new(reader)),
            writer: tx,
        })
    }

    /// Runs `f` with the reading connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(backend)?
    }

    /// Runs `f` in the writer thread's next transaction; returns once that has committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Backend("the SQLite writer thread stopped".into());
        self.writer
            .send(Box::new(Pending {
                run: Some(f),
                result: None,
                reply,
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(backend)?;
    let current: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema {current} is newer than this build's {SCHEMA_VERSION}"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

fn row_channel(row: &rusqlite::Row<'_>) -> Result<StoredChannel, StoreError> {
    let get = |e| backend(e);
    let state: String = row.get(0).map_err(get)?;
    let change: Option<i64> = row.get(4).map_err(get)?;
    let signature: Option<Vec<u8>> = row.get(5).map_err(get)?;
    Ok(StoredChannel {
        state: with_best(
            decode_state(&state)?,
            change.map(amount).transpose()?,
            signature.as_deref(),
        )?,
        ledger: Ledger {
            paid: amount(row.get(1).map_err(get)?)?,
            consumed: amount(row.get(2).map_err(get)?)?,
        },
        revision: revision(row.get(3).map_err(get)?)?,
    })
}

#[async_trait::async_trait]
impl ChannelStore for SqliteStore {
    async fn insert_session(
        &self,
        id: &str,
        state: &PayeeState,
        created_at: u64,
    ) -> Result<(), StoreError> {
        let (id, state) = (id.to_owned(), encode_state(state)?);
        let created = i64::try_from(created_at).unwrap_or(i64::MAX);
        self.write(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO pending_sessions (id, state, created_at) VALUES (?1, ?2, ?3)",
                    params![id, state, created],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<PayeeState>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT state FROM pending_sessions WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            text.map(|t| decode_state(&t)).transpose()
        })
        .await
    }

    async fn update_session(&self, id: &str, state: &PayeeState) -> Result<(), StoreError> {
        let (id, state) = (id.to_owned(), encode_state(state)?);
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE pending_sessions SET state = ?2 WHERE id = ?1",
                    params![id, state],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn open_channel(
        &self,
        session: &str,
        state: &PayeeState,
        ledger: Ledger,
    ) -> Result<(), StoreError> {
        let txid = contract_txid(state)?.to_string();
        let (session, text, status) = (session.to_owned(), encode_state(state)?, state.name());
        let (paid, consumed) = (sat(ledger.paid)?, sat(ledger.consumed)?);
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM pending_sessions WHERE id = ?1", [&session])
                .map_err(backend)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO channels (txid, state, status, seq)
                     VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM channels))",
                    params![txid, text, status],
                )
                .map_err(backend)?;
            let ledger = tx
                .execute(
                    "INSERT OR IGNORE INTO ledger (txid, revision, paid, consumed)
                     VALUES (?1, 0, ?2, ?3)",
                    params![txid, paid, consumed],
                )
                .map_err(backend)?;
            if removed == 0 || inserted == 0 || ledger == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn prune_sessions(&self, created_before: u64) -> Result<u64, StoreError> {
        let before = i64::try_from(created_before).unwrap_or(i64::MAX);
        self.write(move |c| {
            c.execute(
                "DELETE FROM pending_sessions WHERE created_at < ?1",
                [before],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn channel(&self, txid: &Txid) -> Result<Option<StoredChannel>, StoreError> {
        let txid = txid.to_string();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("{CHANNEL_COLUMNS} WHERE c.txid = ?1"))
                .map_err(backend)?;
            let mut rows = stmt.query([txid]).map_err(backend)?;
            rows.next().map_err(backend)?.map(row_channel).transpose()
        })
        .await
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare(&format!("{CHANNEL_COLUMNS} ORDER BY c.seq"))
                .map_err(backend)?;
            let mut rows = stmt.query([]).map_err(backend)?;
            let mut all = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                all.push(row_channel(row)?);
            }
            Ok(all)
        })
        .await
    }

    async fn update_channel(
        &self,
        txid: &Txid,
        revision: u64,
        update: ChannelUpdate<'_>,
    ) -> Result<u64, StoreError> {
        if contract_txid(update.state)? != *txid {
            return Err(StoreError::InvalidState("state is for another channel"));
        }
        let txid = txid.to_string();
        // A charge writes its payment into the ledger row; any other change, the document
        // (which then holds the best payment: the row's is cleared).
        let (document, best) = match update.narrow_best() {
            Some((change, signature)) => (None, Some((sat(change)?, signature))),
            None => (
                Some((encode_state(update.state)?, update.state.name())),
                None,
            ),
        };
        let (paid, consumed) = (sat(update.ledger.paid)?, sat(update.ledger.consumed)?);
        let charged = update
            .charged
            .iter()
            .map(|c| Ok((c.ticket.to_owned(), c.resource.to_owned(), sat(c.price)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let old = i64::try_from(revision).map_err(|_| StoreError::Conflict)?;
        self.write(move |tx| {
            let (change, signature) = best.unzip();
            let n = tx
                .prepare_cached(
                    "UPDATE ledger SET revision = revision + 1, paid = ?2, consumed = ?3,
                     best_change = ?4, best_signature = ?5 WHERE txid = ?1 AND revision = ?6",
                )
                .map_err(backend)?
                .execute(params![txid, paid, consumed, change, signature, old])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            if let Some((text, status)) = document {
                tx.prepare_cached("UPDATE channels SET state = ?2, status = ?3 WHERE txid = ?1")
                    .map_err(backend)?
                    .execute(params![txid, text, status])
                    .map_err(backend)?;
            }
            for (ticket, resource, price) in charged {
                let n = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO charged_nonces (channel, nonce, price, resource)
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(backend)?
                    .execute(params![txid, ticket, price, resource])
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::Conflict);
                }
            }
            Ok(revision + 1)
        })
        .await
    }

    async fn charged_at(&self, txid: &Txid, ticket: &str) -> Result<Option<String>, StoreError> {
        let (txid, ticket) = (txid.to_string(), ticket.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT resource FROM charged_nonces WHERE channel = ?1 AND nonce = ?2",
            )
            .map_err(backend)?
            .query_row(params![txid, ticket], |r| r.get(0))
            .optional()
            .map_err(backend)
        })
        .await
    }
}

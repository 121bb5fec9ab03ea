//! A PostgreSQL store, for several payee instances sharing one database.

use bitcoin::{Amount, Txid};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use trickle_channel::credit::Ledger;
use trickle_channel::PayeeState;

use super::{
    contract_txid, decode_state, encode_state, with_best, ChannelStore, ChannelUpdate, StoreError,
    StoredChannel,
};

/// Schema migrations, applied in order; `trickle_schema.version` counts those applied. The
/// tables are SQLite's, in PostgreSQL types. Append only.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE pending_sessions (
        id TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE channels (
        txid TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        paid BIGINT NOT NULL,
        consumed BIGINT NOT NULL,
        revision BIGINT NOT NULL,
        seq BIGSERIAL NOT NULL
    );
    CREATE TABLE charged_nonces (
        channel TEXT NOT NULL REFERENCES channels(txid),
        nonce TEXT NOT NULL,
        price BIGINT NOT NULL,
        PRIMARY KEY (channel, nonce)
    );
    CREATE INDEX pending_sessions_created ON pending_sessions(created_at);",
    "ALTER TABLE charged_nonces ADD COLUMN resource TEXT NOT NULL DEFAULT '';",
    "CREATE TABLE ledger (
        txid TEXT PRIMARY KEY NOT NULL REFERENCES channels(txid),
        revision BIGINT NOT NULL,
        paid BIGINT NOT NULL,
        consumed BIGINT NOT NULL,
        best_change BIGINT,
        best_signature BYTEA
    );
    INSERT INTO ledger (txid, revision, paid, consumed)
        SELECT txid, revision, paid, consumed FROM channels;
    ALTER TABLE channels DROP COLUMN paid, DROP COLUMN consumed, DROP COLUMN revision;",
];

/// A channel's columns as [`row_channel`] reads them: the document joined with its ledger row.
const CHANNEL_COLUMNS: &str = "SELECT c.state, l.paid, l.consumed, l.revision, l.best_change,
    l.best_signature FROM channels c JOIN ledger l ON l.txid = c.txid";

/// Key of the advisory lock ("trickle" in ASCII) that serializes migrations of several instances.
const MIGRATION_LOCK: i64 = 0x0074_7269_636b_6c65;

/// Channels in PostgreSQL. One connection; a commit is durable when it returns.
pub struct PostgresStore {
    client: Mutex<Client>,
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

fn row_channel(row: &tokio_postgres::Row) -> Result<StoredChannel, StoreError> {
    let state: &str = row.try_get(0).map_err(backend)?;
    let rev: i64 = row.try_get(3).map_err(backend)?;
    let change: Option<i64> = row.try_get(4).map_err(backend)?;
    let signature: Option<&[u8]> = row.try_get(5).map_err(backend)?;
    Ok(StoredChannel {
        state: with_best(
            decode_state(state)?,
            change.map(amount).transpose()?,
            signature,
        )?,
        ledger: Ledger {
            paid: amount(row.try_get(1).map_err(backend)?)?,
            consumed: amount(row.try_get(2).map_err(backend)?)?,
        },
        revision: u64::try_from(rev)
            .map_err(|_| StoreError::Corrupt(format!("negative revision {rev}")))?,
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db`, no TLS) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (mut client, connection) =
            tokio_postgres::connect(url, NoTls).await.map_err(backend)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "postgres connection closed");
            }
        });
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS trickle_schema (version INTEGER NOT NULL)")
            .await
            .map_err(backend)?;
        let current: i32 = tx
            .query_opt("SELECT version FROM trickle_schema", &[])
            .await
            .map_err(backend)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(backend)?
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i32;
        if current > known {
            return Err(StoreError::Corrupt(format!(
                "database schema {current} is newer than this build's {known}"
            )));
        }
        for sql in MIGRATIONS.iter().skip(current.max(0) as usize) {
            tx.batch_execute(sql).await.map_err(backend)?;
        }
        tx.execute("DELETE FROM trickle_schema", &[])
            .await
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO trickle_schema (version) VALUES ($1)",
            &[&known],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }
}

#[async_trait::async_trait]
impl ChannelStore for PostgresStore {
    async fn insert_session(
        &self,
        id: &str,
        state: &PayeeState,
        created_at: u64,
    ) -> Result<(), StoreError> {
        let text = encode_state(state)?;
        let created = i64::try_from(created_at).unwrap_or(i64::MAX);
        let n = self
            .client
            .lock()
            .await
            .execute(
                "INSERT INTO pending_sessions (id, state, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &text, &created],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<PayeeState>, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_opt("SELECT state FROM pending_sessions WHERE id = $1", &[&id])
            .await
            .map_err(backend)?;
        row.map(|r| decode_state(&r.try_get::<_, String>(0).map_err(backend)?))
            .transpose()
    }

    async fn update_session(&self, id: &str, state: &PayeeState) -> Result<(), StoreError> {
        let text = encode_state(state)?;
        let n = self
            .client
            .lock()
            .await
            .execute(
                "UPDATE pending_sessions SET state = $2 WHERE id = $1",
                &[&id, &text],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn open_channel(
        &self,
        session: &str,
        state: &PayeeState,
        ledger: Ledger,
    ) -> Result<(), StoreError> {
        let txid = contract_txid(state)?.to_string();
        let (text, status) = (encode_state(state)?, state.name());
        let (paid, consumed) = (sat(ledger.paid)?, sat(ledger.consumed)?);
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(backend)?;
        let removed = tx
            .execute("DELETE FROM pending_sessions WHERE id = $1", &[&session])
            .await
            .map_err(backend)?;
        let inserted = tx
            .execute(
                "INSERT INTO channels (txid, state, status) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&txid, &text, &status],
            )
            .await
            .map_err(backend)?;
        let ledger = tx
            .execute(
                "INSERT INTO ledger (txid, revision, paid, consumed) VALUES ($1, 0, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&txid, &paid, &consumed],
            )
            .await
            .map_err(backend)?;
        if removed == 0 || inserted == 0 || ledger == 0 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Conflict);
        }
        tx.commit().await.map_err(backend)
    }

    async fn prune_sessions(&self, created_before: u64) -> Result<u64, StoreError> {
        let before = i64::try_from(created_before).unwrap_or(i64::MAX);
        self.client
            .lock()
            .await
            .execute(
                "DELETE FROM pending_sessions WHERE created_at < $1",
                &[&before],
            )
            .await
            .map_err(backend)
    }

    async fn channel(&self, txid: &Txid) -> Result<Option<StoredChannel>, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_opt(
                &format!("{CHANNEL_COLUMNS} WHERE c.txid = $1"),
                &[&txid.to_string()],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(row_channel).transpose()
    }

    async fn channels(&self) -> Result<Vec<StoredChannel>, StoreError> {
        let rows = self
            .client
            .lock()
            .await
            .query(&format!("{CHANNEL_COLUMNS} ORDER BY c.seq"), &[])
            .await
            .map_err(backend)?;
        rows.iter().map(row_channel).collect()
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
        let id = txid.to_string();
        // A charge writes its payment into the ledger row; any other change, the document
        // (which then holds the best payment: the row's is cleared).
        let (document, best) = match update.narrow_best() {
            Some((change, signature)) => (None, Some((sat(change)?, signature))),
            None => (
                Some((encode_state(update.state)?, update.state.name())),
                None,
            ),
        };
        let (change, signature) = best.unzip();
        let (paid, consumed) = (sat(update.ledger.paid)?, sat(update.ledger.consumed)?);
        let old = i64::try_from(revision).map_err(|_| StoreError::Conflict)?;
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE ledger SET revision = revision + 1, paid = $2, consumed = $3,
                 best_change = $4, best_signature = $5 WHERE txid = $1 AND revision = $6",
                &[&id, &paid, &consumed, &change, &signature, &old],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::Conflict);
        }
        if let Some((text, status)) = &document {
            tx.execute(
                "UPDATE channels SET state = $2, status = $3 WHERE txid = $1",
                &[&id, text, status],
            )
            .await
            .map_err(backend)?;
        }
        for c in update.charged {
            let n = tx
                .execute(
                    "INSERT INTO charged_nonces (channel, nonce, price, resource)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&id, &c.ticket, &sat(c.price)?, &c.resource],
                )
                .await
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(revision + 1)
    }

    async fn charged_at(&self, txid: &Txid, ticket: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_opt(
                "SELECT resource FROM charged_nonces WHERE channel = $1 AND nonce = $2",
                &[&txid.to_string(), &ticket],
            )
            .await
            .map_err(backend)?;
        row.map(|r| r.try_get(0)).transpose().map_err(backend)
    }
}

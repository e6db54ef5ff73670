//! The PostgreSQL store (feature `postgres`): the same [`RelayStore`] contract on a database
//! server, for a relay whose data must live off the machine.
//!
//! Per-mailbox operations lock the mailbox's row (`SELECT ... FOR UPDATE`), so two relay
//! processes sharing the database keep at most one copy per frame id and consistent limits;
//! a one-time bundle is taken with `DELETE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
//! RETURNING`, so concurrent fetches from any number of processes never get the same one.
//!
//! **Wake-ups across processes**: [`RelayStore::store_frame`] runs
//! `SELECT pg_notify('confide_mailbox', <wake key in hex>)` inside the transaction that stores
//! a new copy, so PostgreSQL delivers the notification exactly when (and only if) the frame is
//! committed. Every relay process runs [`spawn_wake_listener`]: a dedicated connection that
//! `LISTEN`s on the channel and hands each key to the server's table of connected owners,
//! reconnects with backoff when the connection drops, and after every (re)connection wakes
//! every connected owner once (a notification sent while it was not listening is lost).
//!
//! **Blocking**: every method blocks on the connection's runtime (`Handle::block_on`). Call
//! them from a blocking thread, as the server does (`spawn_blocking`), never from inside an
//! async task (tokio refuses that).

use core::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use confide_wire::{Duration, Timestamp};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Socket};

use crate::consts::{
    WAKE_CHANNEL, WAKE_LISTENER_BACKOFF, WAKE_LISTENER_CHECK, WAKE_LISTENER_MAX_BACKOFF,
};
use crate::protocol::{BundleKind, OWNER_KEY_LEN, VERIFIER_LEN};
use crate::store::{
    BlobLimits, BlobPut, BlobRead, BlobRow, BlobState, CreateOutcome, DeleteBlobOutcome,
    MailboxLimits, MailboxRecord, PutBlobOutcome, RelayStore, StoreError, StoreOutcome,
    StoredFrame, SweepCounts, UploadOutcome, quota_exceeded, sql_len, token_hash_matches,
};
use crate::wake::{Wake, WakeKey};

impl From<tokio_postgres::Error> for StoreError {
    fn from(_: tokio_postgres::Error) -> Self {
        Self::Database
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mailboxes (
    address    BYTEA PRIMARY KEY,
    owner_key  BYTEA NOT NULL,
    verifier   BYTEA,
    created_at BIGINT NOT NULL,
    push_url   BYTEA
);
ALTER TABLE mailboxes ADD COLUMN IF NOT EXISTS push_url BYTEA;
CREATE TABLE IF NOT EXISTS frames (
    seq       BIGSERIAL PRIMARY KEY,
    address   BYTEA NOT NULL,
    frame_id  BYTEA NOT NULL,
    digest    BYTEA NOT NULL,
    frame     BYTEA NOT NULL,
    stored_at BIGINT NOT NULL,
    UNIQUE (address, frame_id)
);
CREATE INDEX IF NOT EXISTS frames_by_age ON frames (stored_at);
CREATE TABLE IF NOT EXISTS delivered (
    address      BYTEA NOT NULL,
    frame_id     BYTEA NOT NULL,
    digest       BYTEA NOT NULL,
    confirmed_at BIGINT NOT NULL,
    PRIMARY KEY (address, frame_id)
);
CREATE INDEX IF NOT EXISTS delivered_by_age ON delivered (confirmed_at);
CREATE TABLE IF NOT EXISTS one_time_bundles (
    id      BIGSERIAL PRIMARY KEY,
    address BYTEA NOT NULL,
    bundle  BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS one_time_by_address ON one_time_bundles (address, id);
CREATE TABLE IF NOT EXISTS last_resort_bundles (
    address BYTEA PRIMARY KEY,
    bundle  BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    blob_id           BYTEA PRIMARY KEY,
    owner             BYTEA NOT NULL,
    total_len         BIGINT NOT NULL,
    stored_len        BIGINT NOT NULL,
    delete_token_hash BYTEA NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_by_owner ON blobs (owner);
CREATE INDEX IF NOT EXISTS blobs_by_age ON blobs (created_at);
CREATE TABLE IF NOT EXISTS blob_chunks (
    blob_id BYTEA NOT NULL,
    pos     BIGINT NOT NULL,
    bytes   BYTEA NOT NULL,
    PRIMARY KEY (blob_id, pos)
);
";

/// A relay store on PostgreSQL (one connection; see the [module documentation](self)).
pub struct PostgresRelayStore {
    client: Mutex<Client>,
    handle: Handle,
    connection: JoinHandle<()>,
}

impl fmt::Debug for PostgresRelayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            client: _,
            handle: _,
            connection: _,
        } = self;
        f.debug_struct("PostgresRelayStore").finish_non_exhaustive()
    }
}

impl Drop for PostgresRelayStore {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

impl PostgresRelayStore {
    /// Connects to `url` (`postgres://user@host/db`, no TLS: use a local socket or a
    /// tunnel) and creates the tables if they do not exist, in the connection's default
    /// schema. Must run inside a tokio runtime, which then drives the connection.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: Config = url.parse().map_err(|_| StoreError::InvalidConfiguration)?;
        Self::open(&config, "").await
    }

    /// As [`Self::connect`], keeping the tables in `schema` (created if needed): several
    /// relays (or test runs) can share one database. `schema` must match `[a-z0-9_]{1,63}`.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let valid = (1..=63).contains(&schema.len())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::InvalidConfiguration);
        }
        let mut config: Config = url.parse().map_err(|_| StoreError::InvalidConfiguration)?;
        config.options(format!("-c search_path={schema}"));
        // The name was checked above, so it can be spliced into the statement.
        Self::open(&config, &format!("CREATE SCHEMA IF NOT EXISTS {schema};")).await
    }

    async fn open(config: &Config, prelude: &str) -> Result<Self, StoreError> {
        let (client, connection) = config.connect(NoTls).await?;
        let connection = tokio::spawn(async move {
            if connection.await.is_err() {
                tracing::warn!("postgres connection closed with an error");
            }
        });
        client.batch_execute(&format!("{prelude}{SCHEMA}")).await?;
        Ok(Self {
            client: Mutex::new(client),
            handle: Handle::current(),
            connection,
        })
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key_array<const N: usize>(v: &[u8]) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt)
}

impl RelayStore for PostgresRelayStore {
    fn create_mailbox(
        &self,
        address: &[u8],
        owner_key: &[u8; OWNER_KEY_LEN],
        verifier: Option<&[u8; VERIFIER_LEN]>,
        now: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let client = self.client();
        let verifier = verifier.map(<[u8; VERIFIER_LEN]>::as_slice);
        self.handle.block_on(async {
            let inserted = client
                .query_opt(
                    "INSERT INTO mailboxes (address, owner_key, verifier, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING RETURNING address",
                    &[&address, &owner_key.as_slice(), &verifier, &ms(now)],
                )
                .await?;
            if inserted.is_some() {
                return Ok(CreateOutcome::Created);
            }
            let row = client
                .query_one(
                    "SELECT owner_key FROM mailboxes WHERE address = $1",
                    &[&address],
                )
                .await?;
            let key: Vec<u8> = row.try_get(0)?;
            Ok(if key.as_slice() == owner_key.as_slice() {
                CreateOutcome::AlreadyYours
            } else {
                CreateOutcome::Taken
            })
        })
    }

    fn mailbox(&self, address: &[u8]) -> Result<Option<MailboxRecord>, StoreError> {
        let client = self.client();
        self.handle.block_on(async {
            let Some(row) = client
                .query_opt(
                    "SELECT owner_key, verifier, push_url FROM mailboxes WHERE address = $1",
                    &[&address],
                )
                .await?
            else {
                return Ok(None);
            };
            let key: Vec<u8> = row.try_get(0)?;
            let verifier: Option<Vec<u8>> = row.try_get(1)?;
            Ok(Some(MailboxRecord {
                owner_key: key_array(&key)?,
                verifier: verifier.as_deref().map(key_array).transpose()?,
                push_url: row.try_get(2)?,
            }))
        })
    }

    fn set_verifier(
        &self,
        address: &[u8],
        verifier: Option<&[u8; VERIFIER_LEN]>,
    ) -> Result<bool, StoreError> {
        let client = self.client();
        let verifier = verifier.map(<[u8; VERIFIER_LEN]>::as_slice);
        self.handle.block_on(async {
            let n = client
                .execute(
                    "UPDATE mailboxes SET verifier = $2 WHERE address = $1",
                    &[&address, &verifier],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn set_push_url(&self, address: &[u8], push_url: Option<&[u8]>) -> Result<bool, StoreError> {
        let client = self.client();
        self.handle.block_on(async {
            let n = client
                .execute(
                    "UPDATE mailboxes SET push_url = $2 WHERE address = $1",
                    &[&address, &push_url],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn store_frame(
        &self,
        address: &[u8],
        frame_id: &[u8; 16],
        digest: &[u8; 32],
        frame: &[u8],
        now: Timestamp,
        limits: &MailboxLimits,
    ) -> Result<StoreOutcome, StoreError> {
        let mut client = self.client();
        let (fid, dig) = (frame_id.as_slice(), digest.as_slice());
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            // The mailbox's row lock serialises every change to its frames.
            if tx
                .query_opt(
                    "SELECT 1 FROM mailboxes WHERE address = $1 FOR UPDATE",
                    &[&address],
                )
                .await?
                .is_none()
            {
                return Ok(StoreOutcome::NoSuchMailbox);
            }
            let since = ms(now.saturating_sub(limits.delivered_memory));
            let delivered = tx
                .query_opt(
                    "SELECT digest FROM delivered
                     WHERE address = $1 AND frame_id = $2 AND confirmed_at >= $3",
                    &[&address, &fid, &since],
                )
                .await?;
            if let Some(row) = delivered {
                let d: Vec<u8> = row.try_get(0)?;
                if d.as_slice() == dig {
                    return Ok(StoreOutcome::AlreadyDelivered);
                }
            }
            let waiting = tx
                .query_opt(
                    "SELECT digest, octet_length(frame)::BIGINT FROM frames
                     WHERE address = $1 AND frame_id = $2",
                    &[&address, &fid],
                )
                .await?;
            let replaced_len = match &waiting {
                Some(row) => {
                    let d: Vec<u8> = row.try_get(0)?;
                    if d.as_slice() == dig {
                        return Ok(StoreOutcome::AlreadyStored);
                    }
                    u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0)
                }
                None => 0,
            };
            let row = tx
                .query_one(
                    "SELECT count(*), coalesce(sum(octet_length(frame)), 0)::BIGINT
                     FROM frames WHERE address = $1",
                    &[&address],
                )
                .await?;
            let count = u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(u64::MAX);
            let bytes = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(u64::MAX);
            let new_len = u64::try_from(frame.len()).unwrap_or(u64::MAX);
            if waiting.is_none() && count >= limits.max_frames {
                return Ok(StoreOutcome::MailboxFull);
            }
            if bytes.saturating_sub(replaced_len).saturating_add(new_len) > limits.max_bytes {
                return Ok(StoreOutcome::MailboxBytesFull);
            }
            tx.execute(
                "DELETE FROM frames WHERE address = $1 AND frame_id = $2",
                &[&address, &fid],
            )
            .await?;
            tx.execute(
                "INSERT INTO frames (address, frame_id, digest, frame, stored_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&address, &fid, &dig, &frame, &ms(now)],
            )
            .await?;
            // Delivered to every listening relay process when (and only if) this commits.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&WAKE_CHANNEL, &WakeKey::of(address).to_hex()],
            )
            .await?;
            tx.commit().await?;
            Ok(StoreOutcome::Stored)
        })
    }

    fn pending_frames(
        &self,
        address: &[u8],
        after: i64,
        max: usize,
    ) -> Result<Vec<StoredFrame>, StoreError> {
        let client = self.client();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.handle.block_on(async {
            let rows = client
                .query(
                    "SELECT seq, frame FROM frames WHERE address = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    &[&address, &after, &max],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredFrame {
                        seq: r.try_get(0)?,
                        frame: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }

    fn confirm(&self, address: &[u8], ids: &[[u8; 16]], now: Timestamp) -> Result<u64, StoreError> {
        let mut client = self.client();
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            tx.query_opt(
                "SELECT 1 FROM mailboxes WHERE address = $1 FOR UPDATE",
                &[&address],
            )
            .await?;
            let mut deleted = 0u64;
            for id in ids {
                let id = id.as_slice();
                let row = tx
                    .query_opt(
                        "DELETE FROM frames WHERE address = $1 AND frame_id = $2
                         RETURNING digest",
                        &[&address, &id],
                    )
                    .await?;
                if let Some(row) = row {
                    let digest: Vec<u8> = row.try_get(0)?;
                    tx.execute(
                        "INSERT INTO delivered (address, frame_id, digest, confirmed_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (address, frame_id)
                         DO UPDATE SET digest = excluded.digest,
                                       confirmed_at = excluded.confirmed_at",
                        &[&address, &id, &digest, &ms(now)],
                    )
                    .await?;
                    deleted = deleted.saturating_add(1);
                }
            }
            tx.commit().await?;
            Ok(deleted)
        })
    }

    fn upload_bundles(
        &self,
        address: &[u8],
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        max_one_time: usize,
    ) -> Result<UploadOutcome, StoreError> {
        let mut client = self.client();
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            tx.query_opt(
                "SELECT 1 FROM mailboxes WHERE address = $1 FOR UPDATE",
                &[&address],
            )
            .await?;
            let held: i64 = tx
                .query_one(
                    "SELECT count(*) FROM one_time_bundles WHERE address = $1",
                    &[&address],
                )
                .await?
                .try_get(0)?;
            let total = usize::try_from(held)
                .unwrap_or(usize::MAX)
                .saturating_add(one_time.len());
            if total > max_one_time {
                return Ok(UploadOutcome::TooMany);
            }
            for bundle in one_time {
                tx.execute(
                    "INSERT INTO one_time_bundles (address, bundle) VALUES ($1, $2)",
                    &[&address, bundle],
                )
                .await?;
            }
            if let Some(bundle) = last_resort {
                tx.execute(
                    "INSERT INTO last_resort_bundles (address, bundle) VALUES ($1, $2)
                     ON CONFLICT (address) DO UPDATE SET bundle = excluded.bundle",
                    &[&address, &bundle],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(UploadOutcome::Stored {
                one_time: u32::try_from(total).unwrap_or(u32::MAX),
            })
        })
    }

    fn take_bundle(&self, address: &[u8]) -> Result<Option<(BundleKind, Vec<u8>)>, StoreError> {
        let client = self.client();
        self.handle.block_on(async {
            // One statement selects (skipping rows another transaction is taking) and deletes.
            if let Some(row) = client
                .query_opt(
                    "DELETE FROM one_time_bundles WHERE id = (
                         SELECT id FROM one_time_bundles WHERE address = $1
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING bundle",
                    &[&address],
                )
                .await?
            {
                return Ok(Some((BundleKind::OneTime, row.try_get(0)?)));
            }
            let row = client
                .query_opt(
                    "SELECT bundle FROM last_resort_bundles WHERE address = $1",
                    &[&address],
                )
                .await?;
            row.map(|r| Ok((BundleKind::LastResort, r.try_get(0)?)))
                .transpose()
        })
    }

    fn bundle_count(&self, address: &[u8]) -> Result<(u32, bool), StoreError> {
        let client = self.client();
        self.handle.block_on(async {
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM one_time_bundles WHERE address = $1),
                            EXISTS (SELECT 1 FROM last_resort_bundles WHERE address = $1)",
                    &[&address],
                )
                .await?;
            let n: i64 = row.try_get(0)?;
            Ok((u32::try_from(n).unwrap_or(u32::MAX), row.try_get(1)?))
        })
    }

    fn sweep(
        &self,
        now: Timestamp,
        undelivered_retention: Duration,
        delivered_memory: Duration,
    ) -> Result<SweepCounts, StoreError> {
        let client = self.client();
        self.handle.block_on(async {
            let expired = client
                .execute(
                    "DELETE FROM frames WHERE stored_at < $1",
                    &[&ms(now.saturating_sub(undelivered_retention))],
                )
                .await?;
            let forgotten = client
                .execute(
                    "DELETE FROM delivered WHERE confirmed_at < $1",
                    &[&ms(now.saturating_sub(delivered_memory))],
                )
                .await?;
            Ok(SweepCounts {
                expired_frames: expired,
                forgotten_deliveries: forgotten,
            })
        })
    }

    fn put_blob(
        &self,
        put: &BlobPut<'_>,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<PutBlobOutcome, StoreError> {
        let mut client = self.client();
        let id = put.blob_id.as_slice();
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            // The owner's mailbox row serialises its quota; the blob's row its appends.
            tx.query_opt(
                "SELECT 1 FROM mailboxes WHERE address = $1 FOR UPDATE",
                &[&put.owner],
            )
            .await?;
            let existing = pg_blob_row(&tx, id, true).await?;
            let existing = match existing {
                Some(row) if !limits.alive(row.created_at, row.stored_len, row.total_len, now) => {
                    pg_delete_blob(&tx, id).await?;
                    None
                }
                other => other,
            };
            let stored_len = match existing {
                Some(row) => {
                    let same = row.owner == put.owner
                        && row.total_len == put.total_len
                        && token_hash_matches(&row.delete_token_hash, put.delete_token_hash);
                    if !same {
                        return Ok(PutBlobOutcome::Exists);
                    }
                    row.stored_len
                }
                None => {
                    if put.offset != 0 {
                        return Ok(PutBlobOutcome::OffsetMismatch { stored_len: 0 });
                    }
                    let (retention, incomplete) = limits.cutoffs(now);
                    let row = tx
                        .query_one(
                            "SELECT count(*), coalesce(sum(total_len), 0)::BIGINT,
                                    coalesce(sum(CASE WHEN stored_len < total_len
                                                      THEN total_len END), 0)::BIGINT
                             FROM blobs WHERE owner = $1 AND created_at >= $2
                               AND (stored_len = total_len OR created_at >= $3)",
                            &[&put.owner, &retention, &incomplete],
                        )
                        .await?;
                    let completes = u64::try_from(put.bytes.len()).ok() == Some(put.total_len);
                    if quota_exceeded(
                        limits,
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        put.total_len,
                        completes,
                    ) {
                        return Ok(PutBlobOutcome::QuotaExceeded);
                    }
                    let inserted = tx
                        .query_opt(
                            "INSERT INTO blobs (blob_id, owner, total_len, stored_len,
                                                delete_token_hash, created_at)
                             VALUES ($1, $2, $3, 0, $4, $5)
                             ON CONFLICT (blob_id) DO NOTHING RETURNING blob_id",
                            &[
                                &id,
                                &put.owner,
                                &sql_len(put.total_len),
                                &put.delete_token_hash.as_slice(),
                                &ms(now),
                            ],
                        )
                        .await?;
                    if inserted.is_none() {
                        // Another owner created this id in the meantime.
                        return Ok(PutBlobOutcome::Exists);
                    }
                    0
                }
            };
            if put.offset != stored_len {
                return Ok(PutBlobOutcome::OffsetMismatch { stored_len });
            }
            let len = u64::try_from(put.bytes.len()).unwrap_or(u64::MAX);
            let Some(new_len) = stored_len.checked_add(len).filter(|&n| n <= put.total_len) else {
                return Ok(PutBlobOutcome::TooLarge);
            };
            if len > 0 {
                tx.execute(
                    "INSERT INTO blob_chunks (blob_id, pos, bytes) VALUES ($1, $2, $3)",
                    &[&id, &sql_len(stored_len), &put.bytes],
                )
                .await?;
                tx.execute(
                    "UPDATE blobs SET stored_len = $2 WHERE blob_id = $1",
                    &[&id, &sql_len(new_len)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(PutBlobOutcome::Stored {
                stored_len: new_len,
            })
        })
    }

    fn blob_status(
        &self,
        blob_id: &[u8; 16],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<Option<BlobState>, StoreError> {
        let mut client = self.client();
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            let row = pg_blob_row(&tx, blob_id.as_slice(), false).await?;
            tx.commit().await?;
            Ok(row
                .filter(|row| limits.alive(row.created_at, row.stored_len, row.total_len, now))
                .map(|row| BlobState {
                    stored_len: row.stored_len,
                    total_len: row.total_len,
                }))
        })
    }

    fn read_blob(
        &self,
        blob_id: &[u8; 16],
        offset: u64,
        max_len: usize,
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<BlobRead, StoreError> {
        let mut client = self.client();
        let id = blob_id.as_slice();
        self.handle.block_on(async {
            // One snapshot for the blob row and its chunks.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let Some(row) = pg_blob_row(&tx, id, false)
                .await?
                .filter(|row| limits.alive(row.created_at, row.stored_len, row.total_len, now))
            else {
                return Ok(BlobRead::NotFound);
            };
            if row.stored_len != row.total_len {
                return Ok(BlobRead::Incomplete);
            }
            if offset > row.total_len {
                return Ok(BlobRead::PastEnd {
                    total_len: row.total_len,
                });
            }
            let end = offset
                .saturating_add(u64::try_from(max_len).unwrap_or(u64::MAX))
                .min(row.total_len);
            let (start, stop) = (sql_len(offset), sql_len(end));
            // Only the part of each overlapping row inside [offset, end) is read.
            let pieces = tx
                .query(
                    "SELECT substring(bytes FROM (GREATEST($2 - pos, 0) + 1)::INT
                                      FOR (LEAST(pos + octet_length(bytes), $3)
                                           - GREATEST(pos, $2))::INT)
                     FROM blob_chunks
                     WHERE blob_id = $1 AND pos < $3 AND pos + octet_length(bytes) > $2
                     ORDER BY pos",
                    &[&id, &start, &stop],
                )
                .await?;
            tx.commit().await?;
            let capacity = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
            let mut bytes = Vec::with_capacity(capacity);
            for piece in &pieces {
                bytes.extend_from_slice(piece.try_get::<_, &[u8]>(0)?);
            }
            if bytes.len() != capacity {
                return Err(StoreError::Corrupt);
            }
            Ok(BlobRead::Data {
                total_len: row.total_len,
                bytes,
            })
        })
    }

    fn delete_blob(
        &self,
        blob_id: &[u8; 16],
        token_hash: &[u8; 32],
        now: Timestamp,
        limits: &BlobLimits,
    ) -> Result<DeleteBlobOutcome, StoreError> {
        let mut client = self.client();
        let id = blob_id.as_slice();
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            let outcome = match pg_blob_row(&tx, id, true).await? {
                None => DeleteBlobOutcome::NotFound,
                Some(row) if !limits.alive(row.created_at, row.stored_len, row.total_len, now) => {
                    pg_delete_blob(&tx, id).await?;
                    DeleteBlobOutcome::NotFound
                }
                Some(row) if !token_hash_matches(&row.delete_token_hash, token_hash) => {
                    return Ok(DeleteBlobOutcome::TokenRefused);
                }
                Some(_) => {
                    pg_delete_blob(&tx, id).await?;
                    DeleteBlobOutcome::Deleted
                }
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    fn sweep_blobs(&self, now: Timestamp, limits: &BlobLimits) -> Result<u64, StoreError> {
        let mut client = self.client();
        let (retention, incomplete) = limits.cutoffs(now);
        self.handle.block_on(async {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM blob_chunks WHERE blob_id IN (
                     SELECT blob_id FROM blobs
                     WHERE created_at < $1 OR (stored_len < total_len AND created_at < $2))",
                &[&retention, &incomplete],
            )
            .await?;
            let n = tx
                .execute(
                    "DELETE FROM blobs
                     WHERE created_at < $1 OR (stored_len < total_len AND created_at < $2)",
                    &[&retention, &incomplete],
                )
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    }
}

async fn pg_blob_row(
    tx: &tokio_postgres::Transaction<'_>,
    id: &[u8],
    for_update: bool,
) -> Result<Option<BlobRow>, StoreError> {
    let query = if for_update {
        "SELECT owner, total_len, stored_len, delete_token_hash, created_at
         FROM blobs WHERE blob_id = $1 FOR UPDATE"
    } else {
        "SELECT owner, total_len, stored_len, delete_token_hash, created_at
         FROM blobs WHERE blob_id = $1"
    };
    let Some(row) = tx.query_opt(query, &[&id]).await? else {
        return Ok(None);
    };
    let total: i64 = row.try_get(1)?;
    let stored: i64 = row.try_get(2)?;
    Ok(Some(BlobRow {
        owner: row.try_get(0)?,
        total_len: u64::try_from(total).map_err(|_| StoreError::Corrupt)?,
        stored_len: u64::try_from(stored).map_err(|_| StoreError::Corrupt)?,
        delete_token_hash: row.try_get(3)?,
        created_at: row.try_get(4)?,
    }))
}

async fn pg_delete_blob(tx: &tokio_postgres::Transaction<'_>, id: &[u8]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM blob_chunks WHERE blob_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM blobs WHERE blob_id = $1", &[&id])
        .await?;
    Ok(())
}

/// The `application_name` of the wake-up listener's connection (so an operator can tell it
/// apart in `pg_stat_activity`).
pub const WAKE_LISTENER_APPLICATION_NAME: &str = "confide_relay_wake";

/// Starts the wake-up listener of this relay process (see the [module documentation](self)):
/// a task that keeps one connection to `url` `LISTEN`ing on
/// [`WAKE_CHANNEL`] and calls `on_wake` with
/// [`Wake::Mailbox`] for each notification and [`Wake::All`] after each (re)connection. The
/// task runs until the handle is aborted. Must be called inside a tokio runtime.
pub fn spawn_wake_listener(
    url: &str,
    on_wake: Arc<dyn Fn(Wake) + Send + Sync>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut config: Config = url.parse().map_err(|_| StoreError::InvalidConfiguration)?;
    config.application_name(WAKE_LISTENER_APPLICATION_NAME);
    Ok(tokio::spawn(listen_loop(config, on_wake)))
}

async fn listen_loop(config: Config, on_wake: Arc<dyn Fn(Wake) + Send + Sync>) {
    let mut backoff = WAKE_LISTENER_BACKOFF;
    loop {
        if listen_once(&config, &on_wake).await {
            backoff = WAKE_LISTENER_BACKOFF;
        }
        tracing::warn!(
            retry_ms = backoff.as_millis(),
            "wake-up listener not connected; reconnecting"
        );
        tokio::time::sleep(std::time::Duration::from_millis(backoff.as_millis())).await;
        backoff = backoff
            .saturating_add(backoff)
            .min(WAKE_LISTENER_MAX_BACKOFF);
    }
}

/// One connection's life: returns whether it got as far as listening.
async fn listen_once(config: &Config, on_wake: &Arc<dyn Fn(Wake) + Send + Sync>) -> bool {
    let Ok((client, connection)) = config.connect(NoTls).await else {
        return false;
    };
    let mut driver = tokio::spawn(drive(connection, Arc::clone(on_wake)));
    let check = std::time::Duration::from_millis(WAKE_LISTENER_CHECK.as_millis());
    let listening = tokio::time::timeout(
        check,
        client.batch_execute(&format!("LISTEN {WAKE_CHANNEL}")),
    )
    .await;
    if !matches!(listening, Ok(Ok(()))) {
        driver.abort();
        return false;
    }
    // Whatever was committed while this process was not listening woke nobody here.
    on_wake(Wake::All);
    loop {
        tokio::select! {
            _ = &mut driver => break,
            () = tokio::time::sleep(check) => {
                let alive = tokio::time::timeout(check, client.simple_query("SELECT 1")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    driver.abort();
    true
}

/// Drives the listener's connection, handing each notification on; ends when it closes.
async fn drive(
    mut connection: Connection<Socket, NoTlsStream>,
    on_wake: Arc<dyn Fn(Wake) + Send + Sync>,
) {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if n.channel() == WAKE_CHANNEL
                    && let Some(key) = WakeKey::from_hex(n.payload())
                {
                    on_wake(Wake::Mailbox(key));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

//! The storage contract every relay backend keeps, run against the embedded SQLite store
//! (in memory and on a file that is reopened) and PostgreSQL: one copy per frame id,
//! delivered memory, retention, limits, bundles handed out once and in order, and the blob
//! store (appends at exactly the stored length, quotas, reads of complete blobs only,
//! deletion by token, retention).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_relay::protocol::BundleKind;
use confide_relay::store::{
    BlobLimits, BlobPut, BlobRead, BlobState, CreateOutcome, DeleteBlobOutcome, MailboxLimits,
    PutBlobOutcome, RelayStore, SqliteRelayStore, StoreOutcome, UploadOutcome,
};
use confide_wire::{Duration, Timestamp};

const T0: Timestamp = Timestamp::from_millis(1_750_000_000_000);
const LIMITS: MailboxLimits = MailboxLimits {
    max_frames: 3,
    max_bytes: 1_000,
    delivered_memory: Duration::from_days(7),
};
const MB: &[u8] = b"mailbox";

fn at(days: u64) -> Timestamp {
    T0.saturating_add(Duration::from_days(days))
}

fn store_frame(s: &dyn RelayStore, id: u8, payload: &[u8], now: Timestamp) -> StoreOutcome {
    let digest = confide_crypto::kdf::sha256(&[payload]);
    s.store_frame(MB, &[id; 16], &digest, payload, now, &LIMITS)
        .unwrap()
}

const BLOB_LIMITS: BlobLimits = BlobLimits {
    max_bytes_per_owner: 1_000,
    max_bytes_in_flight_per_owner: 600,
    max_blobs_per_owner: 3,
    retention: Duration::from_days(30),
    incomplete_retention: Duration::from_days(1),
};
const HASH: [u8; 32] = [0x11; 32];
const OTHER: &[u8] = b"other owner";

#[allow(clippy::too_many_arguments)]
fn put_blob(
    s: &dyn RelayStore,
    id: u8,
    owner: &[u8],
    offset: u64,
    total_len: u64,
    hash: &[u8; 32],
    bytes: &[u8],
    now: Timestamp,
) -> PutBlobOutcome {
    s.put_blob(
        &BlobPut {
            blob_id: &[id; 16],
            owner,
            offset,
            total_len,
            delete_token_hash: hash,
            bytes,
        },
        now,
        &BLOB_LIMITS,
    )
    .unwrap()
}

fn status(s: &dyn RelayStore, id: u8, now: Timestamp) -> Option<(u64, u64)> {
    s.blob_status(&[id; 16], now, &BLOB_LIMITS).unwrap().map(
        |BlobState {
             stored_len,
             total_len,
         }| (stored_len, total_len),
    )
}

fn read(s: &dyn RelayStore, id: u8, offset: u64, max: usize, now: Timestamp) -> BlobRead {
    s.read_blob(&[id; 16], offset, max, now, &BLOB_LIMITS)
        .unwrap()
}

fn data(bytes: &[u8]) -> BlobRead {
    BlobRead::Data {
        total_len: 300,
        bytes: bytes.to_vec(),
    }
}

/// The blob store's part of the conformance suite.
fn blob_conformance(s: &dyn RelayStore) {
    use PutBlobOutcome::{Exists, OffsetMismatch, QuotaExceeded, Stored, TooLarge};
    let blob: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let t = T0;
    // Nothing yet; a put that is not at offset 0 learns that nothing is stored.
    assert_eq!(status(s, 1, t), None);
    assert_eq!(read(s, 1, 0, 10, t), BlobRead::NotFound);
    assert_eq!(
        s.delete_blob(&[1; 16], &HASH, t, &BLOB_LIMITS).unwrap(),
        DeleteBlobOutcome::NotFound
    );
    assert_eq!(
        put_blob(s, 1, MB, 5, 300, &HASH, b"x", t),
        OffsetMismatch { stored_len: 0 }
    );
    assert_eq!(status(s, 1, t), None, "a refused put creates nothing");

    // Appends in pieces, each at exactly the stored length.
    assert_eq!(
        put_blob(s, 1, MB, 0, 300, &HASH, &blob[..100], t),
        Stored { stored_len: 100 }
    );
    assert_eq!(status(s, 1, t), Some((100, 300)));
    assert_eq!(read(s, 1, 0, 10, t), BlobRead::Incomplete);
    for wrong in [0, 99, 101, 300] {
        assert_eq!(
            put_blob(s, 1, MB, wrong, 300, &HASH, &blob[..10], t),
            OffsetMismatch { stored_len: 100 },
            "offset {wrong}"
        );
    }
    assert_eq!(
        put_blob(s, 1, MB, 100, 301, &HASH, &blob[100..110], t),
        Exists
    );
    assert_eq!(
        put_blob(s, 1, MB, 100, 300, &[0x12; 32], &blob[100..110], t),
        Exists
    );
    assert_eq!(
        put_blob(s, 1, OTHER, 100, 300, &HASH, &blob[100..110], t),
        Exists,
        "another owner cannot append"
    );
    assert_eq!(put_blob(s, 1, MB, 100, 300, &HASH, &[0; 201], t), TooLarge);
    assert_eq!(status(s, 1, t), Some((100, 300)), "refusals change nothing");
    assert_eq!(
        put_blob(s, 1, MB, 100, 300, &HASH, &blob[100..250], t),
        Stored { stored_len: 250 }
    );
    assert_eq!(
        put_blob(s, 1, MB, 250, 300, &HASH, &blob[250..], t),
        Stored { stored_len: 300 }
    );
    assert_eq!(
        put_blob(s, 1, MB, 300, 300, &HASH, &[], t),
        Stored { stored_len: 300 },
        "an empty put at the end is a receipt"
    );

    // Reads of a complete blob: any window, across rows, up to the end.
    assert_eq!(read(s, 1, 0, 1_000, t), data(&blob));
    assert_eq!(read(s, 1, 90, 20, t), data(&blob[90..110]));
    assert_eq!(read(s, 1, 99, 152, t), data(&blob[99..251]));
    assert_eq!(read(s, 1, 240, 1_000, t), data(&blob[240..]));
    assert_eq!(read(s, 1, 300, 10, t), data(&[]));
    assert_eq!(read(s, 1, 301, 10, t), BlobRead::PastEnd { total_len: 300 });

    // Quotas per owner: bytes (by total length), bytes in flight, count.
    assert_eq!(
        put_blob(s, 2, MB, 0, 500, &HASH, &[2; 10], t),
        Stored { stored_len: 10 }
    );
    assert_eq!(
        put_blob(s, 3, MB, 0, 201, &HASH, &[3; 10], t),
        QuotaExceeded,
        "300 + 500 + 201 bytes"
    );
    assert_eq!(
        put_blob(s, 3, MB, 0, 200, &HASH, &[3; 10], t),
        QuotaExceeded,
        "500 + 200 bytes in flight"
    );
    assert_eq!(
        put_blob(s, 3, MB, 0, 200, &HASH, &[3; 200], t),
        Stored { stored_len: 200 },
        "complete at once: not in flight"
    );
    assert_eq!(
        put_blob(s, 4, MB, 0, 1, &HASH, &[4], t),
        QuotaExceeded,
        "a fourth blob"
    );
    assert_eq!(
        put_blob(s, 4, OTHER, 0, 1, &HASH, &[4], t),
        Stored { stored_len: 1 },
        "quotas are per owner"
    );

    // Deletion needs the token's hash; afterwards the blob is gone and its quota freed.
    assert_eq!(
        s.delete_blob(&[1; 16], &[0x12; 32], t, &BLOB_LIMITS)
            .unwrap(),
        DeleteBlobOutcome::TokenRefused
    );
    assert_eq!(read(s, 1, 0, 1_000, t), data(&blob), "still readable");
    assert_eq!(
        s.delete_blob(&[1; 16], &HASH, t, &BLOB_LIMITS).unwrap(),
        DeleteBlobOutcome::Deleted
    );
    assert_eq!(status(s, 1, t), None);
    assert_eq!(read(s, 1, 0, 10, t), BlobRead::NotFound);
    assert_eq!(
        s.delete_blob(&[1; 16], &HASH, t, &BLOB_LIMITS).unwrap(),
        DeleteBlobOutcome::NotFound
    );
    assert_eq!(
        put_blob(s, 5, MB, 0, 1, &HASH, &[5], t),
        Stored { stored_len: 1 }
    );

    // Retention: an incomplete upload lapses after a day, a complete blob after 30 days,
    // read or not; an expired blob is absent for every request.
    assert_eq!(status(s, 2, at(1)), Some((10, 500)));
    assert_eq!(status(s, 2, at(2)), None);
    assert_eq!(read(s, 2, 0, 10, at(2)), BlobRead::NotFound);
    assert_eq!(
        put_blob(s, 2, MB, 10, 500, &HASH, &[2; 10], at(2)),
        OffsetMismatch { stored_len: 0 },
        "an expired upload starts again from zero"
    );
    assert_eq!(status(s, 3, at(29)), Some((200, 200)));
    assert_eq!(status(s, 3, at(31)), None);
    assert_eq!(read(s, 3, 0, 10, at(31)), BlobRead::NotFound);
    assert_eq!(
        s.delete_blob(&[3; 16], &HASH, at(31), &BLOB_LIMITS)
            .unwrap(),
        DeleteBlobOutcome::NotFound
    );
    // The sweep deletes what lapsed: blobs 2 (incomplete), 3 (maybe deleted above), 4, 5.
    let swept = s.sweep_blobs(at(31), &BLOB_LIMITS).unwrap();
    assert!((2..=4).contains(&swept), "swept {swept}");
    assert_eq!(s.sweep_blobs(at(31), &BLOB_LIMITS).unwrap(), 0);
    for id in 1..=5 {
        assert_eq!(status(s, id, t), None, "blob {id} is gone");
    }
}

/// The conformance suite: every backend passes it.
fn conformance(s: &dyn RelayStore) {
    blob_conformance(s);
    assert_eq!(store_frame(s, 1, b"x", T0), StoreOutcome::NoSuchMailbox);
    assert_eq!(
        s.create_mailbox(MB, &[1; 32], None, T0).unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        s.create_mailbox(MB, &[1; 32], None, T0).unwrap(),
        CreateOutcome::AlreadyYours
    );
    assert_eq!(
        s.create_mailbox(MB, &[2; 32], None, T0).unwrap(),
        CreateOutcome::Taken
    );
    assert!(s.set_verifier(MB, Some(&[9; 32])).unwrap());
    assert_eq!(s.mailbox(MB).unwrap().unwrap().verifier, Some([9; 32]));
    assert!(!s.set_verifier(b"none", None).unwrap());

    // The push registration: set, replaced, removed; none for an unknown mailbox.
    assert_eq!(s.mailbox(MB).unwrap().unwrap().push_url, None);
    assert!(s.set_push_url(MB, Some(b"http://gw/a")).unwrap());
    assert!(s.set_push_url(MB, Some(b"http://gw/b")).unwrap());
    assert_eq!(
        s.mailbox(MB).unwrap().unwrap().push_url.as_deref(),
        Some(&b"http://gw/b"[..])
    );
    assert!(s.set_push_url(MB, None).unwrap());
    assert_eq!(s.mailbox(MB).unwrap().unwrap().push_url, None);
    assert!(!s.set_push_url(b"none", Some(b"http://gw/c")).unwrap());
    assert!(s.mailbox(b"none").unwrap().is_none());

    // One copy per frame id; a re-encryption replaces it and moves to the end.
    assert_eq!(store_frame(s, 1, b"a", T0), StoreOutcome::Stored);
    assert_eq!(store_frame(s, 1, b"a", T0), StoreOutcome::AlreadyStored);
    assert_eq!(store_frame(s, 2, b"b", T0), StoreOutcome::Stored);
    assert_eq!(store_frame(s, 1, b"a2", T0), StoreOutcome::Stored);
    let pending = s.pending_frames(MB, 0, 10).unwrap();
    assert_eq!(
        pending.iter().map(|f| f.frame.clone()).collect::<Vec<_>>(),
        [b"b".to_vec(), b"a2".to_vec()]
    );
    assert_eq!(s.pending_frames(MB, pending[0].seq, 10).unwrap().len(), 1);
    assert_eq!(s.pending_frames(MB, 0, 1).unwrap().len(), 1);

    // Limits: frames, then bytes.
    assert_eq!(store_frame(s, 3, b"c", T0), StoreOutcome::Stored);
    assert_eq!(store_frame(s, 4, b"d", T0), StoreOutcome::MailboxFull);
    assert_eq!(store_frame(s, 3, b"c", T0), StoreOutcome::AlreadyStored);

    // Confirmation deletes and remembers; unknown ids are ignored.
    assert_eq!(
        s.confirm(MB, &[[1; 16], [2; 16], [7; 16]], at(1)).unwrap(),
        2
    );
    assert_eq!(
        store_frame(s, 1, b"a2", at(2)),
        StoreOutcome::AlreadyDelivered
    );
    assert_eq!(store_frame(s, 1, b"a3", at(2)), StoreOutcome::Stored);
    assert_eq!(s.confirm(MB, &[[1; 16], [3; 16]], at(2)).unwrap(), 2);
    assert_eq!(
        store_frame(s, 5, &[0; 1_001], at(2)),
        StoreOutcome::MailboxBytesFull
    );

    // The delivered memory lapses after its duration; so do undelivered frames.
    let swept = s
        .sweep(at(10), Duration::from_days(7), Duration::from_days(7))
        .unwrap();
    assert_eq!(swept.forgotten_deliveries, 3);
    assert_eq!(store_frame(s, 1, b"a3", at(10)), StoreOutcome::Stored);
    let swept = s
        .sweep(at(16), Duration::from_days(7), Duration::from_days(7))
        .unwrap();
    assert_eq!(swept.expired_frames, 0, "stored on day 10, kept 7 days");
    let swept = s
        .sweep(at(18), Duration::from_days(7), Duration::from_days(7))
        .unwrap();
    assert_eq!(swept.expired_frames, 1);
    assert!(s.pending_frames(MB, 0, 10).unwrap().is_empty());

    // Bundles: all or nothing within the limit, one-time in upload order, then last resort.
    assert_eq!(s.take_bundle(MB).unwrap(), None);
    assert_eq!(
        s.upload_bundles(MB, &[b"1".to_vec(), b"2".to_vec()], None, 3)
            .unwrap(),
        UploadOutcome::Stored { one_time: 2 }
    );
    assert_eq!(
        s.upload_bundles(MB, &[b"3".to_vec(), b"4".to_vec()], Some(b"L"), 3)
            .unwrap(),
        UploadOutcome::TooMany
    );
    assert_eq!(s.bundle_count(MB).unwrap(), (2, false));
    assert_eq!(
        s.upload_bundles(MB, &[], Some(b"L"), 3).unwrap(),
        UploadOutcome::Stored { one_time: 2 }
    );
    assert_eq!(
        s.take_bundle(MB).unwrap(),
        Some((BundleKind::OneTime, b"1".to_vec()))
    );
    assert_eq!(
        s.take_bundle(MB).unwrap(),
        Some((BundleKind::OneTime, b"2".to_vec()))
    );
    for _ in 0..2 {
        assert_eq!(
            s.take_bundle(MB).unwrap(),
            Some((BundleKind::LastResort, b"L".to_vec()))
        );
    }
    assert_eq!(s.bundle_count(MB).unwrap(), (0, true));
}

#[test]
fn sqlite_in_memory_passes_the_conformance_suite() {
    conformance(&SqliteRelayStore::open_in_memory().unwrap());
}

#[test]
fn sqlite_on_disk_passes_the_conformance_suite_and_keeps_its_data() {
    let dir = std::env::temp_dir().join(format!("confide-relay-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.sqlite");
    conformance(&SqliteRelayStore::open(&path).unwrap());
    let reopened = SqliteRelayStore::open(&path).unwrap();
    assert_eq!(reopened.bundle_count(MB).unwrap(), (0, true));
    assert!(reopened.mailbox(MB).unwrap().is_some());
    drop(reopened);
    // Deleted and expired blobs leave no row behind (`secure_delete` overwrites the pages).
    let raw = rusqlite::Connection::open(&path).unwrap();
    for table in ["blobs", "blob_chunks"] {
        let n: i64 = raw
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(raw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The version 1 schema (before `mailboxes.push_url`), as a database written by an older
/// relay holds it.
const SCHEMA_V1: &str = "
CREATE TABLE mailboxes (address BLOB PRIMARY KEY, owner_key BLOB NOT NULL, verifier BLOB,
                        created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE frames (seq INTEGER PRIMARY KEY AUTOINCREMENT, address BLOB NOT NULL,
                     frame_id BLOB NOT NULL, digest BLOB NOT NULL, frame BLOB NOT NULL,
                     stored_at INTEGER NOT NULL, UNIQUE (address, frame_id));
CREATE INDEX frames_by_age ON frames (stored_at);
CREATE TABLE delivered (address BLOB NOT NULL, frame_id BLOB NOT NULL, digest BLOB NOT NULL,
                        confirmed_at INTEGER NOT NULL, PRIMARY KEY (address, frame_id)) WITHOUT ROWID;
CREATE INDEX delivered_by_age ON delivered (confirmed_at);
CREATE TABLE one_time_bundles (id INTEGER PRIMARY KEY AUTOINCREMENT, address BLOB NOT NULL,
                               bundle BLOB NOT NULL);
CREATE INDEX one_time_by_address ON one_time_bundles (address, id);
CREATE TABLE last_resort_bundles (address BLOB PRIMARY KEY, bundle BLOB NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
";

#[test]
fn a_version_1_database_is_migrated_keeping_its_mailboxes_and_frames() {
    let dir = std::env::temp_dir().join(format!("confide-relay-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.sqlite");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(SCHEMA_V1).unwrap();
        old.execute(
            "INSERT INTO mailboxes VALUES (?1, ?2, NULL, 1)",
            rusqlite::params![MB, [1u8; 32].as_slice()],
        )
        .unwrap();
        old.execute(
            "INSERT INTO frames (address, frame_id, digest, frame, stored_at)
             VALUES (?1, ?2, ?3, ?4, 1)",
            rusqlite::params![
                MB,
                [7u8; 16].as_slice(),
                [0u8; 32].as_slice(),
                b"old frame".as_slice()
            ],
        )
        .unwrap();
    }
    let store = SqliteRelayStore::open(&path).unwrap();
    let record = store.mailbox(MB).unwrap().unwrap();
    assert_eq!(record.owner_key, [1; 32]);
    assert_eq!(record.push_url, None);
    let pending = store.pending_frames(MB, 0, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].frame, b"old frame");
    assert!(store.set_push_url(MB, Some(b"http://gw/x")).unwrap());
    drop(store);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, confide_relay::store::SQLITE_SCHEMA_VERSION);
    assert_eq!(version, 3);
    let reopened = SqliteRelayStore::open(&path).unwrap();
    assert_eq!(
        reopened.mailbox(MB).unwrap().unwrap().push_url.as_deref(),
        Some(&b"http://gw/x"[..])
    );
    // Version 3's blob tables are there.
    assert_eq!(
        put_blob(&reopened, 9, MB, 0, 3, &HASH, b"abc", T0),
        PutBlobOutcome::Stored { stored_len: 3 }
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_version_2_database_gains_the_blob_tables_keeping_its_mailboxes() {
    let dir = std::env::temp_dir().join(format!("confide-relay-migrate2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.sqlite");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(SCHEMA_V1).unwrap();
        old.execute_batch(
            "ALTER TABLE mailboxes ADD COLUMN push_url BLOB; PRAGMA user_version = 2;",
        )
        .unwrap();
        old.execute(
            "INSERT INTO mailboxes VALUES (?1, ?2, NULL, 1, NULL)",
            rusqlite::params![MB, [1u8; 32].as_slice()],
        )
        .unwrap();
    }
    let store = SqliteRelayStore::open(&path).unwrap();
    assert_eq!(store.mailbox(MB).unwrap().unwrap().owner_key, [1; 32]);
    assert_eq!(
        put_blob(&store, 9, MB, 0, 3, &HASH, b"abc", T0),
        PutBlobOutcome::Stored { stored_len: 3 }
    );
    drop(store);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_largest_blob_is_the_ciphertext_of_the_largest_attachment() {
    assert_eq!(
        Some(confide_relay::consts::MAX_BLOB_LEN),
        confide_attachment::ciphertext_len(confide_attachment::MAX_PLAINTEXT_LEN)
    );
}

#[test]
fn debug_output_shows_no_keys_or_addresses() {
    let s = SqliteRelayStore::open_in_memory().unwrap();
    s.create_mailbox(MB, &[0xAB; 32], Some(&[0xCD; 32]), T0)
        .unwrap();
    let record = s.mailbox(MB).unwrap().unwrap();
    assert_eq!(
        format!("{record:?}"),
        "MailboxRecord { has_verifier: true, has_push_url: false, .. }"
    );
    s.set_push_url(MB, Some(b"http://secret-gateway/device"))
        .unwrap();
    let shown = format!("{:?}", s.mailbox(MB).unwrap().unwrap());
    assert!(shown.contains("has_push_url: true") && !shown.contains("secret"));
    let key = confide_crypto::signing::SigningKey::from_seed(&[0xEF; 32]);
    let config = confide_relay::client::LinkConfig {
        relay: "127.0.0.1:1".parse().unwrap(),
        mailbox: confide_transport::Address::new(b"secret mailbox").unwrap(),
        owner_key: key.clone(),
        verifier: Some([0xCD; 32]),
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret") && !shown.contains("ef") && !shown.contains("239"));
    let root = confide_relay::issuer::RootKey { id: 4, key };
    assert_eq!(format!("{root:?}"), "RootKey { id: 4, .. }");
}

/// The environment variable naming a PostgreSQL database the tests may create schemas in
/// (`postgres://user@host/db`); `.ci/run` starts a throwaway cluster and sets it.
const POSTGRES_URL_VAR: &str = "CONFIDE_TEST_POSTGRES_URL";

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_backend_is_not_built() {
    println!(
        "skipped: the PostgreSQL store tests need `--features postgres` (and {POSTGRES_URL_VAR})"
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use confide_relay::postgres::PostgresRelayStore;

    fn url() -> Option<String> {
        let url = std::env::var(POSTGRES_URL_VAR).ok();
        if url.is_none() {
            println!(
                "skipped: {POSTGRES_URL_VAR} is not set (a postgres:// URL of a throwaway database)"
            );
        }
        url
    }

    /// A runtime to drive the connections, and a fresh schema name for this run.
    fn fresh(name: &str) -> (tokio::runtime::Runtime, String) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        (
            rt,
            format!("confide_test_{name}_{}_{nanos}", std::process::id()),
        )
    }

    #[test]
    fn postgres_passes_the_conformance_suite() {
        let Some(url) = url() else { return };
        let (rt, schema) = fresh("conformance");
        let store = rt
            .block_on(PostgresRelayStore::connect_in_schema(&url, &schema))
            .unwrap();
        conformance(&store);
    }

    #[test]
    fn tables_of_an_older_relay_gain_the_push_column_keeping_their_rows() {
        let Some(url) = url() else { return };
        let (rt, schema) = fresh("migrate");
        rt.block_on(async {
            let mut config: tokio_postgres::Config = url.parse().unwrap();
            config.options(format!("-c search_path={schema}"));
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let driver = tokio::spawn(connection);
            // The mailboxes table as the previous release created it.
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA {schema};
                     CREATE TABLE mailboxes (address BYTEA PRIMARY KEY, owner_key BYTEA NOT NULL,
                                             verifier BYTEA, created_at BIGINT NOT NULL);"
                ))
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO mailboxes VALUES ($1, $2, NULL, 1)",
                    &[&MB, &[1u8; 32].as_slice()],
                )
                .await
                .unwrap();
            drop(client);
            driver.abort();
        });
        let store = rt
            .block_on(PostgresRelayStore::connect_in_schema(&url, &schema))
            .unwrap();
        let record = store.mailbox(MB).unwrap().unwrap();
        assert_eq!((record.owner_key, record.push_url), ([1; 32], None));
        assert!(store.set_push_url(MB, Some(b"http://gw/x")).unwrap());
        drop(store);
        // Opening again changes nothing.
        let store = rt
            .block_on(PostgresRelayStore::connect_in_schema(&url, &schema))
            .unwrap();
        assert_eq!(
            store.mailbox(MB).unwrap().unwrap().push_url.as_deref(),
            Some(&b"http://gw/x"[..])
        );
    }

    #[test]
    fn concurrent_takers_on_separate_connections_get_each_one_time_bundle_once() {
        let Some(url) = url() else { return };
        let (rt, schema) = fresh("takers");
        let connect = || {
            rt.block_on(PostgresRelayStore::connect_in_schema(&url, &schema))
                .unwrap()
        };
        let owner = connect();
        owner.create_mailbox(MB, &[1; 32], None, T0).unwrap();
        let bundles: Vec<Vec<u8>> = (0..60u32).map(|n| n.to_be_bytes().to_vec()).collect();
        owner.upload_bundles(MB, &bundles, Some(b"L"), 200).unwrap();
        // Four connections stand for four relay processes sharing the database.
        let stores: Vec<PostgresRelayStore> = (0..4).map(|_| connect()).collect();
        let taken: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|s| {
                    scope.spawn(move || {
                        (0..20)
                            .filter_map(|_| match s.take_bundle(MB).unwrap() {
                                Some((BundleKind::OneTime, b)) => Some(b),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<_> = taken.iter().collect();
        assert_eq!(taken.len(), 60, "every one-time bundle handed out");
        assert_eq!(distinct.len(), 60, "none twice");
    }
}

//! The storage contract every relay backend keeps, run against the embedded SQLite store
//! (in memory and on a file that is reopened): one copy per frame id, delivered memory,
//! retention, limits, bundles handed out once and in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_relay::protocol::BundleKind;
use confide_relay::store::{
    CreateOutcome, MailboxLimits, RelayStore, SqliteRelayStore, StoreOutcome, UploadOutcome,
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

/// The conformance suite: every backend passes it.
fn conformance(s: &dyn RelayStore) {
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
    assert_eq!(version, 2);
    let reopened = SqliteRelayStore::open(&path).unwrap();
    assert_eq!(
        reopened.mailbox(MB).unwrap().unwrap().push_url.as_deref(),
        Some(&b"http://gw/x"[..])
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
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

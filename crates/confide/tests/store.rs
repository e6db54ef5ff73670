//! Endpoints persisting record by record into the stores of `confide-store`: the embedded
//! SQLite file (the default an app gets) and the in-memory store. What an app would see:
//! restarts lose nothing, a state change writes only its own records whatever the number of
//! conversations, a failed commit is carried by the next, records cannot be moved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::convert::Infallible;

use chacha20::ChaCha20Rng;
use common::{Service, T0};
use confide::{
    Address, ChangeSet, ConversationId, Endpoint, EndpointConfig, Event, ExpectedIdentity,
    ImportError, Input, Output, Role, StorageKey,
};
use confide_crypto::{Duration, Timestamp};
use confide_store::{MemoryStore, SqliteStore, SqliteStoreError, Store};
use rand_core::SeedableRng;

/// One app: its endpoint, its store, what it showed.
struct App<S: Store> {
    endpoint: Endpoint,
    store: S,
    key: StorageKey,
    received: Vec<(ConversationId, Vec<u8>)>,
    delivered: usize,
    outbox: Vec<(Address, Vec<u8>)>,
}

impl<S: Store> App<S>
where
    S::Error: std::fmt::Debug,
{
    fn new(endpoint: Endpoint, store: S, key: StorageKey) -> Self {
        Self {
            endpoint,
            store,
            key,
            received: Vec::new(),
            delivered: 0,
            outbox: Vec::new(),
        }
    }

    /// Plays the app's part of the run loop: persist when asked, collect what leaves.
    fn drain(&mut self, rng: &mut ChaCha20Rng) {
        loop {
            match self.endpoint.poll_output() {
                Output::Event(Event::PersistRequired) => {
                    confide_store::persist(&mut self.endpoint, &mut self.store, rng, &self.key)
                        .unwrap();
                }
                Output::Event(Event::Message {
                    conversation, text, ..
                }) => self.received.push((conversation, text.as_bytes().to_vec())),
                Output::Event(Event::Delivered { .. }) => self.delivered += 1,
                Output::Event(_) => {}
                Output::Transmit(tx) => self.outbox.push((tx.to, tx.frame)),
                _ => return,
            }
        }
    }

    fn receive(&mut self, rng: &mut ChaCha20Rng, now: Timestamp, frame: &[u8]) {
        self.endpoint
            .handle_input(rng, Input::Receive { bytes: frame, now });
        self.drain(rng);
    }

    fn timeout(&mut self, rng: &mut ChaCha20Rng, now: Timestamp) {
        self.endpoint.handle_input(rng, Input::Timeout { now });
        self.drain(rng);
    }
}

/// Delivers every waiting frame between the two apps until none is left.
fn exchange<A: Store, B: Store>(
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    a: &mut App<A>,
    b: &mut App<B>,
) where
    A::Error: std::fmt::Debug,
    B::Error: std::fmt::Debug,
{
    for _ in 0..16 {
        if a.outbox.is_empty() && b.outbox.is_empty() {
            return;
        }
        for (to, frame) in std::mem::take(&mut a.outbox) {
            assert_eq!(&to, b.endpoint.address());
            b.receive(rng, now, &frame);
        }
        for (to, frame) in std::mem::take(&mut b.outbox) {
            assert_eq!(&to, a.endpoint.address());
            a.receive(rng, now, &frame);
        }
    }
    panic!("the exchange did not settle");
}

fn new_endpoint(service: &Service, rng: &mut ChaCha20Rng, name: &[u8], role: Role) -> Endpoint {
    service
        .endpoint(rng, name, role, EndpointConfig::default())
        .0
}

/// Starts a conversation from `client` to `counselor` and settles it.
fn connect<A: Store, B: Store>(
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    client: &mut App<A>,
    counselor: &mut App<B>,
) -> ConversationId
where
    A::Error: std::fmt::Debug,
    B::Error: std::fmt::Debug,
{
    let bundle = counselor.endpoint.published_bundles().last_resort;
    let address = counselor.endpoint.address().clone();
    let conv = client
        .endpoint
        .start_conversation(
            rng,
            now,
            address,
            &bundle,
            ExpectedIdentity::TrustOnFirstUse,
        )
        .unwrap()
        .conversation;
    client.drain(rng);
    client.endpoint.send(rng, now, conv, b"hello").unwrap();
    client.drain(rng);
    exchange(rng, now, client, counselor);
    conv
}

/// A client and a counselor persisting into `client_store` and `counselor_store`, with a
/// conversation whose first text was delivered.
struct Connected<A: Store, B: Store> {
    rng: ChaCha20Rng,
    key: StorageKey,
    client: App<A>,
    counselor: App<B>,
    conv: ConversationId,
}

fn connected<A: Store, B: Store>(seed: u8, client_store: A, counselor_store: B) -> Connected<A, B>
where
    A::Error: std::fmt::Debug,
    B::Error: std::fmt::Debug,
{
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let service = Service::new(&mut rng);
    let key = StorageKey::new([seed ^ 0x5a; 32]);
    let mut client = App::new(
        new_endpoint(&service, &mut rng, b"client-1", Role::Client),
        client_store,
        key.clone(),
    );
    let mut counselor = App::new(
        new_endpoint(&service, &mut rng, b"counselor-1", Role::Counselor),
        counselor_store,
        key.clone(),
    );
    client.drain(&mut rng);
    counselor.drain(&mut rng);
    let conv = connect(&mut rng, T0, &mut client, &mut counselor);
    Connected {
        rng,
        key,
        client,
        counselor,
        conv,
    }
}

#[test]
fn a_conversation_survives_restarts_through_the_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("confide-store-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client_db = dir.join("client.db");
    let counselor_db = dir.join("counselor.db");
    let _ = std::fs::remove_file(&client_db);
    let _ = std::fs::remove_file(&counselor_db);
    let now = T0;
    let Connected {
        mut rng,
        key,
        client,
        counselor,
        conv,
    } = connected(
        41,
        SqliteStore::open(&client_db, b"client").unwrap(),
        SqliteStore::open(&counselor_db, b"counselor").unwrap(),
    );
    assert_eq!(counselor.received.len(), 1);
    assert_eq!(client.delivered, 1);

    // Both apps are killed and start again from their database files alone.
    let counselor_conv = counselor.received[0].0;
    drop(client);
    drop(counselor);
    let mut client = App::new(
        confide_store::load(&SqliteStore::open(&client_db, b"client").unwrap(), &key)
            .unwrap()
            .unwrap(),
        SqliteStore::open(&client_db, b"client").unwrap(),
        key.clone(),
    );
    let mut counselor = App::new(
        confide_store::load(
            &SqliteStore::open(&counselor_db, b"counselor").unwrap(),
            &key,
        )
        .unwrap()
        .unwrap(),
        SqliteStore::open(&counselor_db, b"counselor").unwrap(),
        key.clone(),
    );
    let later = now.saturating_add(Duration::from_mins(5));
    client.timeout(&mut rng, later);
    counselor.timeout(&mut rng, later);
    exchange(&mut rng, later, &mut client, &mut counselor);
    counselor
        .endpoint
        .send(&mut rng, later, counselor_conv, b"I'm here")
        .unwrap();
    counselor.drain(&mut rng);
    client
        .endpoint
        .send(&mut rng, later, conv, b"thank you")
        .unwrap();
    client.drain(&mut rng);
    exchange(&mut rng, later, &mut client, &mut counselor);
    assert_eq!(client.received, [(conv, b"I'm here".to_vec())]);
    // The restarted app shows only what is new: "hello" (shown before the restart) is not
    // shown again.
    assert_eq!(
        counselor.received,
        [(counselor_conv, b"thank you".to_vec())]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes one sent text writes to the store, in a counselor's conversation with `clients`
/// open conversations.
fn bytes_written_for_one_text(clients: usize) -> usize {
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let service = Service::new(&mut rng);
    let key = StorageKey::new([3; 32]);
    let mut counselor = App::new(
        new_endpoint(&service, &mut rng, b"counselor-1", Role::Counselor),
        MemoryStore::new(b"counselor"),
        key.clone(),
    );
    counselor.drain(&mut rng);
    let mut first = None;
    for i in 0..clients {
        let name = format!("client-{i}");
        let mut client = App::new(
            new_endpoint(&service, &mut rng, name.as_bytes(), Role::Client),
            MemoryStore::new(name.as_bytes()),
            key.clone(),
        );
        client.drain(&mut rng);
        connect(&mut rng, T0, &mut client, &mut counselor);
        first.get_or_insert(counselor.received[0].0);
    }
    let conv = first.unwrap();
    counselor
        .endpoint
        .send(&mut rng, T0, conv, b"a short reply")
        .unwrap();
    let changes = counselor
        .endpoint
        .take_changes(&mut rng, &key, b"counselor")
        .unwrap();
    changes.written_bytes()
}

#[test]
fn a_text_writes_the_same_few_records_with_one_conversation_or_many() {
    let one = bytes_written_for_one_text(1);
    let many = bytes_written_for_one_text(12);
    assert!(one <= 4096, "one text wrote {one} bytes");
    assert_eq!(one, many, "the write does not grow with the conversations");
}

#[test]
fn a_timeout_that_changes_conversations_is_persisted_at_once() {
    // Texts are tracked for their unsend window; when it ends, a timeout retires them,
    // without any event. That change is persisted by the timeout itself, not left to ride
    // along with (and be lost before) the next text.
    let Connected {
        mut rng,
        key,
        mut client,
        mut counselor,
        conv,
    } = connected(
        44,
        MemoryStore::new(b"client"),
        MemoryStore::new(b"counselor"),
    );
    for text in [&b"one"[..], b"two", b"three"] {
        client.endpoint.send(&mut rng, T0, conv, text).unwrap();
        client.drain(&mut rng);
    }
    exchange(&mut rng, T0, &mut client, &mut counselor);
    assert_eq!(client.delivered, 4);
    let store_before = client.store.records().unwrap();
    let mut now = T0;
    let mut timeouts = 0;
    // Every due timeout over two days, as an app's timer would fire them.
    while let Some(due) = client.endpoint.poll_timeout() {
        if due > T0.saturating_add(confide_crypto::Duration::from_days(2)) {
            break;
        }
        now = due.max(now);
        client.timeout(&mut rng, now);
        timeouts += 1;
        let left = client
            .endpoint
            .take_changes(&mut rng, &key, b"client")
            .unwrap();
        // Every change set carries the counters record (kind 2); nothing else may be left.
        let kinds: Vec<(u8, bool)> = left
            .puts()
            .map(|(k, _)| (k[0], true))
            .chain(left.deletes().map(|k| (k[0], false)))
            .filter(|(kind, _)| *kind != 2)
            .collect();
        assert!(
            kinds.is_empty(),
            "timeout {timeouts} at {now:?} left changes unpersisted: {kinds:?}"
        );
        assert!(timeouts < 1_000, "timeouts keep coming");
    }
    assert!(timeouts > 0, "something was due");
    assert_ne!(
        store_before,
        client.store.records().unwrap(),
        "the retirements reached the store"
    );
}

/// A store whose next commit fails (a full disk), then recovers.
struct Flaky {
    inner: MemoryStore,
    fail_next: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

impl Store for Flaky {
    type Error = DiskFull;

    fn slot(&self) -> &[u8] {
        self.inner.slot()
    }

    fn commit(&mut self, changes: &ChangeSet) -> Result<(), DiskFull> {
        if std::mem::take(&mut self.fail_next) {
            return Err(DiskFull);
        }
        let Ok(()) = self.inner.commit(changes);
        Ok(())
    }

    fn replace_all(&mut self, changes: &ChangeSet) -> Result<(), DiskFull> {
        let Ok(()) = self.inner.replace_all(changes);
        Ok(())
    }

    fn records(&self) -> Result<Vec<confide_store::Record>, DiskFull> {
        let records: Result<_, Infallible> = self.inner.records();
        let Ok(records) = records;
        Ok(records)
    }
}

#[test]
fn a_failed_commit_holds_the_frames_and_is_carried_by_the_next() {
    let Connected {
        mut rng,
        key,
        mut client,
        mut counselor,
        conv,
    } = connected(
        43,
        Flaky {
            inner: MemoryStore::new(b"client"),
            fail_next: false,
        },
        MemoryStore::new(b"counselor"),
    );

    client.endpoint.send(&mut rng, T0, conv, b"one").unwrap();
    assert!(matches!(
        client.endpoint.poll_output(),
        Output::Event(Event::PersistRequired)
    ));
    client.store.fail_next = true;
    assert!(
        confide_store::persist(&mut client.endpoint, &mut client.store, &mut rng, &key).is_err()
    );
    // Nothing leaves while the change is not stored.
    assert!(!matches!(
        client.endpoint.poll_output(),
        Output::Transmit(_)
    ));
    client.endpoint.send(&mut rng, T0, conv, b"two").unwrap();
    client.drain(&mut rng);
    assert_eq!(client.outbox.len(), 2, "both texts leave once stored");

    // What the store holds now loads to the live state: the failed change set was carried.
    let mut loaded = confide_store::load(&client.store, &key).unwrap().unwrap();
    let live = common::state_plaintext(&mut client.endpoint, &mut rng, &key);
    client.endpoint.confirm_persisted();
    assert!(common::state_plaintext(&mut loaded, &mut rng, &key) == live);
    exchange(&mut rng, T0, &mut client, &mut counselor);
    assert_eq!(counselor.received.len(), 3);
}

#[test]
fn records_open_only_in_their_own_place() {
    let Connected { key, client, .. } = connected(
        44,
        MemoryStore::new(b"client"),
        MemoryStore::new(b"counselor"),
    );
    let records = client.store.records().unwrap();
    assert!(Endpoint::load_records(&key, b"client", records.clone()).is_ok());
    // Another account's slot, another key: refused.
    assert!(Endpoint::load_records(&key, b"counselor", records.clone()).is_err());
    assert!(Endpoint::load_records(&StorageKey::new([6; 32]), b"client", records.clone()).is_err());
    // Two records' values swapped: refused.
    let mut swapped = records.clone();
    let (a, b) = (swapped[0].1.clone(), swapped[1].1.clone());
    swapped[0].1 = b;
    swapped[1].1 = a;
    assert!(matches!(
        Endpoint::load_records(&key, b"client", swapped),
        Err(ImportError::Storage(_))
    ));
    // A record missing (the identity): refused; a record repeated: refused.
    assert!(Endpoint::load_records(&key, b"client", records[1..].to_vec()).is_err());
    let mut repeated = records.clone();
    repeated.push(records[2].clone());
    assert!(Endpoint::load_records(&key, b"client", repeated).is_err());
}

/// Records written before record blobs (version 2 `CFDS` blobs, an HKDF each) still load,
/// alone or side by side with version 3 records, with the same binding to their place; each is
/// rewritten as a version 3 record blob when it next changes.
#[test]
fn records_of_the_previous_blob_format_load_and_are_rewritten_when_they_change() {
    use confide_session::storage::{self, RecordSealer, StateKind};
    let Connected {
        mut rng,
        key,
        client,
        conv,
        ..
    } = connected(
        45,
        MemoryStore::new(b"client"),
        MemoryStore::new(b"counselor"),
    );
    let records = client.store.records().unwrap();
    assert!(
        records
            .iter()
            .all(|(_, v)| storage::blob_version(v) == Some(storage::RECORD_STORAGE_VERSION))
    );
    // The same records as the previous version sealed them (endpoint.md, "Sealing").
    let sealer = RecordSealer::new(&key, StateKind::EndpointRecord, b"client");
    let v2: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|(k, v)| {
            let plain = sealer.open(k, v).unwrap();
            let context = [&6u32.to_be_bytes()[..], b"client", k].concat();
            let blob = storage::seal(&mut rng, &key, StateKind::EndpointRecord, &context, &plain);
            (k.clone(), blob)
        })
        .collect();
    let snapshot = |e: &mut Endpoint, rng: &mut ChaCha20Rng| {
        let blob = e.export_state(rng, &key, b"snapshot").unwrap();
        storage::open(&key, StateKind::Endpoint, b"snapshot", &blob)
            .unwrap()
            .to_vec()
    };
    let mut from_v3 = Endpoint::load_records(&key, b"client", records.clone()).unwrap();
    let mut from_v2 = Endpoint::load_records(&key, b"client", v2.clone()).unwrap();
    let expected = snapshot(&mut from_v3, &mut rng);
    assert_eq!(snapshot(&mut from_v2, &mut rng), expected);
    let mixed: Vec<_> = records
        .iter()
        .zip(&v2)
        .enumerate()
        .map(|(i, (new, old))| if i % 2 == 0 { new.clone() } else { old.clone() })
        .collect();
    let mut from_mixed = Endpoint::load_records(&key, b"client", mixed).unwrap();
    assert_eq!(snapshot(&mut from_mixed, &mut rng), expected);
    // Bound to their place as before: another slot, or two values swapped, are refused.
    assert!(Endpoint::load_records(&key, b"counselor", v2.clone()).is_err());
    let mut swapped = v2.clone();
    let (a, b) = (swapped[0].1.clone(), swapped[1].1.clone());
    swapped[0].1 = b;
    swapped[1].1 = a;
    assert!(matches!(
        Endpoint::load_records(&key, b"client", swapped),
        Err(ImportError::Storage(_))
    ));
    // What changes is written as record blobs.
    from_v2
        .send(&mut rng, T0, conv, b"after the upgrade")
        .unwrap();
    let changes = from_v2.take_changes(&mut rng, &key, b"client").unwrap();
    assert_ne!(changes.puts().len(), 0);
    for (k, v) in changes.puts() {
        assert_eq!(
            storage::blob_version(v),
            Some(storage::RECORD_STORAGE_VERSION),
            "record {k:?}"
        );
        assert!(sealer.open(k, v).is_ok());
    }
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let dir = std::env::temp_dir().join(format!("confide-schema-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("newer.db");
    let _ = std::fs::remove_file(&path);
    drop(SqliteStore::open(&path, b"a").unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path, b"a"),
        Err(SqliteStoreError::UnknownSchema { found: 99, .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restored_backup_blob_fills_a_new_database() {
    let Connected {
        mut rng,
        key,
        client,
        ..
    } = connected(
        45,
        MemoryStore::new(b"client"),
        MemoryStore::new(b"counselor"),
    );
    // A backup blob (one snapshot) restored on a new phone with an empty database.
    let mut copy = confide_store::load(&client.store, &key).unwrap().unwrap();
    let blob = copy.export_state(&mut rng, &key, b"client").unwrap();
    let mut restored = Endpoint::import_state(&key, b"client", &blob).unwrap();
    let mut fresh = SqliteStore::open_in_memory(b"client").unwrap();
    assert!(fresh.is_empty().unwrap());
    confide_store::persist_all(&mut restored, &mut fresh, &mut rng, &key).unwrap();
    assert_eq!(fresh.len().unwrap(), client.store.len());
    let mut loaded = confide_store::load(&fresh, &key).unwrap().unwrap();
    let expected = common::state_plaintext(&mut restored, &mut rng, &key);
    assert!(common::state_plaintext(&mut loaded, &mut rng, &key) == expected);
    // Persisting everything again replaces, never duplicates.
    confide_store::persist_all(&mut restored, &mut fresh, &mut rng, &key).unwrap();
    assert_eq!(fresh.len().unwrap(), client.store.len());
}

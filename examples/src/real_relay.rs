//! The second transport of [`crate::Relay`]: a connection to a real `confide-relay` (the
//! reference relay), through its tokio client, driven by blocking calls from the virtual
//! clock of [`crate::Stage`]. Only frames, bundles and blobs go through the relay; the
//! endpoints keep running on virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use confide::{Address, PublishedBundles};
use confide_attachment::{BlobDeleteToken, BlobId};
use confide_crypto::signing::SigningKey;
use confide_relay::client::{
    BlobUpload, ClientError, RelayAddress, RelayConnection, download_blob, upload_blob,
};
use confide_relay::protocol::{ErrorCode, frame_id_of};
use confide_relay::store::SqliteRelayStore;
use confide_sealed::TokenVerifier;
use confide_transport::{FrameId, RelayToken};
use rand_core::SeedableRng;

use crate::ExampleError;

/// The longest any single blocking call into the relay may take (connecting, one request, or
/// a whole blob transfer).
///
/// Reason: the relay answers each request after one database transaction (milliseconds on
/// the same host, and the client already gives up on a silent connection after its own
/// `REQUEST_TIMEOUT` of 10 s); a voice note is a few pieces. Thirty seconds is far beyond
/// that, so reaching it means the relay is gone, and the example stops with an error instead
/// of hanging.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long taking mail waits for a frame the relay receipted for a mailbox and has not yet
/// pushed to its owner connection.
///
/// Reason: the relay pushes a committed frame to its connected owner as soon as it is stored
/// (milliseconds); the wait is only for that hop. A frame receipted but not delivered in ten
/// seconds is a broken relay or connection, reported as an error rather than skipped.
const MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Worker threads of the runtime behind the blocking calls.
///
/// Reason: the connections' readers (and, with `--start-relay`, the relay itself) must make
/// progress between the blocking calls, so the runtime runs on its own threads; two are
/// plenty for three apps and one relay, and leave the machine to the rest.
const WORKER_THREADS: usize = 2;

/// One app's mailbox at the relay.
struct Mailbox {
    /// The Ed25519 key that owns the mailbox (not the app's identity key).
    owner_key: SigningKey,
    /// The authenticated owner connection: the relay pushes the mailbox's frames on it.
    owner: RelayConnection,
    /// The delivery-token verifier registered for the mailbox.
    verifier: [u8; 32],
    /// One-time bundles already uploaded (the directory appends uploads, so each goes once).
    uploaded: BTreeSet<Vec<u8>>,
    /// Frames the relay receipted for this mailbox that its owner has not taken yet.
    expected: BTreeSet<FrameId>,
    /// Frames the owner took (a receipt for one of these is a duplicate the relay already
    /// delivered: nothing more will arrive for it).
    taken: BTreeSet<FrameId>,
}

/// A connection to a real relay, with blocking calls for the virtual-clock [`crate::Stage`].
pub(crate) struct RealRelay {
    runtime: tokio::runtime::Runtime,
    address: RelayAddress,
    /// Where the owner keys come from (seeded from the operating system).
    rng: ChaCha20Rng,
    mailboxes: BTreeMap<Vec<u8>, Mailbox>,
    /// Each app's anonymous sending connection (never authenticated), by its address.
    senders: BTreeMap<Vec<u8>, RelayConnection>,
    /// The relay served by this process (`--start-relay`), running on the runtime.
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RealRelay {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Runs one client call to completion on `runtime`, bounded by [`CALL_TIMEOUT`].
fn run<T>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ExampleError> {
    match run_refusable(runtime, future)? {
        Ok(v) => Ok(v),
        Err(code) => Err(format!("the relay refused: {code}").into()),
    }
}

/// Like [`run`], but a refusal is returned as its code.
fn run_refusable<T>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, ClientError>>,
) -> Result<Result<T, ErrorCode>, ExampleError> {
    match runtime.block_on(async { tokio::time::timeout(CALL_TIMEOUT, future).await }) {
        Err(_) => Err(format!("the relay did not answer within {CALL_TIMEOUT:?}").into()),
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(ClientError::Refused(code))) => Ok(Err(code)),
        Ok(Err(e)) => Err(format!("relay: {e}").into()),
    }
}

/// A random source for the owner keys, seeded from the operating system (the keys need not
/// repeat with the run's seed, and a relay that outlives the run should not see them again).
fn os_seeded() -> Result<ChaCha20Rng, ExampleError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("OS random source: {e}"))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExampleError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()?)
}

impl RealRelay {
    /// Connects to the relay at `address` (checked with one connection).
    pub(crate) fn connect(address: RelayAddress) -> Result<Self, ExampleError> {
        let relay = Self {
            runtime: runtime()?,
            address,
            rng: os_seeded()?,
            mailboxes: BTreeMap::new(),
            senders: BTreeMap::new(),
            server: None,
        };
        drop(relay.call(RelayConnection::connect(address))?);
        Ok(relay)
    }

    /// Starts the reference relay in this process on 127.0.0.1 (a free port), with its
    /// SQLite database in `dir`, and connects to it.
    pub(crate) fn start(dir: &Path) -> Result<Self, ExampleError> {
        let runtime = runtime()?;
        let db = dir.join("relay.sqlite");
        let (listener, store) = runtime.block_on(async {
            let store = Arc::new(SqliteRelayStore::open(&db)?);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, ExampleError>((listener, store))
        })?;
        let local: SocketAddr = listener.local_addr()?;
        let server = confide_relay::Relay::new(store, confide_relay::RelayConfig::default());
        let handle = runtime.spawn(server.serve(listener));
        let relay = Self {
            runtime,
            address: RelayAddress::Tcp(local),
            rng: os_seeded()?,
            mailboxes: BTreeMap::new(),
            senders: BTreeMap::new(),
            server: Some(handle),
        };
        drop(relay.call(RelayConnection::connect(relay.address))?);
        Ok(relay)
    }

    /// The relay's address.
    pub(crate) fn address(&self) -> RelayAddress {
        self.address
    }

    /// Runs one client call to completion, bounded by [`CALL_TIMEOUT`].
    fn call<T>(
        &self,
        future: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ExampleError> {
        run(&self.runtime, future)
    }

    /// Like [`Self::call`], but a refusal is returned as its code.
    fn call_refusable<T>(
        &self,
        future: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<Result<T, ErrorCode>, ExampleError> {
        run_refusable(&self.runtime, future)
    }

    /// On the first call for `address`: creates its mailbox under a fresh owner key with the
    /// verifier, keeping the authenticated owner connection. Later: registers a changed
    /// verifier. Then uploads the one-time bundles not uploaded before, and the last-resort
    /// bundle (which replaces the previous one).
    pub(crate) fn publish(
        &mut self,
        address: &Address,
        bundles: PublishedBundles,
        verifier: TokenVerifier,
    ) -> Result<(), ExampleError> {
        let verifier = verifier.to_bytes();
        if !self.mailboxes.contains_key(address.as_bytes()) {
            let owner_key = SigningKey::generate(&mut self.rng);
            let owner = self.call(async {
                let mut c = RelayConnection::connect(self.address).await?;
                c.create_mailbox(address, &owner_key, Some(verifier))
                    .await?;
                Ok(c)
            })?;
            self.mailboxes.insert(
                address.as_bytes().to_vec(),
                Mailbox {
                    owner_key,
                    owner,
                    verifier,
                    uploaded: BTreeSet::new(),
                    expected: BTreeSet::new(),
                    taken: BTreeSet::new(),
                },
            );
        }
        let mailbox = self
            .mailboxes
            .get_mut(address.as_bytes())
            .ok_or("no mailbox")?;
        if mailbox.verifier != verifier {
            run(&self.runtime, mailbox.owner.set_verifier(Some(verifier)))?;
            mailbox.verifier = verifier;
        }
        let new: Vec<Vec<u8>> = bundles
            .one_time
            .into_iter()
            .filter(|b| !mailbox.uploaded.contains(b))
            .collect();
        run(
            &self.runtime,
            mailbox
                .owner
                .upload_bundles(new.clone(), Some(bundles.last_resort)),
        )?;
        mailbox.uploaded.extend(new);
        Ok(())
    }

    /// Takes one bundle of `address` from the directory, on a connection that never
    /// authenticates (the directory does not learn who asked).
    pub(crate) fn fetch_bundle(&self, address: &Address) -> Result<Option<Vec<u8>>, ExampleError> {
        let got = self.call_refusable(async {
            let mut c = RelayConnection::connect(self.address).await?;
            c.fetch_bundle(address).await
        })?;
        match got {
            Ok((_kind, bundle)) => Ok(Some(bundle)),
            Err(ErrorCode::NoBundle) => Ok(None),
            Err(code) => Err(format!("relay refused a bundle fetch: {code}").into()),
        }
    }

    /// Sends a frame on `from`'s anonymous sending connection and waits for the relay
    /// receipt. `Ok(Some(id))`: stored; `Ok(None)`: refused with `code` (the endpoint
    /// retransmits later).
    pub(crate) fn send(
        &mut self,
        from: &Address,
        to: &Address,
        token: Option<&RelayToken>,
        frame: &[u8],
    ) -> Result<Result<FrameId, ErrorCode>, ExampleError> {
        if !self.senders.contains_key(from.as_bytes()) {
            let c = self.call(RelayConnection::connect(self.address))?;
            self.senders.insert(from.as_bytes().to_vec(), c);
        }
        let sender = self
            .senders
            .get_mut(from.as_bytes())
            .ok_or("no sending connection")?;
        let got = run_refusable(&self.runtime, sender.send(to, token, frame))?;
        if let Ok(id) = got
            && let Some(mailbox) = self.mailboxes.get_mut(to.as_bytes())
            && !mailbox.taken.contains(&id)
        {
            mailbox.expected.insert(id);
        }
        Ok(got)
    }

    /// Whether the relay receipted frames for `address` that its owner has not taken.
    pub(crate) fn has_mail(&self, address: &Address) -> bool {
        self.mailboxes
            .get(address.as_bytes())
            .is_some_and(|m| !m.expected.is_empty())
    }

    /// Takes one frame pushed on `address`'s owner connection: waits up to [`MAIL_WAIT`] if
    /// the relay receipted frames for it that have not been taken, otherwise only takes one
    /// that is already there.
    pub(crate) fn take_mail(&mut self, address: &Address) -> Result<Option<Vec<u8>>, ExampleError> {
        let Some(mailbox) = self.mailboxes.get_mut(address.as_bytes()) else {
            return Ok(None);
        };
        let wait = if mailbox.expected.is_empty() {
            std::time::Duration::ZERO
        } else {
            MAIL_WAIT
        };
        // `next_delivery` is cancel-safe: a frame not taken within the wait stays queued.
        let got = self
            .runtime
            .block_on(async { tokio::time::timeout(wait, mailbox.owner.next_delivery()).await });
        match got {
            Ok(Ok(frame)) => {
                if let Some(id) = frame_id_of(&frame) {
                    mailbox.expected.remove(&id);
                    mailbox.taken.insert(id);
                }
                Ok(Some(frame))
            }
            Ok(Err(e)) => Err(format!("relay: the owner connection failed: {e}").into()),
            Err(_) if mailbox.expected.is_empty() => Ok(None),
            Err(_) => Err(format!(
                "the relay receipted {} frame(s) for {} but did not deliver them within {MAIL_WAIT:?}",
                mailbox.expected.len(),
                String::from_utf8_lossy(address.as_bytes())
            )
            .into()),
        }
    }

    /// Confirms a frame taken from `address`'s mailbox (the relay deletes it). Called only
    /// after the app persisted the state that holds it.
    pub(crate) fn confirm(&mut self, address: &Address, frame: &[u8]) -> Result<(), ExampleError> {
        let (Some(mailbox), Some(id)) = (
            self.mailboxes.get_mut(address.as_bytes()),
            frame_id_of(frame),
        ) else {
            return Ok(());
        };
        run(&self.runtime, mailbox.owner.confirm(&[id]))
    }

    /// The app behind `address` restarted: its owner connection is replaced by a new one,
    /// and the relay pushes again every frame not confirmed yet.
    pub(crate) fn reconnect(&mut self, address: &Address) -> Result<(), ExampleError> {
        let Some(mailbox) = self.mailboxes.get_mut(address.as_bytes()) else {
            return Ok(());
        };
        let relay = self.address;
        let key = &mailbox.owner_key;
        let owner = run(&self.runtime, async {
            let mut c = RelayConnection::connect(relay).await?;
            c.authenticate(address, key).await?;
            Ok(c)
        })?;
        // The old connection closes when dropped. Every frame taken from it was confirmed;
        // those the relay pushed on it but nobody took stay expected, and the relay pushes
        // them again on the new connection.
        mailbox.owner = owner;
        Ok(())
    }

    /// Uploads a blob on a connection authenticated as the owner of `from`'s mailbox.
    pub(crate) fn put_blob(
        &self,
        from: &Address,
        id: &BlobId,
        delete_token_hash: [u8; 32],
        blob: Vec<u8>,
    ) -> Result<(), ExampleError> {
        let mailbox = self
            .mailboxes
            .get(from.as_bytes())
            .ok_or("the uploader has no mailbox at the relay")?;
        let upload = BlobUpload {
            blob_id: *id,
            total_len: blob.len() as u64,
            delete_token_hash,
        };
        let mut source = std::io::Cursor::new(blob);
        self.call(upload_blob(
            self.address,
            from,
            &mailbox.owner_key,
            &upload,
            &mut source,
        ))?;
        Ok(())
    }

    /// Downloads a blob on connections that never authenticate; `None` if the relay holds
    /// no such blob.
    pub(crate) fn get_blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>, ExampleError> {
        let mut offset = 0u64;
        let mut sink = Vec::new();
        match self.call_refusable(download_blob(self.address, id, &mut offset, &mut sink))? {
            Ok(_) => Ok(Some(sink)),
            Err(ErrorCode::NoSuchBlob) => Ok(None),
            Err(code) => Err(format!("relay refused a blob download: {code}").into()),
        }
    }

    /// Deletes a blob with its delete token; whether a blob was deleted (not: already gone,
    /// or a token that does not match).
    pub(crate) fn delete_blob(
        &self,
        id: &BlobId,
        token: &BlobDeleteToken,
    ) -> Result<bool, ExampleError> {
        let got = self.call_refusable(async {
            let mut c = RelayConnection::connect(self.address).await?;
            c.delete_blob(id, token).await
        })?;
        match got {
            Ok(()) => Ok(true),
            Err(ErrorCode::NoSuchBlob | ErrorCode::DeleteTokenRefused) => Ok(false),
            Err(code) => Err(format!("relay refused a blob deletion: {code}").into()),
        }
    }

    /// Whether the relay holds a blob under `id` (complete or not).
    pub(crate) fn has_blob(&self, id: &BlobId) -> Result<bool, ExampleError> {
        let state = self.call(async {
            let mut c = RelayConnection::connect(self.address).await?;
            c.blob_status(id).await
        })?;
        Ok(state.is_some())
    }
}

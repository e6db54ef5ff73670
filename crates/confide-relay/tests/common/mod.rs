//! Shared by the relay's process tests: a relay process on 127.0.0.1 with a temporary
//! database, frames, keys, and bounded waits.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_crypto::signing::SigningKey;
use confide_relay::client::{ClientError, RelayAddress, RelayConnection};
use confide_relay::protocol::ErrorCode;
use confide_transport::{Address, Frame, FrameId};
use rand_core::SeedableRng;

/// Every test's whole body must finish within this.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// Runs a test's body, failing it if it takes longer than [`TEST_DEADLINE`].
pub async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test finished within its deadline");
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "confide-relay-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay process; killed (SIGKILL) on drop.
pub struct RelayProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
    /// The WebSocket address, if started with `--listen-ws`.
    pub ws: Option<SocketAddr>,
}

impl RelayProcess {
    /// Starts `confide-relay --db <dir>/relay.sqlite --listen 127.0.0.1:0 <extra>` and reads
    /// the address from its first line.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// As [`Self::start`], listening on `listen`.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let db = dir.join("relay.sqlite");
        Self::start_db(db.to_str().unwrap(), listen, extra)
    }

    /// `confide-relay --db <db> --listen <listen> <extra>` (`db` a file or a PostgreSQL URL).
    pub fn start_db(db: &str, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confide-relay"))
            .arg("--db")
            .arg(db)
            .args(["--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let ws = extra.contains(&"--listen-ws").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("listening on ws://")
                .and_then(|a| a.strip_suffix('/'))
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .parse()
                .unwrap()
        });
        Self {
            child,
            _stdout: stdout,
            addr,
            ws,
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
}

pub fn address(name: &str) -> Address {
    Address::new(name.as_bytes()).unwrap()
}

pub fn frame_id(n: u32) -> FrameId {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    FrameId::from_bytes(id)
}

pub fn frame(id: FrameId, payload: &[u8]) -> Vec<u8> {
    Frame::Data {
        id,
        payload: payload.to_vec(),
    }
    .to_bytes()
    .unwrap()
}

pub fn id_of(frame: &[u8]) -> FrameId {
    confide_relay::protocol::frame_id_of(frame).unwrap()
}

/// A connection authenticated as the owner of a new mailbox.
pub async fn owner(
    relay: impl Into<RelayAddress>,
    mailbox: &Address,
    key: &SigningKey,
) -> RelayConnection {
    let mut c = RelayConnection::connect(relay).await.unwrap();
    c.create_mailbox(mailbox, key, None).await.unwrap();
    c
}

/// The next delivery, within 5 s.
pub async fn delivery(c: &mut RelayConnection) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), c.next_delivery())
        .await
        .expect("a delivery within 5 s")
        .unwrap()
}

/// Sends a probe frame to `mailbox` and checks that it is the next frame `owner` receives:
/// proof that nothing else was waiting (frames are delivered in store order).
pub async fn assert_only_probe_waits(
    relay: impl Into<RelayAddress>,
    mailbox: &Address,
    owner: &mut RelayConnection,
    probe: u32,
) {
    let mut s = RelayConnection::connect(relay).await.unwrap();
    let id = frame_id(probe);
    s.send(mailbox, None, &frame(id, b"probe")).await.unwrap();
    let got = delivery(owner).await;
    assert_eq!(
        id_of(&got),
        id,
        "something other than the probe was waiting"
    );
    owner.confirm(&[id]).await.unwrap();
}

pub fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Runs the relay's command line and returns its standard output (panics on failure).
pub fn run_cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_confide-relay"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An operator's issuer in `dir`: a root key (id 1) and a server key (id 3) it certified.
/// Returns the trust roots apps pin and the server key file.
pub fn init_issuer(dir: &Path) -> (confide_sealed::TrustRoots, PathBuf) {
    let root_file = dir.join("root.key");
    let server_file = dir.join("server.key");
    let root_out = run_cli(&["init-root", "--root-key-file", root_file.to_str().unwrap()]);
    let root_hex = root_out
        .lines()
        .find_map(|l| l.strip_prefix("root public key "))
        .unwrap();
    run_cli(&[
        "init",
        "--root-key-file",
        root_file.to_str().unwrap(),
        "--server-key-file",
        server_file.to_str().unwrap(),
        "--server-key-id",
        "3",
    ]);
    let mut roots = confide_sealed::TrustRoots::new();
    let root_key = confide_crypto::signing::VerifyingKey::from_bytes(
        &hex::decode(root_hex).unwrap().try_into().unwrap(),
    )
    .unwrap();
    roots.add_root(1, root_key).unwrap();
    (roots, server_file)
}

/// The environment variable naming a PostgreSQL database the tests may create schemas in
/// (a `postgres://` URL or `key=value` pairs); `.ci/with-postgres` starts a throwaway cluster
/// and sets it.
pub const POSTGRES_URL_VAR: &str = "CONFIDE_TEST_POSTGRES_URL";

/// The test database as a `postgres://` URL (what the relay's `--db` takes), or `None` after
/// printing that (and why) the calling test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    let Ok(raw) = std::env::var(POSTGRES_URL_VAR) else {
        println!(
            "skipped {test}: {POSTGRES_URL_VAR} is not set (a throwaway PostgreSQL database; \
             .ci/with-postgres sets it)"
        );
        return None;
    };
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Some(raw);
    }
    // `host=/tmp/x port=5432 user=postgres dbname=postgres`
    let mut db = "postgres".to_owned();
    let mut params = Vec::new();
    for pair in raw.split_whitespace() {
        let (k, v) = pair.split_once('=').unwrap();
        if k == "dbname" {
            db = v.to_owned();
        } else {
            params.push(format!("{k}={v}"));
        }
    }
    Some(format!("postgresql:///{db}?{}", params.join("&")))
}

/// A schema name of its own for one test run: `confide_test_<name>_<pid>_<nanos>`.
pub fn fresh_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("confide_test_{name}_{}_{nanos}", std::process::id())
}

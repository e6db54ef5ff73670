//! `relay-load`: frames per second stored and delivered through one relay process, with many
//! connected owners, on SQLite and on PostgreSQL. A measurement, not a test.
//!
//! ```text
//! cargo build --release -p confide-relay --bins
//! target/release/relay-load [--db sqlite] [--db postgres://URL | --db 'host=... dbname=...']
//!     [--clients 1000] [--senders 16] [--frames 20000] [--payload 1024]
//! ```
//!
//! Each process holds a socket per client: raise the file descriptor limit (`ulimit -n 4096`)
//! if it is lower than the client count plus a few dozen.
//!
//! For each `--db` (default: `sqlite`, a fresh file in a temporary directory; a PostgreSQL
//! database gets a schema of its own), it starts the `confide-relay` binary that sits beside
//! this one as a separate process on 127.0.0.1, then:
//!
//! 1. connects `--clients` owners, each creating and authenticating its own mailbox over its
//!    own connection, all of which stay connected;
//! 2. `--senders` anonymous connections send `--frames` frames of `--payload` bytes, frame `n`
//!    to mailbox `n mod clients`, each sender waiting for the relay receipt (`Stored`) of one
//!    frame before it sends the next, as the tokio client does;
//! 3. every owner confirms each frame it is pushed, one `Confirm` per frame, as an app does.
//!
//! Then, for comparison, **the same storage work without a relay**: the store alone
//! (`SqliteRelayStore` or `PostgresRelayStore` in this process, on a fresh database): for each
//! frame the payload digest, `store_frame` and `confirm`, from `--senders` threads at once (the
//! run's concurrency), with no network, no protocol, no signatures and no owner connections.
//!
//! It prints two table rows per database: frames per second receipted (each receipt follows a
//! durable commit) and delivered (pushed to the connected owner and confirmed, which deletes
//! it: the second commit of every frame), and the time from a frame's send to its delivery
//! (the send time travels inside the payload, which the relay never reads). The load generator
//! and the relay share the machine, so the figures are a floor for the relay alone.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use confide_crypto::signing::SigningKey;
use confide_relay::client::RelayConnection;
use confide_relay::protocol::{frame_id_of, frame_payload};
use confide_relay::store::{MailboxLimits, RelayStore, SqliteRelayStore};
use confide_transport::{Address, Frame, FrameId};
use rand_core::SeedableRng;
use tokio::sync::{Semaphore, mpsc};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: relay-load [--db sqlite] [--db postgres://URL | --db 'host=... dbname=...']
                  [--clients N] [--senders N] [--frames N] [--payload BYTES]";

/// Owners connecting at once during setup.
///
/// Reason: a thousand simultaneous handshakes would measure the accept queue, not the relay;
/// 64 at a time connects a thousand owners in seconds.
const SETUP_PARALLELISM: usize = 64;

/// How long one run may take before it is abandoned.
///
/// Reason: a measurement that stalls (a lost frame, a dead relay) must end with an error, not
/// hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Bytes at the start of each payload that carry its send time (microseconds since the run
/// started).
const TIMESTAMP_LEN: usize = 8;

struct Options {
    dbs: Vec<String>,
    clients: usize,
    senders: usize,
    frames: usize,
    payload: usize,
}

fn parse() -> Result<Options, Error> {
    let mut o = Options {
        dbs: Vec::new(),
        clients: 1000,
        senders: 16,
        frames: 20_000,
        payload: 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--db" => o.dbs.push(value()?),
            "--clients" => o.clients = value()?.parse()?,
            "--senders" => o.senders = value()?.parse()?,
            "--frames" => o.frames = value()?.parse()?,
            "--payload" => o.payload = value()?.parse()?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}").into()),
        }
    }
    if o.dbs.is_empty() {
        o.dbs.push("sqlite".to_owned());
    }
    if o.clients == 0 || o.senders == 0 || o.frames == 0 || o.payload < TIMESTAMP_LEN {
        return Err(format!(
            "clients, senders and frames must be positive, payload at least {TIMESTAMP_LEN}"
        )
        .into());
    }
    Ok(o)
}

/// `host=/tmp/x port=5432 user=postgres dbname=postgres` (what `.ci/with-postgres` sets) as a
/// `postgresql://` URL, which the relay's `--db` takes; URLs pass unchanged.
fn postgres_url(db: &str) -> Result<String, Error> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Ok(db.to_owned());
    }
    let mut name = "postgres".to_owned();
    let mut params = Vec::new();
    for pair in db.split_whitespace() {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("--db {db:?}: not a URL or key=value pairs"))?;
        if k == "dbname" {
            name = v.to_owned();
        } else {
            params.push(format!("{k}={v}"));
        }
    }
    Ok(format!("postgresql:///{name}?{}", params.join("&")))
}

/// The relay process; killed on drop.
struct RelayProcess {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: Option<TempDir>,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_relay(db: &str, clients: usize, senders: usize) -> Result<(RelayProcess, String), Error> {
    let exe = std::env::current_exe()?
        .parent()
        .ok_or("no directory for this program")?
        .join("confide-relay");
    if !exe.exists() {
        return Err(format!(
            "{} is missing: build it beside this program (cargo build --release -p confide-relay --bins)",
            exe.display()
        )
        .into());
    }
    let (db_arg, schema, dir, label) = if db == "sqlite" {
        let dir = std::env::temp_dir().join(format!("confide-relay-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("relay.sqlite");
        (
            file.to_string_lossy().into_owned(),
            None,
            Some(TempDir(dir)),
            "SQLite".to_owned(),
        )
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        (
            postgres_url(db)?,
            Some(format!("relay_load_{}_{nanos}", std::process::id())),
            None,
            "PostgreSQL".to_owned(),
        )
    };
    // All clients come from 127.0.0.1: the per-source limits are raised for this run only.
    let connections = clients
        .saturating_add(senders)
        .saturating_add(16)
        .to_string();
    let mut cmd = Command::new(&exe);
    cmd.args(["--db", &db_arg, "--listen", "127.0.0.1:0"])
        .args(["--max-connections-per-ip", &connections])
        .args(["--new-connections-per-ip-per-minute", &connections]);
    if let Some(schema) = &schema {
        cmd.args(["--db-schema", schema]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("relay said {first:?}"))?
        .parse()?;
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.lines() {});
    Ok((
        RelayProcess {
            child,
            addr,
            _dir: dir,
        },
        label,
    ))
}

fn mailbox(i: usize) -> Result<Address, Error> {
    Ok(Address::new(format!("load-{i}").as_bytes())?)
}

fn frame_id(sender: usize, n: usize) -> FrameId {
    let id = (u128::from(sender as u64) << 64) | u128::from(n as u64);
    FrameId::from_bytes(id.to_be_bytes())
}

struct Row {
    label: String,
    setup: Duration,
    stored: Duration,
    delivered: Duration,
    latencies: Vec<Duration>,
}

/// A PostgreSQL store in a schema of its own.
#[cfg(feature = "postgres")]
fn open_postgres(
    db: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<Box<dyn RelayStore>, Error> {
    let url = postgres_url(db)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let schema = format!("relay_floor_{}_{nanos}", std::process::id());
    let store = runtime
        .block_on(confide_relay::postgres::PostgresRelayStore::connect_in_schema(&url, &schema))?;
    Ok(Box::new(store))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(
    _db: &str,
    _runtime: &tokio::runtime::Runtime,
) -> Result<Box<dyn RelayStore>, Error> {
    Err("this build has no PostgreSQL store (feature postgres)".into())
}

/// The floor: the same storage work as a run (digest, store, confirm per frame) on the store
/// alone, from as many threads as the run has senders; returns the times like a run.
fn floor(o: &Options, db: &str, runtime: &tokio::runtime::Runtime) -> Result<Row, Error> {
    let dir = std::env::temp_dir().join(format!("confide-relay-floor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let _cleanup = TempDir(dir.clone());
    let (store, label): (Box<dyn RelayStore>, &str) = if db == "sqlite" {
        (
            Box::new(SqliteRelayStore::open(dir.join("floor.sqlite"))?),
            "SQLite, store alone",
        )
    } else {
        (open_postgres(db, runtime)?, "PostgreSQL, store alone")
    };
    // The PostgreSQL store blocks on the runtime: run its calls on a blocking thread of it.
    let (clients, senders, frames, payload_len) = (o.clients, o.senders, o.frames, o.payload);
    let work = move || -> Result<(Duration, Duration), Error> {
        let setup_start = Instant::now();
        let owner = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(0))
            .verifying_key()
            .to_bytes();
        for i in 0..clients {
            store.create_mailbox(
                mailbox(i)?.as_bytes(),
                &owner,
                None,
                confide_relay::wall_clock(),
            )?;
        }
        let setup = setup_start.elapsed();
        let limits = MailboxLimits {
            max_frames: u64::MAX,
            max_bytes: u64::MAX,
            delivered_memory: confide_relay::consts::DELIVERED_MEMORY,
        };
        // The same concurrency as the run's senders: one thread each, sharing the store.
        let store: Arc<dyn RelayStore> = Arc::from(store);
        let start = Instant::now();
        let workers: Vec<_> = (0..senders)
            .map(|s| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || -> Result<(), Error> {
                    for n in (s..frames).step_by(senders) {
                        let frame = Frame::Data {
                            id: frame_id(s, n),
                            payload: vec![0x5a; payload_len],
                        }
                        .to_bytes()?;
                        let digest = confide_crypto::kdf::sha256(&[frame_payload(&frame)]);
                        let address = mailbox(n % clients)?;
                        let id = *frame_id(s, n).as_bytes();
                        let now = confide_relay::wall_clock();
                        store.store_frame(
                            address.as_bytes(),
                            &id,
                            &digest,
                            &frame,
                            now,
                            &limits,
                        )?;
                        store.confirm(address.as_bytes(), &[id], now)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a store thread panicked")??;
        }
        Ok((setup, start.elapsed()))
    };
    let (setup, elapsed) =
        runtime.block_on(async { tokio::task::spawn_blocking(work).await })??;
    Ok(Row {
        label: label.to_owned(),
        setup,
        stored: elapsed,
        delivered: elapsed,
        latencies: Vec::new(),
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len().saturating_sub(1)).saturating_mul(p) / 100;
    sorted.get(i).copied().unwrap_or_default()
}

/// Confirms every frame pushed to `owner` and reports its send-to-delivery time, until the
/// connection fails or the task is aborted.
async fn confirm_loop(
    mut owner: RelayConnection,
    start: Instant,
    delivered: mpsc::UnboundedSender<Duration>,
) -> Result<(), Error> {
    loop {
        let frame = owner.next_delivery().await?;
        let id = frame_id_of(&frame).ok_or("not a frame")?;
        owner.confirm(&[id]).await?;
        let sent_us = match Frame::from_bytes(&frame)? {
            Frame::Data { payload, .. } => payload
                .get(..TIMESTAMP_LEN)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            _ => 0,
        };
        let now_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = delivered.send(Duration::from_micros(now_us.saturating_sub(sent_us)));
    }
}

async fn run(o: &Options, db: &str) -> Result<Row, Error> {
    let (relay, label) = start_relay(db, o.clients, o.senders)?;
    let addr = relay.addr;

    // 1. Owners: each creates its mailbox and stays connected.
    let setup_start = Instant::now();
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let mut connecting = Vec::new();
    for i in 0..o.clients {
        let gate = Arc::clone(&gate);
        connecting.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await?;
            let key = SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(i as u64));
            let mut c = RelayConnection::connect(addr).await?;
            c.create_mailbox(&mailbox(i)?, &key, None).await?;
            Ok::<_, Error>(c)
        }));
    }
    let mut owners = Vec::new();
    for c in connecting {
        owners.push(c.await??);
    }
    let setup = setup_start.elapsed();

    // 3. Each owner confirms every frame it is pushed and reports its latency.
    let start = Instant::now();
    let (delivered_tx, mut delivered_rx) = mpsc::unbounded_channel::<Duration>();
    let mut owner_tasks = Vec::new();
    for owner in owners {
        let delivered_tx = delivered_tx.clone();
        owner_tasks.push(tokio::spawn(confirm_loop(owner, start, delivered_tx)));
    }
    drop(delivered_tx);

    // 2. Senders, each waiting for a receipt before its next frame.
    let mut sender_tasks = Vec::new();
    for s in 0..o.senders {
        let (clients, senders, frames, payload_len) = (o.clients, o.senders, o.frames, o.payload);
        sender_tasks.push(tokio::spawn(async move {
            let mut c = RelayConnection::connect(addr).await?;
            let mut n = s;
            let mut k = 0usize;
            while n < frames {
                let mut payload = vec![0x5a; payload_len];
                let sent_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Some(head) = payload.get_mut(..TIMESTAMP_LEN) {
                    head.copy_from_slice(&sent_us.to_be_bytes());
                }
                let frame = Frame::Data {
                    id: frame_id(s, k),
                    payload,
                }
                .to_bytes()?;
                c.send(&mailbox(n % clients)?, None, &frame).await?;
                n = n.saturating_add(senders);
                k = k.saturating_add(1);
            }
            Ok::<(), Error>(())
        }));
    }
    for t in sender_tasks {
        t.await??;
    }
    let stored = start.elapsed();
    let mut latencies = Vec::with_capacity(o.frames);
    while latencies.len() < o.frames {
        match delivered_rx.recv().await {
            Some(l) => latencies.push(l),
            None => return Err("an owner connection failed".into()),
        }
    }
    let delivered = start.elapsed();
    for t in owner_tasks {
        t.abort();
    }
    latencies.sort();
    drop(relay);
    Ok(Row {
        label,
        setup,
        stored,
        delivered,
        latencies,
    })
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("relay-load: {e}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<(), Error> {
    let o = parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{} connected owners (one mailbox each), {} senders, {} frames of {} bytes; relay: {}",
        o.clients,
        o.senders,
        o.frames,
        o.payload,
        std::env::current_exe()?
            .parent()
            .map(|p| p.join("confide-relay").display().to_string())
            .unwrap_or_default()
    );
    println!();
    println!(
        "| store | connected owners | frames | receipted frames/s | delivered + confirmed frames/s | send to delivery p50 | p99 | max | creating the mailboxes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for db in &o.dbs {
        let row = runtime.block_on(async {
            tokio::time::timeout(RUN_TIMEOUT, run(&o, db))
                .await
                .map_err(|_| Error::from("the run timed out"))?
        })?;
        print_row(&o, &row);
        let floor = floor(&o, db, &runtime)?;
        print_row(&o, &floor);
    }
    Ok(())
}

fn print_row(o: &Options, row: &Row) {
    if row.latencies.is_empty() {
        println!(
            "| {} | - | {} | {:.0} | {:.0} | - | - | - | {:.1} s |",
            row.label,
            o.frames,
            per_second(o.frames, row.stored),
            per_second(o.frames, row.delivered),
            row.setup.as_secs_f64(),
        );
        return;
    }
    {
        let max = row.latencies.last().copied().unwrap_or_default();
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} s |",
            row.label,
            o.clients,
            o.frames,
            per_second(o.frames, row.stored),
            per_second(o.frames, row.delivered),
            percentile(&row.latencies, 50).as_secs_f64() * 1e3,
            percentile(&row.latencies, 99).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            row.setup.as_secs_f64(),
        );
    }
}

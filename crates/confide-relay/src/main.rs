//! `confide-relay`: run the reference relay, or manage its issuer keys.
//!
//! ```text
//! confide-relay [serve] --db PATH --listen ADDR [--listen-ws ADDR] [--server-key-file PATH]
//!               [--max-frames-per-mailbox N] [--max-bytes-per-mailbox N]
//!               [--max-connections-per-ip N] [--new-connections-per-ip-per-minute N]
//!               [--db-schema NAME] [--push-gateway HOST:PORT[,HOST:PORT...]]
//!               [--max-blob-bytes-per-owner N] [--max-blob-bytes-in-flight-per-owner N]
//!               [--max-blobs-per-owner N] [--blob-retention-ms MS]
//!               [--incomplete-blob-retention-ms MS]
//! confide-relay init-root --root-key-file PATH [--root-key-id N]
//! confide-relay init --root-key-file PATH --server-key-file PATH --server-key-id N [--valid-days D]
//! confide-relay issue --server-key-file PATH --role counselor|bot (--address TEXT | --address-hex HEX)
//!               --identity-hex HEX --name NAME [--device-id N] [--valid-days D]
//! ```
//!
//! `serve` prints `listening on IP:PORT` as its first line, then (with `--listen-ws`)
//! `listening on ws://IP:PORT/`, then its limits. WebSocket is plain `ws://`: TLS terminates
//! at a reverse proxy in front of the relay. `--db` is a
//! SQLite file, or a `postgres://` URL in a build with the `postgres` feature (then
//! `--db-schema` keeps the tables in a schema of their own, and the process listens for the
//! other processes' wake-ups). `--push-gateway` turns the webhook push hook on for these
//! push gateways (plain `http://`).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use confide_crypto::identity::IdentityPublicKey;
use confide_crypto::signing::SigningKey;
use confide_relay::issuer::{create_root_key, create_server_key, read_root_key, read_server_key};
use confide_relay::push::{PushHook, WebhookPush};
use confide_relay::store::{RelayStore, SqliteRelayStore};
use confide_relay::{Limits, Relay, RelayConfig, wall_clock};
use confide_sealed::{Role, SenderCertificate, SenderClaims};
use confide_wire::Duration;
use rand_core::SeedableRng;

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage:
  confide-relay [serve] --db PATH|postgres://URL --listen ADDR [--listen-ws ADDR]
                [--server-key-file PATH]
                [--max-frames-per-mailbox N] [--max-bytes-per-mailbox N]
                [--max-connections-per-ip N] [--new-connections-per-ip-per-minute N]
                [--db-schema NAME] [--push-gateway HOST:PORT[,HOST:PORT...]]
                [--max-blob-bytes-per-owner N] [--max-blob-bytes-in-flight-per-owner N]
                [--max-blobs-per-owner N] [--blob-retention-ms MS]
                [--incomplete-blob-retention-ms MS]
  confide-relay init-root --root-key-file PATH [--root-key-id N]
  confide-relay init --root-key-file PATH --server-key-file PATH --server-key-id N [--valid-days D]
  confide-relay issue --server-key-file PATH --role counselor|bot (--address TEXT | --address-hex HEX)
                --identity-hex HEX --name NAME [--device-id N] [--valid-days D]";

/// Server certificates last this long unless `--valid-days` says otherwise.
///
/// Reason: a server key is rotated (and the old one revoked) at least quarterly.
const DEFAULT_SERVER_KEY_DAYS: u64 = 90;

/// Counselor and bot certificates last this long unless `--valid-days` says otherwise.
///
/// Reason: staff certificates are reissued monthly, so a departed counselor's certificate
/// lapses within a month even if nobody revokes the server key.
const DEFAULT_STAFF_CERTIFICATE_DAYS: u64 = 30;

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, Error> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}\n{USAGE}"))?;
        let value = it
            .next()
            .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
        if flags.insert(name.to_owned(), value.clone()).is_some() {
            return Err(format!("--{name} given twice").into());
        }
    }
    Ok(flags)
}

struct Flags(HashMap<String, String>);

impl Flags {
    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    fn required(&mut self, name: &str) -> Result<String, Error> {
        self.take(name)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}").into())
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, Error> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}").into()),
        }
    }

    fn finish(self) -> Result<(), Error> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown flag --{k}\n{USAGE}").into()),
        }
    }
}

fn rng() -> Result<ChaCha20Rng, Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("OS random source: {e}"))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("confide-relay: {e}");
        std::process::exit(2);
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let (command, rest) = match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(c @ ("serve" | "init-root" | "init" | "issue")) => {
            (c, args.get(1..).unwrap_or_default())
        }
        _ => ("serve", args),
    };
    let mut flags = Flags(parse_flags(rest)?);
    match command {
        "init-root" => init_root(flags),
        "init" => init(flags),
        "issue" => issue(flags),
        _ => {
            let db = flags.required("db")?;
            let listen = flags.required("listen")?;
            let listen_ws = flags.take("listen-ws");
            let issuer = flags
                .take("server-key-file")
                .map(|p| read_server_key(p.as_ref()))
                .transpose()?;
            let mut limits = Limits::default();
            limits.max_frames_per_mailbox =
                flags.number("max-frames-per-mailbox", limits.max_frames_per_mailbox)?;
            limits.max_bytes_per_mailbox =
                flags.number("max-bytes-per-mailbox", limits.max_bytes_per_mailbox)?;
            limits.max_connections_per_ip =
                flags.number("max-connections-per-ip", limits.max_connections_per_ip)?;
            limits.new_connections_per_ip_per_minute = flags.number(
                "new-connections-per-ip-per-minute",
                limits.new_connections_per_ip_per_minute,
            )?;
            limits.max_blob_bytes_per_owner =
                flags.number("max-blob-bytes-per-owner", limits.max_blob_bytes_per_owner)?;
            limits.max_blob_bytes_in_flight_per_owner = flags.number(
                "max-blob-bytes-in-flight-per-owner",
                limits.max_blob_bytes_in_flight_per_owner,
            )?;
            limits.max_blobs_per_owner =
                flags.number("max-blobs-per-owner", limits.max_blobs_per_owner)?;
            limits.blob_retention = Duration::from_millis(
                flags.number("blob-retention-ms", limits.blob_retention.as_millis())?,
            );
            limits.incomplete_blob_retention = Duration::from_millis(flags.number(
                "incomplete-blob-retention-ms",
                limits.incomplete_blob_retention.as_millis(),
            )?);
            let schema = flags.take("db-schema");
            let gateways: Option<Vec<String>> = flags
                .take("push-gateway")
                .map(|g| g.split(',').map(str::to_owned).collect());
            flags.finish()?;
            if schema.is_some() && !is_postgres_url(&db) {
                return Err("--db-schema needs a postgres:// database".into());
            }
            serve(
                db,
                schema,
                &listen,
                listen_ws.as_deref(),
                gateways,
                RelayConfig {
                    limits,
                    issuer,
                    push: None,
                },
            )
        }
    }
}

fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

async fn open_store(
    db: &str,
    schema: Option<&str>,
) -> Result<(Arc<dyn RelayStore>, &'static str), Error> {
    if is_postgres_url(db) {
        #[cfg(feature = "postgres")]
        {
            use confide_relay::postgres::PostgresRelayStore;
            let store = match schema {
                Some(schema) => PostgresRelayStore::connect_in_schema(db, schema).await?,
                None => PostgresRelayStore::connect(db).await?,
            };
            return Ok((Arc::new(store), "PostgreSQL"));
        }
        #[cfg(not(feature = "postgres"))]
        return Err("this build has no PostgreSQL store (build with --features postgres)".into());
    }
    let _ = schema;
    Ok((Arc::new(SqliteRelayStore::open(db)?), "SQLite"))
}

fn serve(
    db: String,
    schema: Option<String>,
    listen: &str,
    listen_ws: Option<&str>,
    gateways: Option<Vec<String>>,
    mut config: RelayConfig,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (store, kind) = open_store(&db, schema.as_deref()).await?;
        if let Some(gateways) = &gateways {
            let hook: Arc<dyn PushHook> = Arc::new(WebhookPush::new(gateways));
            config.push = Some(hook);
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let ws_listener = match listen_ws {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        if let Some(ws) = &ws_listener {
            writeln!(out, "listening on ws://{}/", ws.local_addr()?)?;
        }
        writeln!(
            out,
            "database: {kind}; certificate issuer {}",
            if config.issuer.is_some() {
                "on"
            } else {
                "off (no --server-key-file)"
            }
        )?;
        writeln!(
            out,
            "wake-ups: {}; push hook {}",
            if is_postgres_url(&db) {
                "in process and PostgreSQL LISTEN/NOTIFY (channel confide_mailbox)"
            } else {
                "in process"
            },
            match &gateways {
                Some(g) => format!("webhook (http) to {} allowed gateway(s)", g.len()),
                None => "off (no --push-gateway)".to_owned(),
            }
        )?;
        for line in config.limits.describe() {
            writeln!(out, "limit {line}")?;
        }
        out.flush()?;
        drop(out);
        let relay = Relay::new(store, config);
        #[cfg(feature = "postgres")]
        let _listener = if is_postgres_url(&db) {
            let weak = Arc::downgrade(&relay);
            Some(confide_relay::postgres::spawn_wake_listener(
                &db,
                Arc::new(move |wake| {
                    if let Some(relay) = weak.upgrade() {
                        relay.wake(wake);
                    }
                }),
            )?)
        } else {
            None
        };
        relay.serve_listeners(Some(listener), ws_listener).await;
        Ok(())
    })
}

fn init_root(mut flags: Flags) -> Result<(), Error> {
    let path = PathBuf::from(flags.required("root-key-file")?);
    let id: u32 = flags.number("root-key-id", 1)?;
    flags.finish()?;
    let key = SigningKey::generate(&mut rng()?);
    create_root_key(&path, id, &key)?;
    println!("root key id {id}");
    println!(
        "root public key {}",
        hex::encode(key.verifying_key().to_bytes())
    );
    println!(
        "(keep {} offline; apps pin the public key and id)",
        path.display()
    );
    Ok(())
}

fn init(mut flags: Flags) -> Result<(), Error> {
    let root = read_root_key(flags.required("root-key-file")?.as_ref())?;
    let path = PathBuf::from(flags.required("server-key-file")?);
    let id: u32 = flags
        .required("server-key-id")?
        .parse()
        .map_err(|_| "--server-key-id: not a number")?;
    let days: u64 = flags.number("valid-days", DEFAULT_SERVER_KEY_DAYS)?;
    flags.finish()?;
    let server = SigningKey::generate(&mut rng()?);
    let expires = wall_clock().saturating_add(Duration::from_days(days));
    let key = create_server_key(&path, &root, id, &server, expires)?;
    println!(
        "server key id {id} certified by root key id {} until {} ms",
        root.id,
        key.certificate().expires_at().as_millis()
    );
    Ok(())
}

fn issue(mut flags: Flags) -> Result<(), Error> {
    let server = read_server_key(flags.required("server-key-file")?.as_ref())?;
    let role = match flags.required("role")?.as_str() {
        "counselor" => Role::Counselor,
        "bot" => Role::Bot,
        other => {
            return Err(format!(
                "--role {other:?}: only counselor or bot (clients register over the protocol)"
            )
            .into());
        }
    };
    let address = match (flags.take("address"), flags.take("address-hex")) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(h)) => hex::decode(h)?,
        _ => return Err("give exactly one of --address and --address-hex".into()),
    };
    let identity = IdentityPublicKey::from_bytes(&hex::decode(flags.required("identity-hex")?)?)
        .map_err(|_| "--identity-hex: not an encoded identity public key")?;
    let name = flags.required("name")?;
    let device_id: u32 = flags.number("device-id", 1)?;
    let days: u64 = flags.number("valid-days", DEFAULT_STAFF_CERTIFICATE_DAYS)?;
    flags.finish()?;
    let expires = wall_clock()
        .saturating_add(Duration::from_days(days))
        .min(server.certificate().expires_at());
    let cert = SenderCertificate::issue(
        &server,
        &SenderClaims {
            address: &address,
            device_id,
            identity,
            role,
            display_name: Some(&name),
        },
        expires,
    )?;
    println!("{}", hex::encode(cert.as_bytes()));
    Ok(())
}

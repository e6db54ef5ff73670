//! The reference relay (`confide-relay`) for the `chat` example, with the demo service's
//! certificate issuer.
//!
//! Run: `cargo run -p confide-examples --bin relay` (listens on 127.0.0.1:7878, keeps its
//! SQLite database in the system temporary directory), then start two `chat` programs in two
//! other terminals. This is the real relay (`confide_relay::Relay` on a
//! `SqliteRelayStore`): the same code as `cargo run -p confide-relay -- --db relay.sqlite
//! --listen 127.0.0.1:7878`, except that its issuer signs with the demo service's server key
//! ([`confide_examples::demo_service`], derived from a published seed), so that `chat` can pin
//! the demo root without an operator creating keys. A real service creates its keys with
//! `confide-relay init-root` and `init` and passes `--server-key-file`.
//!
//! Usage: `relay [--listen ADDR] [--listen-ws ADDR] [--db PATH]`. The first line printed is
//! `listening on IP:PORT`, and with `--listen-ws` the second `listening on ws://IP:PORT/`, as
//! `confide-relay` prints them.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use confide_examples::{ExampleError, demo_service};
use confide_relay::store::SqliteRelayStore;
use confide_relay::{Relay, RelayConfig};

/// Where the relay listens unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

const USAGE: &str = "usage: relay [--listen ADDR] [--listen-ws ADDR] [--db PATH]
  default: --listen 127.0.0.1:7878 --db <temp dir>/confide-chat-demo/relay.sqlite
  then, in two other terminals: chat alice bob   and   chat bob alice";

fn main() -> Result<(), ExampleError> {
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut listen_ws: Option<String> = None;
    let mut db: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or(USAGE)?,
            "--listen-ws" => listen_ws = Some(args.next().ok_or(USAGE)?),
            "--db" => db = Some(args.next().ok_or(USAGE)?.into()),
            _ => {
                println!("{USAGE}");
                return Ok(());
            }
        }
    }
    let db = match db {
        Some(db) => db,
        None => {
            let dir = std::env::temp_dir().join("confide-chat-demo");
            std::fs::create_dir_all(&dir)?;
            dir.join("relay.sqlite")
        }
    };
    let (_roots, server_key) = demo_service()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Arc::new(SqliteRelayStore::open(&db)?);
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        let ws_listener = match &listen_ws {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        if let Some(ws) = &ws_listener {
            writeln!(out, "listening on ws://{}/", ws.local_addr()?)?;
        }
        writeln!(out, "database: SQLite at {}", db.display())?;
        writeln!(
            out,
            "certificate issuer on, with the demo service's key (a published seed: demo only)"
        )?;
        writeln!(out, "(Ctrl-C to stop; frames stay in the database)")?;
        out.flush()?;
        drop(out);
        let config = RelayConfig {
            issuer: Some(server_key),
            ..RelayConfig::default()
        };
        Relay::new(store, config)
            .serve_listeners(Some(listener), ws_listener)
            .await;
        Ok(())
    })
}

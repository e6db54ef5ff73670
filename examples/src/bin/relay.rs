//! A loopback mailbox relay for the `chat` example (TCP on 127.0.0.1).
//!
//! Run: `cargo run -p confide-examples --bin relay -- [port]` (default 7878), then start two
//! `chat` programs in two other terminals. The relay stores frames for offline mailboxes and
//! forwards them; it sees mailbox addresses and frame sizes, never senders or content.
#![allow(clippy::print_stdout)]

use confide_examples::ExampleError;
use confide_examples::tcp::RelayServer;

/// The port used when none is given.
const DEFAULT_PORT: u16 = 7878;

fn main() -> Result<(), ExampleError> {
    let port = match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            println!("usage: relay [port]   (default {DEFAULT_PORT}; listens on 127.0.0.1)");
            println!("then, in two other terminals: chat alice bob   and   chat bob alice");
            return Ok(());
        }
        Some(p) => p.parse()?,
        None => DEFAULT_PORT,
    };
    // Mailboxes that register a token verifier take frames only from holders of the token.
    let relay = RelayServer::bind(port, |verifier, token| {
        confide_sealed::relay_check(
            &confide_sealed::TokenVerifier::from_bytes(*verifier),
            token.expose(),
        )
    })?;
    println!("relay listening on {} (Ctrl-C to stop)", relay.local_addr());
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let stored = relay.stored_frames();
        if stored != last {
            println!("frames stored for offline mailboxes: {stored}");
            last = stored;
        }
    }
}

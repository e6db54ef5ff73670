//! The `relay` and `chat` programs as separate processes on 127.0.0.1, driven through their
//! standard input and output as two people in two terminals would: messages travel through
//! the real relay; a chat killed with `kill -9` and restarted shows its history from its
//! database and receives what was sent while it was away; a relay killed with `kill -9` after
//! a relay receipt and restarted delivers the receipted message, and both chats reconnect by
//! themselves. Once over TCP, once over WebSocket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long one expected line may take (the whole test stays far below it in practice).
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("confide-chat-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program whose output lines arrive on a channel; killed (SIGKILL) on drop.
struct Program {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Program {
    fn start(name: &str, exe: &str, args: &[&str]) -> Self {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line equal to `line` (after those already read) and returns it.
    fn expect(&mut self, line: &str) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l == line {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{}: no line {line:?} within {LINE_TIMEOUT:?}; output so far: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The first line, parsed after `prefix`.
    fn first_line_after(&mut self, prefix: &str) -> String {
        let line = self.lines.recv_timeout(LINE_TIMEOUT).unwrap();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", self.name))
            .to_owned()
    }

    fn type_line(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// How many lines read so far equal `line`.
    fn count(&self, line: &str) -> usize {
        self.seen.iter().filter(|l| *l == line).count()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `relay` program on `listen` (and `listen_ws`), with its database in `dir`; returns it
/// and the address a chat connects to (TCP, or `ws://` when `listen_ws` is given).
fn relay(dir: &Path, listen: &str, listen_ws: Option<&str>) -> (Program, String, String) {
    let db = dir.join("relay.sqlite");
    let mut args = vec!["--listen", listen, "--db", db.to_str().unwrap()];
    if let Some(ws) = listen_ws {
        args.extend(["--listen-ws", ws]);
    }
    let mut p = Program::start("relay", env!("CARGO_BIN_EXE_relay"), &args);
    let tcp = p.first_line_after("listening on ");
    let ws = if listen_ws.is_some() {
        let ws = p.first_line_after("listening on ");
        assert!(ws.starts_with("ws://"), "{ws}");
        ws
    } else {
        String::new()
    };
    (p, tcp, ws)
}

fn chat(dir: &Path, me: &str, peer: &str, relay: &str) -> Program {
    Program::start(
        me,
        env!("CARGO_BIN_EXE_chat"),
        &[me, peer, "--relay", relay, "--dir", dir.to_str().unwrap()],
    )
}

/// The scenario, over TCP or over WebSocket.
fn two_terminals_survive_restarts_of_a_chat_and_of_the_relay(websocket: bool) {
    let started = Instant::now();
    let dir = TempDir::new(if websocket { "ws" } else { "tcp" });
    let dir = dir.0.as_path();
    let ws_listen = websocket.then_some("127.0.0.1:0");
    let (relay_process, tcp, ws) = relay(dir, "127.0.0.1:0", ws_listen);
    // The chats' address: TCP, or WebSocket.
    let addr = if websocket { ws.clone() } else { tcp.clone() };

    // Bob registers first (mailbox, certificate, bundles), then Alice, who writes first.
    let mut bob = chat(dir, "bob", "alice", &addr);
    bob.expect("(connected to the relay)");
    let mut alice = chat(dir, "alice", "bob", &addr);
    alice.expect("(connected to the relay)");
    alice.type_line("hello bob");
    bob.expect("< hello bob");
    alice.expect("  (delivered)");
    bob.type_line("hi alice");
    alice.expect("< hi alice");
    bob.expect("  (delivered)");

    // Bob's chat is killed; Alice writes meanwhile. The relay receipts her message.
    bob.kill();
    let receipts_before = alice.count("  (stored by the relay)");
    alice.type_line("are you still there?");
    loop {
        alice.expect("  (stored by the relay)");
        if alice.count("  (stored by the relay)") > receipts_before {
            break;
        }
    }

    // The relay is killed after that receipt, and restarted on the same ports and database.
    relay_process.kill();
    let ws_port = ws
        .strip_prefix("ws://")
        .map(|a| a.trim_end_matches('/').to_owned());
    let (_relay_process, tcp_again, ws_again) = relay(dir, &tcp, ws_port.as_deref());
    assert_eq!(tcp_again, tcp);
    assert_eq!(ws_again, ws);
    // Alice's link reconnects by itself.
    alice.expect("(connected to the relay)");

    // Bob starts again: his history comes from his database, the missed message from the
    // restarted relay.
    let mut bob = chat(dir, "bob", "alice", &addr);
    bob.expect("alice: hello bob");
    bob.expect("me: hi alice");
    bob.expect("(history: 2 stored messages)");
    bob.expect("< are you still there?");
    alice.expect("  (delivered)");
    bob.type_line("yes, back again");
    alice.expect("< yes, back again");
    bob.type_line("/quit");
    assert!(bob.child.wait().unwrap().success(), "/quit exits cleanly");
    assert_eq!(bob.count("< are you still there?"), 1, "delivered once");

    // Once more after /quit: the whole conversation is in Bob's history, each message once.
    let mut bob = chat(dir, "bob", "alice", &addr);
    bob.expect("(history: 4 stored messages)");
    for line in [
        "alice: hello bob",
        "me: hi alice",
        "alice: are you still there?",
        "me: yes, back again",
    ] {
        assert_eq!(bob.count(line), 1, "{line:?} in {:#?}", bob.seen);
    }
    println!(
        "{} scenario in {:.1} s",
        if websocket { "websocket" } else { "tcp" },
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_chat_restarted_on_a_relay_that_lost_its_database_publishes_its_bundle_again() {
    let dir = TempDir::new("new-relay-db");
    let dir = dir.0.as_path();
    let (first_relay, addr, _) = relay(dir, "127.0.0.1:0", None);
    let mut bob = chat(dir, "bob", "alice", &addr);
    bob.expect("(connected to the relay)");
    bob.kill();
    first_relay.kill();
    // A relay on a new, empty database: no mailbox, no bundle of Bob's.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (_relay, addr, _) = relay(&fresh, "127.0.0.1:0", None);
    let mut alice = chat(dir, "alice", "bob", &addr);
    alice.expect("(connected to the relay)");
    alice.type_line("anyone there?");
    alice.expect("(not sent: bob has no bundles yet: start `chat bob ...`)");
    let mut bob = chat(dir, "bob", "alice", &addr);
    bob.expect("(uploaded the last-resort bundle again: the relay had none)");
    bob.expect("(connected to the relay)");
    alice.type_line("anyone there?");
    bob.expect("< anyone there?");
    alice.expect("  (delivered)");
}

#[test]
fn two_chats_over_tcp_survive_restarts_of_a_chat_and_of_the_relay() {
    two_terminals_survive_restarts_of_a_chat_and_of_the_relay(false);
}

#[test]
fn two_chats_over_websocket_survive_restarts_of_a_chat_and_of_the_relay() {
    two_terminals_survive_restarts_of_a_chat_and_of_the_relay(true);
}

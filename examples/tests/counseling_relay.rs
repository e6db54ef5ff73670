//! `counseling_session` over the real reference relay, as separate processes on 127.0.0.1:
//! once with the relay it starts in process (`--start-relay`), once against the `relay`
//! program started beside it (`--relay IP:PORT`), twice in a row on that relay (a relay that
//! outlives a run serves the next one). Each run must tell the whole story: verification by
//! code, the voice note decrypted as the recording, the referral accepted, the voice note's
//! blob gone from the relay after it expired, the conversation closed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// How long one run of the example may take.
///
/// Reason: a run takes about two seconds on an idle machine (the apps run on a virtual clock;
/// only frames, bundles and blobs cross the relay); a minute leaves room for a loaded CI
/// machine while still failing a run that hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the `relay` program may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "confide-counseling-test-{name}-{}",
            std::process::id()
        ));
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

/// A child process, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `counseling_session` with `args` and returns its output; fails if it takes longer
/// than [`RUN_TIMEOUT`] or exits unsuccessfully.
fn run_session(args: &[&str]) -> String {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_counseling_session"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(RUN_TIMEOUT).unwrap_or_else(|_| {
        panic!("counseling_session {args:?} did not finish within {RUN_TIMEOUT:?}")
    });
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "counseling_session {args:?} failed ({status}; its error is above):\n{out}"
    );
    out
}

/// Checks the transcript's key lines.
fn check_story(out: &str) {
    assert!(
        out.contains("(over the reference relay at 127.0.0.1:"),
        "not over the real relay:\n{out}"
    );
    for line in [
        "counselor | verified by code: the other side knew the code",
        "client    | verified by code: the other side knew the code",
        "counselor | fetches and decrypts the blob (every chunk and the digest check out): 51200 audio bytes, the client's recording",
        "counselor | the client accepted the referral",
        "crisis    | received from client: \"A counselor sent me.",
        "both      | the voice note expired: the relay holds no blob under its id; fetching it now: gone",
        "client    | conversation closed by the other person; session keys erased",
        "client    | tries to write again: refused",
        "every frame came with its mailbox's delivery token (0 refused)",
    ] {
        assert!(out.contains(line), "no line {line:?} in:\n{out}");
    }
    for wrong in ["NOT", "STILL", "DIFFER", "WARNING", "delivery failed"] {
        assert!(!out.contains(wrong), "{wrong:?} in:\n{out}");
    }
}

#[test]
fn counseling_session_over_a_relay_it_starts() {
    check_story(&run_session(&["--start-relay"]));
}

#[test]
fn counseling_session_over_the_relay_program_twice() {
    let dir = TempDir::new("relay");
    let db = dir.0.join("relay.sqlite");
    let mut relay = Killed(
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = relay.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let first = rx.recv_timeout(START_TIMEOUT).unwrap();
    let address = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("relay: unexpected first line {first:?}"))
        .to_owned();
    assert!(started.elapsed() < START_TIMEOUT);
    for _ in 0..2 {
        let out = run_session(&["--relay", &address, "2026"]);
        check_story(&out);
        assert!(out.contains(&format!("(over the reference relay at {address};")));
    }
}

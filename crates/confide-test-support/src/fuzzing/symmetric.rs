//! The check of the `sealed_symmetric` fuzz target and its fixture epoch, shared with the
//! corpus replay test of confide-sealed (`tests/fuzz_corpus.rs`).
//!
//! The first input byte selects what the rest is (even: a symmetric envelope, odd: a stored
//! tag window). Envelopes are opened by a directory holding the fixture's window (seed
//! `[0x31; 32]`, envelope secret `[0x32; 32]`), installed (selector bit 1 clear) or restored
//! from its stored form with its tags not yet derived (bit 1 set), so seeds sealed under that
//! epoch open and mutations start deep; windows must re-encode to their input, parse the
//! same with and without their tags, and stay usable.

use confide_crypto::{Duration, Timestamp, secret::EnvelopeSecret};
use confide_sealed::{
    EpochSeed, SYMMETRIC_ENVELOPE_OVERHEAD, StoredTagWindow, SymmetricSealer, TagDirectory,
    TagWindow, TrustRoots,
};

/// The fixture's "now" (as the other sealed fixtures).
pub const NOW: Timestamp = Timestamp::from_millis(1_750_000_000_000);
/// Selector of an envelope input.
pub const SELECT_ENVELOPE: u8 = 0;
/// Selector of a stored-window input.
pub const SELECT_WINDOW: u8 = 1;

/// The fixture epoch's seed and envelope secret.
pub fn fixture_keys() -> (EpochSeed, EnvelopeSecret) {
    (EpochSeed::new([0x31; 32]), EnvelopeSecret::new([0x32; 32]))
}

/// The fixture epoch's receiving window, accepting until a day after [`NOW`].
pub fn fixture_window() -> TagWindow {
    let (seed, secret) = fixture_keys();
    TagWindow::new(
        &seed,
        &secret,
        NOW.saturating_add(Duration::from_days(1)),
        100,
    )
    .expect("fixed lengths")
}

/// The fixture epoch's sender.
pub fn fixture_sealer() -> SymmetricSealer {
    let (seed, secret) = fixture_keys();
    SymmetricSealer::new(&seed, &secret, NOW).expect("fixed lengths")
}

/// `sealed_symmetric`: symmetric envelopes opened by a tag directory (first byte even) and
/// stored tag windows (first byte odd). Never panics; a window that decodes re-encodes to the
/// input; whatever opens carries `len - SYMMETRIC_ENVELOPE_OVERHEAD` bytes and opens only
/// once; a failure changes nothing.
pub fn sealed_symmetric(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let roots = TrustRoots::new();
    if selector % 2 == SELECT_ENVELOPE {
        let mut directory = TagDirectory::new();
        if selector & 2 == 0 {
            directory.install(7u32, fixture_window());
        } else {
            let stored = StoredTagWindow::from_bytes(&fixture_window().to_bytes())
                .expect("the fixture window's stored form parses");
            directory.restore_stored(7u32, vec![stored]);
        }
        let before = directory.stored_windows(&7);
        match directory.open(NOW, &roots, rest) {
            Ok((conversation, payload)) => {
                assert_eq!(conversation, 7);
                assert_eq!(payload.len() + SYMMETRIC_ENVELOPE_OVERHEAD, rest.len());
                // Accepted once: the same bytes again are refused, changing nothing.
                let after = directory.stored_windows(&7);
                assert!(directory.open(NOW, &roots, rest).is_err(), "replay refused");
                assert_eq!(directory.stored_windows(&7), after);
            }
            Err(_) => {
                assert_eq!(
                    directory.stored_windows(&7),
                    before,
                    "failure changes nothing"
                );
            }
        }
    } else if let Ok(mut window) = TagWindow::from_bytes(rest) {
        assert_eq!(&window.to_bytes()[..], rest, "window re-encoding differs");
        let stored = StoredTagWindow::from_bytes(rest).expect("parses with its tags, not without");
        assert_eq!(&stored.to_bytes()[..], rest, "stored re-encoding differs");
        assert!(
            stored.into_window() == window,
            "deriving later gives the same window"
        );
        let count = window.expected_tags().count();
        assert!(
            count as u64 <= confide_sealed::TAG_WINDOW_AHEAD + confide_sealed::TAG_WINDOW_BEHIND
        );
        // Still usable: an envelope of the fixture epoch opens or is refused, never panics.
        let mut sealer = fixture_sealer();
        let envelope = sealer.seal(NOW, b"fuzz").expect("fresh epoch");
        let before = window.to_bytes();
        if window.open(NOW, &roots, &envelope).is_err() {
            assert_eq!(window.to_bytes(), before, "failure changes nothing");
        }
    } else {
        assert!(
            StoredTagWindow::from_bytes(rest).is_err(),
            "parses without its tags, not with"
        );
    }
}

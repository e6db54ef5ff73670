//! Test-only allocator probe: a global allocator that, while armed, scans every block being
//! freed (or moved away from by `realloc`) for registered secret byte patterns and counts
//! hits. A test registers the secrets it knows (an identity seed, a root key, a chain key),
//! arms the probe, serialises state, disarms it and asserts that no freed block held a secret.
//!
//! # Why this crate uses `unsafe`
//!
//! Every other crate of the workspace has `#![forbid(unsafe_code)]`. Implementing
//! [`core::alloc::GlobalAlloc`] is impossible without `unsafe` (the trait and the raw block
//! reads are `unsafe` by definition), so this crate, and only this crate, allows it, in the
//! smallest possible scope (each `unsafe` block below says why it is sound). The crate is
//! `publish = false` and no library depends on it: only its own tests install the allocator.
//!
//! The allocator also counts live heap bytes and their high-water mark ([`live_bytes`],
//! [`peak_bytes`], [`reset_peak`]), always (not only while armed), so a test can prove that a
//! streaming API holds bounded memory whatever the input size.
//!
//! `realloc` is implemented as allocate, copy, scan the old block, free the old block, even
//! when the system allocator could have grown the block in place: the test must not depend on
//! allocator luck, so every growth is treated as the worst case, a move that frees a copy.
#![deny(missing_docs)]
#![deny(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::alloc::System;

/// Length of a registered secret pattern.
pub const PATTERN_LEN: usize = 32;
/// Patterns that can be registered at once.
pub const MAX_PATTERNS: usize = 8;
const WORDS: usize = PATTERN_LEN / 8;

/// Patterns live in statics (never on the heap), as words, so that registering them does not
/// allocate and the probe never finds its own copy.
static PATTERNS: [[AtomicU64; WORDS]; MAX_PATTERNS] =
    [const { [const { AtomicU64::new(0) }; WORDS] }; MAX_PATTERNS];
static PATTERN_COUNT: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
static FREES_SCANNED: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Heap bytes allocated through the probe and not yet freed, by every thread.
#[must_use]
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::SeqCst)
}

/// The most [`live_bytes`] has been since the last [`reset_peak`].
#[must_use]
pub fn peak_bytes() -> usize {
    PEAK_BYTES.load(Ordering::SeqCst)
}

/// Starts a new high-water mark at the current [`live_bytes`].
pub fn reset_peak() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::SeqCst), Ordering::SeqCst);
}

fn count_alloc(size: usize) {
    let live = LIVE_BYTES
        .fetch_add(size, Ordering::SeqCst)
        .saturating_add(size);
    PEAK_BYTES.fetch_max(live, Ordering::SeqCst);
}

fn count_free(size: usize) {
    LIVE_BYTES.fetch_sub(size, Ordering::SeqCst);
}

/// A global allocator that delegates to [`System`] and scans freed blocks while armed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanningAllocator;

/// Registers `pattern` (at most [`MAX_PATTERNS`]); returns false when full.
pub fn register(pattern: &[u8; PATTERN_LEN]) -> bool {
    let i = PATTERN_COUNT.load(Ordering::SeqCst);
    let Some(slot) = PATTERNS.get(i) else {
        return false;
    };
    for (word, chunk) in slot.iter().zip(pattern.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(b), Ordering::SeqCst);
    }
    PATTERN_COUNT.store(i.saturating_add(1), Ordering::SeqCst);
    true
}

/// Forgets every pattern and resets the counters.
pub fn reset() {
    ARMED.store(false, Ordering::SeqCst);
    for slot in &PATTERNS {
        for word in slot {
            word.store(0, Ordering::SeqCst);
        }
    }
    PATTERN_COUNT.store(0, Ordering::SeqCst);
    HITS.store(0, Ordering::SeqCst);
    FREES_SCANNED.store(0, Ordering::SeqCst);
}

/// Starts scanning freed blocks.
pub fn arm() {
    ARMED.store(true, Ordering::SeqCst);
}

/// Stops scanning.
pub fn disarm() {
    ARMED.store(false, Ordering::SeqCst);
}

/// Freed blocks that held a registered pattern since the last [`reset`].
#[must_use]
pub fn hits() -> usize {
    HITS.load(Ordering::SeqCst)
}

/// Freed blocks scanned since the last [`reset`] (so a test can check the probe saw frees).
#[must_use]
pub fn frees_scanned() -> usize {
    FREES_SCANNED.load(Ordering::SeqCst)
}

/// Whether `block` contains any registered pattern.
#[must_use]
pub fn contains_pattern(block: &[u8]) -> bool {
    let count = PATTERN_COUNT.load(Ordering::SeqCst).min(MAX_PATTERNS);
    let mut pattern = [0u8; PATTERN_LEN];
    for slot in PATTERNS.iter().take(count) {
        for (chunk, word) in pattern.chunks_exact_mut(8).zip(slot) {
            chunk.copy_from_slice(&word.load(Ordering::SeqCst).to_ne_bytes());
        }
        if block.windows(PATTERN_LEN).any(|w| w == pattern) {
            return true;
        }
    }
    false
}

fn scan(ptr: *const u8, size: usize) {
    if !ARMED.load(Ordering::SeqCst) || ptr.is_null() || size < PATTERN_LEN {
        return;
    }
    // SAFETY: called only from `dealloc` and `realloc` with a block the caller allocated
    // through this allocator with `size` bytes, still live (it is freed after the scan).
    // The bytes are read as plain `u8`, which every bit pattern is valid for.
    #[allow(unsafe_code)]
    let block = unsafe { core::slice::from_raw_parts(ptr, size) };
    FREES_SCANNED.fetch_add(1, Ordering::SeqCst);
    if contains_pattern(block) {
        HITS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every method delegates to `System` with the same layouts; `realloc` allocates a new
// block of `new_size` with the old alignment, copies the smaller of the two sizes, and frees
// the old block with its own layout, which is what `GlobalAlloc::realloc` promises.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            count_alloc(layout.size());
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            count_alloc(layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        scan(ptr, layout.size());
        count_free(layout.size());
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size (the caller guarantees `new_size > 0`).
        let new = unsafe { System.alloc(new_layout) };
        if new.is_null() {
            return new;
        }
        count_alloc(new_size);
        // SAFETY: both blocks are live, distinct, and at least `min(old, new)` bytes long.
        unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        scan(ptr, layout.size());
        count_free(layout.size());
        // SAFETY: `ptr` was allocated by `System` with `layout` and is not used again.
        unsafe { System.dealloc(ptr, layout) };
        new
    }
}

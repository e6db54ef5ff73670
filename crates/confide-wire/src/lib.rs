//! Confide's shared vocabulary: what several layers speak and none of them owns.
//!
//! * a strict, canonical byte codec ([`codec`]): big-endian integers, bounded lengths,
//!   trailing bytes refused, and a writer that wipes every buffer it outgrows;
//! * wall-clock [`Timestamp`] and [`Duration`] with saturating arithmetic ([`time`]);
//! * typed secret storage ([`secret`]): [`secret::SecretBytes`] and [`define_secret!`] for named
//!   newtypes that zeroize on drop, compare in constant time and print as redacted;
//! * ids that several layers share ([`ids`]): the transport [`FrameId`], which
//!   acknowledgements name end to end;
//! * the caller-supplied random source, [`CryptoRng`].
//!
//! No cryptography lives here (no hash, cipher or key agreement), so crates that only move and
//! store bytes (the transport) depend on this crate alone; `confide-crypto` re-exports it.
//!
//! ```
//! use confide_wire::codec::{Reader, Writer};
//! let mut w = Writer::new();
//! w.u8(1).u32(7);
//! let bytes = w.into_vec();
//! let mut r = Reader::new(&bytes);
//! assert_eq!((r.u8().unwrap(), r.u32().unwrap()), (1, 7));
//! r.finish().unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod ids;
pub mod secret;
pub mod side;
pub mod time;

pub use ids::FrameId;
pub use rand_core::CryptoRng;
pub use side::Side;
pub use time::{Duration, Timestamp};

/// Fills a fresh array from the caller's random source.
pub fn random_array<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// Not public API: what [`define_secret!`] expands to needs.
#[doc(hidden)]
pub mod __private {
    pub use subtle;
}

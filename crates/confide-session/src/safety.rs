//! Safety numbers: what two people compare (read aloud or by QR code) to be sure no one sits
//! between them.
//!
//! For each identity, `fingerprint = first 32 bytes of H^5200` where
//! `H^0 = SHA-512("Confide_v1_SafetyNumber" || 0x0001 || keys)` and
//! `H^(i+1) = SHA-512(H^i || keys)`, with `keys` the identity's Ed25519 key then its X25519 key.
//! The displayed number is 60 digits: for each of the two fingerprints, ordered by their bytes
//! (so both sides show the same number), six 5-byte big-endian chunks of its first 30 bytes,
//! each reduced mod 100,000 and written as 5 digits. The compact (QR) form is
//! `version:u8 (=1) || lower fingerprint[32] || higher fingerprint[32]`.

use confide_crypto::{
    identity::IdentityPublicKey,
    kdf::{labels, sha512},
    secret::ct_eq,
};

use crate::consts::SAFETY_NUMBER_ITERATIONS;

/// Version byte of the compact form.
pub const SAFETY_NUMBER_VERSION: u8 = 1;
/// Length of the compact form.
pub const COMPACT_LEN: usize = 1 + 32 + 32;

/// The safety number of a conversation between two identities; identical on both sides.
#[derive(Clone)]
pub struct SafetyNumber {
    lower: [u8; 32],
    higher: [u8; 32],
}

impl core::fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SafetyNumber(..)")
    }
}

fn fingerprint(id: &IdentityPublicKey) -> [u8; 32] {
    let keys = id.key_bytes();
    let mut h = sha512(&[labels::SAFETY_NUMBER, &[0x00, 0x01], &keys]);
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        h = sha512(&[&h, &keys]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(h.get(..32).unwrap_or(&[0u8; 32]));
    out
}

fn digits(fp: &[u8; 32], out: &mut String) {
    for chunk in fp.chunks_exact(5).take(6) {
        let mut v = 0u64;
        for b in chunk {
            v = (v << 8) | u64::from(*b);
        }
        out.push_str(&format!("{:05}", v % 100_000));
    }
}

impl SafetyNumber {
    /// Computes the safety number for a conversation between `a` and `b` (order irrelevant).
    #[must_use]
    pub fn new(a: &IdentityPublicKey, b: &IdentityPublicKey) -> Self {
        let (fa, fb) = (fingerprint(a), fingerprint(b));
        if fa <= fb {
            Self {
                lower: fa,
                higher: fb,
            }
        } else {
            Self {
                lower: fb,
                higher: fa,
            }
        }
    }

    /// The 60 digits to display, usually in 12 groups of 5.
    #[must_use]
    pub fn digits(&self) -> String {
        let mut s = String::with_capacity(60);
        digits(&self.lower, &mut s);
        digits(&self.higher, &mut s);
        s
    }

    /// The digits in 12 groups of five separated by spaces.
    #[must_use]
    pub fn display_groups(&self) -> String {
        let d = self.digits();
        let groups: Vec<&str> = (0..12).filter_map(|i| d.get(i * 5..i * 5 + 5)).collect();
        groups.join(" ")
    }

    /// The compact byte form for a QR code.
    #[must_use]
    pub fn to_compact(&self) -> [u8; COMPACT_LEN] {
        let mut out = [0u8; COMPACT_LEN];
        let (v, rest) = out.split_at_mut(1);
        let (l, h) = rest.split_at_mut(32);
        v.copy_from_slice(&[SAFETY_NUMBER_VERSION]);
        l.copy_from_slice(&self.lower);
        h.copy_from_slice(&self.higher);
        out
    }

    /// Whether a scanned compact form matches ours, in constant time. Any other length or
    /// version does not match.
    #[must_use]
    pub fn matches_compact(&self, scanned: &[u8]) -> bool {
        ct_eq(scanned, &self.to_compact())
    }

    /// Whether two safety numbers are equal, in constant time.
    #[must_use]
    pub fn ct_equals(&self, other: &Self) -> bool {
        ct_eq(&self.to_compact(), &other.to_compact())
    }
}

//! Typed secrets.
//!
//! [`SecretBytes`] is the storage every secret in Confide uses: a heap-allocated array (so
//! moves do not leave copies on the stack) that is zeroized on drop, compared in constant time
//! and printed as `[REDACTED]`. Protocol crates wrap it in named newtypes with
//! [`define_secret!`](crate::define_secret), so a root key can never be passed where a chain
//! key is expected.

use core::fmt;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` secret bytes: boxed, zeroized on drop, constant-time equality, redacted `Debug`.
#[derive(Clone)]
pub struct SecretBytes<const N: usize>(Box<[u8; N]>);

impl<const N: usize> SecretBytes<N> {
    /// Takes ownership of `bytes`, zeroizing the caller's copy.
    #[must_use]
    pub fn new(mut bytes: [u8; N]) -> Self {
        let out = Self(Box::new(bytes));
        bytes.zeroize();
        out
    }

    /// Copies `bytes` straight into the protected heap buffer (no intermediate stack copy;
    /// the caller keeps and wipes its own, for example a `Zeroizing` temporary).
    #[must_use]
    pub fn copy_from(bytes: &[u8; N]) -> Self {
        let mut out = Box::new([0u8; N]);
        out.copy_from_slice(bytes);
        Self(out)
    }

    /// Copies from a slice of exactly `N` bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != N {
            return None;
        }
        let mut out = Box::new([0u8; N]);
        out.copy_from_slice(bytes);
        Some(Self(out))
    }

    /// Fresh random bytes.
    pub fn random<R: crate::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut out = Box::new([0u8; N]);
        rng.fill_bytes(out.as_mut_slice());
        Self(out)
    }

    /// Borrows the secret bytes. Callers must not copy them into unprotected storage.
    #[must_use]
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> ZeroizeOnDrop for SecretBytes<N> {}

impl<const N: usize> ConstantTimeEq for SecretBytes<N> {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes<{N}>([REDACTED])")
    }
}

/// Defines a named secret newtype over [`SecretBytes`].
///
/// The type gets `new`, `from_slice`, `random` and `expose`, zeroizes on drop, compares in
/// constant time, and prints as `Name([REDACTED])`.
///
/// ```
/// confide_wire::define_secret!(
///     /// A demo key.
///     pub struct DemoKey(32);
/// );
/// let a = DemoKey::new([1; 32]);
/// assert_eq!(format!("{a:?}"), "DemoKey([REDACTED])");
/// assert_eq!(a, DemoKey::new([1; 32]));
/// ```
#[macro_export]
macro_rules! define_secret {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($len:expr);) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        $vis struct $name($crate::secret::SecretBytes<{ $len }>);

        #[allow(dead_code)]
        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps `bytes`, zeroizing the caller's copy.
            #[must_use]
            pub fn new(bytes: [u8; $len]) -> Self {
                Self($crate::secret::SecretBytes::new(bytes))
            }

            /// Copies `bytes` into the protected buffer without another stack copy (the
            /// caller wipes its own, for example a `Zeroizing` temporary).
            #[must_use]
            pub fn copy_from(bytes: &[u8; $len]) -> Self {
                Self($crate::secret::SecretBytes::copy_from(bytes))
            }

            /// Copies from a slice of exactly the right length.
            #[must_use]
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                $crate::secret::SecretBytes::from_slice(bytes).map(Self)
            }

            /// Fresh random bytes.
            pub fn random<R: $crate::CryptoRng + ?Sized>(rng: &mut R) -> Self {
                Self($crate::secret::SecretBytes::random(rng))
            }

            /// Borrows the secret bytes.
            #[must_use]
            pub fn expose(&self) -> &[u8; $len] {
                self.0.expose()
            }
        }

        impl $crate::__private::subtle::ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> $crate::__private::subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                // The one field is the secret: nothing of it prints.
                let Self(_) = self;
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

/// Constant-time equality of two byte strings (lengths are not secret).
///
/// Eight bytes at a time: the differences are OR-ed into one word, with no branch on the
/// data, and only that word goes through `subtle`'s comparison (one optimisation barrier,
/// where `subtle`'s slice comparison puts one on every byte: comparing a 64-byte identity
/// took about 70 ns, about 1% of an endpoint's round trip).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut words_a, mut words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in words_a.by_ref().zip(words_b.by_ref()) {
        // `chunks_exact(8)`: always eight bytes (a branch on the length, not on the data).
        if let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) {
            diff |= u64::from_ne_bytes(x) ^ u64::from_ne_bytes(y);
        }
    }
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        diff |= u64::from(x ^ y);
    }
    bool::from(diff.ct_eq(&0))
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use super::*;

    define_secret!(
        /// A key for the tests.
        struct TestKey(32);
    );

    #[test]
    fn debug_is_redacted() {
        let s = TestKey::new([0xAB; 32]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "TestKey([REDACTED])");
        assert!(!shown.to_lowercase().contains("ab"));
        let b = SecretBytes::<4>::new([0xCD; 4]);
        assert!(!format!("{b:?}").to_lowercase().contains("cd"));
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(TestKey::new([1; 32]), TestKey::new([1; 32]));
        assert_ne!(TestKey::new([1; 32]), TestKey::new([2; 32]));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
        // Every length across word boundaries, a difference of every bit at every position
        // (whole words and the tail alike).
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            assert!(ct_eq(&a, &a.clone()), "{len} equal bytes");
            for at in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[at] ^= 1 << bit;
                    assert!(!ct_eq(&a, &b), "{len} bytes, byte {at} bit {bit}");
                    assert!(!ct_eq(&b, &a), "{len} bytes, byte {at} bit {bit}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!ct_eq(&a, &longer), "{len} bytes and one more");
        }
        // The same difference in two words, and in a word and the tail, does not cancel out.
        let a = [0u8; 20];
        for (first, second) in [(0, 8), (3, 11), (0, 16), (7, 19)] {
            let mut b = a;
            b[first] ^= 0x80;
            b[second] ^= 0x80;
            assert!(!ct_eq(&a, &b), "bytes {first} and {second}");
        }
    }
}

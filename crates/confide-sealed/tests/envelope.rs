//! Sealing and opening: round trips, every refusal, bit flips, what the relay can see.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20::ChaCha20Rng;
use confide_crypto::{
    Timestamp, aead,
    codec::DecodeError,
    identity::{IdentityKeyPair, IdentityPublicKey},
    kdf::{hkdf_sha256, labels},
    secret::{AeadKey, SecretBytes},
    x25519::{X25519KeyPair, X25519Secret},
};
use confide_sealed::{
    CertificateError, ENVELOPE_OVERHEAD, MAX_DISPLAY_NAME_LEN, MAX_PAYLOAD_LEN,
    MAX_SENDER_ADDRESS_LEN, OpenError, Role, SENDER_CERTIFICATE_REGION_LEN, SealError,
    SealedEnvelope, SenderCertificate, SenderClaims, envelope_len, open, seal,
};
use confide_test_support::sealed_fixture::*;
use proptest::prelude::*;
use rand_core::{Rng, SeedableRng};

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn sealed(payload: &[u8]) -> Vec<u8> {
    seal(
        &mut rng(42),
        &sender(),
        &sender_certificate(),
        &recipient().public(),
        payload,
    )
    .unwrap()
}

/// An independent implementation of the documented construction, from the primitives only.
fn manual_seal(
    ephemeral_secret: [u8; 32],
    sealing: &IdentityKeyPair,
    recipient: &IdentityPublicKey,
    region: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let eph = X25519KeyPair::from_secret(X25519Secret::from_bytes(ephemeral_secret));
    let e = eph.public_key();
    let r_agree = recipient.agreement_key();
    let r_keys = recipient.key_bytes();
    let dh1 = eph.agree(r_agree).unwrap();
    let mut okm = [0u8; 64];
    let info1 = [
        labels::SEALED_EPHEMERAL,
        &[1],
        e.as_bytes(),
        r_agree.as_bytes(),
    ]
    .concat();
    hkdf_sha256(None, dh1.expose(), &info1, &mut okm).unwrap();
    let (chain, k1) = okm.split_at(32);
    let k1 = AeadKey::from_slice(k1).unwrap();
    let aad1 = [&[1u8][..], e.as_bytes()].concat();
    let pt1 = [
        sealing.public().agreement_key().as_bytes().as_slice(),
        &r_keys,
    ]
    .concat();
    let c1 = aead::seal(&k1, &[0; 12], &aad1, &pt1);
    let dh2 = sealing.agreement().agree(r_agree).unwrap();
    let mut k2 = [0u8; 32];
    let info2 = [labels::SEALED_STATIC, &[1], e.as_bytes(), &c1, &r_keys].concat();
    hkdf_sha256(Some(chain), dh2.expose(), &info2, &mut k2).unwrap();
    let aad2 = [&[1u8][..], e.as_bytes(), &c1, &r_keys].concat();
    let c2 = aead::seal(
        &AeadKey::new(k2),
        &[0; 12],
        &aad2,
        &[region, payload].concat(),
    );
    [&[1u8][..], e.as_bytes(), &c1, &c2].concat()
}

fn region_for(cert: &[u8]) -> Vec<u8> {
    let mut region = (cert.len() as u16).to_be_bytes().to_vec();
    region.extend_from_slice(cert);
    region.resize(SENDER_CERTIFICATE_REGION_LEN, 0);
    region
}

#[test]
fn a_sealed_envelope_opens_to_the_sender_and_payload() {
    let env = sealed(b"hello counselor");
    let opened = open(&recipient(), &roots(), NOW, &env).unwrap();
    assert_eq!(opened.payload, b"hello counselor");
    assert_eq!(opened.sender.identity(), &sender().public());
    assert_eq!(opened.sender.role(), Role::Counselor);
    assert_eq!(opened.sender.address().as_bytes(), SENDER_ADDRESS);
    assert_eq!(opened.sender.device_id(), 7);
    assert_eq!(env.len(), envelope_len(15).unwrap());
    assert_eq!(env.len(), 15 + ENVELOPE_OVERHEAD);
}

#[test]
fn seal_matches_the_documented_construction() {
    // X25519KeyPair::generate draws the 32-byte secret from the RNG, so the same RNG stream
    // gives the ephemeral secret for the independent implementation.
    let mut r = rng(42);
    let mut eph = [0u8; 32];
    r.fill_bytes(&mut eph);
    let cert = sender_certificate();
    let manual = manual_seal(
        eph,
        &sender(),
        &recipient().public(),
        &region_for(cert.as_bytes()),
        b"m",
    );
    assert_eq!(sealed(b"m"), manual);
}

#[test]
fn payload_sizes_up_to_the_limit() {
    for len in [0usize, 1, 1024, MAX_PAYLOAD_LEN] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let env = sealed(&payload);
        assert_eq!(env.len(), envelope_len(len).unwrap());
        let parsed = SealedEnvelope::from_bytes(&env).unwrap();
        assert_eq!(parsed.payload_len(), len);
        assert_eq!(parsed.to_bytes(), env);
        assert_eq!(
            open(&recipient(), &roots(), NOW, &env).unwrap().payload,
            payload
        );
    }
    let too_long = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert_eq!(
        seal(
            &mut rng(1),
            &sender(),
            &sender_certificate(),
            &recipient().public(),
            &too_long
        ),
        Err(SealError::PayloadTooLong {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    assert_eq!(envelope_len(MAX_PAYLOAD_LEN + 1), None);
}

#[test]
fn envelope_length_does_not_depend_on_the_certificate() {
    let id = sender().public();
    let max_address = [b'z'; MAX_SENDER_ADDRESS_LEN];
    let max_name = "n".repeat(MAX_DISPLAY_NAME_LEN);
    let server = server_key();
    let certs = [
        SenderCertificate::issue(
            &server,
            &SenderClaims {
                address: b"x",
                device_id: 1,
                identity: id,
                role: Role::Client,
                display_name: None,
            },
            Timestamp::MAX,
        )
        .unwrap(),
        SenderCertificate::issue(
            &server,
            &SenderClaims {
                address: &max_address,
                device_id: 2,
                identity: id,
                role: Role::Counselor,
                display_name: Some(&max_name),
            },
            Timestamp::MAX,
        )
        .unwrap(),
        sender_certificate(),
    ];
    let lens: Vec<usize> = certs
        .iter()
        .map(|c| {
            seal(&mut rng(3), &sender(), c, &recipient().public(), &[9; 300])
                .unwrap()
                .len()
        })
        .collect();
    assert!(certs[0].as_bytes().len() < certs[1].as_bytes().len());
    assert!(
        lens.iter().all(|l| *l == envelope_len(300).unwrap()),
        "{lens:?}"
    );
}

#[test]
fn the_envelope_reveals_nothing_about_the_sender() {
    let cert = sender_certificate();
    let s = sender().public();
    let r = recipient().public();
    for payload in [&b""[..], &[0u8; 1024][..]] {
        let env = sealed(payload);
        let mut needles: Vec<(&str, Vec<u8>)> = vec![
            ("address", SENDER_ADDRESS.to_vec()),
            ("name", SENDER_NAME.as_bytes().to_vec()),
            ("identity", s.to_bytes().to_vec()),
            ("signing key", s.signing_key().unwrap().to_bytes().to_vec()),
            ("agreement key", s.agreement_key().to_bytes().to_vec()),
            (
                "server certificate",
                cert.server_certificate().as_bytes().to_vec(),
            ),
            (
                "recipient agreement key",
                r.agreement_key().to_bytes().to_vec(),
            ),
            (
                "recipient signing key",
                r.signing_key().unwrap().to_bytes().to_vec(),
            ),
        ];
        // Every 8-byte window of the certificate (so no fragment of it appears either).
        for w in cert.as_bytes().windows(8) {
            if w.iter().any(|b| *b != 0) {
                needles.push(("certificate fragment", w.to_vec()));
            }
        }
        for (what, needle) in &needles {
            assert!(!contains(&env, needle), "{what} found in the envelope");
        }
    }
}

#[test]
fn every_single_bit_flip_of_an_envelope_is_refused() {
    let env = sealed(b"");
    let recipient = recipient();
    let roots = roots();
    for_each_bit_flip(&env, |b| {
        let at = env.iter().zip(b).position(|(x, y)| x != y).unwrap();
        let result = open(&recipient, &roots, NOW, b);
        match at {
            0 => assert!(matches!(
                result,
                Err(OpenError::Decode(DecodeError::UnknownVersion { .. }))
            )),
            // A flip of the ephemeral key's top bit makes it non-canonical: refused as
            // malformed before any agreement.
            1..=32 => assert!(
                matches!(
                    result,
                    Err(OpenError::Decrypt | OpenError::WeakKey | OpenError::Decode(_))
                ),
                "ephemeral key flip at {at}: {result:?}"
            ),
            // Every other byte is ciphertext or tag: the flip fails authentication.
            _ => assert!(
                matches!(result, Err(OpenError::Decrypt)),
                "flip at {at}: {result:?}"
            ),
        }
    });
}

#[test]
fn truncated_and_extended_envelopes_are_refused() {
    let env = sealed(b"abc");
    for cut in [0, 1, 33, 145, ENVELOPE_OVERHEAD - 1, env.len() - 1] {
        assert!(
            open(&recipient(), &roots(), NOW, &env[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut longer = env.clone();
    longer.push(0);
    assert_eq!(
        open(&recipient(), &roots(), NOW, &longer).err(),
        Some(OpenError::Decrypt)
    );
    let mut v2 = env.clone();
    v2[0] = 2;
    assert!(matches!(
        SealedEnvelope::from_bytes(&v2),
        Err(DecodeError::UnknownVersion { found: 2, .. })
    ));
}

#[test]
fn a_low_order_ephemeral_key_is_refused() {
    let mut env = sealed(b"x");
    env[1..33].fill(0);
    assert_eq!(
        open(&recipient(), &roots(), NOW, &env).err(),
        Some(OpenError::WeakKey)
    );
}

#[test]
fn another_recipient_cannot_open() {
    let env = sealed(b"x");
    assert_eq!(
        open(&identity(0x05), &roots(), NOW, &env).err(),
        Some(OpenError::Decrypt)
    );
    // The sender cannot open its own envelope either.
    assert_eq!(
        open(&sender(), &roots(), NOW, &env).err(),
        Some(OpenError::Decrypt)
    );
}

#[test]
fn an_envelope_for_a_lookalike_identity_is_refused_as_wrong_recipient() {
    // Same agreement key as the recipient, different signing key: a distinct identity.
    let mut secret = [0x04u8; 64];
    secret[..32].fill(0x09);
    let lookalike = IdentityKeyPair::from_secret_bytes(&SecretBytes::new(secret));
    assert_eq!(
        lookalike.public().agreement_key(),
        recipient().public().agreement_key()
    );
    assert_ne!(lookalike.public(), recipient().public());
    let env = seal(
        &mut rng(4),
        &sender(),
        &sender_certificate(),
        &lookalike.public(),
        b"x",
    )
    .unwrap();
    assert_eq!(
        open(&recipient(), &roots(), NOW, &env).err(),
        Some(OpenError::WrongRecipient)
    );
    assert!(open(&lookalike, &roots(), NOW, &env).is_ok());
}

#[test]
fn a_certificate_for_another_identity_is_refused() {
    // The envelope is sealed by identity 0x06 but carries the fixture sender's certificate.
    let impostor = identity(0x06);
    let region = region_for(sender_certificate().as_bytes());
    let env = manual_seal([0x31; 32], &impostor, &recipient().public(), &region, b"x");
    assert_eq!(
        open(&recipient(), &roots(), NOW, &env).err(),
        Some(OpenError::IdentityMismatch)
    );
    // seal() itself refuses to use someone else's certificate.
    assert_eq!(
        seal(
            &mut rng(5),
            &impostor,
            &sender_certificate(),
            &recipient().public(),
            b"x"
        ),
        Err(SealError::CertificateNotOurs)
    );
}

#[test]
fn a_self_sent_envelope_is_refused() {
    let me = recipient();
    let my_cert = certificate_for(&me.public(), Role::Client, None);
    let env = manual_seal(
        [0x32; 32],
        &me,
        &me.public(),
        &region_for(my_cert.as_bytes()),
        b"x",
    );
    assert_eq!(
        open(&me, &roots(), NOW, &env).err(),
        Some(OpenError::SelfSent)
    );
    assert_eq!(
        seal(&mut rng(6), &me, &my_cert, &me.public(), b"x"),
        Err(SealError::SelfAddressed)
    );
}

#[test]
fn the_certificate_region_is_strict() {
    let cert = sender_certificate();
    let mut region = region_for(cert.as_bytes());
    *region.last_mut().unwrap() = 1;
    let env = manual_seal([0x33; 32], &sender(), &recipient().public(), &region, b"x");
    assert_eq!(
        open(&recipient(), &roots(), NOW, &env).err(),
        Some(OpenError::Decode(DecodeError::InvalidValue {
            field: "certificate region padding"
        }))
    );
    let mut region = region_for(cert.as_bytes());
    region[..2].copy_from_slice(&600u16.to_be_bytes());
    let env = manual_seal([0x34; 32], &sender(), &recipient().public(), &region, b"x");
    assert!(matches!(
        open(&recipient(), &roots(), NOW, &env),
        Err(OpenError::Decode(DecodeError::TooLong { .. }))
    ));
    // A certificate with a trailing byte inside the region is refused too.
    let mut region = region_for(cert.as_bytes());
    let len = cert.as_bytes().len() as u16 + 1;
    region[..2].copy_from_slice(&len.to_be_bytes());
    let env = manual_seal([0x35; 32], &sender(), &recipient().public(), &region, b"x");
    assert!(matches!(
        open(&recipient(), &roots(), NOW, &env),
        Err(OpenError::Decode(_))
    ));
}

#[test]
fn each_chain_failure_has_its_own_open_error() {
    let env = sealed(b"x");
    let r = recipient();
    assert_eq!(
        open(&r, &confide_sealed::TrustRoots::new(), NOW, &env).err(),
        Some(OpenError::Certificate(CertificateError::UnknownRoot {
            root_key_id: ROOT_KEY_ID
        }))
    );
    let mut wrong_key = confide_sealed::TrustRoots::new();
    wrong_key
        .add_root(
            ROOT_KEY_ID,
            confide_crypto::signing::SigningKey::from_seed(&[8; 32]).verifying_key(),
        )
        .unwrap();
    assert_eq!(
        open(&r, &wrong_key, NOW, &env).err(),
        Some(OpenError::Certificate(CertificateError::BadRootSignature))
    );
    let mut revoked = roots();
    revoked.revoke_server_key(SERVER_KEY_ID).unwrap();
    assert_eq!(
        open(&r, &revoked, NOW, &env).err(),
        Some(OpenError::Certificate(CertificateError::ServerRevoked {
            server_key_id: SERVER_KEY_ID
        }))
    );
    let sender_expiry = NOW.saturating_add(SENDER_LIFETIME);
    let server_expiry = NOW.saturating_add(SERVER_LIFETIME);
    let just_before = Timestamp::from_millis(sender_expiry.as_millis() - 1);
    assert!(open(&r, &roots(), just_before, &env).is_ok());
    assert_eq!(
        open(&r, &roots(), sender_expiry, &env).err(),
        Some(OpenError::Certificate(CertificateError::SenderExpired))
    );
    assert_eq!(
        open(&r, &roots(), server_expiry, &env).err(),
        Some(OpenError::Certificate(CertificateError::ServerExpired))
    );

    // A certificate whose server signature is forged, sealed by its rightful identity.
    let cert = sender_certificate();
    let mut bytes = cert.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 0x40;
    let forged = SenderCertificate::from_bytes(&bytes).unwrap();
    let env = seal(&mut rng(7), &sender(), &forged, &r.public(), b"x").unwrap();
    assert_eq!(
        open(&r, &roots(), NOW, &env).err(),
        Some(OpenError::Certificate(CertificateError::BadServerSignature))
    );
}

#[test]
fn a_counselor_can_tell_a_bot_from_a_person() {
    let bot = identity(0x07);
    let bot_cert = certificate_for(&bot.public(), Role::Bot, Some("Intake assistant"));
    let env = seal(&mut rng(8), &bot, &bot_cert, &recipient().public(), b"hi").unwrap();
    let opened = open(&recipient(), &roots(), NOW, &env).unwrap();
    assert_eq!(opened.sender.role(), Role::Bot);
    assert!(!opened.sender.role().is_person());
    assert!(!opened.sender.role().is_verified_counselor());
}

#[test]
fn envelopes_are_fresh_and_opening_is_repeatable() {
    let mut r = rng(9);
    let a = seal(
        &mut r,
        &sender(),
        &sender_certificate(),
        &recipient().public(),
        b"same",
    )
    .unwrap();
    let b = seal(
        &mut r,
        &sender(),
        &sender_certificate(),
        &recipient().public(),
        b"same",
    )
    .unwrap();
    assert_ne!(a[1..33], b[1..33], "fresh ephemeral key per envelope");
    assert_ne!(a, b);
    let recipient = recipient();
    let roots = roots();
    let first = open(&recipient, &roots, NOW, &a).unwrap();
    let _ = open(&recipient, &roots, NOW, &[0u8; 10]);
    let again = open(&recipient, &roots, NOW, &a).unwrap();
    assert_eq!(first.payload, again.payload);
    assert_eq!(first.sender, again.sender);
}

#[test]
fn debug_output_hides_sender_and_payload() {
    let env = sealed(b"secret words");
    let opened = open(&recipient(), &roots(), NOW, &env).unwrap();
    let shown = format!("{opened:?} {:?}", SealedEnvelope::from_bytes(&env).unwrap());
    assert!(!shown.contains("secret"));
    assert!(!shown.contains("counselor-0017"));
    assert!(!shown.contains("Rivera"));
    assert!(shown.contains("payload_len"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn seal_open_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        seed in any::<u8>(),
        sender_seed in 0x10u8..0x80,
        role in prop_oneof![Just(Role::Client), Just(Role::Counselor), Just(Role::Bot), (4u8..=255).prop_map(Role::Other)],
        address in proptest::collection::vec(any::<u8>(), 1..=MAX_SENDER_ADDRESS_LEN),
        name in proptest::option::of("[a-zA-Z .'-]{1,40}"),
    ) {
        let sender = identity(sender_seed);
        let cert = SenderCertificate::issue(
            &server_key(),
            &SenderClaims { address: &address, device_id: u32::from(seed), identity: sender.public(), role, display_name: name.as_deref() },
            NOW.saturating_add(SENDER_LIFETIME),
        ).unwrap();
        let env = seal(&mut rng(seed), &sender, &cert, &recipient().public(), &payload).unwrap();
        prop_assert_eq!(env.len(), envelope_len(payload.len()).unwrap());
        let opened = open(&recipient(), &roots(), NOW, &env).unwrap();
        prop_assert_eq!(&opened.payload, &payload);
        prop_assert_eq!(opened.sender.identity(), &sender.public());
        prop_assert_eq!(opened.sender.role(), role);
        prop_assert_eq!(opened.sender.address().as_bytes(), &address[..]);
        prop_assert_eq!(opened.sender.display_name(), name.as_deref());
        prop_assert!(!contains(&env, &address) || address.len() < 4);
    }
}

// The tests below were added for survivors of `cargo mutants -p confide-sealed` (docs/mutants.md).

#[test]
fn an_envelope_one_byte_over_the_largest_is_refused_by_the_decoder() {
    let largest = sealed(&vec![0x5a; MAX_PAYLOAD_LEN]);
    assert_eq!(largest.len(), envelope_len(MAX_PAYLOAD_LEN).unwrap());
    assert_eq!(
        SealedEnvelope::from_bytes(&largest).unwrap().payload_len(),
        MAX_PAYLOAD_LEN
    );
    let mut over = largest;
    over.push(0);
    assert!(matches!(
        SealedEnvelope::from_bytes(&over),
        Err(DecodeError::TooLong {
            field: "sealed content",
            ..
        })
    ));
    assert!(matches!(
        open(&recipient(), &roots(), NOW, &over),
        Err(OpenError::Decode(DecodeError::TooLong { .. }))
    ));
}

#[test]
fn an_identity_sharing_the_recipients_agreement_key_can_neither_seal_nor_be_opened() {
    // The recipient's X25519 agreement secret under another signing key: a different identity
    // whose Diffie-Hellman with the recipient is the recipient's own.
    let mut secret = [0x04u8; 64];
    secret[..32].copy_from_slice(&[0x05; 32]);
    let twin = IdentityKeyPair::from_secret_bytes(&SecretBytes::new(secret));
    assert_eq!(
        twin.public().agreement_key(),
        recipient().public().agreement_key()
    );
    assert_ne!(twin.public(), recipient().public());
    let cert = certificate_for(&twin.public(), Role::Client, None);
    assert_eq!(
        seal(&mut rng(9), &twin, &cert, &recipient().public(), b"x"),
        Err(SealError::SelfAddressed)
    );
    // Built by hand (seal refuses), the envelope is refused on opening.
    let env = manual_seal(
        [0x36; 32],
        &twin,
        &recipient().public(),
        &region_for(cert.as_bytes()),
        b"x",
    );
    assert_eq!(
        open(&recipient(), &roots(), NOW, &env).err(),
        Some(OpenError::SelfSent)
    );
}

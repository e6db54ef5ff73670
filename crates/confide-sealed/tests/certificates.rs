//! Certificate chain validation, expiry boundaries, strict decoding and bit flips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use confide_crypto::{Duration, Timestamp, codec::DecodeError, signing::SigningKey};
use confide_sealed::{
    CertificateError, IssueError, MAX_DISPLAY_NAME_LEN, MAX_REVOKED_SERVER_KEYS,
    MAX_SENDER_ADDRESS_LEN, MAX_SENDER_CERTIFICATE_LEN, MAX_TRUST_ROOTS, Role,
    SERVER_CERTIFICATE_LEN, SenderAddress, SenderCertificate, SenderClaims, ServerCertificate,
    ServerKey, TrustConfigError, TrustRoots,
};
use confide_test_support::sealed_fixture::*;

#[test]
fn a_valid_chain_yields_the_certified_sender() {
    let cert = sender_certificate();
    let v = cert.validate(&roots(), NOW).unwrap();
    assert_eq!(v.address().as_bytes(), SENDER_ADDRESS);
    assert_eq!(v.device_id(), 7);
    assert_eq!(v.identity(), &sender().public());
    assert_eq!(v.role(), Role::Counselor);
    assert_eq!(v.display_name(), Some(SENDER_NAME));
    assert_eq!(v.server_key_id(), SERVER_KEY_ID);
    assert_eq!(v.expires_at(), NOW.saturating_add(SENDER_LIFETIME));
}

#[test]
fn certificates_round_trip_byte_for_byte() {
    let cert = sender_certificate();
    assert!(cert.as_bytes().len() <= MAX_SENDER_CERTIFICATE_LEN);
    let parsed = SenderCertificate::from_bytes(cert.as_bytes()).unwrap();
    assert_eq!(parsed, cert);
    assert_eq!(parsed.as_bytes(), cert.as_bytes());
    let server = cert.server_certificate();
    assert_eq!(server.as_bytes().len(), SERVER_CERTIFICATE_LEN);
    assert_eq!(
        &ServerCertificate::from_bytes(server.as_bytes()).unwrap(),
        server
    );
}

#[test]
fn unknown_root_is_refused() {
    let mut other = TrustRoots::new();
    other.add_root(2, root_key().verifying_key()).unwrap();
    assert_eq!(
        sender_certificate().validate(&other, NOW),
        Err(CertificateError::UnknownRoot {
            root_key_id: ROOT_KEY_ID
        })
    );
    assert_eq!(
        sender_certificate().validate(&TrustRoots::new(), NOW),
        Err(CertificateError::UnknownRoot {
            root_key_id: ROOT_KEY_ID
        })
    );
}

#[test]
fn a_root_key_under_the_wrong_id_fails_the_root_signature() {
    let mut other = TrustRoots::new();
    other
        .add_root(ROOT_KEY_ID, SigningKey::from_seed(&[9; 32]).verifying_key())
        .unwrap();
    assert_eq!(
        sender_certificate().validate(&other, NOW),
        Err(CertificateError::BadRootSignature)
    );
}

#[test]
fn rotation_trusts_old_and_new_roots_at_once() {
    let new_root = SigningKey::from_seed(&[0x11; 32]);
    let mut roots = roots();
    roots.add_root(2, new_root.verifying_key()).unwrap();
    // Old chain still valid.
    assert!(sender_certificate().validate(&roots, NOW).is_ok());
    // A server certified under the new root is valid too.
    let server_cert = ServerCertificate::issue(
        2,
        &new_root,
        101,
        &server_signing_key().verifying_key(),
        NOW.saturating_add(SERVER_LIFETIME),
    );
    let server = ServerKey::new(server_signing_key(), server_cert).unwrap();
    let cert = SenderCertificate::issue(
        &server,
        &claims(&sender().public(), Role::Client, None),
        NOW.saturating_add(SENDER_LIFETIME),
    )
    .unwrap();
    assert_eq!(cert.validate(&roots, NOW).unwrap().server_key_id(), 101);
    // Dropping the old root retires the old chain.
    assert!(roots.remove_root(ROOT_KEY_ID));
    assert_eq!(
        sender_certificate().validate(&roots, NOW),
        Err(CertificateError::UnknownRoot {
            root_key_id: ROOT_KEY_ID
        })
    );
    assert!(cert.validate(&roots, NOW).is_ok());
}

#[test]
fn revoked_server_key_is_refused() {
    let mut roots = roots();
    roots.revoke_server_key(SERVER_KEY_ID).unwrap();
    assert_eq!(
        sender_certificate().validate(&roots, NOW),
        Err(CertificateError::ServerRevoked {
            server_key_id: SERVER_KEY_ID
        })
    );
    let mut other = self::roots();
    other.revoke_server_key(SERVER_KEY_ID + 1).unwrap();
    assert!(sender_certificate().validate(&other, NOW).is_ok());
}

#[test]
fn server_expiry_boundary_is_exact() {
    let expires = NOW.saturating_add(Duration::from_millis(5));
    let server = ServerKey::new(server_signing_key(), server_certificate(expires)).unwrap();
    let cert = SenderCertificate::issue(
        &server,
        &claims(&sender().public(), Role::Client, None),
        Timestamp::MAX,
    )
    .unwrap();
    let last_valid = Timestamp::from_millis(expires.as_millis() - 1);
    assert!(cert.validate(&roots(), last_valid).is_ok());
    assert_eq!(
        cert.validate(&roots(), expires),
        Err(CertificateError::ServerExpired)
    );
    assert_eq!(
        cert.server_certificate().validate(&roots(), expires),
        Err(CertificateError::ServerExpired)
    );
    assert_eq!(
        cert.validate(&roots(), Timestamp::MAX),
        Err(CertificateError::ServerExpired)
    );
}

#[test]
fn sender_expiry_boundary_is_exact() {
    let expires = NOW.saturating_add(Duration::from_millis(5));
    let cert = SenderCertificate::issue(
        &server_key(),
        &claims(&sender().public(), Role::Client, None),
        expires,
    )
    .unwrap();
    assert!(
        cert.validate(&roots(), Timestamp::from_millis(expires.as_millis() - 1))
            .is_ok()
    );
    assert_eq!(
        cert.validate(&roots(), expires),
        Err(CertificateError::SenderExpired)
    );
    // A certificate that expires at the epoch is never valid.
    let never = SenderCertificate::issue(
        &server_key(),
        &claims(&sender().public(), Role::Client, None),
        Timestamp::ZERO,
    )
    .unwrap();
    assert_eq!(
        never.validate(&roots(), Timestamp::ZERO),
        Err(CertificateError::SenderExpired)
    );
}

#[test]
fn a_server_key_not_in_its_certificate_cannot_sign() {
    // A server certificate for key A paired with signing key B is refused at construction.
    assert_eq!(
        ServerKey::new(
            SigningKey::from_seed(&[7; 32]),
            server_certificate(Timestamp::MAX)
        )
        .err(),
        Some(IssueError::KeyMismatch)
    );
}

#[test]
fn sender_certificate_under_a_foreign_server_signature_is_refused() {
    // Re-sign the body with another key: the chain's server key no longer matches.
    let cert = sender_certificate();
    let mut bytes = cert.as_bytes().to_vec();
    let body_len = bytes.len() - 64;
    let mut msg = b"Confide_v1_SenderCertificate".to_vec();
    msg.extend_from_slice(&bytes[..body_len]);
    let forged = SigningKey::from_seed(&[0x66; 32]).sign(&msg);
    bytes[body_len..].copy_from_slice(&forged.to_bytes());
    let parsed = SenderCertificate::from_bytes(&bytes).unwrap();
    assert_eq!(
        parsed.validate(&roots(), NOW),
        Err(CertificateError::BadServerSignature)
    );
}

#[test]
fn a_server_certificate_signature_does_not_verify_as_a_sender_certificate() {
    // Domain separation: the labels differ, so swapping contexts fails.
    let root = root_key();
    let cert = sender_certificate();
    let body = &cert.as_bytes()[..cert.as_bytes().len() - 64];
    let mut msg = b"Confide_v1_ServerCertificate".to_vec();
    msg.extend_from_slice(body);
    let sig = root.sign(&msg);
    let mut bytes = cert.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 64..].copy_from_slice(&sig.to_bytes());
    let parsed = SenderCertificate::from_bytes(&bytes).unwrap();
    assert_eq!(
        parsed.validate(&roots(), NOW),
        Err(CertificateError::BadServerSignature)
    );
}

#[test]
fn every_single_bit_flip_of_a_server_certificate_is_refused() {
    let cert = server_certificate(NOW.saturating_add(SERVER_LIFETIME));
    assert!(cert.validate(&roots(), NOW).is_ok());
    // The fixture trusts id 1 only; a flipped root id must fail as an unknown root.
    for_each_bit_flip(cert.as_bytes(), |b| {
        assert!(
            !ServerCertificate::from_bytes(b).is_ok_and(|c| c.validate(&roots(), NOW).is_ok()),
            "a flipped server certificate was accepted"
        );
    });
}

#[test]
fn every_single_bit_flip_of_a_sender_certificate_is_refused() {
    let cert = sender_certificate();
    for_each_bit_flip(cert.as_bytes(), |b| {
        assert!(
            !SenderCertificate::from_bytes(b).is_ok_and(|c| c.validate(&roots(), NOW).is_ok()),
            "a flipped sender certificate was accepted"
        );
    });
}

#[test]
fn strict_decoding() {
    let bytes = sender_certificate().as_bytes().to_vec();
    let mut long = bytes.clone();
    long.push(0);
    assert!(SenderCertificate::from_bytes(&long).is_err());
    assert!(SenderCertificate::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(SenderCertificate::from_bytes(&[]).is_err());
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        SenderCertificate::from_bytes(&v2).err(),
        Some(DecodeError::UnknownVersion {
            what: "sender certificate",
            found: 2
        })
    );
    let server = server_certificate(Timestamp::MAX);
    let mut sv = server.as_bytes().to_vec();
    sv[0] = 0;
    assert!(matches!(
        ServerCertificate::from_bytes(&sv),
        Err(DecodeError::UnknownVersion { .. })
    ));
    let mut sl = server.as_bytes().to_vec();
    sl.push(1);
    assert!(ServerCertificate::from_bytes(&sl).is_err());
}

/// Offset of the role byte in the fixture's certificate.
fn role_offset() -> usize {
    1 + 2 + SENDER_ADDRESS.len() + 4 + 128
}

#[test]
fn roles_decode_as_documented() {
    let server = server_key();
    for role in [Role::Client, Role::Counselor, Role::Bot, Role::Other(42)] {
        let cert = SenderCertificate::issue(
            &server,
            &claims(&sender().public(), role, None),
            NOW.saturating_add(SENDER_LIFETIME),
        )
        .unwrap();
        assert_eq!(cert.as_bytes()[role_offset()], role.to_wire());
        let v = SenderCertificate::from_bytes(cert.as_bytes())
            .unwrap()
            .validate(&roots(), NOW)
            .unwrap();
        assert_eq!(v.role(), role);
    }
    // Reserved value zero is refused when decoding.
    let mut bytes = sender_certificate().as_bytes().to_vec();
    bytes[role_offset()] = 0;
    assert_eq!(
        SenderCertificate::from_bytes(&bytes).err(),
        Some(DecodeError::InvalidValue { field: "role" })
    );
    // Non-canonical Other values cannot be issued.
    assert_eq!(
        SenderCertificate::issue(
            &server,
            &claims(&sender().public(), Role::Other(2), None),
            Timestamp::MAX
        )
        .err(),
        Some(IssueError::NonCanonicalRole { value: 2 })
    );
}

#[test]
fn issuing_enforces_bounds() {
    let server = server_key();
    let id = sender().public();
    let long_address = [b'a'; MAX_SENDER_ADDRESS_LEN + 1];
    let max_address = [b'a'; MAX_SENDER_ADDRESS_LEN];
    let issue = |address: &[u8], name: Option<&str>| {
        SenderCertificate::issue(
            &server,
            &SenderClaims {
                address,
                device_id: u32::MAX,
                identity: id,
                role: Role::Bot,
                display_name: name,
            },
            Timestamp::MAX,
        )
    };
    assert!(matches!(
        issue(&long_address, None),
        Err(IssueError::AddressLength { .. })
    ));
    assert!(matches!(
        issue(b"", None),
        Err(IssueError::AddressLength { .. })
    ));
    let long_name = "é".repeat(MAX_DISPLAY_NAME_LEN / 2 + 1);
    let max_name = "x".repeat(MAX_DISPLAY_NAME_LEN);
    for bad in [
        long_name.as_str(),
        "",
        "Dr.\u{202E}rolesnuoC",
        "tab\there",
        "new\nline",
    ] {
        assert_eq!(
            issue(b"a", Some(bad)).err(),
            Some(IssueError::InvalidDisplayName),
            "{bad:?}"
        );
    }
    // The largest certificate fits its bound and round-trips.
    let big = issue(&max_address, Some(&max_name)).unwrap();
    assert_eq!(big.as_bytes().len(), MAX_SENDER_CERTIFICATE_LEN);
    assert_eq!(SenderCertificate::from_bytes(big.as_bytes()).unwrap(), big);
    let v = big.validate(&roots(), NOW).unwrap();
    assert_eq!(v.display_name(), Some(max_name.as_str()));
    assert_eq!(v.device_id(), u32::MAX);
    // A pseudonymous client: short opaque address, no name.
    let pseudo = issue(&[0xff, 0x00, 0x10], None).unwrap();
    assert_eq!(pseudo.validate(&roots(), NOW).unwrap().display_name(), None);
}

#[test]
fn a_decoded_name_with_bidi_override_is_refused() {
    // Build a certificate with a name, then swap a name byte for a control byte.
    let cert = certificate_for(&sender().public(), Role::Client, Some("abc"));
    let mut bytes = cert.as_bytes().to_vec();
    let name_at = role_offset() + 1 + 1 + 2;
    assert_eq!(&bytes[name_at..name_at + 3], b"abc");
    bytes[name_at + 1] = 0x07;
    assert_eq!(
        SenderCertificate::from_bytes(&bytes).err(),
        Some(DecodeError::InvalidValue {
            field: "display name"
        })
    );
    let mut flag = cert.as_bytes().to_vec();
    flag[role_offset() + 1] = 2;
    assert!(SenderCertificate::from_bytes(&flag).is_err());
}

#[test]
fn trust_configuration_round_trips_and_is_strict() {
    let mut roots = roots();
    roots
        .add_root(7, SigningKey::from_seed(&[0x21; 32]).verifying_key())
        .unwrap();
    roots.revoke_server_key(9).unwrap();
    roots.revoke_server_key(3).unwrap();
    roots.revoke_server_key(9).unwrap();
    assert!(roots.is_revoked(3) && roots.is_revoked(9) && !roots.is_revoked(4));
    let bytes = roots.to_bytes();
    assert_eq!(bytes.len(), 1 + 2 + 2 * 36 + 2 + 2 * 4);
    let parsed = TrustRoots::from_bytes(&bytes).unwrap();
    assert_eq!(parsed, roots);
    assert_eq!(parsed.to_bytes(), bytes);
    // Out-of-order revocations are not canonical.
    let mut swapped = bytes.clone();
    let n = swapped.len();
    swapped.swap(n - 1, n - 5);
    assert!(TrustRoots::from_bytes(&swapped).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(TrustRoots::from_bytes(&trailing).is_err());
    assert_eq!(
        roots.add_root(7, root_key().verifying_key()),
        Err(TrustConfigError::DuplicateRootId { key_id: 7 })
    );
    let mut full = TrustRoots::new();
    for i in 0..MAX_TRUST_ROOTS as u32 {
        full.add_root(i, root_key().verifying_key()).unwrap();
    }
    assert_eq!(
        full.add_root(999, root_key().verifying_key()),
        Err(TrustConfigError::TooManyRoots {
            max: MAX_TRUST_ROOTS
        })
    );
}

#[test]
fn debug_output_names_nobody() {
    let cert = sender_certificate();
    let v = cert.validate(&roots(), NOW).unwrap();
    let shown = format!("{cert:?} {v:?} {:?} {:?}", v.address(), server_key());
    let name_hex = hex::encode(SENDER_ADDRESS);
    for secret in [
        "counselor-0017",
        "Rivera",
        name_hex.as_str(),
        &hex::encode(sender().public().key_bytes())[..16],
    ] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
    assert!(shown.contains("Counselor"));
}

/// sealed-sender.md §4: exactly which code points a display name may not contain, over every
/// Unicode scalar value.
#[test]
fn refused_display_name_code_points_are_exactly_the_documented_ones() {
    let refused = |c: u32| {
        matches!(c, 0x00..=0x1F | 0x7F..=0x9F)
            || matches!(c, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
    };
    let mut count = 0u32;
    for c in (0..=0x10_FFFFu32).filter_map(char::from_u32) {
        let name = format!("a{c}b");
        assert_eq!(
            confide_sealed::is_valid_display_name(&name),
            !refused(u32::from(c)),
            "U+{:04X}",
            u32::from(c)
        );
        count += u32::from(refused(u32::from(c)));
    }
    assert_eq!(count, 32 + 33 + 1 + 2 + 5 + 4);
    // Allowed although invisible or unusual: zero-width space, BOM, line/paragraph
    // separators, soft hyphen, a private-use character.
    for c in [
        '\u{200B}', '\u{FEFF}', '\u{2028}', '\u{2029}', '\u{00AD}', '\u{E000}',
    ] {
        assert!(confide_sealed::is_valid_display_name(&format!("x{c}")));
    }
    // The decoder applies the same rule (and refuses invalid UTF-8).
    let cert = certificate_for(&sender().public(), Role::Counselor, Some("ok"));
    let bytes = cert.as_bytes().to_vec();
    let name_at = 139 + SENDER_ADDRESS.len();
    assert_eq!(&bytes[name_at..name_at + 2], b"ok");
    for bad in [[0x01u8, b'k'], [0xC2, 0x85], [0xFF, b'k']] {
        let mut b = bytes.clone();
        b[name_at..name_at + 2].copy_from_slice(&bad);
        assert!(SenderCertificate::from_bytes(&b).is_err(), "{bad:02x?}");
    }
}

// The tests below were added for survivors of `cargo mutants -p confide-sealed` (docs/mutants.md).

#[test]
fn a_server_certificate_reports_what_was_issued_and_decodes_the_same() {
    // Ids other than 0 and 1 (and other than the fixture's), so a constant cannot pass.
    let expires = NOW.saturating_add(Duration::from_days(30));
    let cert = ServerCertificate::issue(
        0x0102_0304,
        &root_key(),
        0x0a0b_0c0d,
        &server_signing_key().verifying_key(),
        expires,
    );
    let decoded = ServerCertificate::from_bytes(cert.as_bytes()).unwrap();
    for c in [&cert, &decoded] {
        assert_eq!(c.root_key_id(), 0x0102_0304);
        assert_eq!(c.server_key_id(), 0x0a0b_0c0d);
        assert_eq!(c.server_key(), &server_signing_key().verifying_key());
        assert_eq!(c.expires_at(), expires);
    }
}

#[test]
fn a_sender_certificate_reports_its_expiry_before_validation() {
    let cert = sender_certificate();
    assert_eq!(cert.expires_at(), NOW.saturating_add(SENDER_LIFETIME));
    let decoded = SenderCertificate::from_bytes(cert.as_bytes()).unwrap();
    assert_eq!(decoded.expires_at(), NOW.saturating_add(SENDER_LIFETIME));
    assert_eq!(
        decoded.server_certificate().expires_at(),
        NOW.saturating_add(SERVER_LIFETIME)
    );
}

#[test]
fn sender_addresses_are_equal_exactly_when_their_bytes_are() {
    let a = SenderAddress::new(b"client-1").unwrap();
    assert_eq!(a, SenderAddress::new(b"client-1").unwrap());
    assert_ne!(a, SenderAddress::new(b"client-2").unwrap());
    assert_ne!(a, SenderAddress::new(b"client-10").unwrap());
    // What a validated certificate reports compares the same way.
    let validated = sender_certificate().validate(&roots(), NOW).unwrap();
    assert_eq!(
        validated.address(),
        &SenderAddress::new(SENDER_ADDRESS).unwrap()
    );
    assert_ne!(validated.address(), &a);
}

#[test]
fn role_predicates_match_the_documented_table() {
    // Other(0..=3) would alias a known role's byte: no canonical encoding. Other(4) is the
    // first value a new role can use.
    for v in 0..=3 {
        assert!(!Role::Other(v).is_canonical(), "Other({v})");
    }
    assert!(Role::Other(4).is_canonical());
    assert!(Role::Other(u8::MAX).is_canonical());
    for role in [Role::Client, Role::Counselor, Role::Bot] {
        assert!(role.is_canonical());
    }
    // Persons are clients and counselors; bots and unknown roles are not.
    assert!(Role::Client.is_person());
    assert!(Role::Counselor.is_person());
    assert!(!Role::Bot.is_person());
    assert!(!Role::Other(4).is_person());
    // Only a counselor is a verified counselor.
    assert!(Role::Counselor.is_verified_counselor());
    assert!(!Role::Client.is_verified_counselor());
    assert!(!Role::Bot.is_verified_counselor());
    assert!(!Role::Other(4).is_verified_counselor());
}

#[test]
fn trust_roots_count_and_bound_their_revocations() {
    let mut roots = TrustRoots::new();
    assert_eq!(roots.root_count(), 0);
    for id in [5u32, 9, 2] {
        roots
            .add_root(id, SigningKey::from_seed(&[id as u8; 32]).verifying_key())
            .unwrap();
    }
    assert_eq!(roots.root_count(), 3);
    assert!(roots.remove_root(9));
    assert_eq!(roots.root_count(), 2);
    assert!(!roots.remove_root(9));
    assert_eq!(roots.root_count(), 2);

    for id in 0..MAX_REVOKED_SERVER_KEYS as u32 {
        roots.revoke_server_key(id).unwrap();
    }
    // Revoking again is idempotent even when full; a new id is refused and changes nothing.
    roots.revoke_server_key(0).unwrap();
    let before = roots.to_bytes();
    let extra = MAX_REVOKED_SERVER_KEYS as u32;
    assert_eq!(
        roots.revoke_server_key(extra),
        Err(TrustConfigError::TooManyRevocations {
            max: MAX_REVOKED_SERVER_KEYS
        })
    );
    assert!(!roots.is_revoked(extra));
    assert_eq!(roots.to_bytes(), before);
}

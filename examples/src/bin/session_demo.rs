//! Two-party session demo: a client writes to an offline counselor, the counselor answers,
//! messages arrive out of order, a tampered message is refused without harming the session,
//! both compare safety numbers, and state is stored encrypted and restored.
//!
//! Run with `cargo run -p confide-examples --bin session_demo`.

#![allow(clippy::indexing_slicing, clippy::expect_used)] // a demo with fixed, known-good data

use confide_crypto::{Timestamp, identity::IdentityKeyPair};
use confide_session::{
    ExpectedIdentity, IdentityChangePolicy, PreKeyBundle, PreKeyStore, SafetyNumber, Session,
    SessionRecord, storage::StorageKey,
};
use getrandom::SysRng;
use rand_core::UnwrapErr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = UnwrapErr(SysRng);
    let mut now = Timestamp::from_millis(1_795_000_000_000);

    println!("== Counselor publishes prekeys and goes offline");
    let mut counselor = PreKeyStore::new(IdentityKeyPair::generate(&mut rng), &mut rng, now);
    counselor.generate_one_time_prekeys(&mut rng, 10);
    counselor.generate_one_time_kem_prekeys(&mut rng, 10);
    let directory: Vec<Vec<u8>> = counselor
        .bundles()
        .iter()
        .map(PreKeyBundle::to_bytes)
        .collect();
    println!(
        "   {} bundles uploaded ({} bytes each, incl. an ML-KEM-768 key)",
        directory.len(),
        directory[0].len()
    );

    println!("== Client fetches one bundle, verifies its signatures, starts a hybrid session");
    let client_id = IdentityKeyPair::generate(&mut rng);
    let bundle = PreKeyBundle::from_bytes(&directory[0])?
        .verify(ExpectedIdentity::TrustOnFirstUse, &client_id.public())?;
    let mut client = SessionRecord::with_session(Session::initiate(&mut rng, &client_id, &bundle)?);
    let texts = [
        "Hi. I'm not sure where to start.",
        "Things at home have been hard.",
        "Is this really private?",
    ];
    let mut wire = Vec::new();
    for t in texts {
        let m = client.encrypt(&mut rng, t.as_bytes())?;
        println!(
            "   client -> relay: {} bytes (prekey message: carries the KEM ciphertext)",
            m.len()
        );
        wire.push(m);
    }

    println!("== Counselor comes online; the network delivered the messages out of order");
    let mut with_client = SessionRecord::new();
    let mut tampered = wire[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let before = with_client.to_bytes();
    let err = with_client
        .decrypt(&mut counselor, &tampered, now, IdentityChangePolicy::Refuse)
        .expect_err("tampered message must fail");
    println!(
        "   tampered copy refused ({err}); state unchanged: {}",
        before == with_client.to_bytes()
    );
    for i in [2usize, 0, 1] {
        let got =
            with_client.decrypt(&mut counselor, &wire[i], now, IdentityChangePolicy::Refuse)?;
        println!(
            "   counselor reads #{i}: {:?}",
            String::from_utf8_lossy(&got.plaintext)
        );
    }
    let dup = with_client.decrypt(&mut counselor, &wire[0], now, IdentityChangePolicy::Refuse);
    println!("   a duplicate of #0 is refused: {:?}", dup.err());

    println!("== Counselor answers (a DH ratchet step: fresh keys for this turn)");
    now = now.saturating_add(confide_crypto::Duration::from_mins(3));
    let reply = with_client.encrypt(
        &mut rng,
        b"Yes. Only you and I can read this. I'm listening.",
    )?;
    let mut client_store = PreKeyStore::new(client_id.clone(), &mut rng, now);
    let got = client.decrypt(&mut client_store, &reply, now, IdentityChangePolicy::Refuse)?;
    println!(
        "   client reads: {:?}",
        String::from_utf8_lossy(&got.plaintext)
    );

    println!("== Both compare safety numbers");
    let a = SafetyNumber::new(&client_id.public(), &got.remote_identity);
    let b = SafetyNumber::new(&counselor.identity().public(), &client_id.public());
    println!("   client sees    {}", a.display_groups());
    println!("   counselor sees {}", b.display_groups());
    println!("   match: {}", a.ct_equals(&b));

    println!("== Client stores its state encrypted, restores it, keeps talking");
    let key = StorageKey::random(&mut rng);
    let blob = client.to_encrypted(&mut rng, &key, b"slot");
    let mut client = SessionRecord::from_encrypted(&key, b"slot", &blob)?;
    println!(
        "   encrypted state: {} bytes; wrong key gives: {:?}",
        blob.len(),
        SessionRecord::from_encrypted(&StorageKey::random(&mut rng), b"slot", &blob).err()
    );
    let m = client.encrypt(&mut rng, b"Thank you.")?;
    let got = with_client.decrypt(&mut counselor, &m, now, IdentityChangePolicy::Refuse)?;
    println!(
        "   counselor reads: {:?} ({} bytes on the wire, a ratchet message now)",
        String::from_utf8_lossy(&got.plaintext),
        m.len()
    );
    Ok(())
}

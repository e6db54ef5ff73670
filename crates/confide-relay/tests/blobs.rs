//! The blob store through the relay as a separate process on 127.0.0.1: uploads in pieces
//! that resume at the stored length (after a dropped connection and after `kill -9`), streamed
//! downloads on unauthenticated connections, every refusal with its code, deletion by token,
//! retention, and an encrypted attachment that round-trips and decrypts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use common::*;
use confide_attachment::{
    AttachmentDecryptor, AttachmentPointer, BlobDeleteToken, BlobId, ContentType,
};
use confide_relay::client::{
    BlobState, BlobUpload, ClientError, RelayConnection, download_blob, upload_blob,
};
use confide_relay::consts::{BLOB_DATA_LEN, MAX_BLOB_LEN, MAX_BLOB_PUT_LEN};
use confide_relay::protocol::{ErrorCode, RequestBody};
use rand_core::SeedableRng;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn token(n: u8) -> BlobDeleteToken {
    BlobDeleteToken::new([n; 32])
}

fn upload(id: u8, total_len: usize, token_seed: u8) -> BlobUpload {
    BlobUpload::new(
        BlobId::from_bytes([id; 16]),
        total_len as u64,
        &token(token_seed),
    )
}

/// A download into memory on a fresh connection that never authenticates.
async fn download(relay: std::net::SocketAddr, blob_id: &BlobId) -> Result<Vec<u8>, ClientError> {
    let mut c = RelayConnection::connect(relay).await.unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    c.get_blob(blob_id, &mut offset, &mut out).await?;
    assert_eq!(offset, out.len() as u64);
    Ok(out)
}

fn refused_at<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, u64) {
    match r {
        Err(ClientError::RefusedAt { code, stored_len }) => (code, stored_len),
        other => panic!("expected a refusal with a length, got {other:?}"),
    }
}

/// A source that counts the bytes read from it (what an upload sends).
struct Counting {
    inner: Cursor<Vec<u8>>,
    read: u64,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl AsyncSeek for Counting {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.inner).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.inner).poll_complete(cx)
    }
}

#[tokio::test]
async fn an_upload_in_pieces_downloads_equal_on_an_unauthenticated_connection_from_any_offset() {
    within(async {
        let dir = TempDir::new("blob-pieces");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("uploader");
        let mut o = owner(relay.addr, &mailbox, &key(1)).await;
        // Pieces of uneven sizes, one of them empty; the download is streamed in
        // BLOB_DATA_LEN pieces that do not line up with them.
        let blob = bytes(3 * BLOB_DATA_LEN + 777, 1);
        let up = upload(1, blob.len(), 1);
        let mut offset = 0;
        for len in [1usize, 70_000, 0, 100_000] {
            let piece = &blob[offset..offset + len];
            let stored = o.put_blob_piece(&up, offset as u64, piece).await.unwrap();
            offset += len;
            assert_eq!(stored, offset as u64, "receipt carries the stored length");
        }
        let stored = o
            .put_blob_piece(&up, offset as u64, &blob[offset..])
            .await
            .unwrap();
        assert_eq!(stored, blob.len() as u64);

        let mut anon = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            anon.blob_status(&up.blob_id).await.unwrap(),
            Some(BlobState {
                stored_len: blob.len() as u64,
                total_len: blob.len() as u64
            })
        );
        assert_eq!(download(relay.addr, &up.blob_id).await.unwrap(), blob);
        // A download resumed at any offset gets the rest, the end included.
        for from in [1usize, BLOB_DATA_LEN, blob.len() - 1, blob.len()] {
            let mut tail = Vec::new();
            let mut at = from as u64;
            let total = anon
                .get_blob(&up.blob_id, &mut at, &mut tail)
                .await
                .unwrap();
            assert_eq!((total, at), (blob.len() as u64, blob.len() as u64));
            assert_eq!(tail, blob[from..], "from {from}");
        }
        // The connection serves requests after a stream.
        anon.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_connection_dropped_mid_upload_resumes_at_the_stored_length_not_from_zero() {
    within(async {
        let dir = TempDir::new("blob-resume");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("uploader");
        let k = key(2);
        let blob = bytes(2 * MAX_BLOB_PUT_LEN + 12_345, 2);
        let up = upload(2, blob.len(), 2);
        let mut o = owner(relay.addr, &mailbox, &k).await;
        o.put_blob_piece(&up, 0, &blob[..MAX_BLOB_PUT_LEN])
            .await
            .unwrap();
        // The next put is written but the connection drops before its receipt is read.
        let half = RequestBody::PutBlob {
            blob_id: up.blob_id,
            offset: MAX_BLOB_PUT_LEN as u64,
            total_len: up.total_len,
            delete_token_hash: up.delete_token_hash,
            bytes: blob[MAX_BLOB_PUT_LEN..2 * MAX_BLOB_PUT_LEN].to_vec(),
        };
        let body = confide_relay::protocol::Request { id: 99, body: half }
            .to_bytes()
            .unwrap();
        o.write_raw(&confide_relay::protocol::frame_message(&body))
            .await
            .unwrap();
        drop(o);

        // A new connection asks where the relay's copy ends and sends only the rest.
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        let state = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                // The dropped put is committed or not; either way the length is a put boundary.
                let s = o.blob_status(&up.blob_id).await.unwrap().unwrap();
                if s.stored_len == 2 * MAX_BLOB_PUT_LEN as u64 {
                    break s;
                }
                assert_eq!(s.stored_len, MAX_BLOB_PUT_LEN as u64);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or(BlobState {
            stored_len: MAX_BLOB_PUT_LEN as u64,
            total_len: up.total_len,
        });
        let mut source = Counting {
            inner: Cursor::new(blob.clone()),
            read: 0,
        };
        assert_eq!(o.put_blob(&up, &mut source).await.unwrap(), up.total_len);
        assert_eq!(
            source.read,
            up.total_len - state.stored_len,
            "only what the relay lacked was sent"
        );
        assert!(state.stored_len >= MAX_BLOB_PUT_LEN as u64, "not from zero");
        assert_eq!(download(relay.addr, &up.blob_id).await.unwrap(), blob);
        // Uploading a complete blob again sends nothing.
        let mut again = Counting {
            inner: Cursor::new(blob.clone()),
            read: 0,
        };
        assert_eq!(o.put_blob(&up, &mut again).await.unwrap(), up.total_len);
        assert_eq!(again.read, 0);
    })
    .await;
}

#[tokio::test]
async fn a_relay_killed_mid_upload_restarts_with_a_consistent_length_and_the_upload_completes() {
    within(async {
        let dir = TempDir::new("blob-kill9");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("uploader");
        let k = key(3);
        let piece = 64 * 1024;
        let blob = bytes(160 * piece + 99, 3);
        let up = upload(3, blob.len(), 3);
        let mut o = owner(relay.addr, &mailbox, &k).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = blob.clone();
        let uploader = tokio::spawn(async move {
            let mut offset = 0usize;
            while offset < sent.len() {
                let end = (offset + piece).min(sent.len());
                match o
                    .put_blob_piece(&up, offset as u64, &sent[offset..end])
                    .await
                {
                    Ok(stored) => {
                        offset = stored as usize;
                        let _ = tx.send(stored);
                    }
                    Err(_) => return,
                }
            }
        });
        let mut receipted = 0;
        for _ in 0..20 {
            receipted = rx.recv().await.expect("receipts before the kill");
        }
        relay.kill();
        let _ = uploader.await;
        while let Ok(r) = rx.try_recv() {
            receipted = r;
        }
        assert!(receipted < blob.len() as u64, "the kill came mid-upload");

        let relay = RelayProcess::start(dir.path(), &[]);
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        let state = c.blob_status(&up.blob_id).await.unwrap().unwrap();
        assert!(
            state.stored_len >= receipted,
            "every receipted byte survives: {} < {receipted}",
            state.stored_len
        );
        assert_eq!(
            state.stored_len % piece as u64,
            0,
            "no half-written put is counted"
        );
        assert!(state.stored_len <= receipted + piece as u64);
        let mut source = Cursor::new(blob.clone());
        let done = upload_blob(relay.addr.into(), &mailbox, &k, &up, &mut source)
            .await
            .unwrap();
        assert_eq!(done, blob.len() as u64);
        let mut offset = 0;
        let mut out = Vec::new();
        download_blob(relay.addr.into(), &up.blob_id, &mut offset, &mut out)
            .await
            .unwrap();
        assert!(out == blob, "the restarted relay serves the whole blob");
    })
    .await;
}

#[tokio::test]
async fn every_refusal_has_its_code_and_changes_nothing() {
    within(async {
        let dir = TempDir::new("blob-refusals");
        let relay = RelayProcess::start(
            dir.path(),
            &[
                "--max-blobs-per-owner",
                "2",
                "--max-blob-bytes-per-owner",
                "300000",
            ],
        );
        let mailbox = address("uploader");
        let mut o = owner(relay.addr, &mailbox, &key(4)).await;
        let blob = bytes(100_000, 4);
        let up = upload(4, blob.len(), 4);

        // Uploading needs an authenticated owner.
        let mut anon = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(anon.put_blob_piece(&up, 0, &blob[..10]).await),
            ErrorCode::NotAuthenticated
        );
        assert_eq!(anon.blob_status(&up.blob_id).await.unwrap(), None);
        assert_eq!(
            refused(download(relay.addr, &up.blob_id).await),
            ErrorCode::NoSuchBlob
        );

        // A blob longer than the largest attachment, and a put past the declared length.
        let huge = BlobUpload {
            total_len: MAX_BLOB_LEN + 1,
            ..up
        };
        assert_eq!(
            refused(o.put_blob_piece(&huge, 0, b"x").await),
            ErrorCode::BlobTooLarge
        );
        let small = upload(5, 10, 4);
        assert_eq!(
            refused(o.put_blob_piece(&small, 0, &[0; 11]).await),
            ErrorCode::BlobTooLarge
        );
        assert_eq!(o.blob_status(&small.blob_id).await.unwrap(), None);

        // A wrong offset is refused with the stored length.
        o.put_blob_piece(&up, 0, &blob[..40_000]).await.unwrap();
        for wrong in [0, 39_999, 40_001] {
            assert_eq!(
                refused_at(o.put_blob_piece(&up, wrong, &blob[..10]).await),
                (ErrorCode::BlobOffsetMismatch, 40_000)
            );
        }
        // Another length or delete-token hash for the same id.
        let other_len = BlobUpload {
            total_len: 100_001,
            ..up
        };
        assert_eq!(
            refused(o.put_blob_piece(&other_len, 40_000, b"x").await),
            ErrorCode::BlobExists
        );
        let other_token = upload(4, blob.len(), 9);
        assert_eq!(
            refused(o.put_blob_piece(&other_token, 40_000, b"x").await),
            ErrorCode::BlobExists
        );
        // An incomplete blob cannot be fetched.
        assert_eq!(
            refused(download(relay.addr, &up.blob_id).await),
            ErrorCode::BlobIncomplete
        );
        o.put_blob_piece(&up, 40_000, &blob[40_000..])
            .await
            .unwrap();
        assert_eq!(download(relay.addr, &up.blob_id).await.unwrap(), blob);
        // A download past the end is refused with the length.
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        let mut at = 100_001;
        assert_eq!(
            refused_at(c.get_blob(&up.blob_id, &mut at, &mut Vec::new()).await),
            (ErrorCode::BlobOffsetMismatch, 100_000)
        );

        // Quotas: 300,000 bytes and 2 blobs per owner (this relay's settings).
        let big = upload(6, 200_001, 4);
        assert_eq!(
            refused(o.put_blob_piece(&big, 0, b"x").await),
            ErrorCode::BlobQuotaExceeded
        );
        let second = upload(7, 10, 4);
        o.put_blob_piece(&second, 0, &[7; 10]).await.unwrap();
        let third = upload(8, 10, 4);
        assert_eq!(
            refused(o.put_blob_piece(&third, 0, &[8; 10]).await),
            ErrorCode::BlobQuotaExceeded
        );
        // Another owner has its own quota, and cannot append to this owner's blob.
        let mut other = owner(relay.addr, &address("someone else"), &key(5)).await;
        other.put_blob_piece(&third, 0, &[8; 10]).await.unwrap();
        let small_open = upload(9, 20, 4);
        o.delete_blob(&second.blob_id, &token(4)).await.unwrap();
        o.put_blob_piece(&small_open, 0, &[9; 10]).await.unwrap();
        assert_eq!(
            refused(other.put_blob_piece(&small_open, 10, &[9; 10]).await),
            ErrorCode::BlobExists
        );
    })
    .await;
}

#[tokio::test]
async fn only_the_right_delete_token_deletes_and_then_the_blob_is_gone() {
    within(async {
        let dir = TempDir::new("blob-delete");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mut o = owner(relay.addr, &address("uploader"), &key(6)).await;
        let blob = bytes(5_000, 6);
        let up = upload(10, blob.len(), 6);
        o.put_blob_piece(&up, 0, &blob).await.unwrap();

        // Deleting needs no account: a recipient on an anonymous connection.
        let mut anon = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(anon.delete_blob(&up.blob_id, &token(7)).await),
            ErrorCode::DeleteTokenRefused
        );
        assert_eq!(download(relay.addr, &up.blob_id).await.unwrap(), blob);
        anon.delete_blob(&up.blob_id, &token(6)).await.unwrap();
        assert_eq!(
            refused(download(relay.addr, &up.blob_id).await),
            ErrorCode::NoSuchBlob
        );
        assert_eq!(anon.blob_status(&up.blob_id).await.unwrap(), None);
        assert_eq!(
            refused(anon.delete_blob(&up.blob_id, &token(6)).await),
            ErrorCode::NoSuchBlob
        );
    })
    .await;
}

#[tokio::test]
async fn blobs_past_their_retention_are_not_found() {
    within(async {
        let dir = TempDir::new("blob-retention");
        // This relay keeps blobs 2 s and incomplete uploads 1 s.
        let relay = RelayProcess::start(
            dir.path(),
            &[
                "--blob-retention-ms",
                "2000",
                "--incomplete-blob-retention-ms",
                "1000",
            ],
        );
        let mut o = owner(relay.addr, &address("uploader"), &key(7)).await;
        let blob = bytes(1_000, 7);
        let complete = upload(11, blob.len(), 7);
        let incomplete = upload(12, blob.len(), 7);
        o.put_blob_piece(&complete, 0, &blob).await.unwrap();
        o.put_blob_piece(&incomplete, 0, &blob[..10]).await.unwrap();
        assert_eq!(download(relay.addr, &complete.blob_id).await.unwrap(), blob);
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(o.blob_status(&incomplete.blob_id).await.unwrap(), None);
        assert_eq!(
            refused_at(o.put_blob_piece(&incomplete, 10, &blob[10..20]).await),
            (ErrorCode::BlobOffsetMismatch, 0),
            "an expired upload starts again"
        );
        assert_eq!(download(relay.addr, &complete.blob_id).await.unwrap(), blob);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(
            refused(download(relay.addr, &complete.blob_id).await),
            ErrorCode::NoSuchBlob
        );
        assert_eq!(o.blob_status(&complete.blob_id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn an_encrypted_attachment_round_trips_through_the_relay_and_decrypts() {
    within(async {
        let dir = TempDir::new("blob-attachment");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("client");
        let k = key(8);
        drop(owner(relay.addr, &mailbox, &k).await);
        let mut rng = ChaCha20Rng::from_seed([8; 32]);

        // The sender encrypts, uploads and puts the pointer in its message.
        let voice_note = bytes(300_000, 8);
        let (blob, sealed) = confide_attachment::encrypt(&mut rng, &voice_note).unwrap();
        let blob_id = BlobId::random(&mut rng);
        let up = BlobUpload::new(blob_id, sealed.ciphertext_len, &sealed.delete_token());
        let mut source = Cursor::new(blob);
        upload_blob(relay.addr.into(), &mailbox, &k, &up, &mut source)
            .await
            .unwrap();
        let pointer = AttachmentPointer::new(
            blob_id,
            &sealed,
            ContentType::VoiceNote,
            Some(confide_crypto::Duration::from_secs(20)),
        )
        .unwrap();
        let in_message = pointer.to_bytes();

        // The recipient parses the pointer, downloads on its own anonymous connection and
        // decrypts.
        let received = AttachmentPointer::from_bytes(&in_message).unwrap();
        let mut downloaded = Vec::new();
        let mut offset = 0;
        download_blob(
            relay.addr.into(),
            received.blob_id(),
            &mut offset,
            &mut downloaded,
        )
        .await
        .unwrap();
        assert_eq!(offset, received.ciphertext_len());
        let mut decryptor = AttachmentDecryptor::for_pointer(&received).unwrap();
        let mut played = Vec::new();
        let mut input = &downloaded[..];
        while let Some(plaintext) = decryptor.push(&mut input).unwrap() {
            played.extend_from_slice(plaintext);
        }
        decryptor.finish().unwrap();
        assert_eq!(played, voice_note);

        // The recipient deletes it with the token its pointer gives.
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        c.delete_blob(received.blob_id(), &received.delete_token())
            .await
            .unwrap();
        assert_eq!(c.blob_status(received.blob_id()).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn on_postgresql_an_upload_resumes_downloads_equal_and_deletes() {
    let Some(url) = postgres_url("on_postgresql_an_upload_resumes_downloads_equal_and_deletes")
    else {
        return;
    };
    within(async {
        let schema = fresh_schema("blobs");
        let relay = RelayProcess::start_db(&url, "127.0.0.1:0", &["--db-schema", &schema]);
        let mailbox = address("uploader");
        let k = key(9);
        let blob = bytes(MAX_BLOB_PUT_LEN + 3 * BLOB_DATA_LEN + 5, 9);
        let up = upload(13, blob.len(), 9);
        let mut o = owner(relay.addr, &mailbox, &k).await;
        o.put_blob_piece(&up, 0, &blob[..100_000]).await.unwrap();
        assert_eq!(
            refused_at(o.put_blob_piece(&up, 5, &blob[..10]).await),
            (ErrorCode::BlobOffsetMismatch, 100_000)
        );
        drop(o);
        let mut source = Counting {
            inner: Cursor::new(blob.clone()),
            read: 0,
        };
        upload_blob(relay.addr.into(), &mailbox, &k, &up, &mut source)
            .await
            .unwrap();
        assert_eq!(source.read, blob.len() as u64 - 100_000);
        assert_eq!(download(relay.addr, &up.blob_id).await.unwrap(), blob);
        let mut anon = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(anon.delete_blob(&up.blob_id, &token(8)).await),
            ErrorCode::DeleteTokenRefused
        );
        anon.delete_blob(&up.blob_id, &token(9)).await.unwrap();
        assert_eq!(
            refused(download(relay.addr, &up.blob_id).await),
            ErrorCode::NoSuchBlob
        );
    })
    .await;
}

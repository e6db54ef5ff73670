//! The push hook: how the relay wakes an owner that has no connection when mail arrives.
//!
//! An owner registers an opaque **push registration** (`RegisterPush`, for the webhook an
//! `http://` URL of a push gateway). When a frame for its mailbox is committed through this
//! relay process and no owner connection is subscribed to the mailbox in this process, the
//! server calls [`PushHook::push`] with that registration and nothing else: no content, no
//! sender, no frame id, not even the mailbox address. Pushes are rate-limited per mailbox
//! ([`PUSH_INTERVAL`](crate::consts::PUSH_INTERVAL)) by the server before the hook is called.
//!
//! [`WebhookPush`] is the implementation shipped: an HTTP/1.1 `POST` with an empty body to the
//! registered URL, on its own task with a timeout, only to push gateways the operator listed.
//! It speaks plain `http://` only (no TLS): put the gateway on the operator's network.

use core::fmt;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::consts::{MAX_PUSH_RESPONSE_LINE, MAX_PUSH_URL_LEN, MAX_PUSHES_IN_FLIGHT, PUSH_TIMEOUT};

/// A push registration as the owner gave it (opaque to the server; the hook interprets it).
/// Its `Debug` shows only the length: a registration identifies a device at its gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct PushRegistration(Vec<u8>);

impl fmt::Debug for PushRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(bytes) = self;
        f.debug_struct("PushRegistration")
            .field("len", &bytes.len())
            .finish_non_exhaustive()
    }
}

impl PushRegistration {
    /// Wraps stored bytes.
    #[must_use]
    pub const fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes the owner registered.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Wakes owners that have no connection. Implementations must return at once (spawn any I/O)
/// and must not log the registration.
pub trait PushHook: Send + Sync + 'static {
    /// Whether this hook can serve `registration` (checked when the owner registers it; a
    /// refused registration is answered `InvalidPushUrl` and not stored).
    fn accepts(&self, registration: &[u8]) -> bool;

    /// A frame for the mailbox that registered `registration` was committed and no owner
    /// connection of this process is subscribed to it. Called from the send path: must not
    /// block.
    fn push(&self, registration: &PushRegistration);
}

/// The parts of an accepted push URL.
#[derive(Clone, PartialEq, Eq)]
pub struct PushUrl {
    /// `http` or `https`.
    pub https: bool,
    /// The host, lowercased (a name or an IPv4 address; IPv6 literals are not accepted).
    pub host: String,
    /// The port (80 or 443 if the URL gives none).
    pub port: u16,
    /// The path and query, starting with `/` (`/` if the URL gives none).
    pub path: String,
}

impl fmt::Debug for PushUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            https,
            host: _,
            port: _,
            path: _,
        } = self;
        f.debug_struct("PushUrl")
            .field("https", https)
            .finish_non_exhaustive()
    }
}

impl PushUrl {
    /// Parses `http://host[:port][/path]` or `https://...` strictly: 1..=[`MAX_PUSH_URL_LEN`]
    /// bytes of printable ASCII without spaces, no user information (`@`), no fragment
    /// (`#`), a host of letters, digits, `-` and `.`, a port in 1..=65535.
    #[must_use]
    pub fn parse(url: &[u8]) -> Option<Self> {
        if url.is_empty() || url.len() > MAX_PUSH_URL_LEN {
            return None;
        }
        if !url.iter().all(|b| (0x21..=0x7e).contains(b)) || url.contains(&b'#') {
            return None;
        }
        let text = core::str::from_utf8(url).ok()?;
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (false, rest)
        } else {
            (true, strip_prefix_ignore_case(text, "https://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (host, port.parse::<u16>().ok().filter(|p| *p != 0)?)
            }
            None => (authority, if https { 443 } else { 80 }),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['-', '.']);
        if !host_ok {
            return None;
        }
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Some(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// `host:port`, as matched against the operator's list of push gateways.
    #[must_use]
    pub fn gateway(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// The webhook push hook: `POST` with an empty body to the registered `http://` URL, if its
/// `host:port` is one of the operator's push gateways.
///
/// The request is `POST <path> HTTP/1.1`, `Host`, `Content-Length: 0`, `Connection: close`
/// and nothing else; the relay reads the status line (for its logs, which say only whether
/// the push succeeded) and closes. Each push runs on its own task, at most
/// [`MAX_PUSHES_IN_FLIGHT`] at once (further ones are dropped) and each abandoned after
/// [`PUSH_TIMEOUT`].
pub struct WebhookPush {
    gateways: Vec<String>,
    in_flight: Arc<Semaphore>,
}

impl fmt::Debug for WebhookPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            gateways,
            in_flight: _,
        } = self;
        f.debug_struct("WebhookPush")
            .field("gateways", &gateways.len())
            .finish_non_exhaustive()
    }
}

impl WebhookPush {
    /// A webhook that posts only to these gateways (`host:port`, host lowercase; an entry
    /// without a port means port 80). Must be created and used inside a tokio runtime.
    #[must_use]
    pub fn new(gateways: &[String]) -> Self {
        let gateways = gateways
            .iter()
            .map(|g| {
                let g = g.trim().to_ascii_lowercase();
                if g.rsplit_once(':')
                    .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                {
                    g
                } else {
                    format!("{g}:80")
                }
            })
            .collect();
        Self {
            gateways,
            in_flight: Arc::new(Semaphore::new(MAX_PUSHES_IN_FLIGHT)),
        }
    }

    fn target(&self, registration: &[u8]) -> Option<PushUrl> {
        let url = PushUrl::parse(registration)?;
        (!url.https && self.gateways.contains(&url.gateway())).then_some(url)
    }
}

impl PushHook for WebhookPush {
    fn accepts(&self, registration: &[u8]) -> bool {
        self.target(registration).is_some()
    }

    fn push(&self, registration: &PushRegistration) {
        // The gateway list may have changed since the owner registered: check again.
        let Some(url) = self.target(registration.as_bytes()) else {
            tracing::debug!("push skipped: registration no longer accepted");
            return;
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            tracing::debug!("push dropped: too many in flight");
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("push dropped: no runtime");
            return;
        };
        runtime.spawn(async move {
            let timeout = std::time::Duration::from_millis(PUSH_TIMEOUT.as_millis());
            match tokio::time::timeout(timeout, post(&url)).await {
                Ok(Some(status)) if (200..300).contains(&status) => tracing::debug!("push sent"),
                Ok(Some(status)) => tracing::debug!(status, "push refused by the gateway"),
                Ok(None) => tracing::debug!("push failed"),
                Err(_) => tracing::debug!("push timed out"),
            }
            drop(permit);
        });
    }
}

/// Sends the request and returns the response's status code.
async fn post(url: &PushUrl) -> Option<u16> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .ok()?;
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        url.gateway()
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        url.path
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut line = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while line.len() < MAX_PUSH_RESPONSE_LINE {
        if stream.read(&mut byte).await.ok()? == 0 {
            break;
        }
        if byte == [b'\n'] {
            break;
        }
        line.extend_from_slice(&byte);
    }
    // "HTTP/1.1 204 No Content"
    let text = core::str::from_utf8(&line).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls_are_parsed_strictly() {
        let u = PushUrl::parse(b"http://Gateway.example:8080/p/abc?x=1").unwrap();
        assert!(!u.https);
        assert_eq!(u.host, "gateway.example");
        assert_eq!(u.port, 8080);
        assert_eq!(u.path, "/p/abc?x=1");
        assert_eq!(PushUrl::parse(b"https://g").unwrap().port, 443);
        assert_eq!(PushUrl::parse(b"http://g").unwrap().path, "/");
        for bad in [
            &b""[..],
            b"ftp://g/",
            b"http://",
            b"http:///x",
            b"http://u@g/",
            b"http://g:0/",
            b"http://g:99999/",
            b"http://g:/",
            b"http://g/a b",
            b"http://g/\r\nX: y",
            b"http://g/#f",
            b"http://[::1]/",
            b"http://-g/",
            b"g/x",
        ] {
            assert!(
                PushUrl::parse(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("http://g/{}", "a".repeat(MAX_PUSH_URL_LEN));
        assert!(PushUrl::parse(long.as_bytes()).is_none());
    }

    #[test]
    fn the_webhook_accepts_only_http_to_listed_gateways() {
        let hook = WebhookPush::new(&["127.0.0.1:9000".to_owned(), "Push.Local".to_owned()]);
        assert!(hook.accepts(b"http://127.0.0.1:9000/x"));
        assert!(hook.accepts(b"http://push.local/x"));
        assert!(!hook.accepts(b"http://127.0.0.1:9001/x"));
        assert!(!hook.accepts(b"https://127.0.0.1:9000/x"));
        assert!(!hook.accepts(b"http://elsewhere:9000/x"));
        assert_eq!(format!("{hook:?}"), "WebhookPush { gateways: 2, .. }");
        let reg = PushRegistration::new(b"http://secret/".to_vec());
        assert!(!format!("{reg:?}").contains("secret"));
    }
}

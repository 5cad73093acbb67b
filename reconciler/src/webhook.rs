//! The Git webhook (`POST /hooks/git`): a push tells the reconciler to fetch now. Calls are
//! checked before their body is read (length, signature header), bodies are bounded in size,
//! number and time, signatures are HMAC-SHA256 checked in constant time, and at most one call
//! a second is taken.

use axum::http::{StatusCode, header};

/// The Git webhook: where calls go, the HMAC secret, when the last call was taken, and the
/// bounds on reading bodies.
#[derive(Debug)]
pub struct Hook {
    /// Signals the controller to fetch now.
    pub tx: tokio::sync::mpsc::Sender<()>,
    /// The shared secret; without it, calls are not authenticated.
    pub secret: Option<Vec<u8>>,
    /// When the last call was taken (at most one a second).
    pub last: std::sync::Mutex<Option<std::time::Instant>>,
    /// Bodies read at once; a call beyond them is answered 503 before its body is read.
    pub bodies: tokio::sync::Semaphore,
    /// Time a body may take to arrive.
    pub body_timeout: std::time::Duration,
}

impl Hook {
    /// A webhook with [`HOOK_BODIES`] bodies read at once, each within [`HOOK_BODY_TIMEOUT`].
    pub fn new(tx: tokio::sync::mpsc::Sender<()>, secret: Option<Vec<u8>>) -> Hook {
        Hook {
            tx,
            secret,
            last: std::sync::Mutex::new(None),
            bodies: tokio::sync::Semaphore::new(HOOK_BODIES),
            body_timeout: HOOK_BODY_TIMEOUT,
        }
    }
}

/// Largest webhook body accepted.
pub const HOOK_BODY_LIMIT: usize = 1 << 20;

/// Webhook bodies read at once: a Git server sends one call per push, so a few are plenty, and
/// together they hold at most this many times [`HOOK_BODY_LIMIT`].
pub const HOOK_BODIES: usize = 4;

/// Time a webhook body may take to arrive.
pub const HOOK_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a GitHub/Gitea-style `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`
/// (in constant time).
pub fn signature_valid(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")).and_then(hex) else {
        return false;
    };
    mac_valid(secret, &sig, body)
}

/// Why a webhook call is refused before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Content-Length` says the body is over [`HOOK_BODY_LIMIT`].
    TooLarge,
    /// A secret is set and `X-Hub-Signature-256` is missing or not `sha256=` and 64 hex digits.
    Unsigned,
}

impl Refusal {
    fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n"),
            Refusal::Unsigned => (
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Hub-Signature-256\n",
            ),
        }
    }
}

/// The checks a call must pass before its body is read: its announced length, and, when a
/// secret is set, a well-formed signature header. Hands back the signature to verify.
pub fn precheck(
    secret_set: bool,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Vec<u8>>, Refusal> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > HOOK_BODY_LIMIT as u64) {
        return Err(Refusal::TooLarge);
    }
    if !secret_set {
        return Ok(None);
    }
    headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(hex)
        .filter(|sig| sig.len() == 32)
        .map(Some)
        .ok_or(Refusal::Unsigned)
}

/// Checks an HMAC-SHA256 `signature` of `body` (in constant time).
fn mac_valid(secret: &[u8], signature: &[u8], body: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// `POST /hooks/git`: refuses what [`precheck`] refuses without reading the body; reads at
/// most [`HOOK_BODIES`] bodies at once (503 beyond), each up to [`HOOK_BODY_LIMIT`] within the
/// hook's body timeout (408 after it); checks the signature (when a secret is set) and a rate
/// of one call a second, then asks the controller to fetch now.
pub async fn call(
    hook: Option<&Hook>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, &'static str) {
    let Some(h) = hook else {
        return (
            StatusCode::NOT_FOUND,
            "this reconciler does not read its configuration from Git\n",
        );
    };
    let signature = match precheck(h.secret.is_some(), &headers) {
        Ok(sig) => sig,
        Err(refusal) => return refusal.answer(),
    };
    let Ok(_reading) = h.bodies.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many webhook calls at once\n",
        );
    };
    let body =
        match tokio::time::timeout(h.body_timeout, axum::body::to_bytes(body, HOOK_BODY_LIMIT))
            .await
        {
            Ok(Ok(body)) => body,
            // Over the limit, or the client went away.
            Ok(Err(_)) => return Refusal::TooLarge.answer(),
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the body took too long\n"),
        };
    if let (Some(secret), Some(sig)) = (&h.secret, &signature) {
        if !mac_valid(secret, sig, &body) {
            return Refusal::Unsigned.answer();
        }
    }
    {
        let Ok(mut last) = h.last.lock() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "webhook state poisoned\n",
            );
        };
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return (StatusCode::TOO_MANY_REQUESTS, "at most one call a second\n");
        }
        *last = Some(std::time::Instant::now());
    }
    // A pending signal already means "fetch now": nothing is lost when this one is dropped.
    let _ = h.tx.try_send(());
    (StatusCode::ACCEPTED, "fetching\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_body() {
        // `printf 'hello' | openssl dgst -sha256 -hmac secret`
        let good = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";
        assert!(signature_valid(b"secret", Some(good), b"hello"));
        assert!(!signature_valid(b"secret", Some(good), b"hello!"));
        assert!(!signature_valid(b"other", Some(good), b"hello"));
        assert!(!signature_valid(b"secret", None, b"hello"));
        assert!(!signature_valid(b"secret", Some("sha1=88aa"), b"hello"));
        assert!(!signature_valid(b"secret", Some("sha256=zz"), b"hello"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    const SIG: &str = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b";

    #[test]
    fn calls_are_refused_before_their_body_when_unsigned_malformed_or_too_long() {
        assert_eq!(precheck(true, &headers(&[])), Err(Refusal::Unsigned));
        let malformed = headers(&[("x-hub-signature-256", "sha256=88aa")]);
        assert_eq!(precheck(true, &malformed), Err(Refusal::Unsigned));
        let sha1 = headers(&[(
            "x-hub-signature-256",
            "sha1=88aab3ede8d3adf94d26ab90d3bafd4a2083070c",
        )]);
        assert_eq!(precheck(true, &sha1), Err(Refusal::Unsigned));
        let long = headers(&[("x-hub-signature-256", SIG), ("content-length", "1048577")]);
        assert_eq!(precheck(true, &long), Err(Refusal::TooLarge));
        assert_eq!(precheck(false, &long), Err(Refusal::TooLarge));
        let good = headers(&[("x-hub-signature-256", SIG), ("content-length", "5")]);
        assert!(matches!(precheck(true, &good), Ok(Some(sig)) if sig.len() == 32));
        assert_eq!(precheck(false, &headers(&[])), Ok(None));
    }
}

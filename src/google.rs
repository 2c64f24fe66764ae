//! What every Google API client of ours shares: the service-account key, the access token from
//! the key's own `token_uri`, the HTTP connector, and the retry policy for 429 / 5xx answers.
//!
//! Sheets/Drive ([`crate::sheet::gsheets`]) and BigQuery ([`crate::warehouse::bigquery`]) are
//! generated clients of the same family (google-apis-common + yup-oauth2); both take the bearer
//! token made here as a plain `String` and an overridable base URL, so tests and proxies can
//! point them at a local server (see `docs/architecture.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use google_sheets4::common::{self, Retry};
use google_sheets4::hyper::StatusCode;
use google_sheets4::hyper_util::client::legacy::connect::{Connect, HttpConnector};
use google_sheets4::{hyper_rustls, hyper_util, yup_oauth2};

use crate::error::{Error, Result};

/// Env var naming the service-account key file.
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// `s` with a trailing `/` (generated clients append paths to their base URL).
pub fn with_slash(mut s: String) -> String {
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// `~/x` under `$HOME`; anything else as is.
pub fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Read and check a service-account key file; errors name the path and `how` (the fix).
pub fn load_key(path: &Path, how: &str) -> Result<yup_oauth2::ServiceAccountKey> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::runtime(format!(
            "Google service-account key {}: {}; {how}",
            path.display(),
            crate::error::io_reason(&e)
        ))
    })?;
    parse_key(&bytes, &path.display().to_string(), how).map_err(Error::runtime)
}

/// Check the bytes of a service-account key; `label` names where they came from in the error
/// (a path, or "the base64 credentials"), and the key's content is never part of it.
pub fn parse_key(
    bytes: &[u8],
    label: &str,
    how: &str,
) -> std::result::Result<yup_oauth2::ServiceAccountKey, String> {
    let bad = |why: String| {
        format!(
            "Google service-account key {label}: {why}; download a JSON key for the service account \
             from the Google Cloud console and {how}"
        )
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        // serde's message quotes no input, only a position.
        bad(format!("not valid JSON ({e})"))
    })?;
    if let Some(t) = value.get("type").and_then(|t| t.as_str())
        && t != "service_account"
    {
        return Err(bad(format!(
            "this is a '{t}' credential, not a service-account key"
        )));
    }
    let key: yup_oauth2::ServiceAccountKey = serde_json::from_value(value)
        .map_err(|e| bad(format!("not a service-account key ({e})")))?;
    if !key.private_key.contains("-----BEGIN") {
        return Err(bad("private_key is not a PEM private key".into()));
    }
    Ok(key)
}

/// Whether every endpoint is plain `http://` (a local fake or a proxy): then no TLS is needed.
pub fn all_plain_http<'a>(urls: impl IntoIterator<Item = &'a str>) -> bool {
    urls.into_iter().all(|u| u.starts_with("http://"))
}

pub type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The HTTPS connector on the system's CA certificates.
pub fn https_connector() -> Result<Https> {
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            Error::runtime(format!(
                "no CA certificates found on this system ({e}); install the ca-certificates package"
            ))
        })?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

/// A bearer token for `scopes` from the key's `token_uri` (yup-oauth2's service-account flow).
/// `path` names the key in errors.
pub async fn access_token<C: Connect + Clone + Send + Sync + 'static>(
    key: yup_oauth2::ServiceAccountKey,
    path: &str,
    connector: C,
    timeout: Duration,
    scopes: &[&str],
) -> Result<String> {
    let client_email = key.client_email.clone();
    let token_uri = key.token_uri.clone();
    let auth_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build::<_, String>(connector);
    let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
        key,
        yup_oauth2::CustomHyperClientBuilder::from(auth_client),
    )
    .with_timeout(timeout)
    .build()
    .await
    .map_err(|e| {
        Error::runtime(format!(
            "Google service-account key {path}: its private_key is not a usable RSA private key ({e}); \
             download a new JSON key for {client_email}"
        ))
    })?;
    let token = auth.token(scopes).await.map_err(|e| {
        Error::runtime(match e {
            yup_oauth2::Error::AuthError(a) => format!(
                "Google refused the service-account key {path} for {client_email} ({a}); the key may be \
                 deleted, expired or disabled: create a new key for the service account"
            ),
            other => format!(
                "cannot get a Google access token from {token_uri}: {}",
                error_chain(&other)
            ),
        })
    })?;
    token.token().map(str::to_string).ok_or_else(|| {
        Error::runtime(format!(
            "the Google token endpoint {token_uri} returned no access token"
        ))
    })
}

/// Retries 429 / 5xx / connection failures with exponential backoff; remembers the last status.
///
/// Requests that must not run twice (creating a spreadsheet, starting a job without a job id)
/// are retried only on answers that say they were not processed (429, 503), never after a
/// connection failure or another 5xx, which may come after the change was made.
pub struct Retrier {
    max: u32,
    base: Duration,
    pub attempts: u32,
    pub last_status: Option<StatusCode>,
    pub idempotent: bool,
}

impl Retrier {
    /// For requests that can safely run twice (reads, value updates, sharing): `max` retries
    /// (so `max + 1` attempts in all), the first wait `base`, doubled on each retry.
    pub fn new(max: u32, base: Duration) -> Self {
        Retrier {
            max,
            base,
            attempts: 0,
            last_status: None,
            idempotent: true,
        }
    }

    /// For requests that must not run twice.
    pub fn once(max: u32, base: Duration) -> Self {
        Retrier {
            idempotent: false,
            ..Retrier::new(max, base)
        }
    }

    fn may_retry(&self, s: StatusCode) -> bool {
        if self.idempotent {
            retryable(s)
        } else {
            s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The wait before the next attempt, or None when the retries are used up.
    pub fn next_wait(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempts >= self.max {
            return None;
        }
        let wait = self.base * 2u32.saturating_pow(self.attempts);
        self.attempts += 1;
        Some(retry_after.map_or(wait, |ra| ra.min(Duration::from_secs(30)).max(wait)))
    }
}

/// 429 and 5xx: the request was not served and may be tried again.
pub fn retryable(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// The `Retry-After` header in seconds.
pub fn retry_after(headers: &google_sheets4::hyper::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl common::Delegate for Retrier {
    fn http_error(&mut self, _err: &hyper_util::client::legacy::Error) -> Retry {
        self.last_status = None;
        if !self.idempotent {
            return Retry::Abort;
        }
        match self.next_wait(None) {
            Some(d) => Retry::After(d),
            None => Retry::Abort,
        }
    }

    fn http_failure(
        &mut self,
        response: &common::Response,
        _err: Option<&serde_json::Value>,
    ) -> Retry {
        let status = response.status();
        self.last_status = Some(status);
        if self.may_retry(status)
            && let Some(d) = self.next_wait(retry_after(response.headers()))
        {
            return Retry::After(d);
        }
        Retry::Abort
    }
}

/// What went wrong in a call, with the status when known.
pub struct CallFailure {
    pub status: Option<StatusCode>,
    pub message: String,
    pub attempts: u32,
    /// False for a request that was not retried because it must not run twice.
    pub idempotent: bool,
}

/// `{"error": {"code": N, "message": "..."}}`, Google's error body.
pub fn google_message(v: &serde_json::Value) -> Option<(Option<u16>, String)> {
    let e = v.get("error")?;
    let code = e.get("code").and_then(|c| c.as_u64()).map(|c| c as u16);
    let msg = e
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string());
    Some((code, msg))
}

/// A failed call of a generated client, with what the retrier saw.
pub fn call_failure(err: common::Error, r: &Retrier) -> CallFailure {
    let (status, message) = match err {
        common::Error::BadRequest(v) => match google_message(&v) {
            Some((code, msg)) => (
                r.last_status
                    .or(code.and_then(|c| StatusCode::from_u16(c).ok())),
                msg,
            ),
            None => (r.last_status, v.to_string()),
        },
        common::Error::Failure(resp) => (
            Some(resp.status()),
            resp.status().canonical_reason().unwrap_or("").into(),
        ),
        common::Error::HttpError(e) => (None, format!("connection failed: {}", error_chain(&e))),
        common::Error::JsonDecodeError(body, e) => (
            None,
            format!(
                "unexpected answer ({e}): {}",
                body.chars().take(200).collect::<String>()
            ),
        ),
        other => (r.last_status, other.to_string()),
    };
    CallFailure {
        status,
        message,
        attempts: r.attempts + 1,
        idempotent: r.idempotent,
    }
}

/// An error and its sources on one line, without repeating a source already in the text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_connector_builds_without_panicking() {
        // Needs the system's CA certificates; without them the error says so.
        if let Err(e) = https_connector() {
            assert!(
                e.to_string()
                    .contains("install the ca-certificates package"),
                "{e}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_stops() {
        let mut r = Retrier::new(2, Duration::from_millis(10));
        assert_eq!(r.next_wait(None), Some(Duration::from_millis(10)));
        assert_eq!(
            r.next_wait(Some(Duration::from_millis(1))),
            Some(Duration::from_millis(20))
        );
        assert_eq!(r.next_wait(None), None);
        let mut r = Retrier::new(1, Duration::from_millis(10));
        assert_eq!(
            r.next_wait(Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(30)),
            "a server's Retry-After is capped"
        );
    }
}

//! Google Sheets and Drive through a service account (docs/compatibility.md#commands).
//!
//! * Credentials: the JSON key named by `GOOGLE_APPLICATION_CREDENTIALS`, default
//!   `~/.config/gspread/service_account.json`. The access token comes from the key's own
//!   `token_uri` (yup-oauth2's service-account flow), once per command.
//! * The Sheets v4 calls go through google-sheets4; the Drive v3 `permissions.create` call used
//!   for sharing is a plain HTTP request on the same hyper client. Both base URLs can be
//!   overridden (`XNGIN_SHEETS_API_URL`, `XNGIN_DRIVE_API_URL`) for tests and proxies.
//! * 429 and 5xx answers (and connection failures) are retried with exponential backoff a few
//!   times; 403 says to share the sheet with the service account's `client_email`; 404 says the
//!   sheet was not found.

use std::path::{Path, PathBuf};
use std::time::Duration;

use google_sheets4::api::{
    AddSheetRequest, BatchUpdateSpreadsheetRequest, CellData, CellFormat, DeleteSheetRequest,
    GridProperties, GridRange, RepeatCellRequest, Request, SheetProperties, Spreadsheet,
    SpreadsheetProperties, TextFormat, ValueRange,
};
use google_sheets4::common;
use google_sheets4::hyper::StatusCode;
use google_sheets4::hyper_util::client::legacy::connect::{Connect, HttpConnector};
use google_sheets4::{Sheets, hyper_util, yup_oauth2};
use http_body_util::BodyExt;

use crate::error::{Error, Result};
use crate::google::{
    self, CallFailure, Retrier, call_failure, error_chain, expand_tilde, google_message,
    retry_after, retryable, with_slash,
};

pub use crate::google::CREDENTIALS_ENV;
/// Env var overriding the Sheets API base URL (default `https://sheets.googleapis.com/`).
pub const SHEETS_URL_ENV: &str = "XNGIN_SHEETS_API_URL";
/// Env var overriding the Drive API base URL (default `https://www.googleapis.com/`).
pub const DRIVE_URL_ENV: &str = "XNGIN_DRIVE_API_URL";
/// The key file gspread uses when `GOOGLE_APPLICATION_CREDENTIALS` is not set.
pub const DEFAULT_KEY_PATH: &str = "~/.config/gspread/service_account.json";

const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive",
];

/// Where and how to talk to Google.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// The service-account key file.
    pub key_path: PathBuf,
    /// Sheets API base URL, ending in `/`.
    pub sheets_base: String,
    /// Drive API base URL, ending in `/`.
    pub drive_base: String,
    /// Retries after a 429 / 5xx / connection failure (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// The first wait; doubled on each retry.
    pub backoff: Duration,
    /// Timeout of each request.
    pub timeout: Duration,
}

impl GoogleConfig {
    /// The configuration from the environment (see the module docs); nothing is read yet.
    pub fn from_env() -> GoogleConfig {
        let key_path = match std::env::var(CREDENTIALS_ENV) {
            Ok(p) if !p.trim().is_empty() => expand_tilde(p.trim()),
            _ => expand_tilde(DEFAULT_KEY_PATH),
        };
        let env_url = |name: &str, default: &str| {
            with_slash(
                std::env::var(name)
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| default.into()),
            )
        };
        GoogleConfig {
            key_path,
            sheets_base: env_url(SHEETS_URL_ENV, "https://sheets.googleapis.com/"),
            drive_base: env_url(DRIVE_URL_ENV, "https://www.googleapis.com/"),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
        }
    }

    /// The same, with the given key file and base URLs (trailing slashes added).
    pub fn new(key_path: impl Into<PathBuf>, sheets_base: &str, drive_base: &str) -> GoogleConfig {
        GoogleConfig {
            key_path: key_path.into(),
            sheets_base: with_slash(sheets_base.to_string()),
            drive_base: with_slash(drive_base.to_string()),
            ..GoogleConfig::from_env()
        }
    }
}

/// Read and check a service-account key file; errors name the path and the fix.
pub fn load_key(path: &Path) -> Result<yup_oauth2::ServiceAccountKey> {
    google::load_key(
        path,
        &format!(
            "set {CREDENTIALS_ENV} to the JSON key file of a Google service account \
             (default {DEFAULT_KEY_PATH})"
        ),
    )
}

/// The spreadsheet id in a Google Sheets URL (`https://docs.google.com/spreadsheets/d/ID/...`).
pub fn spreadsheet_id(url: &str) -> Result<String> {
    let re =
        regex::Regex::new(r"^https://docs\.google\.com/spreadsheets/(?:u/\d+/)?d/([A-Za-z0-9_-]+)")
            .expect("static regex");
    re.captures(url.trim()).map(|c| c[1].to_string()).ok_or_else(|| {
        Error::usage(format!(
            "'{url}' is not a Google Sheets URL; expected https://docs.google.com/spreadsheets/d/ID/..."
        ))
    })
}

/// The browser URL of a spreadsheet.
pub fn spreadsheet_url(id: &str) -> String {
    format!("https://docs.google.com/spreadsheets/d/{id}")
}

/// `'Sheet name'` in A1 notation (quotes doubled).
pub fn a1_sheet(title: &str) -> String {
    format!("'{}'", title.replace('\'', "''"))
}

/// Column letters for a 1-based column number (1 → A, 27 → AA).
pub fn column_letters(mut n: usize) -> String {
    let mut s = Vec::new();
    while n > 0 {
        let r = (n - 1) % 26;
        s.push(b'A' + r as u8);
        n = (n - 1) / 26;
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

/// Percent-encode a path segment (google-apis-rs #560: `{range}` is not encoded upstream).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'!' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An open session: an access token and the clients.
pub struct Session<C: Connect + Clone + Send + Sync + 'static> {
    hub: Sheets<C>,
    client: common::Client<C>,
    token: String,
    client_email: String,
    cfg: GoogleConfig,
}

impl<C: Connect + Clone + Send + Sync + 'static> Session<C> {
    /// Turn a failed call into a one-line error: `what` names the operation and the sheet.
    fn explain(&self, what: &str, f: CallFailure) -> Error {
        let email = &self.client_email;
        let msg = f.message.trim_end_matches('.');
        Error::runtime(match f.status {
            Some(StatusCode::FORBIDDEN) => format!(
                "{what}: Google denied access (HTTP 403: {msg}); share the spreadsheet with the service \
                 account's client_email {email} (and check that the Sheets and Drive APIs are enabled \
                 for its project)"
            ),
            Some(StatusCode::NOT_FOUND) => format!(
                "{what}: not found (HTTP 404: {msg}); check the spreadsheet URL, and that it is shared \
                 with {email}"
            ),
            Some(StatusCode::UNAUTHORIZED) => format!(
                "{what}: Google rejected the access token (HTTP 401: {msg}); check the service-account key {}",
                self.cfg.key_path.display()
            ),
            Some(s) if retryable(s) && !f.idempotent && f.attempts == 1 => format!(
                "{what}: Google failed (HTTP {}: {msg}); not retried, since the change may have been \
                 made: check the spreadsheet, then try again",
                s.as_u16()
            ),
            Some(s) if retryable(s) => format!(
                "{what}: Google kept failing (HTTP {}: {msg}) after {} attempts; try again later",
                s.as_u16(),
                f.attempts
            ),
            Some(s) => format!(
                "{what}: Google refused the request (HTTP {}: {msg})",
                s.as_u16()
            ),
            None if f.attempts > 1 => format!("{what}: {msg} (after {} attempts)", f.attempts),
            None => format!("{what}: {msg}"),
        })
    }

    /// The service account's e-mail address (the one to share sheets with).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    async fn timed<T>(&self, fut: impl Future<Output = common::Result<T>>) -> common::Result<T> {
        match tokio::time::timeout(self.cfg.timeout * (self.cfg.max_retries + 1), fut).await {
            Ok(r) => r,
            Err(_) => Err(common::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.cfg.timeout),
            ))),
        }
    }

    /// All cells of a worksheet as strings (row 0 = header), trailing empty cells trimmed.
    pub async fn read_values(
        &self,
        spreadsheet_id: &str,
        worksheet: &str,
    ) -> Result<Vec<Vec<String>>> {
        let what = format!("reading worksheet '{worksheet}' of spreadsheet {spreadsheet_id}");
        let range = encode_segment(&a1_sheet(worksheet));
        let mut r = Retrier::new(self.cfg.max_retries, self.cfg.backoff);
        let res = self
            .timed(
                self.hub
                    .spreadsheets()
                    .values_get(spreadsheet_id, &range)
                    .delegate(&mut r)
                    .doit(),
            )
            .await;
        let vr = match res {
            Ok((_, vr)) => vr,
            Err(e) => {
                let f = call_failure(e, &r);
                if f.status == Some(StatusCode::BAD_REQUEST)
                    && f.message.contains("Unable to parse range")
                {
                    return Err(self.missing_worksheet(spreadsheet_id, worksheet).await);
                }
                return Err(self.explain(&what, f));
            }
        };
        Ok(vr
            .values
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect())
    }

    /// The error for a worksheet that does not exist, listing the ones that do.
    async fn missing_worksheet(&self, spreadsheet_id: &str, worksheet: &str) -> Error {
        let mut r = Retrier::new(self.cfg.max_retries, self.cfg.backoff);
        let titles = match self
            .timed(
                self.hub
                    .spreadsheets()
                    .get(spreadsheet_id)
                    .param("fields", "sheets.properties.title")
                    .delegate(&mut r)
                    .doit(),
            )
            .await
        {
            Ok((_, s)) => s
                .sheets
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s.properties.and_then(|p| p.title))
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let known = if titles.is_empty() {
            String::new()
        } else {
            format!("; its worksheets are: {}", titles.join(", "))
        };
        Error::runtime(format!(
            "spreadsheet {spreadsheet_id} has no worksheet named '{worksheet}'{known}; pass the worksheet \
             (tab) name as WORKSHEET"
        ))
    }

    /// Create a spreadsheet titled `title` holding one worksheet `worksheet` with `rows`
    /// (row 0 = header, in bold). Returns the spreadsheet id.
    pub async fn create_spreadsheet(
        &self,
        title: &str,
        worksheet: &str,
        rows: &[Vec<String>],
    ) -> Result<String> {
        let what = format!("creating spreadsheet '{title}'");
        let ncols = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let nrows = rows.len().max(1);
        // 1. The spreadsheet, with its default worksheet.
        let req = Spreadsheet {
            properties: Some(SpreadsheetProperties {
                title: Some(title.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = Retrier::once(self.cfg.max_retries, self.cfg.backoff);
        let created = self
            .timed(self.hub.spreadsheets().create(req).delegate(&mut r).doit())
            .await
            .map_err(|e| self.explain(&what, call_failure(e, &r)))?
            .1;
        let id = created.spreadsheet_id.ok_or_else(|| {
            Error::runtime(format!("{what}: Google's answer has no spreadsheetId"))
        })?;
        let default_ids: Vec<i32> = created
            .sheets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.properties.and_then(|p| p.sheet_id))
            .collect();

        // 2. The worksheet, sized to the rows.
        let what = format!("adding worksheet '{worksheet}' to spreadsheet {id}");
        let add = BatchUpdateSpreadsheetRequest {
            requests: Some(vec![Request {
                add_sheet: Some(AddSheetRequest {
                    properties: Some(SheetProperties {
                        title: Some(worksheet.to_string()),
                        grid_properties: Some(GridProperties {
                            row_count: Some(nrows as i32),
                            column_count: Some(ncols as i32),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut r = Retrier::once(self.cfg.max_retries, self.cfg.backoff);
        let added = self
            .timed(
                self.hub
                    .spreadsheets()
                    .batch_update(add, &id)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
            .map_err(|e| self.explain(&what, call_failure(e, &r)))?
            .1;
        let sheet_id = added
            .replies
            .unwrap_or_default()
            .into_iter()
            .find_map(|rep| {
                rep.add_sheet
                    .and_then(|a| a.properties)
                    .and_then(|p| p.sheet_id)
            })
            .ok_or_else(|| Error::runtime(format!("{what}: Google's answer has no sheetId")))?;

        // 3. The values.
        let range_a1 = format!(
            "{}!A1:{}{}",
            a1_sheet(worksheet),
            column_letters(ncols),
            nrows
        );
        let what = format!("writing {range_a1} of spreadsheet {id}");
        let values = ValueRange {
            range: Some(range_a1.clone()),
            major_dimension: Some("ROWS".into()),
            values: Some(
                rows.iter()
                    .map(|row| {
                        row.iter()
                            .map(|c| serde_json::Value::String(c.clone()))
                            .collect()
                    })
                    .collect(),
            ),
        };
        let mut r = Retrier::new(self.cfg.max_retries, self.cfg.backoff);
        self.timed(
            self.hub
                .spreadsheets()
                .values_update(values, &id, &encode_segment(&range_a1))
                .value_input_option("RAW")
                .delegate(&mut r)
                .doit(),
        )
        .await
        .map_err(|e| self.explain(&what, call_failure(e, &r)))?;

        // 4. Bold header, and the default worksheet removed.
        let what = format!("formatting spreadsheet {id}");
        let mut requests = vec![Request {
            repeat_cell: Some(RepeatCellRequest {
                range: Some(GridRange {
                    sheet_id: Some(sheet_id),
                    start_row_index: Some(0),
                    end_row_index: Some(1),
                    ..Default::default()
                }),
                cell: Some(CellData {
                    user_entered_format: Some(CellFormat {
                        text_format: Some(TextFormat {
                            bold: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                fields: Some(common::FieldMask::new(&[
                    "userEnteredFormat.textFormat.bold",
                ])),
            }),
            ..Default::default()
        }];
        for sid in default_ids.into_iter().filter(|&s| s != sheet_id) {
            requests.push(Request {
                delete_sheet: Some(DeleteSheetRequest {
                    sheet_id: Some(sid),
                }),
                ..Default::default()
            });
        }
        let req = BatchUpdateSpreadsheetRequest {
            requests: Some(requests),
            ..Default::default()
        };
        let mut r = Retrier::once(self.cfg.max_retries, self.cfg.backoff);
        self.timed(
            self.hub
                .spreadsheets()
                .batch_update(req, &id)
                .delegate(&mut r)
                .doit(),
        )
        .await
        .map_err(|e| self.explain(&what, call_failure(e, &r)))?;
        Ok(id)
    }

    /// Share a spreadsheet (any Drive file) with `email` as writer (Drive v3 permissions.create).
    pub async fn share(&self, file_id: &str, email: &str) -> Result<()> {
        let what = format!("sharing spreadsheet {file_id} with {email}");
        let url = format!(
            "{}drive/v3/files/{}/permissions?supportsAllDrives=true&sendNotificationEmail=true",
            self.cfg.drive_base,
            encode_segment(file_id)
        );
        let body = serde_json::json!({"type": "user", "role": "writer", "emailAddress": email})
            .to_string();
        let mut r = Retrier::new(self.cfg.max_retries, self.cfg.backoff);
        loop {
            let req = google_sheets4::hyper::Request::post(&url)
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/json")
                .header("user-agent", concat!("xngin/", env!("CARGO_PKG_VERSION")))
                .body(
                    http_body_util::Full::new(google_sheets4::hyper::body::Bytes::from(
                        body.clone(),
                    ))
                    .map_err(|never| match never {})
                    .boxed(),
                )
                .map_err(|e| Error::runtime(format!("{what}: bad request URL {url}: {e}")))?;
            let sent = tokio::time::timeout(self.cfg.timeout, self.client.request(req)).await;
            let resp = match sent {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => match r.next_wait(None) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    None => {
                        return Err(self.explain(
                            &what,
                            CallFailure {
                                status: None,
                                message: format!("connection failed: {}", error_chain(&e)),
                                attempts: r.attempts + 1,
                                idempotent: r.idempotent,
                            },
                        ));
                    }
                },
                Err(_) => {
                    return Err(Error::runtime(format!(
                        "{what}: no answer from {} within {:?}",
                        self.cfg.drive_base, self.cfg.timeout
                    )));
                }
            };
            let status = resp.status();
            let wait = retry_after(resp.headers());
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                return Ok(());
            }
            if retryable(status)
                && let Some(d) = r.next_wait(wait)
            {
                tokio::time::sleep(d).await;
                continue;
            }
            let text = String::from_utf8_lossy(&bytes).to_string();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| google_message(&v))
                .map(|(_, m)| m)
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(self.explain(
                &what,
                CallFailure {
                    status: Some(status),
                    message,
                    attempts: r.attempts + 1,
                    idempotent: r.idempotent,
                },
            ));
        }
    }
}

/// Whether every endpoint is plain `http://` (a local fake or a proxy): then no TLS is needed.
fn plain_http(cfg: &GoogleConfig, key: &yup_oauth2::ServiceAccountKey) -> bool {
    google::all_plain_http([
        cfg.sheets_base.as_str(),
        cfg.drive_base.as_str(),
        key.token_uri.as_str(),
    ])
}

async fn open_with<C: Connect + Clone + Send + Sync + 'static>(
    cfg: &GoogleConfig,
    key: yup_oauth2::ServiceAccountKey,
    connector: C,
) -> Result<Session<C>> {
    let path = cfg.key_path.display().to_string();
    let client_email = key.client_email.clone();
    let token = google::access_token(key, &path, connector.clone(), cfg.timeout, &SCOPES).await?;
    let client: common::Client<C> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let mut hub = Sheets::new(client.clone(), token.clone());
    hub.base_url(cfg.sheets_base.clone());
    hub.root_url(cfg.sheets_base.clone());
    hub.user_agent(concat!("xngin/", env!("CARGO_PKG_VERSION")).to_string());
    Ok(Session {
        hub,
        client,
        token,
        client_email,
        cfg: cfg.clone(),
    })
}

/// Run `$body` with `$s` bound to a session on the right connector.
macro_rules! with_session {
    ($cfg:expr, |$s:ident| $body:expr) => {{
        let cfg: &GoogleConfig = $cfg;
        let key = load_key(&cfg.key_path)?;
        if plain_http(cfg, &key) {
            let $s = open_with(cfg, key, HttpConnector::new()).await?;
            $body
        } else {
            let $s = open_with(cfg, key, google::https_connector()?).await?;
            $body
        }
    }};
}

/// The cells of worksheet `worksheet` of the spreadsheet at `url`.
pub async fn read_google_values(
    cfg: &GoogleConfig,
    url: &str,
    worksheet: &str,
) -> Result<Vec<Vec<String>>> {
    let id = spreadsheet_id(url)?;
    with_session!(cfg, |s| s.read_values(&id, worksheet).await)
}

/// Create a spreadsheet titled `title` with worksheet `worksheet` holding `rows` (row 0 bold),
/// share it with each of `share_with` as writer (calling `on_shared(email)` after each), and
/// return its URL.
pub async fn create_google_sheet(
    cfg: &GoogleConfig,
    title: &str,
    worksheet: &str,
    rows: &[Vec<String>],
    share_with: &[String],
    on_shared: &mut (dyn FnMut(&str) -> Result<()> + Send),
) -> Result<String> {
    with_session!(cfg, |s| {
        let id = s.create_spreadsheet(title, worksheet, rows).await?;
        for email in share_with {
            s.share(&id, email).await?;
            on_shared(email)?;
        }
        Ok(spreadsheet_url(&id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_letters_and_encoding() {
        assert_eq!(
            spreadsheet_id("https://docs.google.com/spreadsheets/d/1AbC-_9/edit#gid=0").unwrap(),
            "1AbC-_9"
        );
        assert!(spreadsheet_id("https://example.com/spreadsheets/d/1").is_err());
        assert_eq!(column_letters(1), "A");
        assert_eq!(column_letters(8), "H");
        assert_eq!(column_letters(26), "Z");
        assert_eq!(column_letters(27), "AA");
        assert_eq!(column_letters(703), "AAA");
        assert_eq!(a1_sheet("it's"), "'it''s'");
        assert_eq!(
            encode_segment("'a b#?/%'!A1:H2"),
            "%27a%20b%23%3F%2F%25%27!A1:H2"
        );
    }

    #[test]
    fn key_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = load_key(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("Google service-account key {}: no such file or directory; set GOOGLE_APPLICATION_CREDENTIALS", missing.display())), "{e}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = load_key(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "Google service-account key {}: not valid JSON",
                bad.display()
            )),
            "{e}"
        );
        std::fs::write(&bad, r#"{"type":"authorized_user","client_id":"x"}"#).unwrap();
        let e = load_key(&bad).unwrap_err().to_string();
        assert!(
            e.contains("this is a 'authorized_user' credential, not a service-account key"),
            "{e}"
        );
        std::fs::write(
            &bad,
            r#"{"type":"service_account","client_email":"a@b","token_uri":"http://x"}"#,
        )
        .unwrap();
        let e = load_key(&bad).unwrap_err().to_string();
        assert!(
            e.contains("not a service-account key (missing field `private_key`)"),
            "{e}"
        );
    }
}

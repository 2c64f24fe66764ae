//! Google Sheets / Drive through the real clients (google-sheets4, yup-oauth2's service-account
//! flow, the Drive permissions call) against a local fake of the endpoints: the exact requests
//! (titles, ranges, values, the bold format, sharing) and the handling of 403, 404, 429, 5xx and
//! refused keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use base64::Engine;
use serde_json::{Value as Json, json};
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use xngin::sheet::gsheets::{self, GoogleConfig};

const EMAIL: &str = "xngin-test@xngin-test.iam.gserviceaccount.com";
const SHEET_ID: &str = "1AbCdEf_gh-123";
const HEADER: [&str; 8] = [
    "column_name",
    "data_type",
    "column_group",
    "description",
    "is_unique_id",
    "is_strata",
    "is_filter",
    "is_metric",
];

struct Fake {
    server: MockServer,
    _dir: tempfile::TempDir,
    key: PathBuf,
}

impl Fake {
    /// A fake server answering the token endpoint, and a key file whose token_uri points at it.
    async fn start() -> Fake {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let key = write_key(dir.path(), &format!("{}/token", server.uri()), None);
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "test-token", "expires_in": 3600, "token_type": "Bearer"
            })))
            .mount(&server)
            .await;
        Fake {
            server,
            _dir: dir,
            key,
        }
    }

    fn cfg(&self) -> GoogleConfig {
        let mut cfg = GoogleConfig::new(&self.key, &self.server.uri(), &self.server.uri());
        cfg.backoff = Duration::from_millis(5);
        cfg.max_retries = 3;
        cfg.timeout = Duration::from_secs(10);
        cfg
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }

    /// The API requests (not the token exchange), as `METHOD path?query`.
    async fn api_calls(&self) -> Vec<String> {
        self.requests()
            .await
            .iter()
            .filter(|r| r.url.path() != "/token")
            .map(|r| {
                let q = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{} {}{q}", r.method, r.url.path())
            })
            .collect()
    }
}

fn write_key(dir: &Path, token_uri: &str, private_key: Option<&str>) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/google/test_service_account.json");
    let mut key: Json = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    key["token_uri"] = json!(token_uri);
    if let Some(pk) = private_key {
        key["private_key"] = json!(pk);
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let p = dir.join(format!(
        "key-{}.json",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&p, serde_json::to_vec_pretty(&key).unwrap()).unwrap();
    p
}

fn sheet_url(id: &str) -> String {
    format!("https://docs.google.com/spreadsheets/d/{id}/edit#gid=0")
}

fn values_body(rows: &[&[&str]]) -> Json {
    json!({"range": "'x'!A1:Z100", "majorDimension": "ROWS", "values": rows})
}

fn google_error(code: u16, status: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({"error": {"code": code, "message": message, "status": status}}))
}

// ---------------------------------------------------------------------------------------------
// Reading

#[tokio::test]
async fn reads_a_worksheet_with_the_service_account_token() {
    let fake = Fake::start().await;
    let worksheet = "People #2/it's";
    Mock::given(method("GET"))
        .and(path(format!(
            "/v4/spreadsheets/{SHEET_ID}/values/%27People%20%232%2Fit%27%27s%27"
        )))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(values_body(&[
            &[
                "column_name",
                "data_type",
                "description",
                "is_unique_id",
                "is_strata",
                "is_filter",
                "is_metric",
                "Owner",
            ],
            &["id", "bigint", "Unique id", "TRUE"],
            &[
                "gender",
                "character varying",
                "Gender",
                "FALSE",
                "TRUE",
                "TRUE",
                "",
                "ana",
            ],
            &[
                "income",
                "Double Precision",
                "Income, USD",
                "",
                "",
                "TRUE",
                "TRUE",
            ],
        ])))
        .expect(1)
        .mount(&fake.server)
        .await;
    let ws = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), worksheet)
        .await
        .unwrap();
    assert_eq!(ws.table_name, worksheet);
    assert_eq!(ws.unique_id().unwrap().column_name, "id");
    let gender = ws.column("gender").unwrap();
    assert!(gender.is_strata && gender.is_filter && !gender.is_metric);
    assert_eq!(gender.extra["Owner"], "ana");
    // Short rows (Google drops trailing empty cells) read as empty cells.
    assert_eq!(ws.column("id").unwrap().extra["Owner"], "");
    let income = ws.column("income").unwrap();
    assert_eq!(income.data_type, xngin::datatype::DataType::DoublePrecision);
    assert_eq!(income.description, "Income, USD");
    assert!(income.is_metric && income.is_filter);

    // One token exchange: a JWT signed with the key, for the key's client_email and token_uri.
    let reqs = fake.requests().await;
    let token_reqs: Vec<&Request> = reqs.iter().filter(|r| r.url.path() == "/token").collect();
    assert_eq!(token_reqs.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&token_reqs[0].body)
        .into_owned()
        .collect();
    assert_eq!(
        form[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )
    );
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Json = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["aud"], format!("{}/token", fake.server.uri()));
    assert!(
        claims["scope"]
            .as_str()
            .unwrap()
            .contains("https://www.googleapis.com/auth/spreadsheets")
    );
    assert_eq!(
        fake.api_calls().await,
        [format!(
            "GET /v4/spreadsheets/{SHEET_ID}/values/%27People%20%232%2Fit%27%27s%27?alt=json"
        )]
    );
}

#[tokio::test]
async fn sheet_problems_from_google_are_reported_with_the_url() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v4/spreadsheets/{SHEET_ID}/values/%27t%27")))
        .respond_with(ResponseTemplate::new(200).set_body_json(values_body(&[
            &HEADER,
            &["id", "integer", "", "", "TRUE"],
            &["email", "varchar", "", "", "TRUE", "maybe"],
        ])))
        .mount(&fake.server)
        .await;
    let url = sheet_url(SHEET_ID);
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &url, "t")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let lines = err.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with(&format!(
        "{url}: row 3, column data_type: 'varchar' is not a valid DataType"
    )));
    assert!(lines[1].starts_with(&format!(
        "{url}: row 3, column is_strata: Value 'maybe' cannot be converted"
    )));
    assert_eq!(
        lines[2],
        format!(
            "{url}: column is_unique_id: There are 2 columns marked as the unique ID, but there should only be \
             one: id (row 2), email (row 3)"
        )
    );
}

#[tokio::test]
async fn forbidden_says_to_share_with_the_client_email() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .respond_with(google_error(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), "t")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        format!(
            "reading worksheet 't' of spreadsheet {SHEET_ID}: Google denied access (HTTP 403: The caller does not \
             have permission); share the spreadsheet with the service account's client_email {EMAIL} (and check \
             that the Sheets and Drive APIs are enabled for its project)"
        )
    );
}

#[tokio::test]
async fn not_found_is_plain() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .respond_with(google_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url("missing"), "t")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading worksheet 't' of spreadsheet missing: not found (HTTP 404: Requested entity was not found); \
             check the spreadsheet URL, and that it is shared with {EMAIL}"
        )
    );
}

#[tokio::test]
async fn missing_worksheet_lists_the_worksheets() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v4/spreadsheets/{SHEET_ID}/values/%27nope%27"
        )))
        .respond_with(google_error(
            400,
            "INVALID_ARGUMENT",
            "Unable to parse range: 'nope'",
        ))
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v4/spreadsheets/{SHEET_ID}")))
        .and(query_param("fields", "sheets.properties.title"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sheets": [{"properties": {"title": "people"}}, {"properties": {"title": "schools"}}]
        })))
        .mount(&fake.server)
        .await;
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), "nope")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "spreadsheet {SHEET_ID} has no worksheet named 'nope'; its worksheets are: people, schools; pass the \
             worksheet (tab) name as WORKSHEET"
        )
    );
}

#[tokio::test]
async fn rate_limits_are_retried_then_succeed() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .respond_with(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(values_body(&[&HEADER, &["id", "integer", "", "", "1"]])),
        )
        .with_priority(2)
        .mount(&fake.server)
        .await;
    let ws = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), "t")
        .await
        .unwrap();
    assert_eq!(ws.columns.len(), 1);
    assert_eq!(fake.api_calls().await.len(), 3);
}

#[tokio::test]
async fn server_errors_give_up_after_the_retries() {
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .respond_with(google_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ))
        .expect(4)
        .mount(&fake.server)
        .await;
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), "t")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "reading worksheet 't' of spreadsheet {SHEET_ID}: Google kept failing (HTTP 503: The service is \
             currently unavailable) after 4 attempts; try again later"
        )
    );
    // A 500 without a JSON body is handled the same way.
    let fake = Fake::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(4)
        .mount(&fake.server)
        .await;
    let err = xngin::sheet::read_sheet_with(&fake.cfg(), &sheet_url(SHEET_ID), "t")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Google kept failing (HTTP 500: Internal Server Error) after 4 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn refused_and_broken_keys() {
    // The token endpoint refuses the key (revoked, expired, wrong signature).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "Invalid JWT Signature."
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), &format!("{}/token", server.uri()), None);
    let cfg = GoogleConfig::new(&key, &server.uri(), &server.uri());
    let err = xngin::sheet::read_sheet_with(&cfg, &sheet_url(SHEET_ID), "t")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Google refused the service-account key {} for {EMAIL} (invalid_grant: Invalid JWT Signature.); the \
             key may be deleted, expired or disabled: create a new key for the service account",
            key.display()
        )
    );
    // No API call was attempted.
    assert!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.url.path() == "/token")
    );

    // A private key that is not a usable RSA key.
    let bad = write_key(
        dir.path(),
        "http://127.0.0.1:9/token-other",
        Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    );
    let cfg = GoogleConfig::new(&bad, &server.uri(), &server.uri());
    let err = xngin::sheet::read_sheet_with(&cfg, &sheet_url(SHEET_ID), "t")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "Google service-account key {}: its private_key is not a usable RSA private key (Couldn't initialize \
             signer); download a new JSON key for {EMAIL}",
            bad.display()
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Creating and sharing

async fn mount_creation(fake: &Fake) {
    Mock::given(method("POST"))
        .and(path("/v4/spreadsheets"))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "NEWID",
            "properties": {"title": "Participants"},
            "sheets": [{"properties": {"sheetId": 0, "title": "Sheet1"}}]
        })))
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v4/spreadsheets/NEWID:batchUpdate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "NEWID",
            "replies": [{"addSheet": {"properties": {"sheetId": 777, "title": "people"}}}]
        })))
        .mount(&fake.server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v4/spreadsheets/NEWID/values/%27people%27!A1:H4"))
        .and(query_param("valueInputOption", "RAW"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "NEWID", "updatedRange": "people!A1:H4", "updatedRows": 4
        })))
        .mount(&fake.server)
        .await;
}

fn body(r: &Request) -> Json {
    serde_json::from_slice(&r.body).unwrap()
}

fn rows() -> Vec<Vec<String>> {
    let mut rows = vec![HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for r in [
        ["id", "integer", "", "", "true", "", "", ""],
        ["gender", "character varying", "", "", "", "", "", ""],
        ["income", "double precision", "", "", "", "", "", ""],
    ] {
        rows.push(r.iter().map(|s| s.to_string()).collect());
    }
    rows
}

#[tokio::test]
async fn creates_formats_and_shares_a_sheet() {
    let fake = Fake::start().await;
    mount_creation(&fake).await;
    Mock::given(method("POST"))
        .and(path("/drive/v3/files/NEWID/permissions"))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "perm-1", "role": "writer"})),
        )
        .expect(2)
        .mount(&fake.server)
        .await;
    let mut shared = Vec::new();
    let mut on_shared = |e: &str| {
        shared.push(e.to_string());
        Ok(())
    };
    let url = gsheets::create_google_sheet(
        &fake.cfg(),
        "Participants",
        "people",
        &rows(),
        &["a@example.org".into(), "b@example.org".into()],
        &mut on_shared,
    )
    .await
    .unwrap();
    assert_eq!(url, "https://docs.google.com/spreadsheets/d/NEWID");
    assert_eq!(shared, ["a@example.org", "b@example.org"]);

    let reqs: Vec<Request> = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() != "/token")
        .collect();
    let calls: Vec<String> = fake.api_calls().await;
    assert_eq!(
        calls,
        [
            "POST /v4/spreadsheets?alt=json",
            "POST /v4/spreadsheets/NEWID:batchUpdate?alt=json",
            "PUT /v4/spreadsheets/NEWID/values/%27people%27!A1:H4?valueInputOption=RAW&alt=json",
            "POST /v4/spreadsheets/NEWID:batchUpdate?alt=json",
            "POST /drive/v3/files/NEWID/permissions?supportsAllDrives=true&sendNotificationEmail=true",
            "POST /drive/v3/files/NEWID/permissions?supportsAllDrives=true&sendNotificationEmail=true",
        ]
    );
    assert_eq!(
        body(&reqs[0]),
        json!({"properties": {"title": "Participants"}})
    );
    assert_eq!(
        body(&reqs[1]),
        json!({"requests": [{"addSheet": {"properties": {
            "title": "people", "gridProperties": {"rowCount": 4, "columnCount": 8}
        }}}]})
    );
    assert_eq!(
        body(&reqs[2]),
        json!({"range": "'people'!A1:H4", "majorDimension": "ROWS", "values": rows()})
    );
    assert_eq!(
        body(&reqs[3]),
        json!({"requests": [
            {"repeatCell": {
                "range": {"sheetId": 777, "startRowIndex": 0, "endRowIndex": 1},
                "cell": {"userEnteredFormat": {"textFormat": {"bold": true}}},
                "fields": "userEnteredFormat.textFormat.bold"
            }},
            {"deleteSheet": {"sheetId": 0}}
        ]})
    );
    assert_eq!(
        body(&reqs[4]),
        json!({"type": "user", "role": "writer", "emailAddress": "a@example.org"})
    );
    assert_eq!(
        body(&reqs[5]),
        json!({"type": "user", "role": "writer", "emailAddress": "b@example.org"})
    );
}

#[tokio::test]
async fn sharing_retries_then_reports_a_refusal() {
    let fake = Fake::start().await;
    mount_creation(&fake).await;
    Mock::given(method("POST"))
        .and(path("/drive/v3/files/NEWID/permissions"))
        .respond_with(google_error(500, "INTERNAL", "Backend Error"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fake.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/drive/v3/files/NEWID/permissions"))
        .respond_with(google_error(
            403,
            "PERMISSION_DENIED",
            "Insufficient Permission: Request had insufficient authentication scopes.",
        ))
        .with_priority(2)
        .mount(&fake.server)
        .await;
    let mut on_shared = |_: &str| -> xngin::Result<()> { panic!("nothing was shared") };
    let err = gsheets::create_google_sheet(
        &fake.cfg(),
        "P",
        "people",
        &rows(),
        &["a@example.org".into()],
        &mut on_shared,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "sharing spreadsheet NEWID with a@example.org: Google denied access (HTTP 403: Insufficient Permission: \
             Request had insufficient authentication scopes); share the spreadsheet with the service account's \
             client_email {EMAIL} (and check that the Sheets and Drive APIs are enabled for its project)"
        )
    );
    let shares = fake
        .api_calls()
        .await
        .iter()
        .filter(|c| c.contains("/permissions"))
        .count();
    assert_eq!(shares, 2);
}

// ---------------------------------------------------------------------------------------------
// Through the CLI, configured by the environment

fn xngin(fake: &Fake) -> Command {
    let mut c = Command::cargo_bin("xngin").unwrap();
    c.env("GOOGLE_APPLICATION_CREDENTIALS", &fake.key)
        .env("XNGIN_SHEETS_API_URL", fake.server.uri())
        .env("XNGIN_DRIVE_API_URL", fake.server.uri())
        .env_remove("XNGIN_SETTINGS");
    c
}

#[tokio::test]
async fn cli_bootstrap_create_gsheet_and_parse_google_url() {
    let fake = Fake::start().await;
    mount_creation(&fake).await;
    Mock::given(method("POST"))
        .and(path("/drive/v3/files/NEWID/permissions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "p"})))
        .mount(&fake.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let dsn = format!("sqlite:///{}", db.display());
    let wh = xngin::warehouse::Warehouse::connect_with(
        &xngin::dsn::Dsn::parse(&dsn).unwrap(),
        xngin::warehouse::ConnectOptions {
            create_sqlite: true,
        },
    )
    .await
    .unwrap();
    wh.execute(
        "CREATE TABLE people (income REAL, gender TEXT, id INTEGER PRIMARY KEY)",
        &[],
    )
    .await
    .unwrap();
    wh.close().await;

    let out = xngin(&fake)
        .args([
            "bootstrap-spreadsheet",
            &dsn,
            "people",
            "--create-gsheet",
            "--participant-type",
            "Participants",
        ])
        .args([
            "--share-email",
            "a@example.org",
            "--share-email",
            "b@example.org",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "# Sheet shared with a@example.org\n# Sheet shared with b@example.org\nhttps://docs.google.com/spreadsheets/d/NEWID\n"
    );
    let reqs: Vec<Request> = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() != "/token")
        .collect();
    assert_eq!(
        body(&reqs[0]),
        json!({"properties": {"title": "Participants"}})
    );
    assert_eq!(body(&reqs[2])["values"], json!(rows()));

    // Reading it back through the CLI with a Google URL.
    Mock::given(method("GET"))
        .and(path("/v4/spreadsheets/NEWID/values/%27people%27"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"values": rows()})))
        .mount(&fake.server)
        .await;
    let out = xngin(&fake)
        .args([
            "parse-config-spreadsheet",
            "https://docs.google.com/spreadsheets/d/NEWID",
            "people",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ws: xngin::sheet::ConfigWorksheet = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = ws.columns.iter().map(|c| c.column_name.as_str()).collect();
    assert_eq!(names, ["id", "gender", "income"]);

    // A missing key file names the path and the variable.
    let out = xngin(&fake)
        .env("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
        .args([
            "parse-config-spreadsheet",
            "https://docs.google.com/spreadsheets/d/NEWID",
            "people",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "xngin: Google service-account key /nonexistent/key.json: no such file or directory; set \
         GOOGLE_APPLICATION_CREDENTIALS to the JSON key file of a Google service account (default \
         ~/.config/gspread/service_account.json)\n"
    );
}

#[tokio::test]
async fn creation_is_not_repeated_after_an_ambiguous_failure() {
    // A 500 on spreadsheets.create may come after the spreadsheet was made: no retry.
    let fake = Fake::start().await;
    Mock::given(method("POST"))
        .and(path("/v4/spreadsheets"))
        .respond_with(google_error(500, "INTERNAL", "Internal error encountered."))
        .expect(1)
        .mount(&fake.server)
        .await;
    let mut on_shared = |_: &str| -> xngin::Result<()> { Ok(()) };
    let err =
        gsheets::create_google_sheet(&fake.cfg(), "P", "people", &rows(), &[], &mut on_shared)
            .await
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "creating spreadsheet 'P': Google failed (HTTP 500: Internal error encountered); not retried, since the \
         change may have been made: check the spreadsheet, then try again"
    );

    // A 429 means it was not processed: retried, then the whole creation goes through.
    let fake = Fake::start().await;
    Mock::given(method("POST"))
        .and(path("/v4/spreadsheets"))
        .respond_with(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fake.server)
        .await;
    mount_creation(&fake).await;
    let url =
        gsheets::create_google_sheet(&fake.cfg(), "P", "people", &rows(), &[], &mut on_shared)
            .await
            .unwrap();
    assert_eq!(url, "https://docs.google.com/spreadsheets/d/NEWID");
    let calls = fake.api_calls().await;
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.as_str() == "POST /v4/spreadsheets?alt=json")
            .count(),
        2
    );
    assert_eq!(calls.len(), 5);
}

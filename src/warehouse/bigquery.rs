//! BigQuery through its REST API v2 (google-bigquery2, the same generated-client family and
//! yup-oauth2 service-account flow as our Sheets client; see [`crate::google`]).
//!
//! * Target: `bigquery://PROJECT/DATASET` with optional `?credentials_path=FILE` or
//!   `?credentials_base64=KEY`; without either, the key file named by
//!   `GOOGLE_APPLICATION_CREDENTIALS`. A base64 key is a secret: it is never displayed.
//! * API root: `XNGIN_BIGQUERY_API_URL` (default `https://bigquery.googleapis.com/`); requests go
//!   to `{root}bigquery/v2/...` and uploads to `{root}upload/bigquery/v2/...`.
//! * Queries run as jobs (`jobs.query` with a request id, so a retried call does not start a
//!   second job), are polled with `jobs.getQueryResults` until complete and read page by page.
//!   Values are bound as positional query parameters (`?`), never spliced into the SQL.
//! * Loads are load jobs of newline-delimited JSON from a temporary file: one job is atomic,
//!   so a failed load leaves the destination table as it was.
//! * 429 and 5xx answers are retried with exponential backoff; every error names the job.

use std::path::PathBuf;
use std::time::Duration;

use google_bigquery2::api::{
    DataFormatOptions, ErrorProto, Job, JobConfiguration, JobConfigurationLoad, QueryParameter,
    QueryParameterType, QueryParameterValue, QueryRequest, TableFieldSchema, TableReference,
    TableRow, TableSchema,
};
use google_bigquery2::hyper::StatusCode;
use google_bigquery2::{Bigquery, common, hyper_util};

use super::dialect::{AtomicReplace, BulkLoad, SqlDialect};
use super::{Rows, Value};
use crate::datatype::DataType;
use crate::dsn::{Dsn, Engine};
use crate::error::{Error, Result};
use crate::google::{self, Https, Retrier, call_failure};

/// Env var overriding the BigQuery API root.
pub const API_URL_ENV: &str = "XNGIN_BIGQUERY_API_URL";
const DEFAULT_API_URL: &str = "https://bigquery.googleapis.com/";
const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/bigquery"];

/// Where the service-account key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    Env,
    /// A key file.
    File(PathBuf),
    /// The key's JSON, base64-encoded (a secret: never displayed).
    Base64(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Env => write!(f, "Env"),
            Credentials::File(p) => write!(f, "File({})", p.display()),
            Credentials::Base64(_) => write!(f, "Base64(***)"),
        }
    }
}

/// A BigQuery project and dataset, and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryTarget {
    pub project: String,
    pub dataset: String,
    pub credentials: Credentials,
}

impl std::fmt::Display for BigQueryTarget {
    /// `bigquery://PROJECT/DATASET`, with a credentials path but never a base64 key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bigquery://{}/{}", self.project, self.dataset)?;
        match &self.credentials {
            Credentials::Env => Ok(()),
            Credentials::File(p) => write!(f, "?credentials_path={}", p.display()),
            Credentials::Base64(_) => write!(f, "?credentials_base64=***"),
        }
    }
}

/// BigQuery project ids: 6–30 lowercase letters, digits and hyphens (older ones may carry a
/// `domain:` prefix); dataset ids: letters, digits and underscores, at most 1024.
fn check_ids(project: &str, dataset: &str) -> std::result::Result<(), String> {
    let project_ok = !project.is_empty()
        && project.len() <= 63
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | ':' | '.'));
    if !project_ok {
        return Err(format!(
            "'{project}' is not a BigQuery project id (lowercase letters, digits and hyphens)"
        ));
    }
    let dataset_ok = !dataset.is_empty()
        && dataset.len() <= 1024
        && dataset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !dataset_ok {
        return Err(format!(
            "'{dataset}' is not a BigQuery dataset id (letters, digits and underscores)"
        ));
    }
    Ok(())
}

impl BigQueryTarget {
    /// Parse `bigquery://PROJECT/DATASET[?credentials_path=…|credentials_base64=…]`. Errors are
    /// usage errors and never quote a base64 key.
    pub fn parse(input: &str) -> Result<BigQueryTarget> {
        let usage = |why: &str| {
            Error::usage(format!(
                "invalid BigQuery DSN: {why}; expected bigquery://PROJECT/DATASET \
                 (optionally ?credentials_path=FILE or ?credentials_base64=KEY)"
            ))
        };
        let rest = input
            .strip_prefix("bigquery://")
            .ok_or_else(|| usage("it does not start with bigquery://"))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (project, dataset) = path
            .trim_end_matches('/')
            .split_once('/')
            .ok_or_else(|| usage("the dataset is missing"))?;
        if dataset.contains('/') {
            return Err(usage("the path has more than PROJECT/DATASET"));
        }
        check_ids(project, dataset).map_err(|e| usage(&e))?;
        let mut credentials = Credentials::Env;
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                let next = match k.as_ref() {
                    "credentials_path" if !v.is_empty() => {
                        Credentials::File(google::expand_tilde(&v))
                    }
                    "credentials_base64" if !v.is_empty() => Credentials::Base64(v.into_owned()),
                    "credentials_path" | "credentials_base64" => {
                        return Err(usage(&format!("{k} is empty")));
                    }
                    other => {
                        return Err(usage(&format!(
                            "unknown parameter '{other}' (known: credentials_path, credentials_base64)"
                        )));
                    }
                };
                if credentials != Credentials::Env {
                    return Err(usage(
                        "give one of credentials_path and credentials_base64, once",
                    ));
                }
                credentials = next;
            }
        }
        Ok(BigQueryTarget {
            project: project.to_string(),
            dataset: dataset.to_string(),
            credentials,
        })
    }

    /// The base64 key, for the secret registry (so that no output ever shows it).
    pub fn secret(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Base64(k) => Some(k),
            _ => None,
        }
    }

    /// Read and check the service-account key. A key that is missing or unreadable is a runtime
    /// failure (exit 1); one that is there but malformed is invalid input (exit 3).
    pub fn load_key(&self) -> Result<google_bigquery2::yup_oauth2::ServiceAccountKey> {
        let how = "give the JSON key of a service account as ?credentials_path=FILE or \
                   ?credentials_base64=KEY in the DSN (in settings: the dwh's credentials), or \
                   set GOOGLE_APPLICATION_CREDENTIALS to the key file";
        let (bytes, label) = match &self.credentials {
            Credentials::Base64(b64) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(b64.trim()))
                    .map_err(|_| {
                        Error::invalid(format!(
                            "the BigQuery credentials_base64 value is not valid base64; {how}"
                        ))
                    })?;
                (bytes, "given as credentials_base64".to_string())
            }
            Credentials::File(p) => (read_key_file(p, how)?, p.display().to_string()),
            Credentials::Env => {
                let p = match std::env::var(google::CREDENTIALS_ENV) {
                    Ok(p) if !p.trim().is_empty() => google::expand_tilde(p.trim()),
                    _ => {
                        return Err(Error::runtime(format!(
                            "no BigQuery credentials: {} is not set; {how}",
                            google::CREDENTIALS_ENV
                        )));
                    }
                };
                (read_key_file(&p, how)?, p.display().to_string())
            }
        };
        google::parse_key(&bytes, &label, how).map_err(Error::invalid)
    }
}

fn read_key_file(p: &std::path::Path, how: &str) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| {
        Error::runtime(format!(
            "Google service-account key {}: {}; {how}",
            p.display(),
            crate::error::io_reason(&e)
        ))
    })
}

/// The API root from the environment, ending in `/`.
pub fn api_root_from_env() -> String {
    google::with_slash(
        std::env::var(API_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.into()),
    )
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retries after a 429 / 5xx / connection failure.
    pub max_retries: u32,
    /// The first wait; doubled on each retry.
    pub backoff: Duration,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// How long a query may run before we give up waiting for it.
    pub job_timeout: Duration,
    /// Rows per result page asked of the API (the server may send fewer).
    pub page_rows: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
            job_timeout: Duration::from_secs(6 * 3600),
            page_rows: 10_000,
        }
    }
}

/// A connected BigQuery dataset.
#[derive(Clone)]
pub struct BigQuery {
    hub: Bigquery<Https>,
    target: BigQueryTarget,
    policy: Policy,
}

impl std::fmt::Debug for BigQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BigQuery({})", self.target)
    }
}

/// The HTTPS connector; for an all-`http://` setup (a local emulator or proxy) on a machine
/// without CA certificates, one with an empty root store, which can still speak plain HTTP.
fn connector(plain: bool) -> Result<Https> {
    match google::https_connector() {
        Ok(c) => Ok(c),
        Err(_) if plain => {
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            Ok(google_bigquery2::hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build())
        }
        Err(e) => Err(e),
    }
}

/// A column of a load: its name and BigQuery type (`INT64`, `STRING`, `FLOAT64`, `BOOL`,
/// `DATE`, `DATETIME`, `TIMESTAMP`, `NUMERIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadColumn {
    pub name: String,
    pub bq_type: String,
    pub required: bool,
}

/// What a load job does to an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail if the table has rows (`WRITE_EMPTY`).
    Empty,
    /// Replace table and schema atomically (`WRITE_TRUNCATE`).
    Truncate,
    /// Add rows (`WRITE_APPEND`).
    Append,
}

impl BigQuery {
    /// Authenticate with the target's key against the API root of the environment.
    pub async fn connect(target: &BigQueryTarget) -> Result<BigQuery> {
        Self::connect_to(target, &api_root_from_env(), Policy::default()).await
    }

    /// The same against a given API root (tests, proxies).
    pub async fn connect_to(
        target: &BigQueryTarget,
        api_root: &str,
        policy: Policy,
    ) -> Result<BigQuery> {
        let root = google::with_slash(api_root.to_string());
        let key = target.load_key()?;
        let label = match &target.credentials {
            Credentials::File(p) => p.display().to_string(),
            Credentials::Base64(_) => "given as credentials_base64".into(),
            Credentials::Env => std::env::var(google::CREDENTIALS_ENV).unwrap_or_default(),
        };
        let plain = google::all_plain_http([root.as_str(), key.token_uri.as_str()]);
        let conn = connector(plain)?;
        let token =
            google::access_token(key, &label, conn.clone(), policy.timeout, &SCOPES).await?;
        let client: common::Client<Https> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(conn);
        let mut hub = Bigquery::new(client, token);
        hub.root_url(root.clone());
        hub.base_url(format!("{root}bigquery/v2/"));
        hub.user_agent(concat!("xngin/", env!("CARGO_PKG_VERSION")).to_string());
        Ok(BigQuery {
            hub,
            target: target.clone(),
            policy,
        })
    }

    pub fn target(&self) -> &BigQueryTarget {
        &self.target
    }

    fn retrier(&self) -> Retrier {
        Retrier::new(self.policy.max_retries, self.policy.backoff)
    }

    /// A failed API call as a one-line error naming `what` (the job, the table).
    fn explain(&self, what: &str, f: google::CallFailure) -> Error {
        let msg = f.message.trim_end_matches('.');
        Error::runtime(match f.status {
            Some(StatusCode::FORBIDDEN) => format!(
                "{what}: BigQuery denied access (HTTP 403: {msg}); grant the service account the \
                 BigQuery Job User role on project {} and Data Editor on dataset {}",
                self.target.project, self.target.dataset
            ),
            Some(StatusCode::NOT_FOUND) => format!(
                "{what}: not found (HTTP 404: {msg}); check the project and dataset in {}",
                self.target
            ),
            Some(StatusCode::UNAUTHORIZED) => format!(
                "{what}: BigQuery rejected the access token (HTTP 401: {msg}); check the service-account key"
            ),
            Some(s) if google::retryable(s) => format!(
                "{what}: BigQuery kept failing (HTTP {}: {msg}) after {} attempts; try again later",
                s.as_u16(),
                f.attempts
            ),
            Some(s) => format!(
                "{what}: BigQuery refused the request (HTTP {}: {msg})",
                s.as_u16()
            ),
            None if f.attempts > 1 => format!("{what}: {msg} (after {} attempts)", f.attempts),
            None => format!("{what}: {msg}"),
        })
    }

    async fn timed<T>(&self, fut: impl Future<Output = common::Result<T>>) -> common::Result<T> {
        let limit = self.policy.timeout * (self.policy.max_retries + 1);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(common::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {limit:?}"),
            ))),
        }
    }

    /// `project.dataset.table`, quoted for BigQuery SQL.
    pub fn qualified(&self, table: &str) -> String {
        quote_ident(&format!(
            "{}.{}.{}",
            self.target.project, self.target.dataset, table
        ))
    }

    /// Run a query and read every row.
    pub async fn fetch_all(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        let mut out = Rows::default();
        let columns = self
            .fetch_each(sql, params, |row| {
                out.rows.push(row);
                Ok(())
            })
            .await?;
        out.columns = columns;
        Ok(out)
    }

    /// Run a statement (DDL, DML, a script); returns the number of rows affected (0 for DDL).
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let done = self.run_query(sql, params).await?;
        Ok(done.affected)
    }

    /// Run a query and hand each row to `f` page by page, never holding more than one page.
    /// Returns the column names.
    pub async fn fetch_each<F>(&self, sql: &str, params: &[Value], mut f: F) -> Result<Vec<String>>
    where
        F: FnMut(Vec<Value>) -> Result<()>,
    {
        let mut done = self.run_query(sql, params).await?;
        let columns: Vec<String> = done.schema.iter().map(|c| c.0.clone()).collect();
        loop {
            for row in done.rows.drain(..) {
                f(decode_row(&done.schema, row, &done.job_id)?)?;
            }
            let Some(token) = done.page_token.take() else {
                break;
            };
            let page = self
                .results_page(&done.job_id, &done.location, Some(&token))
                .await?;
            done.rows = page.rows.unwrap_or_default();
            done.page_token = page.page_token;
        }
        Ok(columns)
    }

    /// Start a query job and wait for it; the first page of rows comes with the answer.
    async fn run_query(&self, sql: &str, params: &[Value]) -> Result<Finished> {
        super::echo(sql, params);
        let request_id = uuid::Uuid::new_v4().to_string();
        let req = QueryRequest {
            query: Some(sql.to_string()),
            use_legacy_sql: Some(false),
            parameter_mode: (!params.is_empty()).then(|| "POSITIONAL".to_string()),
            query_parameters: (!params.is_empty())
                .then(|| params.iter().map(query_parameter).collect()),
            request_id: Some(request_id.clone()),
            timeout_ms: Some(10_000),
            max_results: Some(self.policy.page_rows),
            format_options: Some(DataFormatOptions {
                use_int64_timestamp: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = self.retrier();
        let what = format!("BigQuery query (request {request_id})");
        let (_, resp) = self
            .timed(
                self.hub
                    .jobs()
                    .query(req, &self.target.project)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
            .map_err(|e| self.explain(&what, call_failure(e, &r)))?;
        let job_id = resp
            .job_reference
            .as_ref()
            .and_then(|j| j.job_id.clone())
            .unwrap_or_else(|| request_id.clone());
        let location = resp.job_reference.as_ref().and_then(|j| j.location.clone());
        check_errors(&job_id, resp.errors.as_deref())?;
        let mut finished = Finished {
            job_id,
            location,
            schema: schema_of(resp.schema.as_ref()),
            rows: resp.rows.unwrap_or_default(),
            page_token: resp.page_token,
            affected: resp.num_dml_affected_rows.unwrap_or(0).max(0) as u64,
        };
        if resp.job_complete != Some(true) {
            // Poll until done; getQueryResults waits server-side up to its timeout each call.
            let started = std::time::Instant::now();
            loop {
                let page = self
                    .results_page(&finished.job_id, &finished.location, None)
                    .await?;
                if page.job_complete == Some(true) {
                    finished.schema = schema_of(page.schema.as_ref());
                    finished.rows = page.rows.unwrap_or_default();
                    finished.page_token = page.page_token;
                    finished.affected = page.num_dml_affected_rows.unwrap_or(0).max(0) as u64;
                    break;
                }
                if started.elapsed() > self.policy.job_timeout {
                    return Err(Error::runtime(format!(
                        "BigQuery job {} did not finish within {:?}; check it in the BigQuery console \
                         (it may still be running) and cancel it there if needed",
                        finished.job_id, self.policy.job_timeout
                    )));
                }
            }
        }
        Ok(finished)
    }

    /// One `jobs.getQueryResults` call: completion, and a page of rows from `page_token`.
    async fn results_page(
        &self,
        job_id: &str,
        location: &Option<String>,
        page_token: Option<&str>,
    ) -> Result<google_bigquery2::api::GetQueryResultsResponse> {
        let mut r = self.retrier();
        let what = format!("BigQuery job {job_id}");
        let mut call = self
            .hub
            .jobs()
            .get_query_results(&self.target.project, job_id)
            .timeout_ms(10_000)
            .max_results(self.policy.page_rows)
            .format_options_use_int64_timestamp(true);
        if let Some(l) = location {
            call = call.location(l);
        }
        if let Some(t) = page_token {
            call = call.page_token(t);
        }
        let (_, page) = self
            .timed(call.delegate(&mut r).doit())
            .await
            .map_err(|e| self.explain(&what, call_failure(e, &r)))?;
        check_errors(job_id, page.errors.as_deref())?;
        Ok(page)
    }

    /// Does `table` exist in the dataset?
    pub async fn table_exists(&self, table: &str) -> Result<bool> {
        let mut r = self.retrier();
        let what = format!("BigQuery table {}.{table}", self.target.dataset);
        match self
            .timed(
                self.hub
                    .tables()
                    .get(&self.target.project, &self.target.dataset, table)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = call_failure(e, &r);
                if f.status == Some(StatusCode::NOT_FOUND) {
                    Ok(false)
                } else {
                    Err(self.explain(&what, f))
                }
            }
        }
    }

    /// The columns of `table` in order: name, type (`INTEGER`, `STRING`, ...) and whether it
    /// is REQUIRED; `None` when there is no such table.
    pub async fn table_fields(&self, table: &str) -> Result<Option<Vec<(String, String, bool)>>> {
        let mut r = self.retrier();
        let what = format!("BigQuery table {}.{table}", self.target.dataset);
        match self
            .timed(
                self.hub
                    .tables()
                    .get(&self.target.project, &self.target.dataset, table)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
        {
            Ok((_, t)) => Ok(Some(
                t.schema
                    .and_then(|s| s.fields)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| {
                        (
                            f.name.unwrap_or_default(),
                            f.type_.unwrap_or_default().to_ascii_uppercase(),
                            f.mode.as_deref() == Some("REQUIRED"),
                        )
                    })
                    .collect(),
            )),
            Err(e) => {
                let f = call_failure(e, &r);
                if f.status == Some(StatusCode::NOT_FOUND) {
                    Ok(None)
                } else {
                    Err(self.explain(&what, f))
                }
            }
        }
    }

    /// The names of the dataset's tables and views, read page by page.
    pub async fn list_tables(&self) -> Result<Vec<String>> {
        let what = format!(
            "listing the tables of BigQuery dataset {}",
            self.target.dataset
        );
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut r = self.retrier();
            let mut call = self
                .hub
                .tables()
                .list(&self.target.project, &self.target.dataset)
                .max_results(1000);
            if let Some(t) = &token {
                call = call.page_token(t);
            }
            let (_, list) = self
                .timed(call.delegate(&mut r).doit())
                .await
                .map_err(|e| self.explain(&what, call_failure(e, &r)))?;
            names.extend(
                list.tables
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| t.table_reference.and_then(|r| r.table_id)),
            );
            match list.next_page_token {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Does the dataset exist (and can we see it)?
    pub async fn dataset_exists(&self) -> Result<bool> {
        let mut r = self.retrier();
        let what = format!("BigQuery dataset {}", self.target.dataset);
        match self
            .timed(
                self.hub
                    .datasets()
                    .get(&self.target.project, &self.target.dataset)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = call_failure(e, &r);
                if f.status == Some(StatusCode::NOT_FOUND) {
                    Ok(false)
                } else {
                    Err(self.explain(&what, f))
                }
            }
        }
    }

    /// Create the dataset unless it exists (the testing warehouse's loader does this, as the
    /// other warehouses' loaders create a schema).
    pub async fn create_dataset_if_missing(&self) -> Result<()> {
        let ds = quote_ident(&format!("{}.{}", self.target.project, self.target.dataset));
        self.execute(&format!("CREATE SCHEMA IF NOT EXISTS {ds}"), &[])
            .await
            .map(|_| ())
    }

    /// Load newline-delimited JSON rows from `file` into `table` with one load job. On
    /// BigQuery a load job is atomic; the emulator used in tests empties a `WRITE_TRUNCATE`
    /// destination even when the job fails, so callers that replace a table load into a staging
    /// table first and swap it in with one statement. Returns the rows loaded.
    pub async fn load_ndjson(
        &self,
        table: &str,
        columns: &[LoadColumn],
        file: std::fs::File,
        mode: WriteMode,
    ) -> Result<u64> {
        let job_id = format!("xngin_load_{}", uuid::Uuid::new_v4().simple());
        let job = Job {
            job_reference: Some(google_bigquery2::api::JobReference {
                project_id: Some(self.target.project.clone()),
                job_id: Some(job_id.clone()),
                ..Default::default()
            }),
            configuration: Some(JobConfiguration {
                load: Some(JobConfigurationLoad {
                    destination_table: Some(TableReference {
                        project_id: Some(self.target.project.clone()),
                        dataset_id: Some(self.target.dataset.clone()),
                        table_id: Some(table.to_string()),
                    }),
                    source_format: Some("NEWLINE_DELIMITED_JSON".into()),
                    create_disposition: Some("CREATE_IF_NEEDED".into()),
                    write_disposition: Some(
                        match mode {
                            WriteMode::Empty => "WRITE_EMPTY",
                            WriteMode::Truncate => "WRITE_TRUNCATE",
                            WriteMode::Append => "WRITE_APPEND",
                        }
                        .into(),
                    ),
                    schema: Some(TableSchema {
                        fields: Some(
                            columns
                                .iter()
                                .map(|c| TableFieldSchema {
                                    name: Some(c.name.clone()),
                                    type_: Some(c.bq_type.clone()),
                                    mode: Some(
                                        if c.required { "REQUIRED" } else { "NULLABLE" }.into(),
                                    ),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    }),
                    max_bad_records: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A job with our own id is idempotent: a retried insert finds the same job.
        let mut r = self.retrier();
        let what = format!(
            "BigQuery load job {job_id} into {}.{table}",
            self.target.dataset
        );
        let mime: mime::Mime = "application/octet-stream"
            .parse()
            .expect("static mime type");
        let (_, started) = self
            .hub
            .jobs()
            .insert(job, &self.target.project)
            .delegate(&mut r)
            .upload(file, mime)
            .await
            .map_err(|e| self.explain(&what, call_failure(e, &r)))?;
        let location = started
            .job_reference
            .as_ref()
            .and_then(|j| j.location.clone());
        let mut job = started;
        let begun = std::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let status = job.status.as_ref();
            if status.and_then(|s| s.state.as_deref()) == Some("DONE") {
                if let Some(e) = status.and_then(|s| s.error_result.as_ref()) {
                    let detail = status
                        .and_then(|s| s.errors.as_ref())
                        .and_then(|v| v.iter().find(|x| x.message != e.message))
                        .and_then(|x| x.message.clone());
                    return Err(Error::runtime(format!(
                        "{what} failed: {}{}; the table was not changed",
                        error_text(e),
                        detail.map(|d| format!(" ({d})")).unwrap_or_default()
                    )));
                }
                let rows = job
                    .statistics
                    .as_ref()
                    .and_then(|s| s.load.as_ref())
                    .and_then(|l| l.output_rows)
                    .unwrap_or(0);
                return Ok(rows.max(0) as u64);
            }
            if begun.elapsed() > self.policy.job_timeout {
                return Err(Error::runtime(format!(
                    "{what} did not finish within {:?}; check it in the BigQuery console",
                    self.policy.job_timeout
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            let mut r = self.retrier();
            let mut call = self.hub.jobs().get(&self.target.project, &job_id);
            if let Some(l) = &location {
                call = call.location(l);
            }
            job = self
                .timed(call.delegate(&mut r).doit())
                .await
                .map_err(|e| self.explain(&what, call_failure(e, &r)))?
                .1;
        }
    }

    /// Have BigQuery delete `table` by itself at `at` (`tables.patch` of its expiration time,
    /// an API call, not a query).
    pub async fn expire_table(&self, table: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let mut r = self.retrier();
        let what = format!(
            "setting the expiration of BigQuery table {}.{table}",
            self.target.dataset
        );
        let patch = google_bigquery2::api::Table {
            expiration_time: Some(at.timestamp_millis()),
            ..Default::default()
        };
        self.timed(
            self.hub
                .tables()
                .patch(patch, &self.target.project, &self.target.dataset, table)
                .delegate(&mut r)
                .doit(),
        )
        .await
        .map(|_| ())
        .map_err(|e| self.explain(&what, call_failure(e, &r)))
    }

    /// Delete `table` if it exists.
    pub async fn drop_table(&self, table: &str) -> Result<()> {
        let mut r = self.retrier();
        let what = format!("deleting BigQuery table {}.{table}", self.target.dataset);
        match self
            .timed(
                self.hub
                    .tables()
                    .delete(&self.target.project, &self.target.dataset, table)
                    .delegate(&mut r)
                    .doit(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = call_failure(e, &r);
                if f.status == Some(StatusCode::NOT_FOUND) {
                    Ok(())
                } else {
                    Err(self.explain(&what, f))
                }
            }
        }
    }
}

/// A finished query: its schema, first page and where to read on.
struct Finished {
    job_id: String,
    location: Option<String>,
    schema: Vec<(String, String, bool)>,
    rows: Vec<TableRow>,
    page_token: Option<String>,
    affected: u64,
}

fn error_text(e: &ErrorProto) -> String {
    match (&e.reason, &e.message) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (None, Some(m)) => m.clone(),
        (Some(r), None) => r.clone(),
        (None, None) => "unknown error".into(),
    }
}

fn check_errors(job_id: &str, errors: Option<&[ErrorProto]>) -> Result<()> {
    match errors.and_then(|e| e.first()) {
        Some(e) => Err(Error::runtime(format!(
            "BigQuery job {job_id} failed: {}",
            error_text(e)
        ))),
        None => Ok(()),
    }
}

/// Column name, type, and whether it is REPEATED.
fn schema_of(schema: Option<&TableSchema>) -> Vec<(String, String, bool)> {
    schema
        .and_then(|s| s.fields.as_ref())
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    (
                        f.name.clone().unwrap_or_default(),
                        f.type_.clone().unwrap_or_default().to_ascii_uppercase(),
                        f.mode.as_deref() == Some("REPEATED"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// BigQuery's SQL dialect (GoogleSQL): backtick quoting, `?` positional parameters, no
/// transactions (atomic replace through a staging table and `CREATE OR REPLACE TABLE ... AS
/// SELECT`), load jobs for bulk loads, tables named `project.dataset.table` in full.
#[derive(Debug, Clone, Copy)]
pub struct BigQuerySql;

impl SqlDialect for BigQuerySql {
    fn engine(&self) -> Engine {
        Engine::BigQuery
    }

    fn product(&self) -> &'static str {
        "BigQuery"
    }

    fn quote_ident(&self, ident: &str) -> String {
        quote_ident(ident)
    }

    /// `project.dataset.table` in one quoted path: the dataset is the DSN's unless `schema`
    /// names another.
    fn qualified_in(&self, dsn: &Dsn, schema: Option<&str>, table: &str) -> String {
        match &dsn.bigquery {
            Some(t) => quote_ident(&format!(
                "{}.{}.{table}",
                t.project,
                schema.unwrap_or(&t.dataset)
            )),
            None => self.qualified(schema, table),
        }
    }

    fn ddl_type(&self, t: DataType) -> &'static str {
        use DataType::*;
        match t {
            Boolean => "BOOL",
            CharacterVarying | Uuid | Unsupported => "STRING",
            Integer | Bigint => "INT64",
            DoublePrecision => "FLOAT64",
            Numeric => "NUMERIC",
            Date => "DATE",
            TimestampWithoutTimeZone => "DATETIME",
            TimestampWithTimeZone => "TIMESTAMP",
            JsonbUnsupported | JsonUnsupported => "JSON",
        }
    }

    fn long_text_type(&self) -> &'static str {
        "STRING"
    }

    /// BigQuery keys are `PRIMARY KEY (...) NOT ENFORCED` only (a hint for the optimizer, not
    /// a constraint), and the emulator cannot parse that form: no key is declared. Uniqueness is
    /// kept by the writers themselves (an assignment write deletes or refuses an experiment's
    /// rows before inserting them, in one transaction).
    fn primary_key_clause(&self, _cols: &[String]) -> Option<String> {
        None
    }

    /// Two runs writing to a new table both create it; the second finds it there (the
    /// experiment guard inside the write's transaction then decides).
    fn create_table_racing(&self, ddl: String) -> String {
        match ddl.strip_prefix("CREATE TABLE ") {
            Some(rest) => format!("CREATE TABLE IF NOT EXISTS {rest}"),
            None => ddl,
        }
    }

    /// The dataset is part of the DSN.
    fn has_schemas(&self) -> bool {
        false
    }

    fn no_schemas_reason(&self) -> String {
        "the dataset is the DSN's".into()
    }

    fn has_transactions(&self) -> bool {
        false
    }

    fn transactional_ddl(&self) -> bool {
        false
    }

    fn max_bound_params(&self) -> usize {
        10_000
    }

    fn bulk_load(&self) -> BulkLoad {
        BulkLoad::LoadJob
    }

    fn atomic_replace(&self) -> AtomicReplace {
        AtomicReplace::CreateOrReplaceFromStaging
    }

    /// A multi-statement transaction: BigQuery commits all of it or, when any statement fails,
    /// rolls all of it back.
    fn transaction_script(&self, statements: &[String]) -> Option<String> {
        let mut s = String::from("BEGIN TRANSACTION;\n");
        for st in statements {
            s.push_str(st);
            s.push_str(";\n");
        }
        s.push_str("COMMIT TRANSACTION;");
        Some(s)
    }

    /// `SELECT IF(..., ERROR(...), 0)`: works on BigQuery and on the emulator, which parses
    /// neither `IF ... THEN RAISE` nor `ASSERT` in scripts. The message is a string literal of
    /// ours (quotes and backslashes escaped all the same).
    fn fail_if_any_sql(&self, count_sql: &str, message: &str) -> Option<String> {
        let lit = message.replace('\\', "\\\\").replace('\'', "\\'");
        Some(format!("SELECT IF(({count_sql}) > 0, ERROR('{lit}'), 0)"))
    }

    fn text_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS STRING)")
    }

    fn float_cast(&self, expr: &str) -> String {
        format!("CAST({expr} AS FLOAT64)")
    }

    fn bool_to_float(&self, expr: &str) -> String {
        self.float_cast(&format!("CAST({expr} AS INT64)"))
    }

    fn lower_matches_regex(&self, col: &str, p: &str) -> Option<String> {
        Some(format!("REGEXP_CONTAINS(LOWER({col}), {p})"))
    }

    fn md5_hex(&self, expr: &str) -> Option<String> {
        Some(format!("TO_HEX(MD5({expr}))"))
    }

    /// Positional parameters: the query's one parameter (the seed) comes first in its text,
    /// so `first` needs no numbering.
    fn keyed_assignment_sql(
        &self,
        a: &crate::assign::pushdown::Audience,
        design: &crate::assign::Design,
        n_rows: u64,
        _first: usize,
    ) -> Option<(String, Vec<Value>)> {
        Some(crate::assign::pushdown_bigquery::bigquery_assignment(
            a, design, n_rows,
        ))
    }

    /// BigQuery casts `0x`-prefixed hexadecimal text to INT64.
    fn hex_word(&self, hex: &str, i: usize) -> Option<String> {
        Some(format!(
            "CAST(CONCAT('0x', SUBSTR({hex}, {}, 8)) AS INT64)",
            8 * i + 1
        ))
    }

    /// `PERCENTILE_CONT` is an analytic function only on BigQuery.
    fn percentile_cont(&self, _p: f64, _expr: &str) -> Option<String> {
        None
    }

    /// BigQuery has booleans and both kinds of timestamps: nothing loose.
    fn loose_type_compatibility(&self, _sheet: DataType, _live: DataType) -> bool {
        false
    }

    fn data_type_of(&self, declared: &str, _is_enum: bool) -> DataType {
        let upper = declared.trim().to_ascii_uppercase();
        let name = upper.split(['(', '<']).next().unwrap_or("").trim();
        match name {
            "STRING" => DataType::CharacterVarying,
            "BOOL" | "BOOLEAN" => DataType::Boolean,
            "INT64" | "INTEGER" | "INT" | "SMALLINT" | "BIGINT" | "TINYINT" | "BYTEINT" => {
                DataType::Bigint
            }
            "FLOAT64" | "FLOAT" => DataType::DoublePrecision,
            "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => DataType::Numeric,
            "DATE" => DataType::Date,
            "DATETIME" => DataType::TimestampWithoutTimeZone,
            "TIMESTAMP" => DataType::TimestampWithTimeZone,
            "JSON" => DataType::JsonUnsupported,
            _ => DataType::Unsupported,
        }
    }

    fn table_exists_sql(&self, _schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        (
            "SELECT count(*) FROM INFORMATION_SCHEMA.TABLES WHERE table_name = ?".into(),
            vec![Value::Text(table.into())],
        )
    }

    fn list_tables_sql(&self, _schema: Option<&str>) -> (String, Vec<Value>) {
        (
            "SELECT table_name FROM INFORMATION_SCHEMA.TABLES".into(),
            vec![],
        )
    }

    fn columns_sql(&self, _schema: Option<&str>, table: &str) -> (String, Vec<Value>) {
        (
            "SELECT column_name, data_type, is_nullable = 'NO', 0, FALSE \
             FROM INFORMATION_SCHEMA.COLUMNS WHERE table_name = ? ORDER BY ordinal_position"
                .into(),
            vec![Value::Text(table.into())],
        )
    }
}

/// Quote an identifier (or a dotted `project.dataset.table` path) with backticks. BigQuery
/// escapes a backtick or backslash inside a quoted identifier with a backslash.
pub fn quote_ident(ident: &str) -> String {
    let mut s = String::with_capacity(ident.len() + 2);
    s.push('`');
    for c in ident.chars() {
        if matches!(c, '`' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('`');
    s
}

/// A bound value as a positional query parameter with its BigQuery type.
fn query_parameter(v: &Value) -> QueryParameter {
    let (ty, value) = match v {
        // An untyped NULL: INT64 coerces to the other side in comparisons BigQuery allows.
        Value::Null => ("INT64", None),
        Value::Bool(b) => ("BOOL", Some(b.to_string())),
        Value::Int(i) => ("INT64", Some(i.to_string())),
        Value::Float(f) => ("FLOAT64", Some(float_text(*f))),
        Value::Text(s) => ("STRING", Some(s.clone())),
        Value::Uuid(u) => ("STRING", Some(u.to_string())),
        Value::Date(d) => ("DATE", Some(d.format("%Y-%m-%d").to_string())),
        Value::Timestamp(t) => (
            "DATETIME",
            Some(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        ),
        Value::TimestampTz(t) => (
            "TIMESTAMP",
            Some(t.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string()),
        ),
    };
    QueryParameter {
        name: None,
        parameter_type: Some(QueryParameterType {
            type_: Some(ty.into()),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue {
            value,
            ..Default::default()
        }),
    }
}

/// A float as BigQuery reads it: shortest round-trip digits, with its special values named.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

/// One result row, decoded by the schema's types. REPEATED and RECORD values come back as
/// their JSON text.
fn decode_row(
    schema: &[(String, String, bool)],
    row: TableRow,
    job_id: &str,
) -> Result<Vec<Value>> {
    let cells = row.f.unwrap_or_default();
    if cells.len() != schema.len() {
        return Err(Error::runtime(format!(
            "BigQuery job {job_id}: a result row has {} cells for {} columns",
            cells.len(),
            schema.len()
        )));
    }
    schema
        .iter()
        .zip(cells)
        .map(|((name, ty, repeated), cell)| {
            let v = cell.v.unwrap_or(serde_json::Value::Null);
            decode_cell(ty, *repeated, v).map_err(|why| {
                Error::runtime(format!(
                    "BigQuery job {job_id}: column {name} ({ty}): {why}"
                ))
            })
        })
        .collect()
}

fn decode_cell(
    ty: &str,
    repeated: bool,
    v: serde_json::Value,
) -> std::result::Result<Value, String> {
    let s = match v {
        serde_json::Value::Null => return Ok(Value::Null),
        serde_json::Value::String(s) if !repeated && ty != "RECORD" && ty != "STRUCT" => s,
        other => return Ok(Value::Text(other.to_string())),
    };
    let bad = |what: &str| format!("cannot read '{s}' as {what}");
    Ok(match ty {
        "INTEGER" | "INT64" => Value::Int(s.parse().map_err(|_| bad("an integer"))?),
        "FLOAT" | "FLOAT64" | "NUMERIC" | "BIGNUMERIC" => match s.as_str() {
            "NaN" => Value::Float(f64::NAN),
            "Infinity" => Value::Float(f64::INFINITY),
            "-Infinity" => Value::Float(f64::NEG_INFINITY),
            _ => Value::Float(s.parse().map_err(|_| bad("a number"))?),
        },
        "BOOLEAN" | "BOOL" => match s.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        "DATE" => Value::Date(
            chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| bad("a date"))?,
        ),
        "DATETIME" => Value::Timestamp(
            chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f"))
                .map_err(|_| bad("a datetime"))?,
        ),
        "TIMESTAMP" => {
            // Microseconds since the epoch (useInt64Timestamp), or float seconds (older form).
            let micros = match s.parse::<i64>() {
                Ok(us) => us,
                Err(_) => {
                    let secs: f64 = s.parse().map_err(|_| bad("a timestamp"))?;
                    (secs * 1e6).round() as i64
                }
            };
            Value::TimestampTz(
                chrono::DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| bad("a timestamp"))?,
            )
        }
        _ => Value::Text(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_never_show_a_base64_key() {
        let t = BigQueryTarget::parse("bigquery://my-proj/my_ds").unwrap();
        assert_eq!(
            (t.project.as_str(), t.dataset.as_str()),
            ("my-proj", "my_ds")
        );
        assert_eq!(t.credentials, Credentials::Env);
        let t = BigQueryTarget::parse("bigquery://p-1/ds?credentials_path=/k.json").unwrap();
        assert_eq!(t.credentials, Credentials::File("/k.json".into()));
        assert_eq!(t.to_string(), "bigquery://p-1/ds?credentials_path=/k.json");
        let t = BigQueryTarget::parse("bigquery://p-1/ds?credentials_base64=SECRETKEY").unwrap();
        assert_eq!(t.secret(), Some("SECRETKEY"));
        assert!(!t.to_string().contains("SECRETKEY"));
        assert!(!format!("{t:?}").contains("SECRETKEY"));
        for bad in [
            "bigquery://p",
            "bigquery://P/ds",
            "bigquery://p/d-s",
            "bigquery://p/ds/t",
            "bigquery://p/ds?x=1",
            "bigquery://p/ds?credentials_base64=A&credentials_path=B",
        ] {
            let e = BigQueryTarget::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(!e.to_string().contains("SECRETKEY"));
        }
        let e =
            BigQueryTarget::parse("bigquery://p/ds?credentials_base64=SECRET&credentials_path=x")
                .unwrap_err()
                .to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn malformed_keys_are_invalid_and_missing_ones_runtime() {
        let t = BigQueryTarget {
            project: "p".into(),
            dataset: "d".into(),
            credentials: Credentials::Base64("!!!notbase64SECRET".into()),
        };
        let e = t.load_key().unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(!e.to_string().contains("SECRET"), "{e}");
        use base64::Engine;
        let t = BigQueryTarget {
            credentials: Credentials::Base64(
                base64::engine::general_purpose::STANDARD
                    .encode(r#"{"type":"service_account","private_key":"SECRET"}"#),
            ),
            ..t
        };
        let e = t.load_key().unwrap_err();
        assert_eq!(e.exit_code(), 3, "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let t = BigQueryTarget {
            credentials: Credentials::File("/nonexistent/key.json".into()),
            ..t
        };
        let e = t.load_key().unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.to_string()
                .contains("/nonexistent/key.json: no such file"),
            "{e}"
        );
    }

    #[test]
    fn identifiers_are_quoted_with_backslash_escapes() {
        assert_eq!(quote_ident("t"), "`t`");
        assert_eq!(quote_ident("a`b\\c"), "`a\\`b\\\\c`");
    }

    #[test]
    fn cells_decode_by_type() {
        use serde_json::json;
        assert_eq!(
            decode_cell("INTEGER", false, json!("9007199254740993")),
            Ok(Value::Int(9007199254740993))
        );
        assert_eq!(
            decode_cell("FLOAT", false, json!("1.5")),
            Ok(Value::Float(1.5))
        );
        assert_eq!(
            decode_cell("BOOLEAN", false, json!("true")),
            Ok(Value::Bool(true))
        );
        assert_eq!(decode_cell("STRING", false, json!(null)), Ok(Value::Null));
        assert_eq!(
            decode_cell("DATE", false, json!("2024-01-02")),
            Ok(Value::Date(
                chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()
            ))
        );
        let ts = decode_cell("TIMESTAMP", false, json!("1704164645123456")).unwrap();
        assert_eq!(ts.to_text().unwrap(), "2024-01-02 03:04:05.123456+00:00");
        let ts = decode_cell("TIMESTAMP", false, json!("1.704164645E9")).unwrap();
        assert_eq!(ts.to_text().unwrap(), "2024-01-02 03:04:05+00:00");
        assert_eq!(
            decode_cell("DATETIME", false, json!("2024-01-02T03:04:05"))
                .unwrap()
                .to_text()
                .unwrap(),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            decode_cell("INTEGER", true, json!([{"v": "1"}])),
            Ok(Value::Text(r#"[{"v":"1"}]"#.into()))
        );
        assert!(decode_cell("INTEGER", false, json!("x")).is_err());
    }
}

//! The typed settings model (docs/compatibility.md#settings).
//!
//! Every struct rejects unknown keys. The types are the schema: their attributes carry every
//! structural rule (ranges, patterns, lengths, the Redshift rule, the older key names), so
//! `XnginSettings.schema.json` ([`super::schema`]) is derived from them, [`super::validate`]
//! reports a file's structural problems by validating it against that schema, and a valid file
//! then fills these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::older_name;
use crate::sheet::ColumnDescriptor;

pub use crate::dsn::SSLMODES;
/// DSN URL schemes accepted in `dwh` (or a value that holds a `${secret:NAME}`).
const DSN_URL_PATTERN: &str = r"^((sqlite3?|postgres|postgresql|redshift|mysql|mariadb|bigquery)(\+[A-Za-z0-9_]+)?:|.*\$\{secret:[A-Za-z0-9_]+\})";
/// Webhook URLs are http(s), unless they come from a secret.
const WEBHOOK_URL_PATTERN: &str = r"^(https?://[^/\s]+|.*\$\{secret:[A-Za-z0-9_]+\})";

/// A tenant settings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "XnginSettings",
    extend("$id" = "https://xngin.invalid/schemas/XnginSettings.schema.json"),
    transform = older_name("datasources", "client_configs")
)]
pub struct XnginSettings {
    /// Editors' JSON Schema reference; ignored.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The tenant's datasources (`client_configs` is accepted as the older name).
    #[serde(alias = "client_configs")]
    #[schemars(length(min = 1))]
    pub datasources: Vec<Datasource>,
    /// Older server setting, accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_ips: Vec<String>,
    /// Older server setting, accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub db_connect_timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Datasource {
    #[schemars(length(min = 1))]
    pub id: String,
    /// When true, API clients must send `x-api-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_api_key: Option<bool>,
    pub config: DatasourceConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // a handful per file; boxing would only obscure the model
pub enum DatasourceConfig {
    #[serde(rename = "remote")]
    Remote(RemoteConfig),
    #[serde(rename = "sqlite_local")]
    SqliteLocal(SqliteLocalConfig),
}

impl DatasourceConfig {
    pub fn participants(&self) -> &[Participant] {
        match self {
            DatasourceConfig::Remote(r) => &r.participants,
            DatasourceConfig::SqliteLocal(s) => &s.participants,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub participants: Vec<Participant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config: Option<WebhookConfig>,
    pub dwh: Dwh,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbapi_args: Option<Vec<DbapiArg>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteLocalConfig {
    /// Path of the SQLite file (relative to the working directory); not a `sqlite://` URL.
    #[schemars(length(min = 1), regex(pattern = r"^(?!sqlite://)"))]
    pub sqlite_filename: String,
    pub participants: Vec<Participant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DbapiArg {
    pub arg: String,
    pub value: String,
}

/// The warehouse: a DSN object, a BigQuery DSN object, a DSN URL string, or `{url = "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Dwh {
    Url(#[schemars(regex(pattern = DSN_URL_PATTERN))] String),
    UrlObject(DwhUrl),
    Dsn(DsnConfig),
    BigQuery(BqDsn),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DwhUrl {
    /// e.g. `postgresql+psycopg://user:${secret:PW}@host:5432/db?sslmode=require`
    #[schemars(length(min = 1), regex(pattern = DSN_URL_PATTERN))]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Driver {
    #[serde(rename = "postgresql+psycopg")]
    Psycopg,
    #[serde(rename = "postgresql+psycopg2")]
    Psycopg2,
    #[serde(rename = "postgresql")]
    Postgresql,
    #[serde(rename = "mysql")]
    Mysql,
    #[serde(rename = "mysql+pymysql")]
    MysqlPymysql,
    #[serde(rename = "mariadb")]
    Mariadb,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Psycopg => "postgresql+psycopg",
            Driver::Psycopg2 => "postgresql+psycopg2",
            Driver::Postgresql => "postgresql",
            Driver::Mysql => "mysql",
            Driver::MysqlPymysql => "mysql+pymysql",
            Driver::Mariadb => "mariadb",
        }
    }
    pub fn is_mysql(self) -> bool {
        matches!(self, Driver::Mysql | Driver::MysqlPymysql | Driver::Mariadb)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SslMode {
    #[serde(rename = "disable")]
    Disable,
    #[serde(rename = "allow")]
    Allow,
    #[serde(rename = "prefer")]
    Prefer,
    #[serde(rename = "require")]
    Require,
    #[serde(rename = "verify-ca")]
    VerifyCa,
    #[serde(rename = "verify-full")]
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        SSLMODES[self as usize]
    }
}

/// A PostgreSQL / Redshift (or MySQL) connection. Redshift (host ending in
/// `redshift.amazonaws.com`) must use `postgresql+psycopg2` and `sslmode = "verify-full"`.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"properties": {"host": {"pattern": "redshift\\.amazonaws\\.com\\.?$"}}, "required": ["host"]},
    "then" = {
        "properties": {"driver": {"const": "postgresql+psycopg2"}, "sslmode": {"const": "verify-full"}},
        "required": ["sslmode"]
    }
))]
pub struct DsnConfig {
    pub driver: Driver,
    #[schemars(length(min = 1))]
    pub host: String,
    /// Default 5432 (3306 for MySQL drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: Option<u16>,
    pub user: String,
    /// Use `${secret:NAME}`; never printed.
    pub password: String,
    pub dbname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_path: Option<String>,
}

impl std::fmt::Debug for DsnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsnConfig")
            .field("driver", &self.driver)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"***")
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("search_path", &self.search_path)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BigQueryDriver {
    #[serde(rename = "bigquery")]
    Bigquery,
}

/// A BigQuery warehouse: project, dataset and a service-account key (a file path, or base64
/// content that is a secret and never printed); resolved by `settings::resolve::dsn_for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BqDsn {
    pub driver: BigQueryDriver,
    #[schemars(length(min = 6, max = 30), regex(pattern = r"^[a-z0-9-]+$"))]
    pub project_id: String,
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[a-zA-Z0-9_]+$"))]
    pub dataset_id: String,
    pub credentials: BqCredentials,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum BqCredentials {
    #[serde(rename = "serviceaccountinfo")]
    Info {
        /// Base64 of the service-account JSON key.
        #[schemars(length(min = 4, max = 8000))]
        content_base64: String,
    },
    #[serde(rename = "serviceaccountfile")]
    File { path: String },
}

impl std::fmt::Debug for BqCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BqCredentials::Info { .. } => write!(f, "Info(***)"),
            BqCredentials::File { path } => write!(f, "File({path})"),
        }
    }
}

/// A participant type: the older form (no `type`) and `type = "sheet"` reference a sheet;
/// `type = "schema"` carries the fields inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Participant {
    Sheet(SheetParticipants),
    Schema(SchemaParticipants),
}

impl Participant {
    pub fn participant_type(&self) -> &str {
        match self {
            Participant::Sheet(s) => &s.participant_type,
            Participant::Schema(s) => &s.participant_type,
        }
    }
    pub fn table_name(&self) -> &str {
        match self {
            Participant::Sheet(s) => &s.table_name,
            Participant::Schema(s) => &s.table_name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SheetTag {
    #[serde(rename = "sheet")]
    Sheet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SchemaTag {
    #[serde(rename = "schema")]
    Schema,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SheetParticipants {
    /// `"sheet"`, or absent in the older form.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SheetTag>,
    #[schemars(length(min = 1))]
    pub participant_type: String,
    #[schemars(length(min = 1))]
    pub table_name: String,
    pub sheet: SheetRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaParticipants {
    #[serde(rename = "type")]
    pub kind: SchemaTag,
    #[schemars(length(min = 1))]
    pub participant_type: String,
    #[schemars(length(min = 1))]
    pub table_name: String,
    /// The sheet rows inline (`field_name` or `column_name`); exactly one `is_unique_id`.
    #[schemars(
        length(min = 1),
        extend(
            "contains" = {"properties": {"is_unique_id": {"const": true}}, "required": ["is_unique_id"]},
            "minContains" = 1,
            "maxContains" = 1
        )
    )]
    pub fields: Vec<ColumnDescriptor>,
}

/// Where a participant type's column-metadata sheet lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SheetRef {
    /// Google Sheets URL, `file://PATH` or a plain CSV path.
    #[schemars(length(min = 1))]
    pub url: String,
    #[schemars(length(min = 1))]
    pub worksheet: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub actions: WebhookActions,
    pub common_headers: WebhookCommonHeaders,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookActions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<WebhookUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_file: Option<WebhookUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_timestamps: Option<WebhookUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_description: Option<WebhookUrl>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCommonHeaders {
    /// Required key (may be null in JSON); use `${secret:NAME}`.
    #[schemars(required)]
    pub authorization: Option<String>,
}

impl std::fmt::Debug for WebhookCommonHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebhookCommonHeaders {{ authorization: {} }}",
            if self.authorization.is_some() {
                "***"
            } else {
                "None"
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookUrl {
    pub method: Method,
    #[schemars(length(min = 1), regex(pattern = WEBHOOK_URL_PATTERN))]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "PATCH")]
    Patch,
    #[serde(rename = "DELETE")]
    Delete,
}

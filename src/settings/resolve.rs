//! Participant-type resolution: settings file (or the built-in default) -> DSN, table, sheet.

use crate::input::names::*;
use std::path::{Path, PathBuf};

use super::ResolvedParticipants;
use super::model::{BqCredentials, Datasource, DatasourceConfig, Dwh, Participant, XnginSettings};
use crate::dsn::{Dsn, Engine, NetParts};
use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;
use crate::warehouse::bigquery::{BigQueryTarget, Credentials};

/// The built-in default (docs/architecture.md#settings-and-participant-types).
pub const BUILTIN_DATASOURCE: &str = "testing";
pub const BUILTIN_PARTICIPANT_TYPE: &str = "test_participant_type";

/// The bundled sheet of the testing warehouse.
const TESTING_SHEET: &str = include_str!("../../fixtures/testing_sheet.csv");

/// The settings file to use: `explicit`, else `XNGIN_SETTINGS`, else `xngin.settings.json` /
/// `xngin.settings.toml` in the working directory (both present is an error), else None.
pub fn default_settings_path(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("XNGIN_SETTINGS").filter(|p| !p.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    let found: Vec<&str> = super::DEFAULT_FILES
        .into_iter()
        .filter(|f| Path::new(f).is_file())
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(PathBuf::from(one))),
        _ => Err(Error::usage(format!(
            "both xngin.settings.json and xngin.settings.toml are in the working directory; \
             pass {SETTINGS} FILE to choose one"
        ))),
    }
}

/// The sheet of the built-in `test_participant_type` (the bundled fixtures/testing_sheet.csv).
pub fn builtin_default_sheet() -> Result<ConfigWorksheet> {
    crate::sheet::parse_csv_bytes(
        "fixtures/testing_sheet.csv",
        BUILTIN_PARTICIPANT_TYPE,
        TESTING_SHEET.as_bytes(),
    )
}

/// Pick a datasource: by id (exact, else unique case-insensitive match), or the only one.
pub fn find_datasource<'s>(
    settings: &'s XnginSettings,
    file: &str,
    id: Option<&str>,
) -> Result<&'s Datasource> {
    let known = || {
        settings
            .datasources
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match id {
        Some(id) => {
            if let Some(d) = settings.datasources.iter().find(|d| d.id == id) {
                return Ok(d);
            }
            let ci: Vec<&Datasource> = settings
                .datasources
                .iter()
                .filter(|d| d.id.eq_ignore_ascii_case(id))
                .collect();
            match ci.as_slice() {
                [one] => Ok(one),
                _ => Err(Error::invalid(format!(
                    "{file}: there is no datasource '{id}'; known datasources: {}",
                    known()
                ))),
            }
        }
        None => match settings.datasources.as_slice() {
            [one] => Ok(one),
            _ => Err(Error::invalid(format!(
                "{file} has {} datasources ({}); choose one with {DATASOURCE} ID (or XNGIN_DATASOURCE)",
                settings.datasources.len(),
                known()
            ))),
        },
    }
}

/// Find a participant type: exact match first, else the unique case-insensitive match.
pub fn find_participant<'d>(
    ds: &'d Datasource,
    file: &str,
    participant_type: &str,
) -> Result<&'d Participant> {
    let ps = ds.config.participants();
    if let Some(p) = ps.iter().find(|p| p.participant_type() == participant_type) {
        return Ok(p);
    }
    let ci: Vec<&Participant> = ps
        .iter()
        .filter(|p| p.participant_type().eq_ignore_ascii_case(participant_type))
        .collect();
    match ci.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<&str> = ps.iter().map(|p| p.participant_type()).collect();
            Err(Error::invalid(format!(
                "{file}: The configuration for participant type '{participant_type}' does not exist in datasource '{}'; known participant types: {}",
                ds.id,
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.participant_type()).collect();
            Err(Error::invalid(format!(
                "{file}: participant type '{participant_type}' matches several in datasource '{}' when case is ignored ({}); write it exactly",
                ds.id,
                names.join(", ")
            )))
        }
    }
}

/// The DSN of a datasource (secrets already substituted in `config`).
pub fn dsn_for(config: &DatasourceConfig) -> Result<Dsn> {
    match config {
        DatasourceConfig::SqliteLocal(s) => Ok(Dsn::sqlite_file(Path::new(&s.sqlite_filename))),
        DatasourceConfig::Remote(r) => match &r.dwh {
            Dwh::Url(u) => Dsn::parse(u),
            Dwh::UrlObject(u) => Dsn::parse(&u.url),
            Dwh::BigQuery(b) => {
                // Built from the typed parts: the ids were validated with the settings, and a
                // base64 key is registered as a secret by `Dsn::bigquery`.
                let credentials = match &b.credentials {
                    BqCredentials::File { path } => {
                        Credentials::File(crate::google::expand_tilde(path))
                    }
                    BqCredentials::Info { content_base64 } => {
                        Credentials::Base64(content_base64.trim().to_string())
                    }
                };
                Ok(Dsn::bigquery(BigQueryTarget {
                    project: b.project_id.clone(),
                    dataset: b.dataset_id.clone(),
                    credentials,
                }))
            }
            Dwh::Dsn(d) => {
                // Built from the typed parts, never pasted into a URL: a `${secret:NAME}` host
                // or password holding `@`, `/` or `?` cannot change what is connected to.
                let (engine, port) = match d.driver.is_mysql() {
                    true => (Engine::Mysql, d.port.unwrap_or(3306)),
                    false => (Engine::Postgres, d.port.unwrap_or(5432)),
                };
                let sslmode = match (d.sslmode, engine) {
                    (Some(m), _) => Some(m.as_str().to_string()),
                    // The reference's connection URL defaults PostgreSQL to verify-full.
                    (None, Engine::Postgres) => Some("verify-full".to_string()),
                    (None, _) => None,
                };
                let parts = NetParts {
                    host: d.host.clone(),
                    port,
                    user: d.user.clone(),
                    password: Some(d.password.clone()),
                    database: d.dbname.clone(),
                    sslmode,
                    search_path: d.search_path.clone(),
                };
                Dsn::from_parts(engine, d.driver.as_str(), parts)
            }
        },
    }
}

/// Read the sheet a participant type references, or build it from inline fields.
pub async fn participant_sheet(p: &Participant) -> Result<ConfigWorksheet> {
    match p {
        Participant::Schema(s) => {
            let ws = ConfigWorksheet {
                table_name: s.table_name.clone(),
                columns: s.fields.clone(),
            };
            crate::sheet::validate_worksheet(&ws)?;
            Ok(ws)
        }
        Participant::Sheet(s) => read_sheet(&s.sheet.url, &s.sheet.worksheet).await,
    }
}

/// Read a sheet reference: a Google Sheets URL, `file://PATH` or a plain CSV path.
pub async fn read_sheet(url: &str, worksheet: &str) -> Result<ConfigWorksheet> {
    crate::sheet::read_sheet(url, worksheet).await
}

pub(super) async fn resolve(
    settings: Option<&Path>,
    datasource: Option<&str>,
    participant_type: &str,
) -> Result<ResolvedParticipants> {
    let Some(path) = default_settings_path(settings)? else {
        return builtin(datasource, participant_type).await;
    };
    // Structure first (secrets unresolved), then the secrets of the chosen datasource only: a
    // datasource never needs another one's secrets.
    let checked = super::check_file(&path, false)?;
    let settings = match checked.settings.as_ref() {
        Some(s) if checked.is_valid() => s,
        _ => {
            return Err(Error::Invalid(
                checked.diagnostics.iter().map(|d| d.to_string()).collect(),
            ));
        }
    };
    let file = checked.file.as_str();
    let chosen = find_datasource(settings, file, datasource)?;
    let index = settings
        .datasources
        .iter()
        .position(|d| std::ptr::eq(d, chosen))
        .expect("chosen from the list");
    let ds = &super::datasource_with_secrets(&checked, index)?;
    let p = find_participant(ds, file, participant_type)?;
    let dsn = dsn_for(&ds.config).map_err(|e| match e {
        Error::Invalid(lines) => Error::Invalid(
            lines
                .into_iter()
                .map(|l| format!("{file}: datasource '{}': dwh: {l}", ds.id))
                .collect(),
        ),
        other => other,
    })?;
    let sheet = participant_sheet(p).await?;
    Ok(ResolvedParticipants {
        datasource_id: ds.id.clone(),
        participant_type: p.participant_type().to_string(),
        dsn,
        schema_name: None,
        table_name: p.table_name().to_string(),
        sheet,
    })
}

async fn builtin(datasource: Option<&str>, participant_type: &str) -> Result<ResolvedParticipants> {
    let hint = format!(
        "no settings file: pass {SETTINGS} FILE, set XNGIN_SETTINGS, or put xngin.settings.json / \
                xngin.settings.toml in the working directory"
    );
    if let Some(d) = datasource
        && !d.eq_ignore_ascii_case(BUILTIN_DATASOURCE)
    {
        return Err(Error::invalid(format!(
            "there is no datasource '{d}'; known datasources: {BUILTIN_DATASOURCE} (the built-in default; {hint})"
        )));
    }
    if !participant_type.eq_ignore_ascii_case(BUILTIN_PARTICIPANT_TYPE) {
        return Err(Error::invalid(format!(
            "The configuration for participant type '{participant_type}' does not exist in datasource \
             '{BUILTIN_DATASOURCE}'; known participant types: {BUILTIN_PARTICIPANT_TYPE} (the built-in default; {hint})"
        )));
    }
    let dsn = crate::testing_dwh::default_warehouse().await?;
    let sheet = builtin_default_sheet()?;
    Ok(ResolvedParticipants {
        datasource_id: BUILTIN_DATASOURCE.to_string(),
        participant_type: BUILTIN_PARTICIPANT_TYPE.to_string(),
        dsn,
        schema_name: None,
        table_name: crate::testing_dwh::DEFAULT_TABLE.to_string(),
        sheet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::model::{Driver, DsnConfig, RemoteConfig, SslMode};

    fn remote(dwh: Dwh) -> DatasourceConfig {
        DatasourceConfig::Remote(RemoteConfig {
            participants: vec![],
            webhook_config: None,
            dwh,
            dbapi_args: None,
        })
    }

    #[test]
    fn dsn_objects_become_dsns() {
        let d = DsnConfig {
            driver: Driver::Psycopg,
            host: "db.example.org".into(),
            port: None,
            user: "us er@x".into(),
            password: "p@ss/w:rd?".into(),
            dbname: "ana lytics".into(),
            sslmode: None,
            search_path: Some("exp,public".into()),
        };
        let dsn = dsn_for(&remote(Dwh::Dsn(d.clone()))).unwrap();
        assert_eq!(dsn.engine, Engine::Postgres);
        assert_eq!(dsn.port, Some(5432));
        assert_eq!(dsn.user.as_deref(), Some("us er@x"));
        assert_eq!(dsn.password(), Some("p@ss/w:rd?"));
        assert_eq!(dsn.database.as_deref(), Some("ana lytics"));
        // The reference's default for PostgreSQL objects.
        assert_eq!(dsn.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(dsn.search_path.as_deref(), Some("exp,public"));
        assert!(!dsn.to_string().contains("p@ss"));
        let my = DsnConfig {
            driver: Driver::Mariadb,
            sslmode: Some(SslMode::Disable),
            search_path: None,
            ..d.clone()
        };
        let dsn = dsn_for(&remote(Dwh::Dsn(my))).unwrap();
        assert_eq!(
            (dsn.engine, dsn.port, dsn.sslmode.as_deref()),
            (Engine::Mysql, Some(3306), Some("disable"))
        );
        let rs = DsnConfig {
            driver: Driver::Psycopg2,
            host: "x.abc.us-east-1.redshift.amazonaws.com".into(),
            port: Some(5439),
            sslmode: Some(SslMode::VerifyFull),
            ..d
        };
        assert!(dsn_for(&remote(Dwh::Dsn(rs))).unwrap().redshift);
        let url = dsn_for(&remote(Dwh::Url("mysql://root@127.0.0.1:3306/test".into()))).unwrap();
        assert_eq!(url.engine, Engine::Mysql);
        let url = dsn_for(&remote(Dwh::Url(
            "bigquery://acme-prod/d?credentials_path=k.json".into(),
        )))
        .unwrap();
        assert_eq!(url.engine, Engine::BigQuery);
        let bq = crate::settings::model::BqDsn {
            driver: crate::settings::model::BigQueryDriver::Bigquery,
            project_id: "acme-prod".into(),
            dataset_id: "d".into(),
            credentials: BqCredentials::File {
                path: "k.json".into(),
            },
        };
        let dsn = dsn_for(&remote(Dwh::BigQuery(bq.clone()))).unwrap();
        assert_eq!(dsn.engine, Engine::BigQuery);
        assert_eq!(
            dsn.to_string(),
            "bigquery://acme-prod/d?credentials_path=k.json"
        );
        // A base64 key is a secret: registered, never displayed.
        let key = "eyJ0eXBlIjoic2VydmljZV9hY2NvdW50IiwicmVzb2x2ZS10ZXN0IjoxfQ==";
        let dsn = dsn_for(&remote(Dwh::BigQuery(crate::settings::model::BqDsn {
            credentials: BqCredentials::Info {
                content_base64: key.into(),
            },
            ..bq
        })))
        .unwrap();
        let t = dsn.bigquery.as_ref().unwrap();
        assert_eq!(t.credentials, Credentials::Base64(key.into()));
        assert!(!dsn.to_string().contains(key));
        assert!(!crate::dsn::scrub_secrets(&format!("x {key} y")).contains(key));
    }

    /// The host of a DSN object is one host: text that would re-point a pasted URL (or a
    /// driver's socket directory) is refused, and the password is never pasted anywhere.
    #[test]
    fn dsn_object_parts_are_never_pasted_into_a_url() {
        let d = DsnConfig {
            driver: Driver::Postgresql,
            host: "127.0.0.1".into(),
            port: Some(5433),
            user: "u".into(),
            password: "ob-unit/zz@evil:1/x".into(),
            dbname: "db".into(),
            sslmode: Some(SslMode::Disable),
            search_path: None,
        };
        let dsn = dsn_for(&remote(Dwh::Dsn(d.clone()))).unwrap();
        assert_eq!(dsn.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(dsn.port, Some(5433));
        assert_eq!(dsn.password(), Some("ob-unit/zz@evil:1/x"));
        for host in ["ho-unit/zz@127.0.0.1", "/tmp", "h:5432", "h x"] {
            let bad = DsnConfig {
                host: host.into(),
                ..d.clone()
            };
            let e = dsn_for(&remote(Dwh::Dsn(bad))).unwrap_err();
            assert_eq!(e.exit_code(), 3, "{host}");
            assert!(!e.to_string().contains(host), "{e}");
        }
    }
}

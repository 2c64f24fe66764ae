//! The warehouse side of `assign`: reading a participant type's audience and writing the
//! assignment (`--write-table`) and the design record (`xngin_experiments`).
//!
//! Writes are all-or-nothing: the experiment guard (refuse an experiment id already in the
//! table unless `--replace`), the delete of a replaced experiment, the rows (COPY on
//! PostgreSQL) and the design record row happen in one transaction. Tables are created when
//! missing (inside the transaction on PostgreSQL and SQLite; before it on MySQL/MariaDB, where
//! DDL commits implicitly — an empty table is all a failure can leave there). A run that loses
//! a race with another writer of the same table or experiment (a duplicate key or table, a
//! deadlock) is told so in one sentence and has written nothing.

use crate::input::names::*;
use indicatif::ProgressBar;

use super::data::{ColumnData, Ids, Table};
use super::output::DesignRecord;
use super::run::TableOutput;
use super::{Design, Outcome, UNASSIGNED};
use crate::datatype::DataType;
use crate::dsn::{Dsn, check_ident};
use crate::error::{Error, Result};
use crate::warehouse::SqlDialect;
use crate::warehouse::load::{ColumnDef, create_table_sql, insert_rows};
use crate::warehouse::{Tx, Value, Warehouse};

/// The table holding one design record per experiment and assignment table.
pub const EXPERIMENTS_TABLE: &str = "xngin_experiments";

/// Where a participant type lives.
#[derive(Debug, Clone)]
pub struct Target {
    pub dsn: Dsn,
    pub schema: Option<String>,
}

/// Split `[SCHEMA.]TABLE`.
pub fn split_table(spec: &str) -> Result<(Option<String>, String)> {
    let (schema, table) = match spec.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, spec.to_string()),
    };
    if let Some(s) = &schema {
        check_ident(&format!("{WRITE_TABLE} (schema)"), s)?;
    }
    check_ident(&WRITE_TABLE.to_string(), &table)?;
    if table.contains('.') {
        return Err(Error::usage(format!(
            "{WRITE_TABLE} {spec}: use TABLE or SCHEMA.TABLE"
        )));
    }
    Ok((schema, table))
}

/// The id column of a participant type (`--id-column`, else the sheet's unique id), after
/// checking that it and every stratum (or the cluster column, which `strata` may hold) are
/// fields of the sheet and that no stratum is the id. Every problem is reported together.
/// Shared by the local read and the in-warehouse assignment.
pub(super) fn sheet_id_and_strata(
    sheet: &crate::sheet::ConfigWorksheet,
    label: &str,
    id_column: Option<&String>,
    strata: &[String],
    cluster_column: Option<&String>,
) -> Result<String> {
    let id = match id_column {
        Some(c) => c.clone(),
        None => sheet
            .unique_id()
            .map(|c| c.column_name.clone())
            .ok_or_else(|| Error::invalid(format!("{label}: the sheet marks no column as is_unique_id; mark one or pass {ID_COLUMN}")))?,
    };
    let names = sheet
        .columns
        .iter()
        .map(|c| c.column_name.as_str())
        .collect();
    super::check_names(
        &super::Names {
            source: label,
            noun: "field",
            names,
        },
        &id,
        strata,
        cluster_column.map(String::as_str),
    )?;
    Ok(id)
}

/// The participant type's table columns, after checking that the id and every stratum the
/// sheet names is one of them (all problems together). Shared by the local read and the
/// in-warehouse assignment.
pub(super) async fn live_columns(
    wh: &Warehouse,
    resolved: &crate::settings::ResolvedParticipants,
    label: &str,
    id: &str,
    strata: &[String],
) -> Result<Vec<crate::warehouse::introspect::ColumnInfo>> {
    let live = wh
        .columns(resolved.schema_name.as_deref(), &resolved.table_name)
        .await?;
    let mut missing = Vec::new();
    for c in std::iter::once(id).chain(strata.iter().map(String::as_str)) {
        if !live.iter().any(|l| l.name == c) {
            missing.push(format!(
                "{label}: the sheet's field {c} is not a column of the table {} (columns: {})",
                resolved.table_name,
                live.iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !missing.is_empty() {
        return Err(Error::Invalid(missing));
    }
    Ok(live)
}

/// The error for `SCHEMA.TABLE` where tables carry no schema (SQLite; BigQuery, whose dataset
/// is the DSN's).
pub(super) fn no_schemas(dialect: &dyn SqlDialect, flag: &str, spec: &str, table: &str) -> Error {
    Error::usage(format!(
        "{flag} {spec}: {}; give the table name alone ({flag} {table})",
        dialect.no_schemas_reason()
    ))
}

/// The columns of an existing `--write-table` (empty when there is none), refused unless it is
/// an assignment table with every column this assignment writes. Shared by the local and the
/// in-warehouse writes.
pub(super) async fn existing_assignment_table(
    wh: &Warehouse,
    schema: Option<&str>,
    name: &str,
    shown: &str,
    cols: &[ColumnDef],
) -> Result<Vec<crate::warehouse::introspect::ColumnInfo>> {
    let dsn = wh.dsn();
    let existing = wh.columns_if_exists(schema, name).await?;
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
        if !names.contains(&"experiment_id") {
            return Err(Error::invalid(format!(
                "{dsn}: the table {shown} exists but has no experiment_id column, so it is not an assignment table; \
                 choose another {WRITE_TABLE} name"
            )));
        }
        let missing: Vec<&str> = cols
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| !names.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "{dsn}: the table {shown} has no column(s) {} that this assignment writes (its columns: {}); \
                 write to another table or use the same strata",
                missing.join(", "),
                names.join(", ")
            )));
        }
    }
    Ok(existing)
}

/// Where DDL commits implicitly (MySQL/MariaDB) or cannot be part of a transaction (BigQuery),
/// create the assignment and experiments tables before the transaction, `IF NOT EXISTS` so two
/// first writes do not collide; an empty table is all a failure can leave.
pub(super) async fn create_before_transaction(
    wh: &Warehouse,
    create_table: bool,
    experiments_exist: bool,
    qualified: &str,
    xq: &str,
    cols: &[ColumnDef],
) -> Result<()> {
    let dialect = wh.dialect();
    if dialect.transactional_ddl() {
        return Ok(());
    }
    if !create_table && experiments_exist {
        return Ok(());
    }
    let exact = exact_key_collation(wh).await?;
    if create_table {
        let cols = with_key_collation(cols, exact.as_deref());
        wh.execute(
            &if_not_exists(dialect, create_table_sql(dialect, qualified, &cols)),
            &[],
        )
        .await?;
    }
    if !experiments_exist {
        wh.execute(
            &if_not_exists(dialect, experiments_ddl(dialect, xq, exact.as_deref())),
            &[],
        )
        .await?;
    }
    Ok(())
}

/// The collation that makes text keys compare by bytes on this server, where the default
/// does not ([`SqlDialect::exact_key_collation_sql`]); `None` elsewhere or when the server
/// has none (then the default collation stays, as before).
async fn exact_key_collation(wh: &Warehouse) -> Result<Option<String>> {
    let Some(sql) = wh.dialect().exact_key_collation_sql() else {
        return Ok(None);
    };
    Ok(wh
        .fetch_all(sql, &[])
        .await?
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }))
}

/// `cols` with the text key columns given the collation `exact`: ids that differ only by case
/// or trailing spaces are different participants and must not collide in the primary key.
fn with_key_collation(cols: &[ColumnDef], exact: Option<&str>) -> Vec<ColumnDef> {
    cols.iter()
        .map(|c| ColumnDef {
            collation: (c.primary_key && c.data_type == DataType::CharacterVarying)
                .then(|| exact.map(str::to_string))
                .flatten(),
            ..c.clone()
        })
        .collect()
}

/// Replace the experiment's row of `xngin_experiments` (`xq`, quoted) inside the write's
/// transaction: the local and the in-warehouse writes share it, so the two records are equal.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_design_record(
    wh: &Warehouse,
    tx: &mut Tx,
    xq: &str,
    exp: &Value,
    shown: &str,
    created: &Value,
    seed: u64,
    record: &DesignRecord,
) -> Result<()> {
    let p: Vec<String> = (1..=6).map(|i| wh.placeholder(i)).collect();
    let q = |s: &str| wh.quote(s);
    tx.execute(
        &format!(
            "DELETE FROM {xq} WHERE {} = {} AND {} = {}",
            q("experiment_id"),
            p[0],
            q("assignment_table"),
            p[1]
        ),
        &[exp.clone(), Value::Text(shown.to_string())],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO {xq} ({}, {}, {}, {}, {}, {}) VALUES ({})",
            q("experiment_id"),
            q("assignment_table"),
            q("created_at"),
            q("tool_version"),
            q("seed"),
            q("design"),
            p.join(", ")
        ),
        &[
            exp.clone(),
            Value::Text(shown.to_string()),
            created.clone(),
            Value::Text(crate::VERSION.into()),
            Value::Text(seed.to_string()),
            Value::Text(record.to_json()),
        ],
    )
    .await?;
    Ok(())
}

/// The rows of the assignment table, in the order of [`assignment_columns`].
fn assignment_rows<'a>(
    table: &'a Table,
    outcome: &'a Outcome,
    design: &'a Design,
    exp: &'a Value,
    created: &'a Value,
) -> impl Iterator<Item = Result<Vec<Value>>> + 'a {
    let strata_cols: Vec<&ColumnData> = outcome
        .carried()
        .into_iter()
        .map(|s| &table.column(s).expect("carried columns checked").data)
        .collect();
    outcome.order.iter().map(move |&r| {
        let r = r as usize;
        let a = outcome.arm[r];
        let mut v = Vec::with_capacity(6 + strata_cols.len());
        v.push(exp.clone());
        v.push(match &table.ids {
            Ids::Int(x) => Value::Int(x[r]),
            Ids::Text { values, .. } => Value::Text(values[r].clone()),
        });
        if a == UNASSIGNED {
            v.push(Value::Null);
            v.push(Value::Null);
        } else {
            v.push(Value::Int(a as i64));
            v.push(Value::Text(design.arms.arms[a as usize].name.clone()));
        }
        v.push(
            outcome
                .stratum_id
                .as_ref()
                .map_or(Value::Null, |s| Value::Int(s[r] as i64)),
        );
        v.push(created.clone());
        for c in &strata_cols {
            v.push(column_value(c, r));
        }
        Ok(v)
    })
}

/// The columns of `xngin_experiments`, in the order of [`experiments_ddl`].
fn experiments_columns() -> Vec<ColumnDef> {
    [
        ("experiment_id", DataType::CharacterVarying),
        ("assignment_table", DataType::CharacterVarying),
        ("created_at", DataType::TimestampWithTimeZone),
        ("tool_version", DataType::CharacterVarying),
        ("seed", DataType::CharacterVarying),
        ("design", DataType::CharacterVarying),
    ]
    .into_iter()
    .map(|(n, t)| ColumnDef::new(n, t).not_null())
    .collect()
}

/// The guard's message inside a BigQuery script: seen only when another run wrote the same
/// experiment between this run's check and its script.
const GUARD_MESSAGE: &str = "xngin: the experiment is already in the table";

/// `--write-table` where statements run as jobs (BigQuery): the rows go into a staging table
/// with one load job and the design record into a second one with another, then one
/// multi-statement transaction applies the experiment guard (or `--replace`'s delete), copies
/// the rows in and replaces the design record; a failure anywhere leaves the tables as they
/// were. The staging tables (`TABLE__xngin_XXXXXXXX`, `xngin_experiments__xngin_XXXXXXXX`) are
/// dropped afterwards, also when the write fails; a killed run can leave them behind.
pub(super) struct Staged<'a> {
    pub wh: &'a Warehouse,
    pub replace: bool,
    pub qualified: &'a str,
    pub xq: &'a str,
    pub shown: &'a str,
    pub cols: &'a [ColumnDef],
}

impl Staged<'_> {
    async fn write(
        &self,
        table: &Table,
        outcome: &Outcome,
        design: &Design,
        record: &DesignRecord,
        created: &Value,
        pb: &ProgressBar,
    ) -> Result<u64> {
        let wh = self.wh;
        let bq = wh
            .bigquery()
            .ok_or_else(|| Error::runtime(format!("{}: no load-job client", wh.dsn())))?;
        let exp = Value::Text(record.experiment_id.clone());
        // The guard first, for a plain message; the script checks again.
        let have = first_count(
            &wh.fetch_all(
                &experiment_count_sql(wh.dialect(), self.qualified),
                std::slice::from_ref(&exp),
            )
            .await?,
        );
        if have > 0 && !self.replace {
            return Err(already_holds(
                wh.dsn(),
                self.shown,
                have,
                &record.experiment_id,
            ));
        }
        let (rows_stage, x_stage) = self.stage_names();
        let result = async {
            let n = crate::warehouse::load::load_job(
                bq,
                wh.dialect(),
                &rows_stage,
                self.cols,
                assignment_rows(table, outcome, design, &exp, created),
                pb,
            )
            .await?;
            self.apply(&rows_stage, &x_stage, record, created, design.seed)
                .await?;
            Ok(n)
        }
        .await;
        self.drop_stages(&[&rows_stage, &x_stage]).await;
        result
    }

    /// The names of this run's two staging tables: the rows', the design record's.
    pub(super) fn stage_names(&self) -> (String, String) {
        (
            crate::warehouse::load::staging_name(
                self.shown.rsplit('.').next().unwrap_or(self.shown),
            ),
            crate::warehouse::load::staging_name(EXPERIMENTS_TABLE),
        )
    }

    /// Drop the staging tables (those that exist), whether the write succeeded or not.
    pub(super) async fn drop_stages(&self, stages: &[&str]) {
        let Some(bq) = self.wh.bigquery() else {
            return;
        };
        for stage in stages {
            if let Err(e) = bq.drop_table(stage).await {
                crate::output::notice(format!(
                    "could not drop the staging table {stage} ({e}); drop it by hand"
                ));
            }
        }
    }

    /// With the rows in the staging table `rows_stage`: the design record loaded into the
    /// staging table `x_stage`, then the transaction script (the experiment guard or
    /// `--replace`'s delete, the rows copied in, the design record replaced). Shared by the local
    /// write and `assign --in-warehouse`, whose rows a query put in `rows_stage`.
    pub(super) async fn apply(
        &self,
        rows_stage: &str,
        x_stage: &str,
        record: &DesignRecord,
        created: &Value,
        seed: u64,
    ) -> Result<()> {
        let wh = self.wh;
        let bq = wh
            .bigquery()
            .ok_or_else(|| Error::runtime(format!("{}: no load-job client", wh.dsn())))?;
        let x_row = vec![
            Value::Text(record.experiment_id.clone()),
            Value::Text(self.shown.to_string()),
            created.clone(),
            Value::Text(crate::VERSION.into()),
            Value::Text(seed.to_string()),
            Value::Text(record.to_json()),
        ];
        crate::warehouse::load::load_job(
            bq,
            wh.dialect(),
            x_stage,
            &experiments_columns(),
            std::iter::once(Ok(x_row)),
            &ProgressBar::hidden(),
        )
        .await?;
        wh.execute(&self.script(rows_stage, x_stage)?, &[])
            .await
            .map_err(|e| {
                let raw = e.to_string();
                if raw.contains(GUARD_MESSAGE) {
                    Error::Conflict(raw)
                } else {
                    e
                }
            })?;
        Ok(())
    }

    /// The transaction: guard or delete, rows in, design record replaced.
    fn script(&self, rows_stage: &str, x_stage: &str) -> Result<String> {
        let wh = self.wh;
        let dialect = wh.dialect();
        let q = |s: &str| wh.quote(s);
        let rs = wh.qualified(None, rows_stage);
        let xs = wh.qualified(None, x_stage);
        let this_exp = format!(
            "{} IN (SELECT {} FROM {xs})",
            q("experiment_id"),
            q("experiment_id")
        );
        let mut st = Vec::new();
        if self.replace {
            st.push(format!("DELETE FROM {} WHERE {this_exp}", self.qualified));
        } else {
            let count = format!("SELECT COUNT(*) FROM {} WHERE {this_exp}", self.qualified);
            st.push(
                dialect
                    .fail_if_any_sql(&count, GUARD_MESSAGE)
                    .ok_or_else(|| Error::runtime("no guard statement for this warehouse"))?,
            );
        }
        let names: Vec<String> = self.cols.iter().map(|c| q(&c.name)).collect();
        st.push(format!(
            "INSERT INTO {} ({}) SELECT {} FROM {rs}",
            self.qualified,
            names.join(", "),
            names.join(", ")
        ));
        st.push(format!(
            "DELETE FROM {} WHERE {this_exp} AND {} IN (SELECT {} FROM {xs})",
            self.xq,
            q("assignment_table"),
            q("assignment_table")
        ));
        let xnames: Vec<String> = experiments_columns().iter().map(|c| q(&c.name)).collect();
        st.push(format!(
            "INSERT INTO {} ({}) SELECT {} FROM {xs}",
            self.xq,
            xnames.join(", "),
            xnames.join(", ")
        ));
        dialect
            .transaction_script(&st)
            .ok_or_else(|| Error::runtime("no transaction script for this warehouse"))
    }
}

/// The experiment guard's query: how many rows of one experiment (bound first) the assignment
/// table `qualified` holds.
pub(super) fn experiment_count_sql(dialect: &dyn SqlDialect, qualified: &str) -> String {
    format!(
        "SELECT count(*) FROM {qualified} WHERE {} = {}",
        dialect.quote_ident("experiment_id"),
        dialect.placeholder(1)
    )
}

/// The count of [`experiment_count_sql`].
pub(super) fn first_count(rows: &crate::warehouse::Rows) -> i64 {
    rows.rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The experiment guard inside a write's transaction: an experiment already in the table is
/// refused (exit 3) unless `replace`, which deletes its rows first. Shared by the local and the
/// in-warehouse writes.
pub(super) async fn guard_experiment(
    tx: &mut Tx,
    dsn: &Dsn,
    qualified: &str,
    shown: &str,
    experiment_id: &str,
    replace: bool,
) -> Result<()> {
    let dialect = tx.dialect();
    let exp = [Value::Text(experiment_id.to_string())];
    let have = first_count(
        &tx.fetch_all(&experiment_count_sql(dialect, qualified), &exp)
            .await?,
    );
    if have > 0 {
        if !replace {
            return Err(already_holds(dsn, shown, have, experiment_id));
        }
        tx.execute(
            &format!(
                "DELETE FROM {qualified} WHERE {} = {}",
                dialect.quote_ident("experiment_id"),
                dialect.placeholder(1)
            ),
            &exp,
        )
        .await?;
    }
    Ok(())
}

/// `--write-table` onto an experiment already in the table, without `--replace`.
pub(super) fn already_holds(dsn: &Dsn, shown: &str, have: i64, experiment_id: &str) -> Error {
    Error::invalid(format!(
        "{dsn}: the table {shown} already holds {have} assignment(s) of experiment {experiment_id}; pass {REPLACE} to replace \
         them or choose another {EXPERIMENT_ID}"
    ))
}

/// The columns an assignment writes besides the strata; a stratum may not have one of these
/// names (compared case-insensitively, as MySQL and SQLite compare column names).
pub const RESERVED_COLUMNS: [&str; 6] = [
    "experiment_id",
    "participant_id",
    "arm_id",
    "arm_name",
    "stratum_id",
    "created_at",
];

/// The assignment table's columns for this outcome.
/// The columns every assignment table starts with, before the carried strata and cluster
/// columns; the participant id is BIGINT for integer ids, else text.
pub(super) fn fixed_assignment_columns(integer_ids: bool) -> Vec<ColumnDef> {
    vec![
        ColumnDef::new("experiment_id", DataType::CharacterVarying).primary_key(),
        ColumnDef::new(
            "participant_id",
            if integer_ids {
                DataType::Bigint
            } else {
                DataType::CharacterVarying
            },
        )
        .primary_key(),
        ColumnDef::new("arm_id", DataType::Integer),
        ColumnDef::new("arm_name", DataType::CharacterVarying),
        ColumnDef::new("stratum_id", DataType::Integer),
        ColumnDef::new("created_at", DataType::TimestampWithTimeZone).not_null(),
    ]
}

pub fn assignment_columns(table: &Table, outcome: &Outcome) -> Vec<ColumnDef> {
    let mut cols = fixed_assignment_columns(matches!(table.ids, Ids::Int(_)));
    for s in outcome.carried() {
        let t = match &table.column(s).expect("carried columns checked").data {
            ColumnData::Text { .. } => DataType::CharacterVarying,
            ColumnData::Bool(_) => DataType::Boolean,
            ColumnData::Int(_) => DataType::Bigint,
            ColumnData::Float(_) => DataType::DoublePrecision,
        };
        cols.push(ColumnDef::new(s, t));
    }
    cols
}

fn column_value(c: &ColumnData, r: usize) -> Value {
    match c {
        ColumnData::Text { codes, levels } => {
            if codes[r] == super::NULL_CODE {
                Value::Null
            } else {
                Value::Text(levels[codes[r] as usize].clone())
            }
        }
        ColumnData::Bool(v) => v[r].map_or(Value::Null, Value::Bool),
        ColumnData::Int(v) => v[r].map_or(Value::Null, Value::Int),
        ColumnData::Float(v) => v[r].map_or(Value::Null, Value::Float),
    }
}

/// `xngin_experiments`; `exact`: the collation of its text key columns
/// ([`exact_key_collation`]).
pub(super) fn experiments_ddl(
    dialect: &dyn SqlDialect,
    qualified: &str,
    exact: Option<&str>,
) -> String {
    let q = |s: &str| dialect.quote_ident(s);
    let varchar = dialect.ddl_type(DataType::CharacterVarying);
    let key_varchar = format!(
        "{varchar}{}",
        exact.map(|c| dialect.collate_clause(c)).unwrap_or_default()
    );
    let ts = dialect.ddl_type(DataType::TimestampWithTimeZone);
    let text = dialect.long_text_type();
    let key = dialect
        .primary_key_clause(&[q("experiment_id"), q("assignment_table")])
        .map(|k| format!(",\n    {k}"))
        .unwrap_or_default();
    format!(
        "CREATE TABLE {qualified} (\n    {} {key_varchar} NOT NULL,\n    {} {key_varchar} NOT NULL,\n    {} {ts} NOT NULL,\n    {} {varchar} NOT NULL,\n    {} {varchar} NOT NULL,\n    {} {text} NOT NULL{key}\n)",
        q("experiment_id"),
        q("assignment_table"),
        q("created_at"),
        q("tool_version"),
        q("seed"),
        q("design"),
    )
}

/// A concurrent run may create the table between this run's check and its transaction: on
/// SQLite (`CREATE TABLE IF NOT EXISTS`) this run then waits for that run's commit (one writer
/// at a time) and finds its rows (refused as "already holds", or replaced). PostgreSQL reports
/// the race as a conflict instead ([`Error::Conflict`]).
pub(super) fn if_not_exists(dialect: &dyn SqlDialect, ddl: String) -> String {
    dialect.create_table_racing(ddl)
}

/// Write the assignment into `table_name` and the design record into `xngin_experiments`, in
/// one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn write_table(
    dest: &TableOutput,
    replace: bool,
    target: Option<&Target>,
    table: &Table,
    outcome: &Outcome,
    design: &Design,
    record: &DesignRecord,
    pb: &ProgressBar,
) -> Result<()> {
    let table_name = dest.spec.as_str();
    let result = write_table_inner(dest, replace, target, table, outcome, design, record, pb).await;
    if let Err(Error::Conflict(raw)) = &result
        && let Some(dsn) = dest.dsn.as_ref().or(target.map(|t| &t.dsn))
        && let Some(e) = folded_key_error(dsn, table_name, raw).await
    {
        return Err(e);
    }
    result.map_err(|e| match e {
        Error::Conflict(raw) => Error::runtime(format!(
            "another run is writing the table {table_name} or experiment {} at the same time, \
                 so this run wrote nothing ({raw}); wait for it to finish, then run again \
                 ({REPLACE} to overwrite its rows of the same experiment)",
            record.experiment_id
        )),
        other => not_written(other, table_name, &record.experiment_id),
    })
}

/// A duplicate-key failure of a write into an existing MySQL/MariaDB table whose
/// `participant_id` has a collation that folds text (the default ones ignore case, accents and
/// trailing spaces): two of the run's distinct ids are one key there. Tables xngin creates
/// compare bytes ([`SqlDialect::exact_key_collation_sql`]); a table created otherwise does not.
/// `None` when that is not the cause (then the conflict is another run's). Looked up on a new
/// connection, on the error path only.
pub(super) async fn folded_key_error(dsn: &Dsn, table_spec: &str, raw: &str) -> Option<Error> {
    let dialect = dsn.dialect();
    let sql = dialect.column_collation_sql()?;
    if !raw.contains("Duplicate entry") {
        return None;
    }
    let (schema, name) = split_table(table_spec).ok()?;
    let wh = Warehouse::connect(dsn).await.ok()?;
    let found = wh
        .fetch_all(
            sql,
            &[
                schema.map_or(Value::Null, Value::Text),
                Value::Text(name),
                Value::Text("participant_id".into()),
            ],
        )
        .await;
    wh.close().await;
    let collation = match found.ok()?.rows.first()?.first()? {
        Value::Text(c) if !dialect.collation_is_exact(c) => c.clone(),
        _ => return None,
    };
    Some(Error::runtime(format!(
        "{table_spec}: two participant ids of this run are one key under the table's collation {collation}          (it ignores case, accents or trailing spaces), so this run wrote nothing ({raw}); write to a new          {WRITE_TABLE} (xngin creates it comparing bytes) or give the table's participant_id a binary          collation (e.g. utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8)"
    )))
}

/// A database failure of a write to `table` (a lost connection, a killed session, a value the
/// table refuses) as one line naming the table and the experiment, which the transaction's
/// rollback left without any row. Other errors (and conflicts, which the callers word
/// themselves) are returned as they are.
pub(super) fn not_written(e: Error, table: &str, experiment_id: &str) -> Error {
    match e {
        Error::Database(raw) => Error::runtime(format!(
            "{table}: experiment {experiment_id} was not written, nothing of it is in the table ({raw}); \
             fix the cause (for a lost connection, check the warehouse and the network) and run again"
        )),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_table_inner(
    dest: &TableOutput,
    replace: bool,
    target: Option<&Target>,
    table: &Table,
    outcome: &Outcome,
    design: &Design,
    record: &DesignRecord,
    pb: &ProgressBar,
) -> Result<()> {
    let table_name = dest.spec.as_str();
    let (schema, name) = split_table(table_name)?;
    let dsn = match (&dest.dsn, target) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.dsn.clone(),
        (None, None) => {
            return Err(Error::usage(format!(
                "{WRITE_TABLE} needs {DSN} (the warehouse to write to)"
            )));
        }
    };
    let schema = schema.or_else(|| {
        if dest.dsn.is_none() {
            target.and_then(|t| t.schema.clone())
        } else {
            None
        }
    });
    let wh = Warehouse::connect_with(
        &dsn,
        crate::warehouse::ConnectOptions {
            create_sqlite: true,
        },
    )
    .await?;
    let dialect = wh.dialect();
    if !dialect.has_transactions() && dialect.transaction_script(&[]).is_none() {
        wh.close().await;
        return Err(Error::runtime(format!(
            "{dsn}: {WRITE_TABLE} writes the assignment and its design record in one transaction, \
             which {} does not have; write the assignment to files ({OUTPUT}) instead",
            dialect.product()
        )));
    }
    if !dialect.has_schemas() && table_name.contains('.') {
        wh.close().await;
        return Err(no_schemas(
            dialect,
            &WRITE_TABLE.to_string(),
            table_name,
            &name,
        ));
    }
    let qualified = wh.qualified(schema.as_deref(), &name);
    let xq = wh.qualified(schema.as_deref(), EXPERIMENTS_TABLE);
    let cols = assignment_columns(table, outcome);
    let shown = match &schema {
        Some(s) => format!("{s}.{name}"),
        None => name.clone(),
    };

    let existing = existing_assignment_table(&wh, schema.as_deref(), &name, &shown, &cols).await?;
    let x_exists = wh
        .table_exists(schema.as_deref(), EXPERIMENTS_TABLE)
        .await?;
    create_before_transaction(&wh, existing.is_empty(), x_exists, &qualified, &xq, &cols).await?;
    let created = Value::TimestampTz(
        chrono::DateTime::parse_from_rfc3339(&record.created_at)
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now()),
    );
    if dialect.bulk_load() == crate::warehouse::BulkLoad::LoadJob {
        let w = Staged {
            wh: &wh,
            replace,
            qualified: &qualified,
            xq: &xq,
            shown: &shown,
            cols: &cols,
        };
        let result = w.write(table, outcome, design, record, &created, pb).await;
        wh.close().await;
        let n = result?;
        crate::output::notice(format!(
            "wrote {n} assignment(s) of experiment {} to {shown}",
            record.experiment_id
        ));
        return Ok(());
    }
    let copy = dialect.bulk_load() == crate::warehouse::BulkLoad::Copy;
    let defer_pk = copy && existing.is_empty();
    let mut tx = wh.begin().await?;
    let result: Result<u64> = async {
        if dialect.transactional_ddl() {
            if existing.is_empty() {
                // A new PostgreSQL table gets its primary key after the COPY: one bulk index
                // build instead of maintaining the index row by row (same transaction, so the
                // table is never visible without it).
                let ddl_cols: Vec<ColumnDef> = if defer_pk {
                    cols.iter()
                        .map(|c| ColumnDef {
                            primary_key: false,
                            ..c.clone()
                        })
                        .collect()
                } else {
                    cols.clone()
                };
                tx.execute(
                    &if_not_exists(dialect, create_table_sql(dialect, &qualified, &ddl_cols)),
                    &[],
                )
                .await?;
            }
            if !x_exists {
                tx.execute(
                    &if_not_exists(dialect, experiments_ddl(dialect, &xq, None)),
                    &[],
                )
                .await?;
            }
        }
        let exp = Value::Text(record.experiment_id.clone());
        guard_experiment(
            &mut tx,
            &dsn,
            &qualified,
            &shown,
            &record.experiment_id,
            replace,
        )
        .await?;
        let rows = assignment_rows(table, outcome, design, &exp, &created);
        let n = if copy {
            drop(rows);
            let n = copy_pg(
                &mut tx,
                &qualified,
                &cols,
                table,
                outcome,
                design,
                &record.experiment_id,
                &created,
                pb,
            )
            .await?;
            if defer_pk {
                let pk: Vec<String> = cols
                    .iter()
                    .filter(|c| c.primary_key)
                    .map(|c| wh.quote(&c.name))
                    .collect();
                tx.execute(
                    &format!(
                        "ALTER TABLE {qualified} ADD PRIMARY KEY ({})",
                        pk.join(", ")
                    ),
                    &[],
                )
                .await?;
            }
            n
        } else {
            insert_rows(&mut tx, &qualified, &cols, rows, pb).await?
        };
        write_design_record(
            &wh,
            &mut tx,
            &xq,
            &exp,
            &shown,
            &created,
            design.seed,
            record,
        )
        .await?;
        Ok(n)
    }
    .await;
    match result {
        Ok(n) => {
            tx.commit().await?;
            crate::output::notice(format!(
                "wrote {n} assignment(s) of experiment {} to {shown}",
                record.experiment_id
            ));
            wh.close().await;
            Ok(())
        }
        Err(e) => {
            let _ = tx.rollback().await;
            wh.close().await;
            Err(e)
        }
    }
}

/// PostgreSQL: stream the assignment through `COPY ... FROM STDIN` (text format), formatting
/// rows straight into the COPY buffer (strata levels and arm names escaped once), about 1 MiB
/// per message. Same columns and values as the generic path through `insert_rows`.
#[allow(clippy::too_many_arguments)]
async fn copy_pg(
    tx: &mut crate::warehouse::Tx,
    qualified: &str,
    cols: &[ColumnDef],
    table: &Table,
    outcome: &Outcome,
    design: &Design,
    experiment_id: &str,
    created: &Value,
    pb: &ProgressBar,
) -> Result<u64> {
    fn esc(s: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(s.len());
        crate::warehouse::load::copy_escape(s, &mut out);
        out
    }
    let names: Vec<String> = cols
        .iter()
        .map(|c| tx.dialect().quote_ident(&c.name))
        .collect();
    let sql = format!("COPY {qualified} ({}) FROM STDIN", names.join(", "));
    let prefix = esc(experiment_id);
    let created = esc(&created.to_text().unwrap_or_default());
    let arm_names: Vec<Vec<u8>> = design.arms.arms.iter().map(|a| esc(&a.name)).collect();
    let strata: Vec<&ColumnData> = outcome
        .carried()
        .into_iter()
        .map(|s| &table.column(s).expect("carried columns checked").data)
        .collect();
    let levels: Vec<Option<Vec<Vec<u8>>>> = strata
        .iter()
        .map(|c| match c {
            ColumnData::Text { levels, .. } => Some(levels.iter().map(|l| esc(l)).collect()),
            _ => None,
        })
        .collect();
    let conn = tx.pg_conn().expect("PostgreSQL transaction");
    let mut copy = conn.copy_in_raw(&sql).await?;
    let mut ib = super::data::itoa_buf();
    let mut total = 0u64;
    let mut failure: Option<Error> = None;
    for batch in outcome.order.chunks(16_384) {
        let mut buf: Vec<u8> = Vec::with_capacity(batch.len() * 96);
        for &r in batch {
            let r = r as usize;
            buf.extend_from_slice(&prefix);
            buf.push(b'\t');
            match &table.ids {
                Ids::Int(v) => buf.extend_from_slice(super::data::format_i64(v[r], &mut ib)),
                Ids::Text { values, .. } => buf.extend_from_slice(&esc(&values[r])),
            }
            buf.push(b'\t');
            let a = outcome.arm[r];
            if a == UNASSIGNED {
                buf.extend_from_slice(b"\\N\t\\N");
            } else {
                buf.extend_from_slice(super::data::format_i64(a as i64, &mut ib));
                buf.push(b'\t');
                buf.extend_from_slice(&arm_names[a as usize]);
            }
            buf.push(b'\t');
            match &outcome.stratum_id {
                Some(s) => buf.extend_from_slice(super::data::format_i64(s[r] as i64, &mut ib)),
                None => buf.extend_from_slice(b"\\N"),
            }
            buf.push(b'\t');
            buf.extend_from_slice(&created);
            for (c, lv) in strata.iter().zip(&levels) {
                buf.push(b'\t');
                match (c, lv) {
                    (ColumnData::Text { codes, .. }, Some(lv)) => {
                        let code = codes[r];
                        if code == super::NULL_CODE {
                            buf.extend_from_slice(b"\\N");
                        } else {
                            buf.extend_from_slice(&lv[code as usize]);
                        }
                    }
                    (ColumnData::Bool(v), _) => buf.extend_from_slice(match v[r] {
                        Some(true) => b"t",
                        Some(false) => b"f",
                        None => b"\\N",
                    }),
                    _ => match c.text(r) {
                        Some(t) => buf.extend_from_slice(&esc(&t)),
                        None => buf.extend_from_slice(b"\\N"),
                    },
                }
            }
            buf.push(b'\n');
        }
        if let Err(e) = copy.send(buf).await {
            failure = Some(e.into());
            break;
        }
        total += batch.len() as u64;
        pb.inc(batch.len() as u64);
    }
    if let Some(e) = failure {
        let _ = copy.abort("xngin: assignment write aborted").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(total)
}

/// Look up participants' assignments in a warehouse table: `(participant_id, arm_id,
/// arm_name, stratum_id)` per id found.
pub async fn lookup(
    dsn: &Dsn,
    table_spec: &str,
    experiment_id: &str,
    ids: &[String],
) -> Result<Vec<Vec<Value>>> {
    let (schema, name) = split_table(table_spec)?;
    let wh = Warehouse::connect(dsn).await?;
    if !wh.dialect().has_schemas() && table_spec.contains('.') {
        wh.close().await;
        return Err(no_schemas(
            wh.dialect(),
            &TABLE.to_string(),
            table_spec,
            &name,
        ));
    }
    if !wh.table_exists(schema.as_deref(), &name).await? {
        wh.close().await;
        return Err(Error::runtime(format!(
            "{dsn}: there is no table {table_spec}"
        )));
    }
    let q = |s: &str| wh.quote(s);
    // Ids are looked up in batches under the dialect's limit on bound parameters (one is the
    // experiment id), each id once.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&String> = ids.iter().filter(|i| seen.insert(i.as_str())).collect();
    let batch = lookup_batch(wh.dialect());
    let mut out = Vec::new();
    for chunk in unique.chunks(batch) {
        let phs: Vec<String> = (2..chunk.len() + 2).map(|i| wh.placeholder(i)).collect();
        let sql = format!(
            "SELECT {pid}, {}, {}, {} FROM {} WHERE {} = {} AND {pid} IN ({})",
            q("arm_id"),
            q("arm_name"),
            q("stratum_id"),
            wh.qualified(schema.as_deref(), &name),
            q("experiment_id"),
            wh.placeholder(1),
            phs.join(", "),
            pid = wh.dialect().text_cast(&q("participant_id")),
        );
        let mut params = vec![Value::Text(experiment_id.into())];
        params.extend(chunk.iter().map(|i| Value::Text((*i).clone())));
        match wh.fetch_all(&sql, &params).await {
            Ok(rows) => out.extend(rows.rows),
            Err(e) => {
                wh.close().await;
                return Err(e);
            }
        }
    }
    wh.close().await;
    Ok(out)
}

/// Ids per lookup query in [`lookup`], at most.
const LOOKUP_BATCH: usize = 10_000;

/// Ids per lookup query on `dialect`: [`LOOKUP_BATCH`], or fewer where the dialect binds fewer
/// parameters (BigQuery: 10,000 per query, one of them the experiment id).
fn lookup_batch(dialect: &dyn SqlDialect) -> usize {
    LOOKUP_BATCH.min(dialect.max_bound_params() - 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsn::Engine;
    use crate::warehouse::dialect_for;

    #[test]
    fn lookups_batch_ids_under_each_dialects_parameter_limit() {
        assert_eq!(lookup_batch(dialect_for(Engine::Sqlite)), 10_000);
        assert_eq!(lookup_batch(dialect_for(Engine::Postgres)), 10_000);
        assert_eq!(lookup_batch(dialect_for(Engine::Mysql)), 10_000);
        // BigQuery: 10,000 parameters per query, one of them the experiment id.
        assert_eq!(lookup_batch(dialect_for(Engine::BigQuery)), 9_999);
    }
}

//! `assign --in-warehouse`: the whole assignment computed by the participant type's warehouse
//! (docs/assignment-algorithm.md, "In the warehouse"), with only aggregates coming back.
//!
//! In one transaction reading one snapshot of the audience:
//! 1. one aggregate query: row count, ids non-null and unique, the input fingerprint (Σ of the
//!    unit keys as four 32-bit word sums), and per stratum its distinct and non-null counts
//!    (the preprocessing rules of [`super::preprocess`]: single-valued and unique-valued
//!    columns are dropped), numeric strata by their least and greatest values;
//! 2. per kept numeric stratum, its order statistics at the quantile edges' ranks, from which
//!    [`super::qcut::edges_by`] interpolates the edges; the audience relation then carries each
//!    one's bin (`CASE` over the edges, bound as parameters);
//! 3. one `GROUP BY` of the kept strata (numeric ones by bin): the strata cells and their
//!    sizes, which give the stratum ids (dense rank of the cells in level order, NULL last),
//!    the block counts and the categorical codes of the balance regression;
//! 4. the experiment guard (and `--replace`), then `INSERT INTO T … SELECT` of the keyed
//!    assignment query of the dialect (the `keyed_assignment_sql` hook of
//!    [`crate::warehouse::SqlDialect`]);
//! 5. `GROUP BY stratum_id, arm_id` over the rows written: the arm counts and the balance test
//!    from per-cell counts ([`super::balance::f_test_cells`]), identical to the local one; with
//!    numeric covariates (numeric strata without NULLs) from per-cell moments and residual
//!    sums (`CellMoments`, [`super::balance::f_test_moments`]);
//! 6. the design record, then commit.
//!
//! Supported: text, uuid, date, boolean, integer and double precision strata on engines whose
//! dialect computes the keyed query; everything else is refused (exit 2) rather than computed
//! differently.
//!
//! BigQuery has no client-held transaction: the queries run as jobs, the rows go into a
//! staging table and one script applies the write ([`super::pushdown_bigquery`]). SQLite is a
//! local engine: the local run (`run::run_local`) assigns and writes.

use super::balance::{self, Covariate};
use super::data::{Ids, Table};
use crate::input::names::*;

use super::output::{AudienceRecord, DesignRecord, Fingerprint, push_csv_field};
use super::preprocess::{Codes, Dropped};
use super::run::{DesignRequest, Outputs, Report};
use super::warehouse::{EXPERIMENTS_TABLE, experiments_ddl, if_not_exists, split_table};
use super::{BalanceTest, Design, Outcome, stochatreat};
use crate::audience::ParticipantAudience;
use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::output::notice;
use crate::warehouse::load::{ColumnDef, create_table_sql};
use crate::warehouse::{Value, Warehouse};

/// How a stratum's values are compared: text by bytes, booleans, or numbers (integers or
/// floats, binned into quantiles as f64 values).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Bool,
    Int,
    Float,
}

impl Kind {
    fn numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

/// A requested stratum as the warehouse holds it.
struct Stratum {
    name: String,
    /// The SQL expression of its value (quoted column, cast to text for uuids): what is carried
    /// into the assignment.
    expr: String,
    kind: Kind,
    /// Numeric strata: the value compared (NaN read as NULL), and the same as a double, as the
    /// local run reads it.
    plain: String,
    num: String,
}

/// A kept numeric stratum's quantile bins: the interior edges e₁ … e_{b−1} (a value v is in
/// bin k when e_k < v ≤ e_{k+1}, the lowest edge included in bin 0; NULL has no bin).
struct Bins {
    stratum: usize,
    interior: Vec<f64>,
}

/// The bin column of numeric stratum `j` in the binned relation.
fn bin_column(j: usize) -> String {
    format!("xngin_bin_{j}")
}

fn unsupported(what: String) -> Error {
    Error::usage(format!(
        "{IN_WAREHOUSE}: {what}; run without {IN_WAREHOUSE} to assign locally"
    ))
}

/// A column's type for a message: the sheet type, and the declared one when it differs.
fn type_name(t: DataType, declared: &str) -> String {
    if t.as_str().eq_ignore_ascii_case(declared) {
        declared.to_string()
    } else {
        format!("{} ({declared})", t.as_str())
    }
}

/// Run `assign --in-warehouse` of `req`, whose audience is `aud`.
pub async fn run(req: &super::run::Request, aud: &ParticipantAudience) -> Result<Report> {
    let (d, out) = (&req.design, &req.outputs);
    if out.table.as_ref().is_some_and(|t| t.dsn.is_some()) {
        return Err(Error::usage(format!(
            "{IN_WAREHOUSE} writes into the participant type's own warehouse; drop {DSN}"
        )));
    }
    if let Some(c) = &d.cluster {
        return Err(unsupported(format!(
            "{CLUSTER_COLUMN} {c}: cluster designs are assigned locally for now"
        )));
    }
    if out.table.is_none() && out.file.is_none() {
        return Err(Error::usage(format!(
            "{IN_WAREHOUSE} needs {WRITE_TABLE} [SCHEMA.]TABLE (written by the warehouse) or {OUTPUT} FILE.csv \
             (the rows streamed out), or both"
        )));
    }
    if let Some(file) = &out.file
        && super::audience::file_kind(file)? != super::audience::FileKind::Csv
    {
        return Err(unsupported(format!(
            "{OUTPUT} {}: the rows are streamed out as CSV; give a .csv file",
            file.display()
        )));
    }
    // Before connecting (and before the seed's notice): an engine without the keyed query is
    // refused as a usage error. SQLite, a local engine, runs the local algorithm below.
    let dialect = aud.participants.dsn.dialect();
    if aud.participants.dsn.engine != crate::dsn::Engine::Sqlite
        && (dialect.hex_word("x", 0).is_none()
            || (!dialect.has_transactions() && dialect.transaction_script(&[]).is_none()))
    {
        return Err(unsupported(format!(
            "{} does not compute the keyed assignment yet (the local run gives the same rows)",
            dialect.product()
        )));
    }
    let super::run::Identity {
        seed,
        seed_given,
        experiment_id,
        created_at,
    } = super::run::identity(d, out);

    let resolved = &aud.participants;
    let sheet = &resolved.sheet;
    let label = aud.label();
    let id = super::warehouse::sheet_id_and_strata(
        sheet,
        &label,
        aud.id_column.as_ref(),
        &d.strata,
        None,
    )?;
    let dsn = resolved.dsn.clone();
    if dsn.engine == crate::dsn::Engine::Sqlite {
        // A local engine: the rows never leave this machine either way. The local algorithm
        // (the same keyed hash, keys computed in Rust) assigns them, and --write-table is
        // written in one transaction, rows and design record (docs/assignment-algorithm.md §10).
        notice(format!(
            "SQLite is a local engine: {IN_WAREHOUSE} assigns with the local algorithm (the same rows and \
             design record) and writes {WRITE_TABLE} in one transaction"
        ));
        return super::run::run_local(
            req,
            super::run::Identity {
                seed,
                seed_given,
                experiment_id,
                created_at,
            },
        )
        .await;
    }
    let table_spec = out.table.as_ref().map(|t| t.spec.as_str());
    let target = match table_spec {
        Some(t) => {
            let (wt_schema, wt_name) = split_table(t)?;
            if !dialect.has_schemas() && wt_schema.is_some() {
                return Err(super::warehouse::no_schemas(
                    dialect,
                    &WRITE_TABLE.to_string(),
                    t,
                    &wt_name,
                ));
            }
            Some((t, wt_schema, wt_name))
        }
        None => None,
    };
    let wh = Warehouse::connect(&dsn).await?;
    let res = run_on(
        d,
        out,
        &wh,
        aud,
        &label,
        &id,
        target,
        // Cluster designs were refused above.
        d.with_seed(seed),
        (experiment_id.clone(), created_at, seed_given),
    )
    .await;
    wh.close().await;
    if let (Err(Error::Conflict(raw)), Some(t)) = (&res, table_spec)
        && let Some(e) = super::warehouse::folded_key_error(&dsn, t, raw).await
    {
        return Err(e);
    }
    res.map_err(|e| match (e, table_spec) {
        (Error::Conflict(raw), _) => Error::runtime(format!(
            "another run is writing the table {} at the same time, so this run wrote nothing ({raw}); \
             wait for it to finish, then run again ({REPLACE} to overwrite its rows of the same experiment)",
            table_spec.unwrap_or_default()
        )),
        (other, Some(t)) => super::warehouse::not_written(other, t, &experiment_id),
        (other, None) => other,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    d: &DesignRequest,
    out: &Outputs,
    wh: &Warehouse,
    aud: &ParticipantAudience,
    label: &str,
    id: &str,
    target: Option<(&str, Option<String>, String)>,
    design: Design,
    (experiment_id, created_at, seed_given): (String, chrono::DateTime<chrono::Utc>, bool),
) -> Result<Report> {
    let resolved = &aud.participants;
    let strata_names = &d.strata;
    let output = out.file.as_deref();
    let dialect = wh.dialect();
    let q = |s: &str| wh.quote(s);
    let schema = resolved.schema_name.as_deref();
    let live = super::warehouse::live_columns(wh, resolved, label, id, strata_names).await?;
    let live_of = |c: &str| live.iter().find(|l| l.name == c);
    // The id: integers (ties ordered numerically) or text (by bytes).
    let id_live = live_of(id).expect("checked");
    let integer_ids = match id_live.data_type {
        DataType::Integer | DataType::Bigint => true,
        DataType::CharacterVarying | DataType::Uuid => false,
        other => {
            return Err(unsupported(format!(
                "the id column {id} is of type {}; integer, text and uuid ids are supported",
                type_name(other, &id_live.sql_type)
            )));
        }
    };
    let id_expr = if id_live.data_type == DataType::Uuid {
        dialect.text_cast(&q(id))
    } else {
        q(id)
    };
    let mut strata = Vec::new();
    for s in strata_names {
        let l = live_of(s).expect("checked");
        let sql_type = l.sql_type.to_ascii_lowercase();
        let (kind, expr) = match l.data_type {
            DataType::CharacterVarying => (Kind::Text, q(s)),
            DataType::Uuid => (Kind::Text, dialect.text_cast(&q(s))),
            // Dates are text (YYYY-MM-DD) to the local run.
            DataType::Date => (Kind::Text, dialect.text_cast(&q(s))),
            DataType::Boolean => (Kind::Bool, q(s)),
            // Unsigned 64-bit values beyond i64 are text to the local run.
            DataType::Integer | DataType::Bigint
                if !(sql_type.contains("bigint") && sql_type.contains("unsigned")) =>
            {
                (Kind::Int, q(s))
            }
            DataType::DoublePrecision => (Kind::Float, q(s)),
            DataType::Bigint => {
                return Err(unsupported(format!(
                    "stratum {s} is an unsigned 64-bit integer ({}), whose values beyond 2^63 the local run reads \
                     as text; cast it to a signed bigint in a view",
                    l.sql_type
                )));
            }
            other => {
                return Err(unsupported(format!(
                    "stratum {s} is of type {}; the warehouse computes text, uuid, date, boolean, integer and \
                     double precision strata (NUMERIC/DECIMAL values are read as f64 locally, which SQL does not \
                     reproduce exactly: cast the column to double precision in a view)",
                    type_name(other, &l.sql_type)
                )));
            }
        };
        let plain = match kind {
            Kind::Float => dialect.float_nan_to_null(&expr),
            _ => expr.clone(),
        };
        let num = dialect.float_cast(&plain);
        strata.push(Stratum {
            name: s.clone(),
            expr,
            kind,
            plain,
            num,
        });
    }
    // Filters, with their parameters numbered after the query's own (`first`).
    let filters_json = aud.filters_json();
    // The audience: the table with its filters; with --sample-size, its `k` rows with the
    // smallest unit keys (ties by id), the seed bound after the filters.
    let relation_with = |first: usize, sampled: bool| -> Result<(String, Vec<Value>)> {
        let t = wh.qualified(schema, &resolved.table_name);
        let (filtered, mut p) = match aud.condition(dialect, first)? {
            None => (t, Vec::new()),
            Some((w, p)) => (format!("{t} WHERE {w}"), p),
        };
        let Some(k) = d.sample_size.filter(|_| sampled) else {
            return Ok((filtered, p));
        };
        let seed_ph = dialect.text_cast(&wh.placeholder(first + p.len()));
        let key = dialect
            .md5_hex(&format!(
                "CONCAT({seed_ph}, ':', {})",
                dialect.text_cast(&id_expr)
            ))
            .expect("dialects with hex_word have md5");
        let tie = if integer_ids {
            id_expr.clone()
        } else {
            dialect.order_bytes(&dialect.text_cast(&id_expr))
        };
        p.push(Value::Text(design.seed.to_string()));
        Ok((
            format!(
                "(SELECT * FROM {filtered} ORDER BY {}, {tie} LIMIT {k}) xs",
                dialect.order_bytes(&key)
            ),
            p,
        ))
    };
    let relation = |first: usize| relation_with(first, true);
    let source = format!("{label} (table {})", resolved.table_name);

    // The assignment table's columns, checked against an existing table.
    let mut cols = super::warehouse::fixed_assignment_columns(integer_ids);
    for s in &strata {
        let t = match s.kind {
            Kind::Text => DataType::CharacterVarying,
            Kind::Bool => DataType::Boolean,
            // As the local run writes integer and float columns.
            Kind::Int => DataType::Bigint,
            Kind::Float => DataType::DoublePrecision,
        };
        cols.push(ColumnDef::new(&s.name, t));
    }
    let dsn = wh.dsn();
    // (qualified table, qualified experiments table, new table?, experiments table exists?)
    let mut dest: Option<(String, String, bool, bool)> = None;
    if let Some((shown, wt_schema, wt_name)) = &target {
        let qualified = wh.qualified(wt_schema.as_deref(), wt_name);
        let xq = wh.qualified(wt_schema.as_deref(), EXPERIMENTS_TABLE);
        let existing = super::warehouse::existing_assignment_table(
            wh,
            wt_schema.as_deref(),
            wt_name,
            shown,
            &cols,
        )
        .await?;
        let x_exists = wh
            .table_exists(wt_schema.as_deref(), EXPERIMENTS_TABLE)
            .await?;
        super::warehouse::create_before_transaction(
            wh,
            existing.is_empty(),
            x_exists,
            &qualified,
            &xq,
            &cols,
        )
        .await?;
        dest = Some((qualified, xq, existing.is_empty(), x_exists));
    }
    // Without a client-held transaction (BigQuery): the rows go through a staging table and
    // one script applies the write (super::pushdown_bigquery).
    let staged = match (&dest, &target) {
        (Some((qualified, xq, _, _)), Some((shown, _, _))) if !dialect.has_transactions() => {
            let st = super::warehouse::Staged {
                wh,
                replace: out.replace,
                qualified,
                xq,
                shown,
                cols: &cols,
            };
            let names = st.stage_names();
            Some((st, names))
        }
        _ => None,
    };
    let mut tx = super::pushdown_bigquery::Session::begin(wh).await?;
    let result = async {
        if let Some(s) = dialect.snapshot_transaction_sql() {
            tx.execute(s, &[]).await?;
        }
        // 1. Counts, ids, fingerprint, strata statistics.
        let seed_ph = dialect.text_cast(&wh.placeholder(1));
        // Text ids that all look like integers are integers to the local run (their order and
        // column type): counted here, with the pattern bound second.
        let int_like = if integer_ids {
            None
        } else {
            dialect.lower_matches_regex("xid", &wh.placeholder(2))
        };
        let key = dialect
            .md5_hex(&format!(
                "CONCAT({seed_ph}, ':', {})",
                dialect.text_cast("xid")
            ))
            .expect("dialects with hex_word have md5");
        let single_pk = id_live.primary_key && live.iter().filter(|l| l.primary_key).count() == 1;
        let mut sel = vec![
            "COUNT(*)".to_string(),
            "COUNT(xid)".to_string(),
            if single_pk {
                "COUNT(xid)".to_string()
            } else if integer_ids {
                "COUNT(DISTINCT xid)".to_string()
            } else {
                // By bytes: the column's collation may equate ids that differ by case or
                // trailing spaces, which are distinct participants (as locally).
                format!("COUNT(DISTINCT {})", dialect.exact_text("xid"))
            },
        ];
        for i in 0..4 {
            let w = dialect.hex_word("h", i).expect("checked");
            sel.push(dialect.text_cast(&format!("SUM({w})")));
        }
        let mut inner = vec![format!("{id_expr} AS xid")];
        for (j, s) in strata.iter().enumerate() {
            let e = match s.kind {
                Kind::Text => dialect.exact_text(&s.expr),
                Kind::Int | Kind::Float => s.plain.clone(),
                Kind::Bool => s.expr.clone(),
            };
            inner.push(format!("{e} AS s{j}"));
            sel.push(format!("COUNT(s{j})"));
        }
        // Numeric strata: their least and greatest values (one value: dropped; infinite: refused).
        let numeric: Vec<usize> = (0..strata.len()).filter(|&j| strata[j].kind.numeric()).collect();
        for &j in &numeric {
            sel.push(format!("MIN(s{j})"));
            sel.push(format!("MAX(s{j})"));
        }
        let after_numeric = 7 + strata.len() + 2 * numeric.len();
        // The digest is computed once per row, not once per word that reads it.
        let key = dialect.digest_row(&key);
        let build = |sampled: bool| -> Result<(String, Vec<Value>)> {
        let mut sel = sel.clone();
        let (rel, rel_params) = relation_with(if int_like.is_some() { 3 } else { 2 }, sampled)?;
        let mut params = vec![Value::Text(design.seed.to_string())];
        let sql = match &int_like {
            Some(test) => {
                sel.push("COUNT(xnum)".into());
                params.push(Value::Text(r"^(0|-?[1-9][0-9]*)$".into()));
                format!(
                    "SELECT {} FROM (SELECT {key} AS h, x.* FROM (SELECT w.*, CASE WHEN {test} THEN 1 END AS xnum \
                     FROM (SELECT {} FROM {rel}) w) x) y",
                    sel.join(", "),
                    inner.join(", ")
                )
            }
            None => format!(
                "SELECT {} FROM (SELECT {key} AS h, x.* FROM (SELECT {} FROM {rel}) x) y",
                sel.join(", "),
                inner.join(", ")
            ),
        };
        params.extend(rel_params);
        Ok((sql, params))
        };
        // The whole audience (its ids checked as the local run checks them), then the sample.
        let (sql, params) = build(false)?;
        let full = tx.fetch_all(&sql, &params).await?;
        let full = full.rows.first().cloned().unwrap_or_default();
        let int_of = |row: &[Value], i: usize| row.get(i).and_then(Value::as_i64).unwrap_or(0) as u64;
        let int = |i: usize| int_of(&full, i);
        let n = int(0);
        let n_all = n;
        if n < 2 {
            let why = if aud.filters.is_empty() { "" } else { " after the filters" };
            return Err(Error::invalid(format!(
                "{label}: {n} participant(s){why} in table {}; an assignment needs at least 2{}",
                resolved.table_name,
                if why.is_empty() { "" } else { " (widen the filters)" }
            )));
        }
        if int(1) < n {
            return Err(Error::invalid(format!(
                "{source}: the id column {id} is NULL in {} row(s); every participant needs an id",
                n - int(1)
            )));
        }
        if int(2) < n {
            return Err(Error::invalid(format!(
                "{source}: the id column {id} has {} duplicate value(s); ids must be unique",
                n - int(2)
            )));
        }
        if int_like.is_some() && int(after_numeric) == n {
            return Err(unsupported(format!(
                "the text ids of {id} all look like integers, which the local run orders and stores as integers; \
                 not computed in the warehouse yet"
            )));
        }
        let row = match d.sample_size {
            Some(k) if k > n_all => {
                return Err(Error::invalid(format!(
                    "{SAMPLE_SIZE} {k} is larger than the audience ({n_all} participants in {source}); lower it or widen the filters"
                )));
            }
            Some(_) => {
                let (sql, params) = build(true)?;
                let rows = tx.fetch_all(&sql, &params).await?;
                rows.rows.first().cloned().unwrap_or_default()
            }
            None => full.clone(),
        };
        let int = |i: usize| int_of(&row, i);
        let n = int(0);
        let mut key_sum = 0u128;
        for i in 0..4 {
            let part: u128 = row
                .get(3 + i)
                .and_then(Value::to_text)
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| Error::runtime(format!("{source}: the warehouse returned no key sum")))?;
            key_sum = key_sum.wrapping_add(part.wrapping_shl(32 * (3 - i) as u32));
        }
        // Preprocessing (super::preprocess): drop single-valued and unique-valued strata.
        let mut kept: Vec<usize> = Vec::new();
        let mut dropped = Vec::new();
        // Distinct values per stratum: counted over the strata cells (one hash aggregation of
        // the rows, then small sorts), not by COUNT(DISTINCT) over every row.
        // (Numeric strata: from their least and greatest values.)
        let categorical: Vec<usize> = (0..strata.len()).filter(|&j| !strata[j].kind.numeric()).collect();
        let mut distinct: Vec<u64> = vec![0; strata.len()];
        if !categorical.is_empty() {
            let (rel, rel_params) = relation(1)?;
            let exprs: Vec<String> = categorical
                .iter()
                .map(|&j| {
                    let s = &strata[j];
                    let e = if s.kind == Kind::Text {
                        dialect.exact_text(&s.expr)
                    } else {
                        s.expr.clone()
                    };
                    format!("{e} AS s{j}")
                })
                .collect();
            let counts: Vec<String> = categorical.iter().map(|j| format!("COUNT(DISTINCT s{j})")).collect();
            let groups: Vec<String> = (1..=categorical.len()).map(|i| i.to_string()).collect();
            let sql = format!(
                "SELECT {} FROM (SELECT {} FROM {rel} GROUP BY {}) g",
                counts.join(", "),
                exprs.join(", "),
                groups.join(", ")
            );
            let r = tx.fetch_all(&sql, &rel_params).await?;
            let r = r.rows.first().cloned().unwrap_or_default();
            for (i, &j) in categorical.iter().enumerate() {
                distinct[j] = int_of(&r, i);
            }
        }
        // Numeric strata: finite (as the local run checks), and one value or more.
        let mut notes: Vec<String> = Vec::new();
        for (i, &j) in numeric.iter().enumerate() {
            let s = &strata[j];
            let (lo, hi) = (&row[7 + strata.len() + 2 * i], &row[8 + strata.len() + 2 * i]);
            for v in [lo, hi] {
                if let Value::Float(f) = v
                    && f.is_infinite()
                {
                    return Err(Error::invalid(format!(
                        "{source}: column {} is infinite ({f}) in some row; strata and metrics must be finite numbers \
                         (correct the value, or leave it empty for a missing value)",
                        s.name
                    )));
                }
            }
            let values = int(7 + j);
            distinct[j] = if values == 0 {
                0
            } else if lo == hi {
                1
            } else {
                2
            };
            if u64::from(design.quantiles) > values {
                notes.push(format!(
                    "{QUANTILES} {} is more than the {values} value(s) of {} can fill: \
                     each distinct value of {} is its own bin",
                    design.quantiles, s.name, s.name
                ));
            }
        }
        for (j, s) in strata.iter().enumerate() {
            let distinct = distinct[j];
            let non_null = int(7 + j);
            let reason = if distinct <= 1 {
                Some("single value")
            } else if distinct == non_null && non_null > 1 && !s.kind.numeric() {
                Some("unique values (every row differs)")
            } else {
                None
            };
            match reason {
                Some(r) => dropped.push(Dropped {
                    field: s.name.clone(),
                    reason: r.into(),
                }),
                None => kept.push(j),
            }
        }
        notes.extend(
            dropped
                .iter()
                .map(|d| format!("stratum {} not used: {}", d.field, d.reason)),
        );
        // Quantile bins of the kept numeric strata: edges interpolated here (super::qcut) from
        // the order statistics the warehouse returns, one query per stratum.
        let mut bins: Vec<Bins> = Vec::new();
        for &j in kept.iter().filter(|&&j| strata[j].kind.numeric()) {
            let values = int(7 + j) as usize;
            let q = super::qcut::effective_quantiles(design.quantiles, values);
            let ranks = super::qcut::ranks(values, q);
            let (rel, rel_params) = relation(1)?;
            let v = &strata[j].num;
            let ordered = format!(
                "SELECT v, ROW_NUMBER() OVER (ORDER BY v) AS r FROM (SELECT {v} AS v FROM {rel}) x WHERE v IS NOT NULL"
            );
            let mut at: Vec<f64> = vec![f64::NAN; ranks.len()];
            let mut put = |r: Option<i64>, v: Option<f64>| {
                if let (Some(r), Some(v)) = (r, v)
                    && let Ok(i) = ranks.binary_search(&((r - 1) as usize))
                {
                    at[i] = v;
                }
            };
            if ranks.len() <= 1000 {
                // Ranks are numbers computed here, never user text.
                let list: Vec<String> = ranks.iter().map(|r| (r + 1).to_string()).collect();
                let sql = format!("SELECT r, v FROM ({ordered}) o WHERE r IN ({})", list.join(", "));
                for row in tx.fetch_all(&sql, &rel_params).await?.rows {
                    put(row[0].as_i64(), row[1].as_f64());
                }
            } else {
                // More quantiles than a list holds: the values in order, the ranks picked.
                let sql = format!("SELECT r, v FROM ({ordered}) o ORDER BY r");
                tx.fetch_each(&sql, &rel_params, |row| {
                    put(row[0].as_i64(), row[1].as_f64());
                    Ok(())
                })
                .await?;
            }
            if at.iter().any(|v| v.is_nan()) {
                return Err(Error::runtime(format!(
                    "{source}: the warehouse returned {} of the {} order statistics of {}; nothing was written",
                    at.iter().filter(|v| !v.is_nan()).count(),
                    ranks.len(),
                    strata[j].name
                )));
            }
            let edges = super::qcut::edges_by(values, q, |r| at[ranks.binary_search(&r).unwrap_or(0)]);
            bins.push(Bins {
                stratum: j,
                interior: if edges.len() > 2 { edges[1..edges.len() - 1].to_vec() } else { Vec::new() },
            });
        }
        let n_edges: usize = bins.iter().map(|b| b.interior.len()).sum();
        if n_edges > dialect.max_bound_params() / 2 {
            return Err(unsupported(format!(
                "{QUANTILES} {}: the numeric strata have {n_edges} bin edges, more than {} binds in one \
                 statement beside the rest; use fewer {QUANTILES}",
                design.quantiles,
                dialect.product()
            )));
        }
        // The audience with each binned stratum's bin as column `xngin_bin_{j}`: the edges bound
        // first (from `first`), then the audience's own parameters.
        let relation = |first: usize| -> Result<(String, Vec<Value>)> {
            if bins.is_empty() {
                return relation(first);
            }
            let mut p = Vec::new();
            let mut cols = Vec::new();
            for b in &bins {
                let v = &strata[b.stratum].num;
                let mut case = format!("CASE WHEN {v} IS NULL THEN NULL");
                for (k, e) in b.interior.iter().enumerate() {
                    let ph = dialect.float_cast(&wh.placeholder(first + p.len()));
                    case.push_str(&format!(" WHEN {v} <= {ph} THEN {k}"));
                    p.push(Value::Float(*e));
                }
                case.push_str(&format!(" ELSE {} END", b.interior.len()));
                cols.push(format!("{case} AS {}", q(&bin_column(b.stratum))));
            }
            let (inner, ip) = relation(first + p.len())?;
            p.extend(ip);
            Ok((format!("(SELECT xr.*, {} FROM (SELECT * FROM {inner}) xr) xb", cols.join(", ")), p))
        };
        // A stratum's value in the strata cells and the assignment: its bin if numeric.
        let cell_expr = |j: usize| -> String {
            let s = &strata[j];
            match s.kind {
                Kind::Text => dialect.exact_text(&s.expr),
                Kind::Bool => s.expr.clone(),
                Kind::Int | Kind::Float => q(&bin_column(j)),
            }
        };
        // 2. The strata cells.
        let cells = if kept.is_empty() {
            if !strata.is_empty() {
                notes.push(
                    "no usable strata left: falling back to complete random assignment".into(),
                );
            }
            Cells::default()
        } else {
            let (rel, rel_params) = relation(1)?;
            let exprs: Vec<String> = kept.iter().map(|&j| cell_expr(j)).collect();
            let groups: Vec<String> = (1..=exprs.len()).map(|i| i.to_string()).collect();
            let sql = format!(
                "SELECT {}, COUNT(*) FROM {rel} GROUP BY {}",
                exprs.join(", "),
                groups.join(", ")
            );
            let rows = tx.fetch_all(&sql, &rel_params).await?;
            Cells::from_rows(rows.rows, kept.len())
        };
        let l = design.arms.block;
        let n_strata = cells.sizes.len() as u32;
        if !kept.is_empty() {
            let (full, partial) = cells
                .sizes
                .iter()
                .fold((0u64, 0u64), |(f, p), &s| (f + s / l, p + u64::from(s % l > 0)));
            if partial > full {
                notes.push(format!(
                    "{partial} of the {} blocks are partial: {n_strata} strata for {n} participants leave most strata \
                     smaller than a block of {l} or with leftovers (misfits), so the arm shares are exact in few \
                     blocks; use fewer or coarser strata (or fewer {QUANTILES})",
                    full + partial
                ));
            }
            if design.misfit == super::MisfitStrategy::Stratum {
                let with_leftovers = cells.sizes.iter().filter(|&&s| s % l > 0).count() as u64;
                if with_leftovers.saturating_mul(l) > stochatreat::MAX_MASK_HASHES {
                    return Err(Error::invalid(format!(
                        "{source}: with blocks of {l}, {with_leftovers} strata have leftover participants, and misfit strategy \
                         stratum would hash one block mask for each ({} hashes, over the limit of {}): use \
                         simpler {ARM_WEIGHTS} (smaller blocks), fewer strata, or {MISFIT_STRATEGY} global",
                        with_leftovers * l,
                        stochatreat::MAX_MASK_HASHES
                    )));
                }
            }
        }

        // 3. The rows: written to the table (after the experiment guard), or streamed out.
        let exp = Value::Text(experiment_id.clone());
        let created = Value::TimestampTz(created_at);
        let ph1 = wh.placeholder(1);
        let kept_cols: Vec<(String, bool)> = kept
            .iter()
            .map(|&j| match strata[j].kind {
                Kind::Int | Kind::Float => (q(&bin_column(j)), false),
                k => (strata[j].expr.clone(), k == Kind::Text),
            })
            .collect();
        // (Float NaN carried as NULL, as the local run writes it.)
        let carry: Vec<String> = strata
            .iter()
            .map(|s| if s.kind == Kind::Float { s.plain.clone() } else { s.expr.clone() })
            .collect();
        // Outer parameters first (experiment id, created_at, arm names), in a derived table
        // that precedes the assignment query in the text (positional `?` on MySQL); then the
        // assignment query's own, then the relation's.
        let m = 2 + design.arms.len();
        let outer: Vec<String> = std::iter::once(format!("{} AS e", dialect.text_cast(&wh.placeholder(1))))
            .chain(std::iter::once(format!("{} AS t", wh.placeholder(2))))
            .chain((0..design.arms.len()).map(|a| format!("{} AS n{a}", dialect.text_cast(&wh.placeholder(3 + a)))))
            .collect();
        let probe = super::pushdown::Audience {
            relation: "",
            id: &id_expr,
            integer_ids,
            strata: &kept_cols,
            carry: &carry,
        };
        let unsupported_engine = || {
            unsupported(format!(
                "{} does not compute the keyed assignment yet; run without {IN_WAREHOUSE} to assign locally (the same rows)",
                dialect.product()
            ))
        };
        let own = dialect
            .keyed_assignment_sql(&probe, &design, n, m + 1)
            .ok_or_else(unsupported_engine)?
            .1
            .len();
        let (rel, rel_params) = relation(m + 1 + own)?;
        let audience = super::pushdown::Audience {
            relation: &rel,
            ..probe
        };
        let (asql, aparams) = dialect
            .keyed_assignment_sql(&audience, &design, n, m + 1)
            .ok_or_else(unsupported_engine)?;
        let arm_case: Vec<String> = (0..design.arms.len())
            .map(|a| format!("WHEN {a} THEN c.n{a}"))
            .collect();
        let carried: String = (0..carry.len()).map(|i| format!(", a.c{i}")).collect();
        let mut params = vec![exp.clone(), created.clone()];
        params.extend(design.arms.arms.iter().map(|a| Value::Text(a.name.clone())));
        params.extend(aparams);
        params.extend(rel_params);
        let from = format!("FROM (SELECT {}) c CROSS JOIN ({asql}) a", outer.join(", "));
        // Participant-id order (numeric, or text by bytes) of the column `col`.
        let id_order = |col: &str| {
            if integer_ids {
                col.to_string()
            } else {
                dialect.order_bytes(&dialect.text_cast(col))
            }
        };
        let k = design.arms.len();
        let mut counts = vec![0u64; k];
        let mut unassigned = 0u64;
        // Per stratum id, the count of each arm.
        let mut per_cell: Vec<Vec<u64>> = vec![vec![0; k]; n_strata as usize];
        let mut tally = |sid: Option<i64>, arm: Option<i64>, c: u64| match arm {
            Some(a) if (a as usize) < k => {
                counts[a as usize] += c;
                if let Some(s) = sid
                    && (s as usize) < per_cell.len()
                {
                    per_cell[s as usize][a as usize] += c;
                }
            }
            _ => unassigned += c,
        };
        let mut file = match output {
            Some(path) => Some(CsvOut::open(path, out.replace, &strata, &design)?),
            None => None,
        };
        let written;
        if let (Some((qualified, xq, new_table, x_exists)), Some((shown, _, _))) = (&dest, &target) {
            // A new table gets its primary key after the rows (one bulk index build).
            let defer_pk = *new_table && dialect.transactional_ddl();
            if defer_pk {
                let ddl_cols: Vec<ColumnDef> = cols
                    .iter()
                    .map(|c| ColumnDef { primary_key: false, ..c.clone() })
                    .collect();
                tx.execute(&if_not_exists(dialect, create_table_sql(dialect, qualified, &ddl_cols)), &[])
                    .await?;
            }
            if !x_exists && dialect.transactional_ddl() {
                tx.execute(&if_not_exists(dialect, experiments_ddl(dialect, xq, None)), &[]).await?;
            }
            let have = super::warehouse::first_count(
                &tx.fetch_all(
                    &super::warehouse::experiment_count_sql(dialect, qualified),
                    std::slice::from_ref(&exp),
                )
                .await?,
            );
            if have > 0 {
                if !out.replace {
                    return Err(super::warehouse::already_holds(dsn, shown, have, &experiment_id));
                }
                // (BigQuery: deleted by the write's script.)
                if staged.is_none() {
                    tx.execute(
                        &format!("DELETE FROM {qualified} WHERE {} = {ph1}", q("experiment_id")),
                        std::slice::from_ref(&exp),
                    )
                    .await?;
                }
            }
            // The rows go into the table, or (BigQuery) into the staging table.
            let qualified = match &staged {
                Some((_, (rows_stage, _))) => {
                    super::pushdown_bigquery::create_stage(wh, rows_stage, &cols).await?
                }
                None => qualified.clone(),
            };
            let names: Vec<String> = cols.iter().map(|c| q(&c.name)).collect();
            let insert = format!(
                "INSERT INTO {qualified} ({}) SELECT c.e, a.participant_id, a.arm_id, CASE a.arm_id {} END, a.stratum_id, c.t{carried} {from}",
                names.join(", "),
                arm_case.join(" "),
            );
            written = tx.execute(&insert, &params).await?;
            if defer_pk {
                let pk: Vec<String> = cols.iter().filter(|c| c.primary_key).map(|c| q(&c.name)).collect();
                tx.execute(&format!("ALTER TABLE {qualified} ADD PRIMARY KEY ({})", pk.join(", ")), &[])
                    .await?;
            }
            // 4. Arm counts per stratum: implied by the strata sizes and the mask keys, except
            // for misfit strategy global (the pool's order depends on the ids) and on BigQuery
            // (no snapshot across queries: the rows are checked against the strata sizes read
            // before), where they are read back from the rows written.
            if let Some(v) = implied_counts(&design, &cells, n).filter(|_| staged.is_none()) {
                for (s, a, c) in v {
                    tally(s, a, c);
                }
            } else {
            let counts_sql = format!(
                "SELECT {}, {}, COUNT(*) FROM {qualified} WHERE {} = {ph1} GROUP BY {}, {}",
                q("stratum_id"),
                q("arm_id"),
                q("experiment_id"),
                q("stratum_id"),
                q("arm_id")
            );
            let by_cell = tx.fetch_all(&counts_sql, std::slice::from_ref(&exp)).await?;
            let mut sizes = vec![0u64; cells.sizes.len()];
            for r in &by_cell.rows {
                let c = r[2].as_i64().unwrap_or(0) as u64;
                if let Some(s) = r[0].as_i64().and_then(|s| sizes.get_mut(s as usize)) {
                    *s += c;
                }
                tally(r[0].as_i64(), r[1].as_i64(), c);
            }
            if sizes != cells.sizes {
                return Err(Error::runtime(format!(
                    "{source}: the audience changed while it was being assigned (its strata sizes differ between \
                     two reads); nothing was written; run again"
                )));
            }
            }
            if let Some(f) = file.as_mut() {
                // The file from the rows written, in participant-id order.
                let mut sel = vec![q("participant_id"), q("arm_id"), q("stratum_id")];
                sel.extend(strata.iter().map(|s| q(&s.name)));
                let sql = format!(
                    "SELECT {} FROM {qualified} WHERE {} = {ph1} ORDER BY {}",
                    sel.join(", "),
                    q("experiment_id"),
                    id_order(&q("participant_id"))
                );
                tx.fetch_each(&sql, std::slice::from_ref(&exp), |row| f.row(&row)).await?;
            }
        } else {
            // No table: the assignment streamed straight into the file, counted on the way.
            let f = file.as_mut().expect("a table or a file is written");
            let sql = format!(
                "SELECT a.participant_id, a.arm_id, a.stratum_id{carried} {from} ORDER BY {}",
                id_order("a.participant_id")
            );
            let mut rows = 0u64;
            tx.fetch_each(&sql, &params, |row| {
                rows += 1;
                tally(row[2].as_i64(), row[1].as_i64(), 1);
                f.row(&row)
            })
            .await?;
            written = rows;
        }
        if written != n || counts.iter().sum::<u64>() + unassigned != n {
            return Err(Error::runtime(format!(
                "{source}: the warehouse computed {written} assignment(s) for {n} participants; nothing was written"
            )));
        }
        if unassigned > 0 {
            notes.push(format!(
                "{unassigned} participant(s) left unassigned (misfit strategy none)"
            ));
        }
        // The balance test from the per-cell arm counts.
        let kept_names: Vec<String> = kept.iter().map(|&j| strata[j].name.clone()).collect();
        // Numeric strata without NULLs enter the regression with their values (as locally):
        // the test then comes from per-cell moments summed by the warehouse.
        let numeric_covs: Vec<usize> = (0..kept.len())
            .filter(|&c| strata[kept[c]].kind.numeric() && int(7 + kept[c]) == n)
            .collect();
        let balance = if kept.is_empty() {
            Vec::new()
        } else if numeric_covs.is_empty() {
            balance_tests(&design, &cells, &kept_names, &per_cell, &counts, &mut notes)
        } else {
            // The assigned rows: the table written, or the assignment query again.
            let xs: Vec<String> = numeric_covs
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    let col = match &dest {
                        Some(_) => q(&strata[kept[c]].name),
                        None => format!("a.c{}", kept[c]),
                    };
                    format!("{} AS x{k}", dialect.float_cast(&col))
                })
                .collect();
            // (BigQuery: the rows are in the staging table until the write's script runs.)
            let written = match (&dest, &staged) {
                (Some(_), Some((_, (rows_stage, _)))) => Some(wh.qualified(None, rows_stage)),
                (Some((qualified, ..)), None) => Some(qualified.clone()),
                (None, _) => None,
            };
            let rows = match &written {
                Some(qualified) => (
                    format!(
                        "SELECT {} AS sid, {} AS arm, {} FROM {qualified} WHERE {} = {ph1}",
                        q("stratum_id"),
                        q("arm_id"),
                        xs.join(", "),
                        q("experiment_id")
                    ),
                    vec![exp.clone()],
                ),
                None => (
                    format!("SELECT a.stratum_id AS sid, a.arm_id AS arm, {} {from}", xs.join(", ")),
                    params.clone(),
                ),
            };
            let mut tests = Vec::new();
            let moments = CellMoments::read(&mut tx, &rows, numeric_covs.len(), n_strata as usize).await?;
            for t in 1..design.arms.len() {
                tests.push(if counts[0] > 0 && counts[t] > 0 {
                    Some(moments.test(&mut tx, wh, &rows, t, &cells, &numeric_covs).await?)
                } else {
                    None
                });
            }
            tests
                .into_iter()
                .enumerate()
                .map(|(i, test)| {
                    super::balance_pair(&design, i + 1, &counts, |c| kept_names[c].clone(), &mut notes, || {
                        let res = test.expect("both arms have members");
                        let left_out = res.left_out.into_iter().map(|lo| (lo.covariate, lo.why)).collect();
                        (res.test.map(|f| (f, None)), left_out)
                    })
                })
                .collect()
        };
        let outcome = Outcome {
            order: Vec::new(),
            arm: Vec::new(),
            stratum_id: None,
            n_strata,
            strata: strata_names.to_vec(),
            used: kept_names,
            dropped,
            counts,
            key_sum,
            unassigned,
            cluster: None,
            balance,
            notes,
        };
        let audience = AudienceRecord {
            participant_type: Some(resolved.participant_type.clone()),
            datasource: Some(resolved.datasource_id.clone()),
            table: Some(match schema {
                Some(s) => format!("{s}.{}", resolved.table_name),
                None => resolved.table_name.clone(),
            }),
            input_file: None,
            id_column: id.to_string(),
            filters: filters_json.clone(),
            audience_rows: n_all,
        };
        let mut record = DesignRecord::new(
            experiment_id.clone(),
            created_at,
            audience,
            &design,
            &outcome,
            seed_given,
            d.sample_size,
            Fingerprint {
                rows: n,
                unit_key_sum: super::rng::hex128(key_sum),
            },
        );
        let mut pending = None;
        if let (Some(f), Some(out)) = (file.take(), output) {
            let (data, sha) = f.finish()?;
            let dp = super::output::design_path(out);
            record.outputs.file = Some(out.display().to_string());
            record.outputs.file_sha256 = Some(sha);
            record.outputs.design_file = Some(dp.display().to_string());
            pending = Some(data);
        }
        if let Some((shown, _, _)) = &target {
            record.outputs.table = Some(shown.to_string());
        }
        let pending_record = super::output::prepare_design_record(output, out.replace, &record)?;
        // 5. The design record (BigQuery: and the whole write, by one script).
        if let Some((st, (rows_stage, x_stage))) = &staged {
            st.apply(rows_stage, x_stage, &record, &created, design.seed)
                .await?;
        } else if let (Some((_, xq, _, _)), Some((shown, _, _)), Some(t)) = (&dest, &target, tx.tx()) {
            super::warehouse::write_design_record(
                wh,
                t,
                xq,
                &exp,
                shown,
                &created,
                design.seed,
                &record,
            )
            .await?;
        }
        Ok((record, outcome, written, pending, pending_record))
    }
    .await;
    if let Some((st, (rows_stage, x_stage))) = &staged {
        st.drop_stages(&[rows_stage, x_stage]).await;
    }
    match result {
        Ok((record, outcome, written, pending, pending_record)) => {
            tx.commit().await?;
            // Files last: the data file, then its record (as the local run does).
            if let Some(p) = pending {
                p.commit()?;
            }
            if let Some(p) = pending_record {
                p.commit()?;
            }
            for note in &outcome.notes {
                notice(note);
            }
            let mut wrote = Vec::new();
            if let Some((shown, _, _)) = &target {
                wrote.push(shown.to_string());
            }
            if let Some(out) = output {
                wrote.push(out.display().to_string());
            }
            notice(format!(
                "wrote {written} assignment(s) of experiment {} to {} (computed in the warehouse)",
                record.experiment_id,
                wrote.join(" and ")
            ));
            Ok(Report {
                record,
                table: Table {
                    source,
                    id_column: id.to_string(),
                    ids: Ids::Int(Vec::new()),
                    columns: Vec::new(),
                    origin: None,
                },
                outcome,
                design,
            })
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The assignment file (CSV) written row by row as the warehouse streams the rows, in the
/// bytes [`super::output::write_csv`] writes, with its SHA-256.
struct CsvOut {
    file: crate::output::AtomicWriter,
    hash: sha2::Sha256,
    arm_names: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    buf: Vec<u8>,
}

impl CsvOut {
    fn open(
        path: &std::path::Path,
        replace: bool,
        strata: &[Stratum],
        design: &Design,
    ) -> Result<CsvOut> {
        use sha2::Digest;
        let mut out = CsvOut {
            file: crate::output::open_atomic(path, replace)?,
            hash: sha2::Sha256::new(),
            arm_names: design
                .arms
                .arms
                .iter()
                .map(|a| {
                    let mut v = Vec::new();
                    push_csv_field(&mut v, a.name.as_bytes());
                    v
                })
                .collect(),
            kinds: strata.iter().map(|s| s.kind).collect(),
            buf: Vec::with_capacity(1 << 16),
        };
        for (i, name) in super::output::FIXED_COLUMNS
            .iter()
            .map(|s| s.to_string())
            .chain(strata.iter().map(|s| s.name.clone()))
            .enumerate()
        {
            if i > 0 {
                out.buf.push(b',');
            }
            push_csv_field(&mut out.buf, name.as_bytes());
        }
        out.buf.push(b'\n');
        Ok(out)
    }

    /// One row `participant_id, arm_id, stratum_id, strata…`.
    fn row(&mut self, row: &[Value]) -> Result<()> {
        let text = |v: &Value| v.to_text().unwrap_or_default();
        match &row[0] {
            Value::Int(i) => self.buf.extend_from_slice(i.to_string().as_bytes()),
            v => push_csv_field(&mut self.buf, text(v).as_bytes()),
        }
        self.buf.push(b',');
        match row[1].as_i64() {
            Some(a) if (a as usize) < self.arm_names.len() => {
                self.buf.extend_from_slice(a.to_string().as_bytes());
                self.buf.push(b',');
                self.buf.extend_from_slice(&self.arm_names[a as usize]);
            }
            _ => self.buf.push(b','),
        }
        self.buf.push(b',');
        if let Some(s) = row[2].as_i64() {
            self.buf.extend_from_slice(s.to_string().as_bytes());
        }
        for (v, kind) in row[3..].iter().zip(&self.kinds) {
            self.buf.push(b',');
            match (v, kind) {
                (Value::Null, _) => {}
                // NaN is a missing value to the local run, written empty.
                (Value::Float(f), _) if f.is_nan() => {}
                (Value::Bool(b), _) => {
                    self.buf
                        .extend_from_slice(if *b { b"true" } else { b"false" })
                }
                (Value::Int(i), Kind::Bool) => {
                    self.buf
                        .extend_from_slice(if *i != 0 { b"true" } else { b"false" })
                }
                (v, _) => push_csv_field(&mut self.buf, text(v).as_bytes()),
            }
        }
        self.buf.push(b'\n');
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        use sha2::Digest;
        self.hash.update(&self.buf);
        self.file.writer().write_all(&self.buf).map_err(|e| {
            Error::runtime(format!(
                "writing the assignment: {}",
                crate::error::io_reason(&e)
            ))
        })?;
        self.buf.clear();
        Ok(())
    }

    /// The pending file and its SHA-256 (hex).
    fn finish(mut self) -> Result<(crate::output::Pending, String)> {
        use sha2::Digest;
        self.flush()?;
        let sha = hex::encode(self.hash.finalize());
        Ok((self.file.finish()?, sha))
    }
}

/// `(stratum id, arm, participants)`; no stratum id without strata, no arm for the unassigned.
type CellCount = (Option<i64>, Option<i64>, u64);

/// The `(stratum id, arm, count)` of an assignment that follow from the strata sizes alone:
/// full blocks split by the block pattern, leftovers by the stratum's keyed mask
/// (docs/assignment-algorithm.md §6) or unassigned; without strata the exact
/// largest-remainder counts. `None` for misfit strategy global.
fn implied_counts(design: &Design, cells: &Cells, n: u64) -> Option<Vec<CellCount>> {
    if cells.sizes.is_empty() {
        return Some(
            (design.arms.largest_remainder_counts(n).iter().enumerate())
                .map(|(a, &c)| (None, Some(a as i64), c))
                .collect(),
        );
    }
    let l = design.arms.block;
    let pattern = design.arms.mask();
    let mut out = Vec::new();
    for (s, &size) in cells.sizes.iter().enumerate() {
        let sid = Some(s as i64);
        for (a, &m) in design.arms.mask_counts.iter().enumerate() {
            out.push((sid, Some(a as i64), size / l * m));
        }
        let left = size % l;
        if left == 0 {
            continue;
        }
        match design.misfit {
            super::MisfitStrategy::Global => return None,
            super::MisfitStrategy::None => out.push((sid, None, left)),
            super::MisfitStrategy::Stratum => {
                let order = super::rng::mask_order(design.seed, &s.to_string(), l as usize);
                for &p in &order[..left as usize] {
                    out.push((sid, Some(pattern[p as usize] as i64), 1));
                }
            }
        }
    }
    Some(out)
}

/// The strata cells of the kept strata, in stratum-id order.
#[derive(Default)]
struct Cells {
    /// Per cell, the level code of each kept stratum (the order of [`super::preprocess`]:
    /// text by bytes, `false` before `true`, NULL last).
    codes: Vec<Vec<u32>>,
    /// Levels per kept stratum (including NULL).
    levels: Vec<u32>,
    /// Participants per cell.
    sizes: Vec<u64>,
}

/// A stratum value ordered as [`super::preprocess`] orders levels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Bool(bool),
    /// A quantile bin.
    Int(i64),
    Text(Vec<u8>),
    Null,
}

fn level_of(v: &Value) -> Level {
    match v {
        Value::Null => Level::Null,
        Value::Bool(b) => Level::Bool(*b),
        Value::Int(i) => Level::Int(*i),
        other => Level::Text(other.to_text().unwrap_or_default().into_bytes()),
    }
}

impl Cells {
    fn from_rows(rows: Vec<Vec<Value>>, k: usize) -> Cells {
        let mut cells: Vec<(Vec<Level>, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r[..k].iter().map(level_of).collect(),
                    r[k].as_i64().unwrap_or(0) as u64,
                )
            })
            .collect();
        cells.sort();
        let mut levels: Vec<Vec<Level>> = vec![Vec::new(); k];
        for (c, _) in &cells {
            for (j, l) in c.iter().enumerate() {
                levels[j].push(l.clone());
            }
        }
        for l in &mut levels {
            l.sort();
            l.dedup();
        }
        let codes = cells
            .iter()
            .map(|(c, _)| {
                c.iter()
                    .enumerate()
                    .map(|(j, l)| levels[j].binary_search(l).unwrap_or(0) as u32)
                    .collect()
            })
            .collect();
        Cells {
            codes,
            levels: levels.iter().map(|l| l.len() as u32).collect(),
            sizes: cells.iter().map(|c| c.1).collect(),
        }
    }
}

/// One balance test per treatment arm from the per-cell arm counts, as [`super::assign`]
/// computes them from the rows (the cells are the strata; every covariate is categorical).
fn balance_tests(
    design: &Design,
    cells: &Cells,
    kept: &[String],
    per_cell: &[Vec<u64>],
    counts: &[u64],
    notes: &mut Vec<String>,
) -> Vec<BalanceTest> {
    let codes: Vec<Codes> = (0..kept.len())
        .map(|j| Codes::Owned(cells.codes.iter().map(|c| c[j]).collect()))
        .collect();
    let covs: Vec<Covariate> = codes
        .iter()
        .zip(&cells.levels)
        .map(|(c, &levels)| Covariate::Categorical { codes: c, levels })
        .collect();
    (1..design.arms.len())
        .map(|t| {
            super::balance_pair(
                design,
                t,
                counts,
                |c| kept[c].clone(),
                notes,
                || {
                    let groups: Vec<(u32, f64, f64, f64)> = per_cell
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| a[0] + a[t] > 0)
                        .map(|(s, a)| (s as u32, (a[0] + a[t]) as f64, a[t] as f64, a[t] as f64))
                        .collect();
                    let res =
                        balance::f_test_cells(groups, (counts[0] + counts[t]) as usize, &covs);
                    let left_out = res
                        .left_out
                        .into_iter()
                        .map(|lo| (lo.covariate, lo.why))
                        .collect();
                    (res.test.map(|f| (f, None)), left_out)
                },
            )
        })
        .collect()
}

/// Per (stratum id, arm) sums of the numeric covariates x over the assigned rows: the count,
/// Σ x and Σ x x' (the first pass of the balance test with numeric covariates).
struct CellMoments {
    /// Numeric covariates.
    k: usize,
    /// Per stratum id and arm: Σ z z' with z = (1, x) ((k+1)², row-major; [0] the count).
    zz: Vec<Vec<Vec<f64>>>,
    /// The covariates' means over the rows (the centers of the second pass).
    center: Vec<f64>,
}

/// The sums `Σ z_i z_j` (i ≤ j, z = (1, x₀, …)) as SQL, each with `f` before it.
fn pair_sums(k: usize, x: impl Fn(usize) -> String, f: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..=k {
        for j in i..=k {
            let mut factors: Vec<String> = Vec::new();
            if !f.is_empty() {
                factors.push(f.to_string());
            }
            factors.extend([i, j].iter().filter(|&&v| v > 0).map(|&v| x(v - 1)));
            if factors.is_empty() {
                factors.push("1".into());
            }
            out.push(format!("SUM({})", factors.join(" * ")));
        }
    }
    out
}

/// Fill a symmetric (k+1)² matrix from the sums of [`pair_sums`] starting at `row[at]`.
fn unpack(row: &[Value], at: usize, k: usize, into: &mut [f64]) {
    let w = k + 1;
    let mut c = at;
    for i in 0..w {
        for j in i..w {
            let v = row.get(c).and_then(Value::as_f64).unwrap_or(0.0);
            into[i * w + j] += v;
            if i != j {
                into[j * w + i] += v;
            }
            c += 1;
        }
    }
}

impl CellMoments {
    /// The first pass over `rows` (`sid, arm, x0, …` and its parameters).
    async fn read(
        tx: &mut super::pushdown_bigquery::Session<'_>,
        rows: &(String, Vec<Value>),
        k: usize,
        n_strata: usize,
    ) -> Result<CellMoments> {
        let w = k + 1;
        let sql = format!(
            "SELECT sid, arm, {} FROM ({}) r GROUP BY sid, arm",
            pair_sums(k, |i| format!("x{i}"), "").join(", "),
            rows.0
        );
        let mut zz: Vec<Vec<Vec<f64>>> = Vec::new();
        let mut total = vec![0.0f64; w * w];
        for row in tx.fetch_all(&sql, &rows.1).await?.rows {
            let (Some(sid), Some(arm)) = (row[0].as_i64(), row[1].as_i64()) else {
                continue;
            };
            let (sid, arm) = (sid as usize, arm as usize);
            if sid >= n_strata {
                continue;
            }
            if zz.is_empty() {
                zz = vec![Vec::new(); n_strata];
            }
            if zz[sid].len() <= arm {
                zz[sid].resize(arm + 1, vec![0.0; w * w]);
            }
            unpack(&row, 2, k, &mut zz[sid][arm]);
            unpack(&row, 2, k, &mut total);
        }
        let center = (1..w)
            .map(|i| {
                if total[0] > 0.0 {
                    total[i] / total[0]
                } else {
                    0.0
                }
            })
            .collect();
        if zz.is_empty() {
            zz = vec![Vec::new(); n_strata];
        }
        Ok(CellMoments { k, zz, center })
    }

    fn of(&self, sid: usize, arm: usize) -> Option<&Vec<f64>> {
        self.zz
            .get(sid)
            .and_then(|a| a.get(arm))
            .filter(|m| m[0] > 0.0)
    }

    /// The balance test of arm `t` against arm 0 ([`balance::f_test_moments`]): the cells'
    /// moments, then per fitted values the warehouse asks for, the residual sums
    /// Σ e² z z' (one pass over the rows of the two arms each).
    async fn test(
        &self,
        tx: &mut super::pushdown_bigquery::Session<'_>,
        wh: &Warehouse,
        rows: &(String, Vec<Value>),
        t: usize,
        cells: &Cells,
        numeric: &[usize],
    ) -> Result<balance::Balance> {
        let (k, w) = (self.k, self.k + 1);
        // The compared cells, in stratum-id order.
        let sids: Vec<usize> = (0..cells.sizes.len())
            .filter(|&s| self.of(s, 0).is_some() || self.of(s, t).is_some())
            .collect();
        let mut mo = balance::Moments {
            cells: Vec::with_capacity(sids.len()),
            zz: Vec::with_capacity(sids.len()),
            zy: Vec::with_capacity(sids.len()),
            ezz: None,
            dense_ezz: None,
        };
        let mut n = 0.0f64;
        for (c, &s) in sids.iter().enumerate() {
            let zero = vec![0.0; w * w];
            let (m0, mt) = (
                self.of(s, 0).unwrap_or(&zero),
                self.of(s, t).unwrap_or(&zero),
            );
            mo.cells.push((c as u32, m0[0] + mt[0], mt[0], mt[0]));
            mo.zz.push(m0.iter().zip(mt).map(|(a, b)| a + b).collect());
            mo.zy.push(mt[..w].to_vec());
            n += m0[0] + mt[0];
        }
        let n_kept = cells.levels.len();
        let codes: Vec<Codes> = (0..n_kept)
            .map(|j| Codes::Owned(sids.iter().map(|&s| cells.codes[s][j]).collect()))
            .collect();
        let placeholder = vec![0.0f64; sids.len()];
        let covs: Vec<Covariate> = (0..n_kept)
            .map(|j| {
                if numeric.contains(&j) {
                    Covariate::Numeric(&placeholder)
                } else {
                    Covariate::Categorical {
                        codes: &codes[j],
                        levels: cells.levels[j],
                    }
                }
            })
            .collect();
        let slot: std::collections::HashMap<usize, usize> =
            sids.iter().enumerate().map(|(c, &s)| (s, c)).collect();
        for _ in 0..3 {
            let (constant, slopes, dense) = match balance::f_test_moments(&mo, n as usize, &covs) {
                balance::MomentTest::Done(b) => return Ok(b),
                balance::MomentTest::Residuals {
                    constant,
                    slopes,
                    dense,
                } => (constant, slopes, dense),
            };
            // Σ v^p d̃ d̃' (p = 0, 1, 2) per (stratum id, arm), d̃ = (1, x − center),
            // u = Σ slope·(x − center) and v = u − ū its deviation from the (stratum id, arm)
            // mean ū (also returned): the slopes and centers bound after the rows' parameters.
            // With e = (dc − ū) − v every term stays small when the fit is (nearly) exact, so
            // rounding noise is recognised as an exact fit as it is in the local computation
            // (the expansion in u itself would leave noise of 1e-16 · dc² per participant).
            let mut params = rows.1.clone();
            let mut bound = Vec::new();
            for (i, v) in slopes.iter().chain(&self.center).enumerate() {
                let name = if i < k {
                    format!("b{i}")
                } else {
                    format!("m{}", i - k)
                };
                bound.push(format!(
                    "{} AS {name}",
                    wh.dialect().float_cast(&wh.placeholder(params.len() + 1))
                ));
                params.push(Value::Float(*v));
            }
            let d: Vec<String> = (0..k).map(|i| format!("(r.x{i} - p.m{i})")).collect();
            let u: Vec<String> = (0..k).map(|i| format!("{} * p.b{i}", d[i])).collect();
            let mut sums = pair_sums(k, |i| format!("d{i}"), "");
            sums.extend(pair_sums(k, |i| format!("d{i}"), "v"));
            sums.extend(pair_sums(k, |i| format!("d{i}"), "v * v"));
            sums.push("MIN(ub)".into());
            let ds: Vec<String> = d
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{e} AS d{i}"))
                .collect();
            let d_names = (0..k)
                .map(|i| format!("d{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT sid, arm, {} FROM (SELECT sid, arm, {}, u - ub AS v, ub FROM \
                 (SELECT sid, arm, {}, u, AVG(u) OVER (PARTITION BY sid, arm) AS ub FROM \
                 (SELECT r.sid, r.arm, {}, {} AS u FROM ({}) r CROSS JOIN (SELECT {}) p \
                 WHERE r.arm = 0 OR r.arm = {t}) g0) g1) g GROUP BY sid, arm",
                sums.join(", "),
                d_names,
                d_names,
                ds.join(", "),
                u.join(" + "),
                rows.0,
                bound.join(", ")
            );
            let per = w * (w + 1) / 2;
            let mut ezz = vec![vec![0.0f64; w * w]; sids.len()];
            for row in tx.fetch_all(&sql, &params).await?.rows {
                let (Some(sid), Some(arm)) = (row[0].as_i64(), row[1].as_i64()) else {
                    continue;
                };
                let Some(&c) = slot.get(&(sid as usize)) else {
                    continue;
                };
                let mut s = [vec![0.0; w * w], vec![0.0; w * w], vec![0.0; w * w]];
                for (p, m) in s.iter_mut().enumerate() {
                    unpack(&row, 2 + p * per, k, m);
                }
                let y = if arm as usize == t { 1.0 } else { 0.0 };
                let ub = row.get(2 + 3 * per).and_then(Value::as_f64).unwrap_or(0.0);
                let dc = y
                    - constant[c]
                    - slopes
                        .iter()
                        .zip(&self.center)
                        .map(|(b, m)| b * m)
                        .sum::<f64>()
                    - ub;
                // Σ e² d̃ d̃' with e = dc − ū − v, then in z = (1, x): z₀ = d̃₀,
                // z_i = d̃_i + m_i d̃₀.
                let e: Vec<f64> = (0..w * w)
                    .map(|i| dc * dc * s[0][i] - 2.0 * dc * s[1][i] + s[2][i])
                    .collect();
                if e[0] <= 1e-20 * s[0][0] {
                    continue; // an exact fit: no residual variance (rounding noise)
                }
                let tm = |a: usize, i: usize| -> f64 {
                    if a == i {
                        1.0
                    } else if i == 0 && a > 0 {
                        self.center[a - 1]
                    } else {
                        0.0
                    }
                };
                for a in 0..w {
                    for b in 0..w {
                        let mut v = 0.0;
                        for i in 0..w {
                            for j in 0..w {
                                v += tm(a, i) * tm(b, j) * e[i * w + j];
                            }
                        }
                        ezz[c][a * w + b] += v;
                    }
                }
            }
            if dense {
                mo.dense_ezz = Some(ezz);
            } else {
                mo.ezz = Some(ezz);
            }
        }
        Err(Error::runtime(
            "the balance test asked for residual sums more than twice",
        ))
    }
}

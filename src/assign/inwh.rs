//! `assign --in-warehouse`: the whole assignment computed by the participant type's warehouse
//! (docs/assignment-algorithm.md, "In the warehouse"), with only aggregates coming back.
//!
//! In one transaction reading one snapshot of the audience:
//! 1. one aggregate query: row count, ids non-null and unique, the input fingerprint (Σ of the
//!    unit keys as four 32-bit word sums), and per stratum its distinct and non-null counts
//!    (the preprocessing rules of [`super::preprocess`]: single-valued and unique-valued
//!    columns are dropped);
//! 2. one `GROUP BY` of the kept strata: the strata cells and their sizes, which give the
//!    stratum ids (dense rank of the cells in byte order, NULL last), the block counts and the
//!    categorical codes of the balance regression;
//! 3. the experiment guard (and `--replace`), then `INSERT INTO T … SELECT` of the keyed
//!    assignment query of the dialect (the `keyed_assignment_sql` hook of
//!    [`crate::warehouse::SqlDialect`]);
//! 4. `GROUP BY stratum_id, arm_id` over the rows written: the arm counts and the balance test
//!    from per-cell counts ([`super::balance::f_test_cells`]), identical to the local one;
//! 5. the design record, then commit.
//!
//! Supported: categorical strata (text, uuid, boolean) on engines whose dialect computes the
//! keyed query; everything else is refused (exit 2) rather than computed differently.

use super::balance::{self, Covariate};
use super::data::{Ids, Table};

use super::output::{AudienceRecord, DesignRecord, Fingerprint, push_csv_field};
use super::preprocess::{Codes, Dropped};
use super::run::{Report, Request, Source, check_request};
use super::warehouse::{EXPERIMENTS_TABLE, experiments_ddl, if_not_exists, split_table};
use super::{BalanceTest, Design, Outcome, stochatreat};
use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::output::notice;
use crate::warehouse::load::{ColumnDef, create_table_sql};
use crate::warehouse::{Value, Warehouse};

/// How a stratum's values are compared: text by bytes, or booleans.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Bool,
}

/// A requested stratum as the warehouse holds it.
struct Stratum {
    name: String,
    /// The SQL expression of its value (quoted column, cast to text for uuids).
    expr: String,
    kind: Kind,
}

fn unsupported(what: String) -> Error {
    Error::usage(format!(
        "--in-warehouse: {what}; run without --in-warehouse to assign locally"
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

/// Run `assign --in-warehouse`.
pub async fn run(req: &Request) -> Result<Report> {
    let (arms, strata_names) = check_request(req)?;
    let Source::ParticipantType {
        name,
        settings,
        datasource,
        id_column,
        filters,
        filters_file,
    } = &req.source
    else {
        return Err(Error::usage(
            "--in-warehouse assigns a participant type inside its warehouse; it needs --participant-type, not --input",
        ));
    };
    if req.dsn.is_some() {
        return Err(Error::usage(
            "--in-warehouse writes into the participant type's own warehouse; drop --dsn",
        ));
    }
    if let Some(c) = &req.cluster_column {
        return Err(unsupported(format!(
            "--cluster-column {c}: cluster designs are assigned locally for now"
        )));
    }
    if req.write_table.is_none() && req.output.is_none() {
        return Err(Error::usage(
            "--in-warehouse needs --write-table [SCHEMA.]TABLE (written by the warehouse) or --output FILE.csv \
             (the rows streamed out), or both",
        ));
    }
    if let Some(out) = &req.output
        && super::audience::file_kind(out)? != super::audience::FileKind::Csv
    {
        return Err(unsupported(format!(
            "--output {}: the rows are streamed out as CSV; give a .csv file",
            out.display()
        )));
    }
    let super::run::Identity {
        seed,
        seed_given,
        experiment_id,
        created_at,
    } = super::run::identity(req);

    let resolved =
        crate::settings::resolve_participants(settings.as_deref(), datasource.as_deref(), name)
            .await?;
    let sheet = &resolved.sheet;
    let label = format!("participant type {}", resolved.participant_type);
    let id = super::warehouse::sheet_id_and_strata(
        sheet,
        &label,
        id_column.as_ref(),
        &strata_names,
        None,
    )?;
    let dsn = resolved.dsn.clone();
    let dialect = dsn.dialect();
    let target = match &req.write_table {
        Some(t) => {
            let (wt_schema, wt_name) = split_table(t)?;
            if !dialect.has_schemas() && wt_schema.is_some() {
                return Err(super::warehouse::no_schemas(
                    dialect,
                    "--write-table",
                    t,
                    &wt_name,
                ));
            }
            Some((t.as_str(), wt_schema, wt_name))
        }
        None => None,
    };
    let wh = Warehouse::connect(&dsn).await?;
    let res = run_on(
        req,
        &wh,
        &resolved,
        &label,
        &id,
        &strata_names,
        filters,
        filters_file.as_deref(),
        target,
        req.output.as_deref(),
        Design {
            arms,
            strata: strata_names.clone(),
            quantiles: req.quantiles,
            misfit: req.misfit,
            seed,
            fstat_thresh: req.fstat_thresh,
            cluster: None,
        },
        (experiment_id.clone(), created_at, seed_given),
    )
    .await;
    wh.close().await;
    res.map_err(|e| match (e, &req.write_table) {
        (Error::Conflict(raw), _) => Error::runtime(format!(
            "another run is writing the table {} at the same time, so this run wrote nothing ({raw}); \
             wait for it to finish, then run again (--replace to overwrite its rows of the same experiment)",
            req.write_table.as_deref().unwrap_or_default()
        )),
        (other, Some(t)) => super::warehouse::not_written(other, t, &experiment_id),
        (other, None) => other,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    req: &Request,
    wh: &Warehouse,
    resolved: &crate::settings::ResolvedParticipants,
    label: &str,
    id: &str,
    strata_names: &[String],
    filters: &[String],
    filters_file: Option<&std::path::Path>,
    target: Option<(&str, Option<String>, String)>,
    output: Option<&std::path::Path>,
    design: Design,
    (experiment_id, created_at, seed_given): (String, chrono::DateTime<chrono::Utc>, bool),
) -> Result<Report> {
    let dialect = wh.dialect();
    let q = |s: &str| wh.quote(s);
    if dialect.hex_word("x", 0).is_none() || !dialect.has_transactions() {
        return Err(unsupported(format!(
            "{} does not compute the keyed assignment yet; run without --in-warehouse to assign locally (the same rows)",
            dialect.product()
        )));
    }
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
        let (kind, expr) = match l.data_type {
            DataType::CharacterVarying => (Kind::Text, q(s)),
            DataType::Uuid => (Kind::Text, dialect.text_cast(&q(s))),
            DataType::Boolean => (Kind::Bool, q(s)),
            other => {
                return Err(unsupported(format!(
                    "stratum {s} is of type {}; only text and boolean strata are computed in the warehouse \
                     so far (numeric strata need quantile bins)",
                    type_name(other, &l.sql_type)
                )));
            }
        };
        strata.push(Stratum {
            name: s.clone(),
            expr,
            kind,
        });
    }
    // Filters, with their parameters numbered after the query's own (`first`).
    let mut all = Vec::new();
    for f in filters {
        all.push(crate::filters::parse_cli_filter(f)?);
    }
    if let Some(p) = filters_file {
        all.extend(crate::filters::load_filters_file(p)?);
    }
    let filters_json = if all.is_empty() {
        serde_json::Value::Array(vec![])
    } else {
        serde_json::to_value(&all).unwrap_or(serde_json::Value::Null)
    };
    // The audience: the table with its filters; with --sample-size, its `k` rows with the
    // smallest unit keys (ties by id), the seed bound after the filters.
    let relation_with = |first: usize, sampled: bool| -> Result<(String, Vec<Value>)> {
        let t = wh.qualified(schema, &resolved.table_name);
        let (filtered, mut p) = if all.is_empty() {
            (t, Vec::new())
        } else {
            let (w, p) = crate::filters::where_clause(dialect, &all, &resolved.sheet, first)?;
            (format!("{t} WHERE {w}"), p)
        };
        let Some(k) = req.sample_size.filter(|_| sampled) else {
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
    let mut tx = wh.begin().await?;
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
            let e = if s.kind == Kind::Text {
                dialect.exact_text(&s.expr)
            } else {
                s.expr.clone()
            };
            inner.push(format!("{e} AS s{j}"));
            sel.push(format!("COUNT(s{j})"));
        }
        // The digest is computed once per row, not once per word that reads it.
        let once = dialect.no_inline_suffix();
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
                     FROM (SELECT {} FROM {rel}) w) x{once}) y",
                    sel.join(", "),
                    inner.join(", ")
                )
            }
            None => format!(
                "SELECT {} FROM (SELECT {key} AS h, x.* FROM (SELECT {} FROM {rel}) x{once}) y",
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
            let why = if all.is_empty() { "" } else { " after the filters" };
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
        if int_like.is_some() && int(7 + strata.len()) == n {
            return Err(unsupported(format!(
                "the text ids of {id} all look like integers, which the local run orders and stores as integers; \
                 not computed in the warehouse yet"
            )));
        }
        let row = match req.sample_size {
            Some(k) if k > n_all => {
                return Err(Error::invalid(format!(
                    "--sample-size {k} is larger than the audience ({n_all} participants in {source}); lower it or widen the filters"
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
        let distinct: Vec<u64> = if strata.is_empty() {
            Vec::new()
        } else {
            let (rel, rel_params) = relation(1)?;
            let exprs: Vec<String> = strata
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let e = if s.kind == Kind::Text {
                        dialect.exact_text(&s.expr)
                    } else {
                        s.expr.clone()
                    };
                    format!("{e} AS s{j}")
                })
                .collect();
            let counts: Vec<String> = (0..strata.len()).map(|j| format!("COUNT(DISTINCT s{j})")).collect();
            let groups: Vec<String> = (1..=strata.len()).map(|i| i.to_string()).collect();
            let sql = format!(
                "SELECT {} FROM (SELECT {} FROM {rel} GROUP BY {}) g",
                counts.join(", "),
                exprs.join(", "),
                groups.join(", ")
            );
            let r = tx.fetch_all(&sql, &rel_params).await?;
            let r = r.rows.first().cloned().unwrap_or_default();
            (0..strata.len()).map(|j| int_of(&r, j)).collect()
        };
        for (j, s) in strata.iter().enumerate() {
            let distinct = distinct[j];
            let non_null = int(7 + j);
            let reason = if distinct <= 1 {
                Some("single value")
            } else if distinct == non_null && non_null > 1 {
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
        let mut notes: Vec<String> = dropped
            .iter()
            .map(|d| format!("stratum {} not used: {}", d.field, d.reason))
            .collect();
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
            let exprs: Vec<String> = kept
                .iter()
                .map(|&j| {
                    let s = &strata[j];
                    if s.kind == Kind::Text {
                        dialect.exact_text(&s.expr)
                    } else {
                        s.expr.clone()
                    }
                })
                .collect();
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
                     blocks; use fewer or coarser strata (or fewer --quantiles)",
                    full + partial
                ));
            }
            if design.misfit == super::MisfitStrategy::Stratum {
                let with_leftovers = cells.sizes.iter().filter(|&&s| s % l > 0).count() as u64;
                if with_leftovers.saturating_mul(l) > stochatreat::MAX_MASK_HASHES {
                    return Err(Error::invalid(format!(
                        "{source}: with blocks of {l}, {with_leftovers} strata have leftover participants, and misfit strategy \
                         stratum would hash one block mask for each ({} hashes, over the limit of {}): use \
                         simpler --arm-weights (smaller blocks), fewer strata, or --misfit-strategy global",
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
            .map(|&j| (strata[j].expr.clone(), strata[j].kind == Kind::Text))
            .collect();
        let carry: Vec<String> = strata.iter().map(|s| s.expr.clone()).collect();
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
                "{} does not compute the keyed assignment yet; run without --in-warehouse to assign locally (the same rows)",
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
            Some(path) => Some(CsvOut::open(path, req.replace, &strata, &design)?),
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
                tx.execute(&if_not_exists(dialect, experiments_ddl(dialect, xq)), &[]).await?;
            }
            let have = tx
                .fetch_all(
                    &format!("SELECT count(*) FROM {qualified} WHERE {} = {ph1}", q("experiment_id")),
                    std::slice::from_ref(&exp),
                )
                .await?;
            let have = have.rows.first().and_then(|r| r.first()).and_then(Value::as_i64).unwrap_or(0);
            if have > 0 {
                if !req.replace {
                    return Err(Error::invalid(format!(
                        "{dsn}: the table {shown} already holds {have} assignment(s) of experiment {experiment_id}; pass --replace to replace \
                         them or choose another --experiment-id"
                    )));
                }
                tx.execute(
                    &format!("DELETE FROM {qualified} WHERE {} = {ph1}", q("experiment_id")),
                    std::slice::from_ref(&exp),
                )
                .await?;
            }
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
            // for misfit strategy global (the pool's order depends on the ids), where they are
            // read back from the rows written.
            if let Some(v) = implied_counts(&design, &cells, n) {
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
            for r in &by_cell.rows {
                tally(r[0].as_i64(), r[1].as_i64(), r[2].as_i64().unwrap_or(0) as u64);
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
            let f = file.as_mut().expect("--write-table or --output");
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
        let balance = if kept.is_empty() {
            Vec::new()
        } else {
            balance_tests(&design, &cells, &kept_names, &per_cell, &counts, &mut notes)
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
            req.sample_size,
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
        let pending_record = super::output::prepare_design_record(output, req.replace, &record)?;
        // 5. The design record.
        if let (Some((_, xq, _, _)), Some((shown, _, _))) = (&dest, &target) {
            super::warehouse::write_design_record(
                wh,
                &mut tx,
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
    Text(Vec<u8>),
    Null,
}

fn level_of(v: &Value) -> Level {
    match v {
        Value::Null => Level::Null,
        Value::Bool(b) => Level::Bool(*b),
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

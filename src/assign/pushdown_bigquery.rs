//! The keyed-hash assignment on BigQuery (GoogleSQL; docs/assignment-algorithm.md §10): the
//! query of the `keyed_assignment_sql` hook of [`crate::warehouse::bigquery::BigQuerySql`], and
//! how `assign --in-warehouse` writes its rows there without a client-held transaction.
//!
//! The query computes what [`super::pushdown::postgres_assignment`] computes: unit keys
//! `TO_HEX(MD5(CONCAT(seed, ':', id)))` (lowercase hex), strata ordered with NULL last (`ASC
//! NULLS LAST`), text compared as STRING (BigQuery compares STRING values by Unicode code point,
//! which is the order of their UTF-8 bytes; no collation is applied unless a column declares
//! one), block positions mapped to arms by `CASE` over the runs of the block mask (no array
//! literals), mask positions from `UNNEST(GENERATE_ARRAY(0, L - 1))`.
//!
//! One parameter, the seed as text, bound first (in the `prm` CTE, which precedes the
//! relation's own positional `?` placeholders in the text).
//!
//! The write (`Session`, `create_stage`): the BigQuery emulator used in tests binds no
//! parameters inside a multi-statement script, and the audience's filters are bound
//! parameters. So the rows are
//! computed by one ordinary `INSERT INTO staging SELECT …` (its parameters bound), and one
//! script then applies the experiment guard (or `--replace`'s delete), copies the rows into
//! the table and replaces the design record, all or nothing
//! (`Staged::apply` in [`super::warehouse`], shared with the local `--write-table` on BigQuery).
//! The rows never leave the warehouse; they are written twice (staging, then table).

use super::pushdown::{Audience, arm_case};
use super::{Design, MisfitStrategy};
use crate::error::Result;
use crate::warehouse::{Rows, Tx, Value, Warehouse};

/// The assignment as one BigQuery query and its one parameter (the seed as text).
pub fn bigquery_assignment(a: &Audience, design: &Design, n_rows: u64) -> (String, Vec<Value>) {
    let l = design.arms.block;
    let mask_counts = &design.arms.mask_counts;
    let seed = Value::Text(design.seed.to_string());
    let id = a.id;
    let rel = a.relation;
    let tie = if a.integer_ids { "pid" } else { "tid" };
    let key = format!("h, {tie}");
    let kc: String = (a.carry.iter().enumerate())
        .map(|(i, c)| format!(", {c} AS c{i}"))
        .collect();
    let cc: String = (0..a.carry.len()).map(|i| format!(", c{i}")).collect();
    let bc: String = (0..a.carry.len()).map(|i| format!(", b.c{i}")).collect();
    let prm = "prm AS (SELECT CAST(? AS STRING) AS xngin_seed)";
    let tid = format!("CAST({id} AS STRING)");
    let k_cols = |extra: &str| {
        format!(
            "k AS (SELECT {id} AS pid, {tid} AS tid, TO_HEX(MD5(CONCAT(prm.xngin_seed, ':', {tid}))) AS h{extra}{kc} \
             FROM prm CROSS JOIN {rel})"
        )
    };
    if a.strata.is_empty() {
        let counts = design.arms.largest_remainder_counts(n_rows);
        let sql = format!(
            "WITH {prm}, {}, \
             r AS (SELECT pid{cc}, ROW_NUMBER() OVER (ORDER BY {key}) - 1 AS j FROM k) \
             SELECT pid AS participant_id, {} AS arm_id, CAST(NULL AS INT64) AS stratum_id{cc} FROM r",
            k_cols(""),
            arm_case("j", &counts)
        );
        return (sql, vec![seed]);
    }
    let cols: String = (a.strata.iter().enumerate())
        .map(|(i, (c, _))| format!(", {c} AS s{i}"))
        .collect();
    let order: Vec<String> = (0..a.strata.len())
        .map(|i| format!("s{i} ASC NULLS LAST"))
        .collect();
    let names: Vec<String> = (0..a.strata.len()).map(|i| format!("s{i}")).collect();
    // NULL-safe equality of the strata values as plain equalities (joinable by hash).
    let same: Vec<String> = (a.strata.iter().enumerate())
        .map(|(i, (_, text))| {
            let none = if *text { "''" } else { "FALSE" };
            format!(
                "COALESCE(k.s{i}, {none}) = COALESCE(cl.s{i}, {none}) AND (k.s{i} IS NULL) = (cl.s{i} IS NULL)"
            )
        })
        .collect();
    let mut ctes = vec![
        prm.to_string(),
        k_cols(&cols),
        // The stratum ids: ranked over the few distinct cells, not over every row (an
        // unpartitioned window over the whole audience would run on one BigQuery worker).
        format!(
            "cl AS (SELECT {}, DENSE_RANK() OVER (ORDER BY {}) - 1 AS sid FROM (SELECT DISTINCT {} FROM k) d)",
            names.join(", "),
            order.join(", "),
            names.join(", ")
        ),
        format!(
            "st AS (SELECT pid, tid, h{cc}, sid FROM k JOIN cl ON {})",
            same.join(" AND ")
        ),
        format!(
            "o AS (SELECT pid, tid{cc}, sid, ROW_NUMBER() OVER (PARTITION BY sid ORDER BY {key}) - 1 AS j, \
             COUNT(*) OVER (PARTITION BY sid) AS s FROM st)"
        ),
        format!("b AS (SELECT pid, tid{cc}, sid, j, s - MOD(s, {l}) AS full_n FROM o)"),
    ];
    // The mask order of each label: positions by md5('mask:{seed}:{label}:{p}'), then p.
    let mask = |labels: &str| {
        format!(
            "m AS (SELECT lab, p, ROW_NUMBER() OVER (PARTITION BY lab ORDER BY \
             TO_HEX(MD5(CONCAT('mask:', prm.xngin_seed, ':', lab, ':', CAST(p AS STRING)))), p) - 1 AS t \
             FROM ({labels}) ls CROSS JOIN UNNEST(GENERATE_ARRAY(0, {})) AS p CROSS JOIN prm)",
            l - 1
        )
    };
    let in_block = |j: &str| arm_case(&format!("MOD({j}, {l})"), mask_counts);
    let select = match design.misfit {
        MisfitStrategy::Stratum => {
            ctes.push(mask(
                "SELECT DISTINCT CAST(sid AS STRING) AS lab FROM b WHERE j >= full_n",
            ));
            format!(
                "SELECT b.pid AS participant_id, \
                 CASE WHEN b.j < b.full_n THEN {} ELSE {} END AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b \
                 LEFT JOIN m ON b.j >= b.full_n AND m.lab = CAST(b.sid AS STRING) AND m.t = b.j - b.full_n",
                in_block("b.j"),
                arm_case("m.p", mask_counts)
            )
        }
        MisfitStrategy::None => format!(
            "SELECT pid AS participant_id, CASE WHEN j < full_n THEN {} END AS arm_id, \
             sid AS stratum_id{cc} FROM b",
            in_block("j")
        ),
        MisfitStrategy::Global => {
            ctes.push(format!(
                "pl AS (SELECT pid, ROW_NUMBER() OVER (ORDER BY \
                 TO_HEX(MD5(CONCAT('pool:', prm.xngin_seed, ':', tid))), {tie}) - 1 AS pj, \
                 COUNT(*) OVER () AS ps FROM b CROSS JOIN prm WHERE j >= full_n)"
            ));
            ctes.push(format!(
                "pf AS (SELECT pid, pj, ps - MOD(ps, {l}) AS pfull FROM pl)"
            ));
            ctes.push(mask("SELECT 'global' AS lab"));
            format!(
                "SELECT b.pid AS participant_id, \
                 CASE WHEN b.j < b.full_n THEN {} \
                      WHEN pf.pj < pf.pfull THEN {} \
                      ELSE {} END AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b LEFT JOIN pf ON pf.pid = b.pid \
                 LEFT JOIN m ON pf.pj >= pf.pfull AND m.t = pf.pj - pf.pfull",
                in_block("b.j"),
                in_block("pf.pj"),
                arm_case("m.p", mask_counts)
            )
        }
    };
    (format!("WITH {} {select}", ctes.join(", ")), vec![seed])
}

/// Where the statements of one in-warehouse run go: one transaction (PostgreSQL, MySQL), or,
/// where the client holds no transaction (BigQuery), one job each: the aggregate queries and
/// the staging insert run on their own, and the write is applied by one script
/// (`Staged::apply` in [`super::warehouse`]).
pub(super) enum Session<'a> {
    Tx(Tx),
    Jobs(&'a Warehouse),
}

impl<'a> Session<'a> {
    pub async fn begin(wh: &'a Warehouse) -> Result<Session<'a>> {
        Ok(if wh.dialect().has_transactions() {
            Session::Tx(wh.begin().await?)
        } else {
            Session::Jobs(wh)
        })
    }

    /// The transaction, if there is one.
    pub fn tx(&mut self) -> Option<&mut Tx> {
        match self {
            Session::Tx(t) => Some(t),
            Session::Jobs(_) => None,
        }
    }

    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Session::Tx(t) => t.execute(sql, params).await,
            Session::Jobs(wh) => wh.execute(sql, params).await,
        }
    }

    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Rows> {
        match self {
            Session::Tx(t) => t.fetch_all(sql, params).await,
            Session::Jobs(wh) => wh.fetch_all(sql, params).await,
        }
    }

    pub async fn fetch_each<F>(&mut self, sql: &str, params: &[Value], f: F) -> Result<Vec<String>>
    where
        F: FnMut(Vec<Value>) -> Result<()>,
    {
        match self {
            Session::Tx(t) => t.fetch_each(sql, params, f).await,
            Session::Jobs(wh) => wh.fetch_each(sql, params, f).await,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Session::Tx(t) => t.commit().await,
            Session::Jobs(_) => Ok(()),
        }
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Session::Tx(t) => t.rollback().await,
            Session::Jobs(_) => Ok(()),
        }
    }
}

/// Create the staging table `name` for the rows of the assignment table's columns `cols` (it
/// expires by itself if the run is killed before dropping it); returns its qualified name.
pub(super) async fn create_stage(
    wh: &Warehouse,
    name: &str,
    cols: &[crate::warehouse::load::ColumnDef],
) -> Result<String> {
    let qualified = wh.qualified(None, name);
    wh.execute(
        &crate::warehouse::load::create_table_sql(wh.dialect(), &qualified, cols),
        &[],
    )
    .await?;
    if let Some(bq) = wh.bigquery() {
        // Best effort, as for the staging tables of load jobs.
        let _ = bq
            .expire_table(
                name,
                chrono::Utc::now() + crate::warehouse::load::STAGING_EXPIRY,
            )
            .await;
    }
    Ok(qualified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(misfit: MisfitStrategy) -> Design {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let weights: Vec<String> = ["1", "2", "3"].iter().map(|s| s.to_string()).collect();
        Design {
            arms: crate::assign::Arms::new(&names, Some(&weights)).unwrap(),
            strata: vec![],
            quantiles: 4,
            misfit,
            seed: 42,
            fstat_thresh: 0.6,
            cluster: None,
        }
    }

    /// Positional parameters: the query's own `?` is exactly its one parameter (the seed), and
    /// it comes before the relation's.
    #[test]
    fn one_positional_parameter_before_the_relations() {
        let strata = vec![("`g`".to_string(), true), ("`b`".to_string(), false)];
        let carry = vec!["`g`".to_string()];
        for (misfit, with_strata) in [
            (MisfitStrategy::Stratum, true),
            (MisfitStrategy::Global, true),
            (MisfitStrategy::None, true),
            (MisfitStrategy::Stratum, false),
        ] {
            let a = Audience {
                relation: "`p.d.t` WHERE `x` = ?",
                id: "`id`",
                integer_ids: true,
                strata: if with_strata { &strata } else { &[] },
                carry: &carry,
            };
            let (sql, params) = bigquery_assignment(&a, &design(misfit), 10);
            assert_eq!(params, vec![Value::Text("42".into())]);
            assert_eq!(sql.matches('?').count(), 2, "{sql}");
            assert!(
                sql.find("CAST(? AS STRING)").unwrap() < sql.find("`x` = ?").unwrap(),
                "{sql}"
            );
            // Blocks of 6 (weights 1:2:3): positions mapped by the mask's runs.
            if with_strata {
                assert!(sql.contains("MOD(s, 6)"), "{sql}");
                assert!(
                    sql.contains(
                        "WHEN MOD(b.j, 6) < 1 THEN 0 WHEN MOD(b.j, 6) < 3 THEN 1 ELSE 2 END"
                    ) || misfit == MisfitStrategy::None,
                    "{sql}"
                );
            }
        }
    }
}

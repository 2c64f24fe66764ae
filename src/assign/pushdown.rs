//! The keyed-hash assignment as one SQL query per engine (docs/assignment-algorithm.md §10),
//! the core of in-warehouse assignment ([`super::inwh`]): it computes, for every row of the
//! audience, the same `(participant_id, arm_id, stratum_id)` as [`super::assign`] does locally,
//! followed by the carried columns `c0, c1, …`. The dialects choose the query
//! (the `keyed_assignment_sql` hook of [`crate::warehouse::SqlDialect`]): [`postgres_assignment_from`],
//! [`mysql_assignment`] (MySQL 8 / MariaDB 10.6+) and
//! [`super::pushdown_bigquery::bigquery_assignment`] (BigQuery).
//!
//! Scope: categorical strata (text, compared by bytes, and booleans), NULL as its own value
//! after all others; the caller has applied the preprocessing rules (which strata are kept)
//! and chooses the relation (table and filters, or the sample). Numeric strata arrive as their
//! quantile bins, integer columns of the relation ([`super::inwh`] bins them).
//!
//! PostgreSQL: every value is a bound parameter: `$1` (or `$first`) the seed as text, `$2` the
//! block pattern as an integer array literal (`{0,1,1}`), or without strata the lower bounds of
//! the arms' runs in key order (`{0,206,618}`). MySQL: the seed is bound; the arms' run bounds
//! (numbers derived from the design, never user text) are written into `CASE` expressions.

use super::{Design, MisfitStrategy};
use crate::warehouse::Value;

/// What to assign: the audience relation and its columns, all already quoted.
#[derive(Debug, Clone)]
pub struct Audience<'a> {
    /// `FROM` target with its filters, e.g. `"s"."people" WHERE "age" > $3`.
    pub relation: &'a str,
    /// The id column.
    pub id: &'a str,
    /// Integer ids (ties ordered numerically) or text ids (by bytes).
    pub integer_ids: bool,
    /// The kept strata columns in field-name order, each with `true` for text.
    pub strata: &'a [(String, bool)],
    /// Columns passed through to the result as `c0, c1, …` after `stratum_id` (the strata
    /// values that `--write-table` stores beside each assignment).
    pub carry: &'a [String],
}

/// The query and its two parameters (the relation's own parameters are numbered from `$3`).
pub fn postgres_assignment(a: &Audience, design: &Design, n_rows: u64) -> (String, Vec<Value>) {
    postgres_assignment_from(a, design, n_rows, 1)
}

/// [`postgres_assignment`] with its two parameters numbered `$first`, `$first + 1` (the
/// relation's from `$first + 2`), for a statement that binds others before them.
pub fn postgres_assignment_from(
    a: &Audience,
    design: &Design,
    n_rows: u64,
    first: usize,
) -> (String, Vec<Value>) {
    postgres_query(a, design, n_rows, first)
}

fn postgres_query(
    a: &Audience,
    design: &Design,
    n_rows: u64,
    first: usize,
) -> (String, Vec<Value>) {
    let p1 = format!("${first}");
    let p2 = format!("${}", first + 1);
    let l = design.arms.block;
    let list = |v: &[String]| format!("{{{}}}", v.join(","));
    let pattern: Vec<String> = design.arms.mask().iter().map(u32::to_string).collect();
    // Complete random: lower bounds of the arms' runs in key order (cumulative counts).
    let mut lower = Vec::new();
    let mut acc = 0u64;
    for c in design.arms.largest_remainder_counts(n_rows) {
        lower.push(acc.to_string());
        acc += c;
    }
    let seed = Value::Text(design.seed.to_string());
    let id = a.id;
    let rel = a.relation;
    let tie = if a.integer_ids {
        "pid"
    } else {
        "tid COLLATE \"C\""
    };
    let key = format!("md5({p1} || ':' || tid) COLLATE \"C\", {tie}");
    // Carried columns: `kc` defines them in k, `cc` passes them on, `bc` selects them from b.
    let kc: String = (a.carry.iter().enumerate())
        .map(|(i, c)| format!(", {c} AS c{i}"))
        .collect();
    let cc: String = (0..a.carry.len()).map(|i| format!(", c{i}")).collect();
    let bc: String = (0..a.carry.len()).map(|i| format!(", b.c{i}")).collect();
    if a.strata.is_empty() {
        let sql = format!(
            "WITH k AS (SELECT {id} AS pid, {id}::text AS tid{kc} FROM {rel}), \
             r AS (SELECT pid{cc}, ROW_NUMBER() OVER (ORDER BY {key}) - 1 AS j FROM k) \
             SELECT pid AS participant_id, (width_bucket(j, {p2}::bigint[]) - 1)::int AS arm_id, \
             NULL::int AS stratum_id{cc} FROM r"
        );
        return (sql, vec![seed, Value::Text(list(&lower))]);
    }
    let cols: Vec<String> = (a.strata.iter().enumerate())
        .map(|(i, (c, _))| format!("{c} AS s{i}"))
        .collect();
    let order: Vec<String> = (a.strata.iter().enumerate())
        .map(|(i, (_, text))| {
            let collate = if *text { " COLLATE \"C\"" } else { "" };
            format!("s{i}{collate} ASC NULLS LAST")
        })
        .collect();
    let part: String = (a.strata.iter().enumerate())
        .map(|(i, (_, text))| {
            let collate = if *text { " COLLATE \"C\"" } else { "" };
            format!("s{i}{collate}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let pat = format!("({p2}::int[])");
    let mut ctes = vec![
        format!(
            "k AS (SELECT {id} AS pid, {id}::text AS tid, {}{kc} FROM {rel})",
            cols.join(", ")
        ),
        // The stratum id, and the units in key order within strata: j of s; full blocks below
        // s - s % L. Partitioned by the strata values (byte equality) rather than by the
        // stratum id, so that one sort (strata, key, id) serves all three windows.
        format!(
            "o AS (SELECT pid, tid{cc}, (DENSE_RANK() OVER (ORDER BY {}) - 1)::int AS sid, \
             ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {key}) - 1 AS j, \
             COUNT(*) OVER (PARTITION BY {part}) AS s FROM k)",
            order.join(", ")
        ),
        format!("b AS (SELECT pid, tid{cc}, sid, j, s - s % {l} AS full_n FROM o)"),
    ];
    // The mask order of each label: positions by md5('mask:{seed}:{label}:{p}'), then p.
    let mask = |labels: &str| {
        format!(
            "m AS (SELECT lab, p, ROW_NUMBER() OVER (PARTITION BY lab ORDER BY \
             md5('mask:' || {p1} || ':' || lab || ':' || p) COLLATE \"C\", p) - 1 AS t \
             FROM ({labels}) ls CROSS JOIN generate_series(0, {}) AS p)",
            l - 1
        )
    };
    let select = match design.misfit {
        MisfitStrategy::Stratum => {
            ctes.push(mask(
                "SELECT DISTINCT sid::text AS lab FROM b WHERE j >= full_n",
            ));
            format!(
                "SELECT b.pid AS participant_id, \
                 (CASE WHEN b.j < b.full_n THEN {pat}[b.j % {l} + 1] ELSE {pat}[m.p + 1] END)::int AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b \
                 LEFT JOIN m ON b.j >= b.full_n AND m.lab = b.sid::text AND m.t = b.j - b.full_n"
            )
        }
        MisfitStrategy::None => format!(
            "SELECT pid AS participant_id, (CASE WHEN j < full_n THEN {pat}[j % {l} + 1] END)::int AS arm_id, \
             sid AS stratum_id{cc} FROM b"
        ),
        MisfitStrategy::Global => {
            let pool_key = format!("md5('pool:' || {p1} || ':' || tid) COLLATE \"C\", {tie}");
            ctes.push(format!(
                "pl AS (SELECT pid, ROW_NUMBER() OVER (ORDER BY {pool_key}) - 1 AS pj, COUNT(*) OVER () AS ps \
                 FROM b WHERE j >= full_n)"
            ));
            ctes.push(format!(
                "pf AS (SELECT pid, pj, ps - ps % {l} AS pfull FROM pl)"
            ));
            ctes.push(mask("SELECT 'global'::text AS lab"));
            format!(
                "SELECT b.pid AS participant_id, \
                 (CASE WHEN b.j < b.full_n THEN {pat}[b.j % {l} + 1] \
                       WHEN pf.pj < pf.pfull THEN {pat}[pf.pj % {l} + 1] \
                       ELSE {pat}[m.p + 1] END)::int AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b LEFT JOIN pf ON pf.pid = b.pid \
                 LEFT JOIN m ON pf.pj >= pf.pfull AND m.t = pf.pj - pf.pfull"
            )
        }
    };
    (
        format!("WITH {} {select}", ctes.join(", ")),
        vec![seed, Value::Text(list(&pattern))],
    )
}

/// Position -> arm without arrays: a `CASE` giving the arm whose run of the block mask (or of
/// the exact counts) holds the position `pos` (the runs' bounds are numbers derived from the
/// design, never user text).
pub(super) fn arm_case(pos: &str, counts: &[u64]) -> String {
    let mut acc = 0u64;
    let mut arms = String::from("CASE");
    for (i, c) in counts
        .iter()
        .enumerate()
        .take(counts.len().saturating_sub(1))
    {
        acc += c;
        arms.push_str(&format!(" WHEN {pos} < {acc} THEN {i}"));
    }
    arms.push_str(&format!(" ELSE {} END", counts.len().saturating_sub(1)));
    arms
}

/// The same assignment as one MySQL 8 / MariaDB 10.6+ query (window functions, CTEs): text
/// compared as UTF-8 bytes (`CAST(CONVERT(x USING utf8mb4) AS BINARY)`), NULL strata last
/// (`x IS NULL, x`), block positions mapped to arms by the runs of the block mask (`CASE`
/// over the arms' cumulative counts: no arrays), mask positions from digit tables.
///
/// One parameter, the seed as text, bound first (in the `prm` CTE, so that it precedes the
/// relation's own `?` placeholders in the text); the relation's parameters follow it.
pub fn mysql_assignment(a: &Audience, design: &Design, n_rows: u64) -> (String, Vec<Value>) {
    let l = design.arms.block;
    let binary = |e: &str| format!("CAST(CONVERT({e} USING utf8mb4) AS BINARY)");
    let arm_of = arm_case;
    let mask_counts = &design.arms.mask_counts;
    let seed = Value::Text(design.seed.to_string());
    let id = a.id;
    let rel = a.relation;
    let tid = format!("CONVERT(CAST({id} AS CHAR) USING utf8mb4)");
    let tie = if a.integer_ids {
        "pid".to_string()
    } else {
        "CAST(tid AS BINARY)".to_string()
    };
    let key = format!("CAST(h AS BINARY), {tie}");
    let kc: String = (a.carry.iter().enumerate())
        .map(|(i, c)| format!(", {c} AS c{i}"))
        .collect();
    let cc: String = (0..a.carry.len()).map(|i| format!(", c{i}")).collect();
    let bc: String = (0..a.carry.len()).map(|i| format!(", b.c{i}")).collect();
    let prm = "prm AS (SELECT CAST(? AS CHAR) AS xngin_seed)";
    let k_cols = |extra: &str| {
        format!(
            "k AS (SELECT {id} AS pid, {tid} AS tid, MD5(CONCAT(prm.xngin_seed, ':', {tid})) AS h{extra}{kc} \
             FROM prm CROSS JOIN {rel})"
        )
    };
    if a.strata.is_empty() {
        let counts = design.arms.largest_remainder_counts(n_rows);
        let sql = format!(
            "WITH {prm}, {}, \
             r AS (SELECT pid{cc}, CAST(ROW_NUMBER() OVER (ORDER BY {key}) AS SIGNED) - 1 AS j FROM k) \
             SELECT pid AS participant_id, {} AS arm_id, CAST(NULL AS SIGNED) AS stratum_id{cc} FROM r",
            k_cols(""),
            arm_of("j", &counts)
        );
        return (sql, vec![seed]);
    }
    let cols: String = (a.strata.iter().enumerate())
        .map(|(i, (c, text))| {
            if *text {
                format!(", {} AS s{i}", binary(c))
            } else {
                format!(", {c} AS s{i}")
            }
        })
        .collect();
    let order: Vec<String> = (0..a.strata.len())
        .map(|i| format!("s{i} IS NULL, s{i}"))
        .collect();
    let mut ctes = vec![
        prm.to_string(),
        k_cols(&cols),
        format!(
            "st AS (SELECT pid, tid, h{cc}, CAST(DENSE_RANK() OVER (ORDER BY {}) AS SIGNED) - 1 AS sid FROM k)",
            order.join(", ")
        ),
        format!(
            "o AS (SELECT pid, tid{cc}, sid, CAST(ROW_NUMBER() OVER (PARTITION BY sid ORDER BY {key}) AS SIGNED) - 1 AS j, \
             COUNT(*) OVER (PARTITION BY sid) AS s FROM st)"
        ),
        format!("b AS (SELECT pid, tid{cc}, sid, j, s - MOD(s, {l}) AS full_n FROM o)"),
    ];
    // Positions 0 … L−1 from digit tables (no generate_series; recursion depth is capped).
    let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                  UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let places = (l.max(2) - 1).to_string().len();
    let pos: Vec<String> = (0..places)
        .map(|i| {
            format!(
                "{}d{i}.d",
                if i == 0 {
                    String::new()
                } else {
                    format!("{} * ", 10u64.pow(i as u32))
                }
            )
        })
        .collect();
    let from: Vec<String> = (0..places).map(|i| format!("{digits} d{i}")).collect();
    ctes.push(format!(
        "ps AS (SELECT {} AS p FROM {})",
        pos.join(" + "),
        from.join(" CROSS JOIN ")
    ));
    let mask = |labels: &str| {
        format!(
            "m AS (SELECT lab, p, CAST(ROW_NUMBER() OVER (PARTITION BY lab ORDER BY \
             CAST(MD5(CONCAT('mask:', prm.xngin_seed, ':', lab, ':', p)) AS BINARY), p) AS SIGNED) - 1 AS t \
             FROM ({labels}) ls CROSS JOIN ps CROSS JOIN prm WHERE p < {l})"
        )
    };
    let in_block = |j: &str| arm_of(&format!("MOD({j}, {l})"), mask_counts);
    let select = match design.misfit {
        MisfitStrategy::Stratum => {
            ctes.push(mask(
                "SELECT DISTINCT CAST(sid AS CHAR) AS lab FROM b WHERE j >= full_n",
            ));
            format!(
                "SELECT b.pid AS participant_id, \
                 CASE WHEN b.j < b.full_n THEN {} ELSE {} END AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b \
                 LEFT JOIN m ON b.j >= b.full_n AND m.lab = CAST(b.sid AS CHAR) AND m.t = b.j - b.full_n",
                in_block("b.j"),
                arm_of("m.p", mask_counts)
            )
        }
        MisfitStrategy::None => format!(
            "SELECT pid AS participant_id, CASE WHEN j < full_n THEN {} END AS arm_id, \
             sid AS stratum_id{cc} FROM b",
            in_block("j")
        ),
        MisfitStrategy::Global => {
            ctes.push(format!(
                "pl AS (SELECT pid, tid, CAST(ROW_NUMBER() OVER (ORDER BY \
                 CAST(MD5(CONCAT('pool:', prm.xngin_seed, ':', tid)) AS BINARY), {tie}) AS SIGNED) - 1 AS pj, \
                 COUNT(*) OVER () AS ps FROM b CROSS JOIN prm WHERE j >= full_n)"
            ));
            ctes.push(format!(
                "pf AS (SELECT pid, tid, pj, ps - MOD(ps, {l}) AS pfull FROM pl)"
            ));
            // Text ids are matched by their bytes: the column's collation may equate ids that
            // differ by case or trailing spaces.
            let same_id = if a.integer_ids {
                "pf.pid = b.pid".to_string()
            } else {
                "CAST(pf.tid AS BINARY) = CAST(b.tid AS BINARY)".to_string()
            };
            ctes.push(mask("SELECT 'global' AS lab"));
            format!(
                "SELECT b.pid AS participant_id, \
                 CASE WHEN b.j < b.full_n THEN {} \
                      WHEN pf.pj < pf.pfull THEN {} \
                      ELSE {} END AS arm_id, \
                 b.sid AS stratum_id{bc} FROM b LEFT JOIN pf ON {same_id} \
                 LEFT JOIN m ON pf.pj >= pf.pfull AND m.t = pf.pj - pf.pfull",
                in_block("b.j"),
                in_block("pf.pj"),
                arm_of("m.p", mask_counts)
            )
        }
    };
    (format!("WITH {} {select}", ctes.join(", ")), vec![seed])
}

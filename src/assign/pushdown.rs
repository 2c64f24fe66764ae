//! The keyed-hash assignment as one PostgreSQL query (docs/assignment-algorithm.md), the core
//! of in-warehouse assignment: it computes, for every row of the audience, the same
//! `(participant_id, arm_id, stratum_id)` as [`super::assign`] does locally.
//!
//! Scope: categorical strata (text, compared by bytes with `COLLATE "C"`, and booleans), NULL as
//! its own value after all others; the caller has applied the preprocessing rules (which
//! strata are kept) and chooses the relation (table and filters). Numeric strata need quantile
//! edges from the engine and are not handled here yet.
//!
//! Every value is a bound parameter: `$1` the seed as text, `$2` the block pattern as an
//! integer array literal (`{0,1,1}`), or without strata the lower bounds of the arms' runs in
//! key order (`{0,206,618}`).

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
    let key = format!("md5($1 || ':' || tid) COLLATE \"C\", {tie}");
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
             SELECT pid AS participant_id, (width_bucket(j, $2::bigint[]) - 1)::int AS arm_id, \
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
    let pat = "($2::int[])";
    let mut ctes = vec![
        format!(
            "k AS (SELECT {id} AS pid, {id}::text AS tid, {}{kc} FROM {rel})",
            cols.join(", ")
        ),
        format!(
            "st AS (SELECT pid, tid{cc}, (DENSE_RANK() OVER (ORDER BY {}) - 1)::int AS sid FROM k)",
            order.join(", ")
        ),
        // Units in key order within strata: j of s; full blocks below s - s % L.
        format!(
            "o AS (SELECT pid, tid{cc}, sid, ROW_NUMBER() OVER (PARTITION BY sid ORDER BY {key}) - 1 AS j, \
             COUNT(*) OVER (PARTITION BY sid) AS s FROM st)"
        ),
        format!("b AS (SELECT pid, tid{cc}, sid, j, s - s % {l} AS full_n FROM o)"),
    ];
    // The mask order of each label: positions by md5('mask:{seed}:{label}:{p}'), then p.
    let mask = |labels: &str| {
        format!(
            "m AS (SELECT lab, p, ROW_NUMBER() OVER (PARTITION BY lab ORDER BY \
             md5('mask:' || $1 || ':' || lab || ':' || p) COLLATE \"C\", p) - 1 AS t \
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
            let pool_key = format!("md5('pool:' || $1 || ':' || tid) COLLATE \"C\", {tie}");
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

//! Outputs of an assignment: the assignment file (CSV or Parquet), the design record, and the
//! terminal summary.
//!
//! Assignment columns: `participant_id, arm_id, arm_name, stratum_id`, then one column per
//! stratum field (requested strata and metrics, sorted) with the participant's original value;
//! rows in participant-id order. A cluster design carries the cluster column (by its name)
//! right after `stratum_id`, before the strata. `arm_id` is the arm's 0-based position in `--arms`;
//! `stratum_id` is empty without strata; `arm_id`/`arm_name` are empty for participants left
//! unassigned (misfit strategy `none`). NULL is an empty CSV field.
//!
//! The design record `FILE.design.json` is paired with its data file by the SHA-256 of the
//! file's bytes (`outputs.file_sha256`): the two are written under temporary names and renamed
//! into place last (data file, then record), and readers ([`check_pair`]) refuse a file whose
//! record is missing or describes other bytes (e.g. a run killed between the two renames).

use crate::input::names::*;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::data::{ColumnData, Ids, Table};
use super::{BalanceTest, Design, Dropped, Outcome, UNASSIGNED};
use crate::error::{Error, Result};

/// Fixed output columns before the strata.
pub const FIXED_COLUMNS: [&str; 4] = ["participant_id", "arm_id", "arm_name", "stratum_id"];

/// Rows formatted per batch (two halves formatted in parallel).
const BATCH: usize = 1 << 16;

pub(crate) fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

/// Write the assignment as CSV.
pub fn write_csv(
    w: &mut dyn Write,
    table: &Table,
    outcome: &Outcome,
    design: &Design,
) -> Result<()> {
    let werr = |e: std::io::Error| {
        Error::runtime(format!(
            "writing the assignment: {}",
            crate::error::io_reason(&e)
        ))
    };
    let mut head = Vec::new();
    for (i, name) in FIXED_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(outcome.carried().into_iter().map(String::from))
        .enumerate()
    {
        if i > 0 {
            head.push(b',');
        }
        push_csv_field(&mut head, name.as_bytes());
    }
    head.push(b'\n');
    w.write_all(&head).map_err(werr)?;
    let cols: Vec<&ColumnData> = outcome
        .carried()
        .into_iter()
        .map(|s| &table.column(s).expect("carried columns checked").data)
        .collect();
    let arm_names: Vec<Vec<u8>> = design
        .arms
        .arms
        .iter()
        .map(|a| {
            let mut v = Vec::new();
            push_csv_field(&mut v, a.name.as_bytes());
            v
        })
        .collect();
    let text_ids = matches!(table.ids, Ids::Text { .. });
    // Text levels escaped once, not per row.
    let escaped: Vec<Option<Vec<Vec<u8>>>> = cols
        .iter()
        .map(|c| match c {
            ColumnData::Text { levels, .. } => Some(
                levels
                    .iter()
                    .map(|l| {
                        let mut v = Vec::new();
                        push_csv_field(&mut v, l.as_bytes());
                        v
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    let format = |rows: &[u32]| -> Vec<u8> {
        let mut out = Vec::with_capacity(rows.len() * 48);
        let mut field = Vec::with_capacity(64);
        let mut b = super::data::itoa_buf();
        for &r in rows {
            let r = r as usize;
            if text_ids {
                field.clear();
                table.ids.write_text(r, &mut field);
                push_csv_field(&mut out, &field);
            } else {
                table.ids.write_text(r, &mut out);
            }
            out.push(b',');
            let a = outcome.arm[r];
            if a != UNASSIGNED {
                out.extend_from_slice(super::data::format_i64(a as i64, &mut b));
                out.push(b',');
                out.extend_from_slice(&arm_names[a as usize]);
            } else {
                out.push(b',');
            }
            out.push(b',');
            if let Some(sid) = &outcome.stratum_id {
                out.extend_from_slice(super::data::format_i64(sid[r] as i64, &mut b));
            }
            for (c, esc) in cols.iter().zip(&escaped) {
                out.push(b',');
                match (c, esc) {
                    (ColumnData::Text { codes, .. }, Some(esc)) => {
                        let code = codes[r];
                        if code != super::NULL_CODE {
                            out.extend_from_slice(&esc[code as usize]);
                        }
                    }
                    _ => c.write_text(r, &mut out),
                }
            }
            out.push(b'\n');
        }
        out
    };
    // Two threads format alternate batches; this one writes them in order as they come, so
    // formatting and writing overlap. Bounded channels keep a few batches in memory at most.
    let batches: Vec<&[u32]> = outcome.order.chunks(BATCH).collect();
    let batches = &batches;
    std::thread::scope(|s| {
        let mut rxs = Vec::new();
        for worker in 0..2usize {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            rxs.push(rx);
            let format = &format;
            s.spawn(move || {
                for batch in batches.iter().skip(worker).step_by(2) {
                    if tx.send(format(batch)).is_err() {
                        break; // the writer stopped (an error)
                    }
                }
            });
        }
        let result = (|| {
            for i in 0..batches.len() {
                let buf = rxs[i % 2]
                    .recv()
                    .map_err(|_| Error::runtime("formatting thread stopped"))?;
                w.write_all(&buf).map_err(werr)?;
            }
            Ok(())
        })();
        drop(rxs);
        result
    })
}

/// Write the assignment as Parquet (ids: Int64 for integer ids within i64, else String).
pub fn write_parquet(
    w: &mut dyn Write,
    table: &Table,
    outcome: &Outcome,
    design: &Design,
) -> Result<()> {
    use polars::prelude as pl;
    let perr = |e: pl::PolarsError| Error::runtime(format!("writing Parquet: {e}"));
    let order = &outcome.order;
    let mut columns: Vec<pl::Column> = Vec::new();
    columns.push(match &table.ids {
        Ids::Int(v) => pl::Column::new(
            "participant_id".into(),
            order.iter().map(|&r| v[r as usize]).collect::<Vec<i64>>(),
        ),
        Ids::Text { values, .. } => pl::Column::new(
            "participant_id".into(),
            order
                .iter()
                .map(|&r| values[r as usize].as_str())
                .collect::<Vec<&str>>(),
        ),
    });
    let arm = |r: u32| Some(outcome.arm[r as usize]).filter(|a| *a != UNASSIGNED);
    columns.push(pl::Column::new(
        "arm_id".into(),
        order
            .iter()
            .map(|&r| arm(r).map(|a| a as i64))
            .collect::<Vec<Option<i64>>>(),
    ));
    columns.push(pl::Column::new(
        "arm_name".into(),
        order
            .iter()
            .map(|&r| arm(r).map(|a| design.arms.arms[a as usize].name.as_str()))
            .collect::<Vec<Option<&str>>>(),
    ));
    columns.push(pl::Column::new(
        "stratum_id".into(),
        order
            .iter()
            .map(|&r| outcome.stratum_id.as_ref().map(|s| s[r as usize] as i64))
            .collect::<Vec<Option<i64>>>(),
    ));
    for name in outcome.carried() {
        let data = &table.column(name).expect("carried columns checked").data;
        let n: pl::PlSmallStr = name.into();
        columns.push(match data {
            ColumnData::Text { codes, levels } => pl::Column::new(
                n,
                order
                    .iter()
                    .map(|&r| {
                        let c = codes[r as usize];
                        (c != super::NULL_CODE).then(|| levels[c as usize].as_str())
                    })
                    .collect::<Vec<Option<&str>>>(),
            ),
            ColumnData::Bool(v) => pl::Column::new(
                n,
                order
                    .iter()
                    .map(|&r| v[r as usize])
                    .collect::<Vec<Option<bool>>>(),
            ),
            ColumnData::Int(v) => pl::Column::new(
                n,
                order
                    .iter()
                    .map(|&r| v[r as usize])
                    .collect::<Vec<Option<i64>>>(),
            ),
            ColumnData::Float(v) => pl::Column::new(
                n,
                order
                    .iter()
                    .map(|&r| v[r as usize])
                    .collect::<Vec<Option<f64>>>(),
            ),
        });
    }
    let mut df = pl::DataFrame::new_infer_height(columns).map_err(perr)?;
    pl::ParquetWriter::new(w).finish(&mut df).map_err(perr)?;
    Ok(())
}

/// A writer that hashes what passes through it (SHA-256), for the data file's fingerprint.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write the assignment to a temporary file next to `path` (CSV or Parquet by extension),
/// without renaming it into place yet, and return it with the SHA-256 of its bytes (recorded
/// in the design record as `outputs.file_sha256`, which pairs the record with this file).
pub fn prepare_file(
    path: &Path,
    replace: bool,
    table: &Table,
    outcome: &Outcome,
    design: &Design,
) -> Result<(crate::output::Pending, String)> {
    let kind = super::audience::file_kind(path)?;
    let mut digest = String::new();
    let pending = crate::output::prepare_atomic(path, replace, |w| {
        let mut hw = HashingWriter {
            inner: w,
            hash: Sha256::new(),
        };
        match kind {
            super::audience::FileKind::Csv => write_csv(&mut hw, table, outcome, design)?,
            super::audience::FileKind::Parquet => write_parquet(&mut hw, table, outcome, design)?,
        }
        digest = hex::encode(hw.hash.finalize());
        Ok(())
    })?;
    Ok((pending, digest))
}

/// The SHA-256 of a file's bytes (hex), read in blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The design record next to `output` (if any), written to a temporary file and kept pending
/// until the run commits its outputs (`crate::output::prepare_atomic`).
pub fn prepare_design_record(
    output: Option<&Path>,
    replace: bool,
    record: &DesignRecord,
) -> Result<Option<crate::output::Pending>> {
    let Some(out) = output else {
        return Ok(None);
    };
    let dp = design_path(out);
    let json = record.to_json();
    crate::output::prepare_atomic(&dp, replace, |w| {
        w.write_all(json.as_bytes()).map_err(|e| Error::io(&dp, e))
    })
    .map(Some)
}

/// The design record path next to an output file: `FILE.design.json`.
pub fn design_path(output: &Path) -> std::path::PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".design.json");
    s.into()
}

/// The input fingerprint: the row count and the sum of the unit keys. Independent of the
/// rows' order, computed with the keys, and computable by SQL (docs/assignment-algorithm.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    pub rows: u64,
    /// Σ MD5("{seed}:{id}") over the rows, each digest a 128-bit big-endian integer, modulo
    /// 2^128, as 32 lowercase hex digits.
    pub unit_key_sum: String,
}

pub fn fingerprint(outcome: &Outcome) -> Fingerprint {
    Fingerprint {
        rows: outcome.arm.len() as u64,
        unit_key_sum: super::rng::hex128(outcome.key_sum),
    }
}

/// Where the audience came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudienceRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_file: Option<String>,
    pub id_column: String,
    /// The audience filters (as given), if any.
    pub filters: serde_json::Value,
    /// Rows in the audience before `--sample-size`.
    pub audience_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmRecord {
    pub arm_id: u32,
    pub arm_name: String,
    /// The weight as given.
    pub weight: String,
    /// The weight used: the closest fraction to the given one with denominator at most 10⁶
    /// (`33.333333333333336` is `100/3`), as `p/q` or an integer.
    pub exact_weight: String,
    /// Exact share, as a fraction `p/q`.
    pub share: String,
    pub assigned: u64,
    /// Clusters of the arm (cluster designs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clusters: Option<u64>,
}

/// The clusters of a cluster design (docs/cluster.md#cluster-assignment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterRecord {
    /// The cluster column: whole clusters were randomized, keyed by `md5("{seed}:{cluster id}")`.
    pub column: String,
    pub clusters: u64,
    pub unassigned_clusters: u64,
    /// Strata are evaluated at the cluster level (constant within a cluster).
    pub strata_rule: String,
    /// The balance tests' covariance.
    pub balance_covariance: String,
}

/// The design record: everything needed to audit and reproduce a draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesignRecord {
    pub experiment_id: String,
    pub tool: String,
    pub tool_version: String,
    pub created_at: String,
    pub audience: AudienceRecord,
    pub arms: Vec<ArmRecord>,
    pub strata_requested: Vec<String>,
    pub strata_used: Vec<String>,
    pub strata_dropped: Vec<Dropped>,
    pub number_of_strata: u32,
    pub quantiles: u32,
    pub misfit_strategy: String,
    pub block_size: u64,
    pub seed: u64,
    /// "given" (--seed) or "drawn" (fresh from the OS).
    pub seed_source: String,
    pub rng: String,
    pub sample_size: Option<u64>,
    pub assigned: u64,
    pub unassigned: u64,
    pub fstat_thresh: f64,
    pub balance_ok: Option<bool>,
    pub balance: Vec<BalanceTest>,
    /// Cluster designs: the clusters (arms[].clusters gives them per arm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRecord>,
    pub input_fingerprint: Fingerprint,
    pub outputs: Outputs,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outputs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the data file's bytes: pairs this record with the file it describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub design_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// How the draw is derived, for the record.
pub const RNG_DESCRIPTION: &str = "keyed MD5: unit key = md5(\"{seed}:{id}\") in lowercase hex; within a stratum units in \
key order fill blocks mapped to arms by the weight pattern; leftovers by md5(\"mask:{seed}:{stratum_id|global}:{position}\") \
(global pool ordered by md5(\"pool:{seed}:{id}\")); a sample (sample_size) keeps the smallest keys; see docs/assignment-algorithm.md";

impl DesignRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        experiment_id: String,
        created_at: chrono::DateTime<chrono::Utc>,
        audience: AudienceRecord,
        design: &Design,
        outcome: &Outcome,
        seed_given: bool,
        sample_size: Option<u64>,
        fingerprint: Fingerprint,
    ) -> DesignRecord {
        let arms = design
            .arms
            .arms
            .iter()
            .enumerate()
            .map(|(i, a)| ArmRecord {
                arm_id: i as u32,
                arm_name: a.name.clone(),
                weight: a.weight_text.clone(),
                exact_weight: a.weight.to_string(),
                share: format!(
                    "{}/{}",
                    design.arms.probs[i].numer(),
                    design.arms.probs[i].denom()
                ),
                assigned: outcome.counts[i],
                clusters: outcome.cluster.as_ref().map(|c| c.clusters_per_arm[i]),
            })
            .collect();
        DesignRecord {
            experiment_id,
            tool: "xngin".into(),
            tool_version: crate::VERSION.into(),
            created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            audience,
            arms,
            strata_requested: outcome.strata.clone(),
            strata_used: outcome.used.clone(),
            strata_dropped: outcome.dropped.clone(),
            number_of_strata: outcome.n_strata,
            quantiles: design.quantiles,
            misfit_strategy: design.misfit.as_str().into(),
            block_size: design.arms.block,
            seed: design.seed,
            seed_source: if seed_given { "given" } else { "drawn" }.into(),
            rng: RNG_DESCRIPTION.into(),
            sample_size,
            assigned: outcome.counts.iter().sum(),
            unassigned: outcome.unassigned,
            fstat_thresh: design.fstat_thresh,
            balance_ok: outcome.balance_ok(),
            balance: outcome.balance.clone(),
            cluster: outcome.cluster.as_ref().map(|c| ClusterRecord {
                column: c.column.clone(),
                clusters: c.clusters,
                unassigned_clusters: c.unassigned_clusters,
                strata_rule: "constant within a cluster".into(),
                balance_covariance: "CR1 clustered by the cluster column".into(),
            }),
            input_fingerprint: fingerprint,
            outputs: Outputs::default(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("design record serializes") + "\n"
    }
}

/// The terminal summary (comfy-table).
pub fn summary(record: &DesignRecord) -> String {
    let mut t = crate::output::table();
    let clustered = record.cluster.is_some();
    let mut head = vec!["arm_id", "arm", "weight", "share", "assigned"];
    if clustered {
        head.push("clusters");
    }
    t.set_header(head);
    for a in &record.arms {
        let mut row = vec![
            a.arm_id.to_string(),
            a.arm_name.clone(),
            a.weight.clone(),
            a.share.clone(),
            a.assigned.to_string(),
        ];
        if let Some(c) = a.clusters {
            row.push(c.to_string());
        }
        t.add_row(row);
    }
    if record.unassigned > 0 {
        let mut row = vec![
            String::new(),
            "(unassigned)".into(),
            String::new(),
            String::new(),
            record.unassigned.to_string(),
        ];
        if let Some(c) = &record.cluster {
            row.push(c.unassigned_clusters.to_string());
        }
        t.add_row(row);
    }
    let mut s = t.to_string();
    s.push('\n');
    let mut b = crate::output::table();
    b.set_header(vec![
        "treatment vs control",
        "n",
        "F",
        "df",
        "p",
        "balanced",
    ]);
    for x in &record.balance {
        b.add_row(vec![
            format!("{} vs {}", x.treatment_arm, x.control_arm),
            x.n.to_string(),
            x.f_statistic
                .map(|f| format!("{f:.6}"))
                .unwrap_or_else(|| "-".into()),
            match (x.numerator_df, x.denominator_df) {
                (Some(a), Some(b)) => format!("({a}, {b})"),
                _ => "-".into(),
            },
            x.p_value
                .map(|p| format!("{p:.6}"))
                .unwrap_or_else(|| "-".into()),
            match x.balance_ok {
                Some(true) => format!("yes (p > {})", record.fstat_thresh),
                Some(false) => format!("NO (p <= {})", record.fstat_thresh),
                None => x.note.clone().unwrap_or_else(|| "-".into()),
            },
        ]);
    }
    if !record.balance.is_empty() {
        s.push_str(&b.to_string());
        s.push('\n');
    }
    let dropped: Vec<String> = record
        .strata_dropped
        .iter()
        .map(|d| format!("{} ({})", d.field, d.reason))
        .collect();
    s.push_str(&format!(
        "experiment {}\nstrata used: {} ({} strata, blocks of {}, misfits: {}){}\nseed: {} ({})\nparticipants: {}\n",
        record.experiment_id,
        if record.strata_used.is_empty() { "none (complete random assignment)".to_string() } else { record.strata_used.join(", ") },
        record.number_of_strata,
        record.block_size,
        record.misfit_strategy,
        if dropped.is_empty() { String::new() } else { format!("\nstrata dropped: {}", dropped.join(", ")) },
        record.seed,
        record.seed_source,
        record.input_fingerprint.rows,
    ));
    if let Some(c) = &record.cluster {
        s.push_str(&format!(
            "clusters: {} of {} (whole clusters randomized; balance clustered, CR1)\n",
            c.clusters, c.column
        ));
    }
    s
}

/// Check that `path` (an assignment file written by `assign --output`) is paired with its
/// design record `FILE.design.json`: the record must exist, be of `experiment_id`, and carry
/// the SHA-256 of exactly this file (`outputs.file_sha256`). A record missing, of another
/// experiment or of another file (e.g. a run killed between writing the two) is an error.
pub fn check_pair(path: &Path, experiment_id: &str) -> Result<()> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let dp = design_path(path);
    let text = match std::fs::read_to_string(&dp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::runtime(format!(
                "{}: its design record {} is missing, so the experiment id cannot be checked; \
                 keep the two files together (rerun assign {OUTPUT} to write both)",
                path.display(),
                dp.display()
            )));
        }
        Err(e) => return Err(Error::io(&dp, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not a design record: {e}", dp.display())))?;
    let have = v
        .get("experiment_id")
        .and_then(|x| x.as_str())
        .unwrap_or("");
    if have != experiment_id {
        return Err(Error::invalid(format!(
            "{}: the assignment is of experiment {have}, not {experiment_id}",
            path.display()
        )));
    }
    let want_sha = v
        .pointer("/outputs/file_sha256")
        .and_then(|x| x.as_str())
        .ok_or_else(|| {
            Error::invalid(format!(
                "{}: the design record has no outputs.file_sha256 to pair it with {}; \
                 rerun assign {OUTPUT} to write both files",
                dp.display(),
                path.display()
            ))
        })?;
    if file_sha256(path)? != want_sha {
        return Err(Error::invalid(format!(
            "{}: the file does not match its design record {} (they were written by different runs, \
             e.g. an interrupted one); rerun assign {OUTPUT} {REPLACE} to write both",
            path.display(),
            dp.display()
        )));
    }
    Ok(())
}

/// Look participants up in an assignment CSV written by `assign`: `(participant_id, arm_id,
/// arm_name, stratum_id)` per id found, in file order. The file must be paired with its design
/// record of `experiment_id` ([`check_pair`]).
pub fn lookup_csv(path: &Path, experiment_id: &str, ids: &[String]) -> Result<Vec<[String; 4]>> {
    check_pair(path, experiment_id)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(std::io::BufReader::new(f));
    let bad = |e: csv::Error| Error::invalid(format!("{}: {e}", path.display()));
    let header = r.headers().map_err(bad)?.clone();
    let mut idx = [0usize; 4];
    for (k, name) in FIXED_COLUMNS.iter().enumerate() {
        idx[k] = header.iter().position(|h| h == *name).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no column {name}; is this an assignment written by xngin assign?",
                path.display()
            ))
        })?;
    }
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(bad)? {
        let pid = rec.get(idx[0]).unwrap_or("");
        if wanted.contains(pid) {
            out.push(idx.map(|i| rec.get(i).unwrap_or("").to_string()));
        }
    }
    Ok(out)
}

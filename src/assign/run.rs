//! `xngin assign` end to end: read the audience, draw, write the outputs, build the record.

use crate::input::names::*;
use std::path::PathBuf;

use crate::audience::Audience;

use super::output::{AudienceRecord, DesignRecord};
use super::*;
use crate::output::notice;

/// What to draw, as resolved from the command line (the seed may still be drawn at run time).
#[derive(Debug, Clone)]
pub struct DesignRequest {
    pub arms: Arms,
    /// Strata and metric fields, sorted and deduplicated ([`strata_fields`]).
    pub strata: Vec<String>,
    pub quantiles: u32,
    pub misfit: MisfitStrategy,
    /// None: a fresh seed is drawn, announced and recorded.
    pub seed: Option<u64>,
    /// Assign a uniformly random subset of this many participants.
    pub sample_size: Option<u64>,
    pub fstat_thresh: f64,
    /// Randomize whole clusters of this column (docs/cluster.md#cluster-assignment).
    pub cluster: Option<String>,
}

/// A warehouse table to write the assignment to.
#[derive(Debug, Clone)]
pub struct TableOutput {
    /// `[SCHEMA.]TABLE`, as given.
    pub spec: String,
    /// The warehouse; None: the participant type's own.
    pub dsn: Option<crate::dsn::Dsn>,
}

/// Where the assignment goes.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// A CSV or Parquet file (and its design record beside it).
    pub file: Option<PathBuf>,
    pub table: Option<TableOutput>,
    /// Overwrite an existing file; replace this experiment's rows in the table.
    pub replace: bool,
    /// None: a new UUID.
    pub experiment_id: Option<String>,
}

/// Everything `xngin assign` was asked to do, in domain terms.
#[derive(Debug, Clone)]
pub struct Request {
    pub audience: Audience,
    pub design: DesignRequest,
    pub outputs: Outputs,
    /// Compute the assignment in the participant type's warehouse ([`super::inwh`]).
    pub in_warehouse: bool,
}

/// The result: the design record (also written next to the outputs) and, for `--format csv`,
/// nothing else — the caller prints.
pub struct Report {
    pub record: DesignRecord,
    pub table: Table,
    pub outcome: Outcome,
    pub design: Design,
}

/// Check what needs no data: the design's numbers, the outputs' paths, and how they combine
/// with the audience. Commands call it before resolving the audience, so that a bad flag is
/// reported before the settings are read; [`run`] calls it again.
pub fn check_request(
    design: &DesignRequest,
    outputs: &Outputs,
    file_id_column: Option<&str>,
) -> Result<()> {
    if design.quantiles == 0 {
        return Err(Error::usage(format!("{QUANTILES} must be at least 1")));
    }
    if !(0.0..=1.0).contains(&design.fstat_thresh) {
        return Err(Error::usage(format!(
            "{FSTAT_THRESH} {} is not a p-value threshold between 0 and 1",
            design.fstat_thresh
        )));
    }
    if let Some(id) = &outputs.experiment_id
        && (id.trim().is_empty() || id.len() > 200 || id.chars().any(char::is_control))
    {
        return Err(Error::usage(format!(
            "{EXPERIMENT_ID} must be 1 to 200 printable characters"
        )));
    }
    if design.sample_size.is_some_and(|k| k < 2) {
        return Err(Error::usage(format!("{SAMPLE_SIZE} must be at least 2")));
    }
    let strata = &design.strata;
    if let Some(c) = &design.cluster {
        if design.sample_size.is_some() {
            return Err(Error::usage(format!(
                "{SAMPLE_SIZE} draws participants, which would split clusters; with {CLUSTER_COLUMN} \
                 narrow the audience with filters instead"
            )));
        }
        if let Some(id) = file_id_column {
            super::cluster::check_not_id(c, id)?;
        }
        if strata.contains(c) {
            return Err(Error::usage(format!(
                "{CLUSTER_COLUMN} {c} is also in {STRATA}/{METRICS}; the cluster id cannot stratify \
                 its own clusters (remove it from {STRATA}/{METRICS})"
            )));
        }
        if super::warehouse::RESERVED_COLUMNS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(c))
        {
            return Err(Error::usage(format!(
                "{CLUSTER_COLUMN} {c}: the assignment has its own column of that name ({}); rename \
                 or copy the cluster id to another name in the audience",
                super::warehouse::RESERVED_COLUMNS.join(", ")
            )));
        }
    }
    let reserved: Vec<&String> = strata
        .iter()
        .filter(|s| {
            super::warehouse::RESERVED_COLUMNS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(s))
        })
        .collect();
    if let Some(s) = reserved.first() {
        return Err(Error::usage(format!(
            "{STRATA}/{METRICS} {s}: the assignment has its own column of that name ({}), so a stratum \
             cannot use it; rename or copy that field to another name in the audience",
            super::warehouse::RESERVED_COLUMNS.join(", ")
        )));
    }
    if let Some(out) = &outputs.file {
        super::audience::file_kind(out)?;
        for p in [out.clone(), super::output::design_path(out)] {
            if p.exists() && !outputs.replace {
                return Err(Error::runtime(format!(
                    "{}: already exists; pass {REPLACE} to overwrite it",
                    p.display()
                )));
            }
        }
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::runtime(format!(
                "{}: the directory {} does not exist",
                out.display(),
                dir.display()
            )));
        }
    }
    if file_id_column.is_some() && outputs.table.as_ref().is_some_and(|t| t.dsn.is_none()) {
        return Err(Error::usage(format!(
            "{WRITE_TABLE} with {INPUT} needs {DSN} (the warehouse to write to)"
        )));
    }
    Ok(())
}

impl DesignRequest {
    /// The design to draw with this seed.
    pub fn with_seed(&self, seed: u64) -> Design {
        Design {
            arms: self.arms.clone(),
            strata: self.strata.clone(),
            quantiles: self.quantiles,
            misfit: self.misfit,
            seed,
            fstat_thresh: self.fstat_thresh,
            cluster: self.cluster.clone(),
        }
    }
}

impl Request {
    /// [`check_request`] for this request.
    pub fn check(&self) -> Result<()> {
        let file_id = match &self.audience {
            Audience::File { id_column, .. } => Some(id_column.as_str()),
            Audience::Participants(_) => None,
        };
        check_request(&self.design, &self.outputs, file_id)
    }
}

/// With `XNGIN_TRACE` set, print the elapsed time, the CPU time and memory (current and peak
/// RSS) after each phase to stderr: a tool for the benchmark (bench/assign.sh).
pub(crate) fn trace(phase: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    if std::env::var_os("XNGIN_TRACE").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // CPU time of all threads (user + system, fields 14 and 15 of /proc/self/stat, in clock
    // ticks of 1/100 s): unlike the wall time, it does not grow when other work shares the cores.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let cpu: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<f64>().ok())
                .sum::<f64>()
                / 100.0
        })
        .unwrap_or(0.0);
    eprintln!(
        "[{:7.3} s, cpu {cpu:6.2} s] {phase}: rss {} MB, peak {} MB",
        start.elapsed().as_secs_f64(),
        kb("VmRSS:") / 1024,
        kb("VmHWM:") / 1024
    );
}

/// The audience columns to read: the strata, then the cluster column.
fn read_columns(design: &DesignRequest) -> Vec<String> {
    design
        .strata
        .iter()
        .chain(&design.cluster)
        .cloned()
        .collect()
}

/// What names one run: its seed (drawn and announced when not given), experiment id and time.
pub(super) struct Identity {
    pub seed: u64,
    pub seed_given: bool,
    pub experiment_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub(super) fn identity(design: &DesignRequest, outputs: &Outputs) -> Identity {
    let seed_given = design.seed.is_some();
    let seed = design.seed.unwrap_or_else(rng::fresh_seed);
    if !seed_given {
        notice(format!(
            "no {SEED} given: using seed {seed} (recorded in the design record; pass {SEED} {seed} to redraw the same assignment)"
        ));
    }
    Identity {
        seed,
        seed_given,
        experiment_id: outputs
            .experiment_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        created_at: chrono::Utc::now(),
    }
}

/// Run an assignment request.
pub async fn run(req: &Request) -> Result<Report> {
    trace("start");
    req.check()?;
    if req.in_warehouse {
        let Audience::Participants(aud) = &req.audience else {
            return Err(Error::usage(format!(
                "{IN_WAREHOUSE} assigns a participant type inside its warehouse; it needs {PARTICIPANT_TYPE}, not {INPUT}"
            )));
        };
        return super::inwh::run(req, aud).await;
    }
    let id = identity(&req.design, &req.outputs);
    run_local(req, id).await
}

/// The local run of a checked request with its identity (also `--in-warehouse` on SQLite, a
/// local engine: see [`super::inwh::run`]).
pub(super) async fn run_local(req: &Request, id: Identity) -> Result<Report> {
    let d = &req.design;
    let out = &req.outputs;
    let Identity {
        seed,
        seed_given,
        experiment_id,
        created_at,
    } = id;

    // Audience.
    let (table, mut audience, wh_target) = match &req.audience {
        Audience::File { path, id_column } => {
            let pb = crate::output::progress(None, "reading");
            let t = super::audience::read_columns(
                path,
                id_column,
                &read_columns(d),
                d.cluster.as_deref(),
            )?;
            pb.finish_and_clear();
            let rec = AudienceRecord {
                participant_type: None,
                datasource: None,
                table: None,
                input_file: Some(path.display().to_string()),
                id_column: id_column.clone(),
                filters: serde_json::Value::Array(vec![]),
                audience_rows: t.len() as u64,
            };
            (t, rec, None)
        }
        Audience::Participants(aud) => {
            let (t, rec, target) =
                super::participants::read_participants(aud, &read_columns(d), d.cluster.as_ref())
                    .await?;
            (t, rec, Some(target))
        }
    };
    audience.audience_rows = table.len() as u64;
    let table = match d.sample_size {
        Some(k) => sample(&table, k as usize, seed)?,
        None => table,
    };
    let design = d.with_seed(seed);
    trace("audience read");
    let outcome = assign(&table, &design)?;
    for n in &outcome.notes {
        notice(n);
    }
    trace("assigned");
    // Every output is prepared first and committed last: the assignment file and its design
    // record are written under temporary names, then the warehouse write commits, then the two
    // files are renamed into place. A failure before that leaves earlier files and tables as
    // they were. The pair is tied by the data file's SHA-256 in the record
    // (`outputs.file_sha256`), which `assignment --input` checks, so a run killed between the
    // two renames leaves a pair that readers refuse rather than one that silently disagrees.
    let fp = super::output::fingerprint(&outcome);
    let prepared = match &out.file {
        Some(file) => Some(super::output::prepare_file(
            file,
            out.replace,
            &table,
            &outcome,
            &design,
        )?),
        None => None,
    };
    trace("assignment file written");
    let mut record = DesignRecord::new(
        experiment_id,
        created_at,
        audience,
        &design,
        &outcome,
        seed_given,
        d.sample_size,
        fp,
    );
    if let (Some(file), Some((_, sha))) = (&out.file, &prepared) {
        let dp = super::output::design_path(file);
        record.outputs.file = Some(file.display().to_string());
        record.outputs.file_sha256 = Some(sha.clone());
        record.outputs.design_file = Some(dp.display().to_string());
    }
    if let Some(t) = &out.table {
        record.outputs.table = Some(t.spec.clone());
    }
    let pending_record =
        super::output::prepare_design_record(out.file.as_deref(), out.replace, &record)?;
    if let Some(t) = &out.table {
        let pb = crate::output::progress(Some(table.len() as u64), "writing");
        let res = super::warehouse::write_table(
            t,
            out.replace,
            wh_target.as_ref(),
            &table,
            &outcome,
            &design,
            &record,
            &pb,
        )
        .await;
        pb.finish_and_clear();
        // On failure the prepared files are dropped (their temporary files removed) unseen.
        res?;
        trace("table written");
    }
    // Commit the files: the data file, then its record.
    if let Some((data, _)) = prepared {
        data.commit()?;
    }
    if let Some(rec) = pending_record {
        rec.commit()?;
    }
    if out.file.is_none() && out.table.is_none() {
        notice(format!(
            "no {OUTPUT} or {WRITE_TABLE} given: the assignment is not saved"
        ));
    }
    Ok(Report {
        record,
        table,
        outcome,
        design,
    })
}

//! `xngin assign` end to end: read the audience, draw, write the outputs, build the record.

use std::path::PathBuf;

use super::output::{AudienceRecord, DesignRecord};
use super::*;
use crate::output::notice;

/// Where the audience comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A CSV or Parquet file.
    File { path: PathBuf, id_column: String },
    /// A participant type resolved through the settings (or the built-in default).
    ParticipantType {
        name: String,
        settings: Option<PathBuf>,
        datasource: Option<String>,
        /// The unique id column (default: the sheet's unique id).
        id_column: Option<String>,
        /// Audience filters, as `--filter` expressions.
        filters: Vec<String>,
        /// A JSON file with a list of filters.
        filters_file: Option<PathBuf>,
    },
}

/// Everything `xngin assign` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    pub arms: Vec<String>,
    pub arm_weights: Option<Vec<String>>,
    pub strata: Vec<String>,
    pub metrics: Vec<String>,
    pub quantiles: u32,
    pub misfit: MisfitStrategy,
    pub seed: Option<u64>,
    pub sample_size: Option<u64>,
    pub experiment_id: Option<String>,
    pub output: Option<PathBuf>,
    pub replace: bool,
    /// `[SCHEMA.]TABLE` in the participant type's warehouse (or `dsn`).
    pub write_table: Option<String>,
    pub dsn: Option<String>,
    pub fstat_thresh: f64,
    /// Randomize whole clusters of this column (docs/cluster.md#cluster-assignment).
    pub cluster_column: Option<String>,
    /// Compute the assignment in the participant type's warehouse (`--in-warehouse`,
    /// [`super::inwh`]).
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

/// Check the flags that need no data.
pub fn check_request(req: &Request) -> Result<(Arms, Vec<String>)> {
    let arms = Arms::new(&req.arms, req.arm_weights.as_deref())?;
    if req.quantiles == 0 {
        return Err(Error::usage("--quantiles must be at least 1"));
    }
    if !(0.0..=1.0).contains(&req.fstat_thresh) {
        return Err(Error::usage(format!(
            "--fstat-thresh {} is not a p-value threshold between 0 and 1",
            req.fstat_thresh
        )));
    }
    if let Some(id) = &req.experiment_id
        && (id.trim().is_empty() || id.len() > 200 || id.chars().any(char::is_control))
    {
        return Err(Error::usage(
            "--experiment-id must be 1 to 200 printable characters",
        ));
    }
    if req.sample_size.is_some_and(|k| k < 2) {
        return Err(Error::usage("--sample-size must be at least 2"));
    }
    let strata = strata_fields(&req.strata, &req.metrics);
    if let Some(c) = &req.cluster_column {
        if req.sample_size.is_some() {
            return Err(Error::usage(
                "--sample-size draws participants, which would split clusters; with --cluster-column \
                 narrow the audience with filters instead",
            ));
        }
        if let Source::File { id_column, .. } = &req.source
            && id_column == c
        {
            return Err(Error::usage(format!(
                "--cluster-column {c} is the --id-column: every participant would be its own \
                 cluster; leave out --cluster-column for an individually randomized design"
            )));
        }
        if strata.contains(c) {
            return Err(Error::usage(format!(
                "--cluster-column {c} is also in --strata/--metrics; the cluster id cannot stratify \
                 its own clusters (remove it from --strata/--metrics)"
            )));
        }
        if super::warehouse::RESERVED_COLUMNS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(c))
        {
            return Err(Error::usage(format!(
                "--cluster-column {c}: the assignment has its own column of that name ({}); rename \
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
            "--strata/--metrics {s}: the assignment has its own column of that name ({}), so a stratum \
             cannot use it; rename or copy that field to another name in the audience",
            super::warehouse::RESERVED_COLUMNS.join(", ")
        )));
    }
    if let Some(out) = &req.output {
        super::audience::file_kind(out)?;
        for p in [out.clone(), super::output::design_path(out)] {
            if p.exists() && !req.replace {
                return Err(Error::runtime(format!(
                    "{}: already exists; pass --replace to overwrite it",
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
    Ok((arms, strata))
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
fn read_columns(req: &Request, strata: &[String]) -> Vec<String> {
    strata.iter().chain(&req.cluster_column).cloned().collect()
}

/// What names one run: its seed (drawn and announced when not given), experiment id and time.
pub(super) struct Identity {
    pub seed: u64,
    pub seed_given: bool,
    pub experiment_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub(super) fn identity(req: &Request) -> Identity {
    let seed_given = req.seed.is_some();
    let seed = req.seed.unwrap_or_else(rng::fresh_seed);
    if !seed_given {
        notice(format!(
            "no --seed given: using seed {seed} (recorded in the design record; pass --seed {seed} to redraw the same assignment)"
        ));
    }
    Identity {
        seed,
        seed_given,
        experiment_id: req
            .experiment_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        created_at: chrono::Utc::now(),
    }
}

/// Run an assignment request.
pub async fn run(req: &Request) -> Result<Report> {
    trace("start");
    if req.in_warehouse {
        return super::inwh::run(req).await;
    }
    let (arms, strata) = check_request(req)?;
    let id = identity(req);
    run_local(req, arms, strata, id).await
}

/// The local run of a checked request with its identity (also `--in-warehouse` on SQLite, a
/// local engine: see [`super::inwh::run`]).
pub(super) async fn run_local(
    req: &Request,
    arms: Arms,
    strata: Vec<String>,
    id: Identity,
) -> Result<Report> {
    let Identity {
        seed,
        seed_given,
        experiment_id,
        created_at,
    } = id;

    // Audience.
    let (table, mut audience, wh_target) = match &req.source {
        Source::File { path, id_column } => {
            if req.write_table.is_some() && req.dsn.is_none() {
                return Err(Error::usage(
                    "--write-table with --input needs --dsn (the warehouse to write to)",
                ));
            }
            let pb = crate::output::progress(None, "reading");
            let t = super::audience::read_columns(
                path,
                id_column,
                &read_columns(req, &strata),
                req.cluster_column.as_deref(),
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
        Source::ParticipantType { .. } => {
            let (t, rec, target) =
                super::warehouse::read_participants(req, &read_columns(req, &strata)).await?;
            (t, rec, Some(target))
        }
    };
    audience.audience_rows = table.len() as u64;
    let table = match req.sample_size {
        Some(k) => sample(&table, k as usize, seed)?,
        None => table,
    };
    let design = Design {
        arms,
        strata,
        quantiles: req.quantiles,
        misfit: req.misfit,
        seed,
        fstat_thresh: req.fstat_thresh,
        cluster: req.cluster_column.clone(),
    };
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
    let prepared = match &req.output {
        Some(out) => Some(super::output::prepare_file(
            out,
            req.replace,
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
        req.sample_size,
        fp,
    );
    if let (Some(out), Some((_, sha))) = (&req.output, &prepared) {
        let dp = super::output::design_path(out);
        record.outputs.file = Some(out.display().to_string());
        record.outputs.file_sha256 = Some(sha.clone());
        record.outputs.design_file = Some(dp.display().to_string());
    }
    if let Some(t) = &req.write_table {
        record.outputs.table = Some(t.clone());
    }
    let pending_record =
        super::output::prepare_design_record(req.output.as_deref(), req.replace, &record)?;
    if let Some(t) = &req.write_table {
        let pb = crate::output::progress(Some(table.len() as u64), "writing");
        let res = super::warehouse::write_table(
            req,
            wh_target.as_ref(),
            t,
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
    if req.output.is_none() && req.write_table.is_none() {
        notice("no --output or --write-table given: the assignment is not saved");
    }
    Ok(Report {
        record,
        table,
        outcome,
        design,
    })
}

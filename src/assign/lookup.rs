//! `xngin assignment`: participants' arms looked up in an experiment written by `assign`, in
//! an assignment file or a warehouse table, with the ids not found.

use std::path::PathBuf;

use crate::dsn::Dsn;
use crate::error::{Error, Result};

/// Where an experiment's assignment was written.
#[derive(Debug, Clone)]
pub enum LookupSource {
    /// An assignment CSV written by `assign` (checked against its design record).
    File(PathBuf),
    /// A `[SCHEMA.]TABLE` in a warehouse.
    Table { spec: String, dsn: Box<Dsn> },
}

/// The rows found (participant id, arm id, arm name, stratum id as text) and the ids not found.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub experiment_id: String,
    pub rows: Vec<[String; 4]>,
    pub missing: Vec<String>,
}

/// Look `ids` up in experiment `experiment_id`.
pub async fn lookup(source: &LookupSource, experiment_id: &str, ids: &[String]) -> Result<Lookup> {
    let rows: Vec<[String; 4]> = match source {
        LookupSource::File(path) => super::output::lookup_csv(path, experiment_id, ids)?,
        LookupSource::Table { spec, dsn } => {
            super::warehouse::lookup(dsn, spec, experiment_id, ids)
                .await?
                .into_iter()
                .map(|r| {
                    let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
                    [t(0), t(1), t(2), t(3)]
                })
                .collect()
        }
    };
    let found: std::collections::HashSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let missing = ids
        .iter()
        .filter(|i| !found.contains(i.as_str()))
        .cloned()
        .collect();
    Ok(Lookup {
        experiment_id: experiment_id.to_string(),
        rows,
        missing,
    })
}

impl Lookup {
    /// The rows as a table.
    pub fn render_table(&self) -> String {
        let mut t = crate::output::table();
        t.set_header(super::output::FIXED_COLUMNS.to_vec());
        for r in &self.rows {
            t.add_row(r.to_vec());
        }
        format!("{t}\n")
    }

    /// The rows as JSON objects (ids as text, arm and stratum ids as numbers).
    pub fn render_json(&self) -> String {
        let v: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "experiment_id": self.experiment_id,
                    "participant_id": r[0],
                    "arm_id": r[1].parse::<i64>().ok(),
                    "arm_name": if r[2].is_empty() { None } else { Some(&r[2]) },
                    "stratum_id": r[3].parse::<i64>().ok(),
                })
            })
            .collect();
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    /// The rows as CSV with the assignment's header.
    pub fn render_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let fail = |e: &dyn std::fmt::Display| Error::runtime(format!("writing CSV: {e}"));
        w.write_record(super::output::FIXED_COLUMNS)
            .map_err(|e| fail(&e))?;
        for r in &self.rows {
            w.write_record(r).map_err(|e| fail(&e))?;
        }
        let bytes = w.into_inner().map_err(|e| fail(&e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The error for ids not found (exit 1), after the rows found are printed.
    pub fn missing_error(&self) -> Option<Error> {
        (!self.missing.is_empty()).then(|| {
            Error::runtime(format!(
                "{} participant id(s) not found in experiment {}: {}",
                self.missing.len(),
                self.experiment_id,
                self.missing.join(", ")
            ))
        })
    }
}

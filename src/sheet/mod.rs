//! The column-metadata sheet (docs/compatibility.md#column-metadata-sheets): one row per warehouse
//! column saying which is the unique id and which are strata, filters and metrics.
//!
//! The model here is shared by the sheet parser, `bootstrap-spreadsheet`, inline `schema`
//! participants in settings, `fields`, `power` and `assign`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datatype::DataType;
use crate::settings::schema::older_name;

/// One annotated column (the E1 `ColumnDescriptor`; `field_name` is accepted for `column_name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = older_name("column_name", "field_name"))]
pub struct ColumnDescriptor {
    #[serde(alias = "field_name")]
    pub column_name: String,
    pub data_type: DataType,
    #[serde(default)]
    pub column_group: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_unique_id: bool,
    #[serde(default)]
    pub is_strata: bool,
    #[serde(default)]
    pub is_filter: bool,
    #[serde(default)]
    pub is_metric: bool,
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// A parsed sheet: the worksheet name as `table_name` and its columns (the E1 `ConfigWorksheet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    extend("$id" = "https://xngin.invalid/schemas/ConfigWorksheet.schema.json"),
    transform = older_name("columns", "fields")
)]
pub struct ConfigWorksheet {
    pub table_name: String,
    #[serde(alias = "fields")]
    pub columns: Vec<ColumnDescriptor>,
}

impl ConfigWorksheet {
    /// The single column marked as unique id (a validated sheet has exactly one).
    pub fn unique_id(&self) -> Option<&ColumnDescriptor> {
        self.columns.iter().find(|c| c.is_unique_id)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDescriptor> {
        self.columns.iter().find(|c| c.column_name == name)
    }

    pub fn strata(&self) -> impl Iterator<Item = &ColumnDescriptor> {
        self.columns.iter().filter(|c| c.is_strata)
    }

    pub fn filters(&self) -> impl Iterator<Item = &ColumnDescriptor> {
        self.columns.iter().filter(|c| c.is_filter)
    }

    pub fn metrics(&self) -> impl Iterator<Item = &ColumnDescriptor> {
        self.columns.iter().filter(|c| c.is_metric)
    }
}

/// The sheet header as the older CLI wrote it (docs/compatibility.md#column-metadata-sheets).
pub const HEADER: [&str; 8] = [
    "column_name",
    "data_type",
    "column_group",
    "description",
    "is_unique_id",
    "is_strata",
    "is_filter",
    "is_metric",
];

pub mod bootstrap;
pub mod gsheets;
pub mod parse;
pub mod read;

pub use parse::{
    SchemaProblem, SheetProblem, parse_cells, parse_csv_bytes, validate_worksheet,
    worksheet_problems,
};
pub use read::{SheetSource, read_sheet, read_sheet_with};

//! Bootstrapping a sheet from a warehouse table (docs/compatibility.md#column-metadata-sheets).
//!
//! One row per column: the unique id (from `--unique-id-col`, else the first primary-key column,
//! else a column named `id`) first, then the `character varying` columns by name, then the rest
//! by name (byte order). Descriptions and groups are empty and the other flags false: the tenant
//! fills them in.

use crate::input::names::*;
use std::collections::BTreeMap;
use std::io::Write;

use crate::error::{Error, Result};
use crate::sheet::{ColumnDescriptor, ConfigWorksheet, HEADER, validate_worksheet};
use crate::warehouse::Warehouse;
use crate::warehouse::introspect::ColumnInfo;

/// The column to mark as unique id: `requested` (must exist), else the first primary-key
/// column, else a column named `id`. `table` is only used in messages.
pub fn choose_unique_id(
    table: &str,
    columns: &[ColumnInfo],
    requested: Option<&str>,
) -> Result<String> {
    if let Some(r) = requested {
        if columns.iter().any(|c| c.name == r) {
            return Ok(r.to_string());
        }
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::usage(format!(
            "{UNIQUE_ID_COL} '{r}' is not a column of table '{table}'; its columns are: {}",
            names.join(", ")
        )));
    }
    if let Some(pk) = columns
        .iter()
        .filter(|c| c.primary_key)
        .min_by_key(|c| c.pk_position.unwrap_or(u32::MAX))
    {
        return Ok(pk.name.clone());
    }
    if columns.iter().any(|c| c.name == "id") {
        return Ok("id".to_string());
    }
    Err(Error::invalid(format!(
        "table '{table}' has no primary key and no column named 'id', so no column can be marked as the \
         unique ID; pass {UNIQUE_ID_COL} COLUMN naming the column that identifies a participant"
    )))
}

/// The sheet for a table whose columns are `columns` (row order: docs/compatibility.md), validated.
pub fn worksheet_from_columns(
    table: &str,
    columns: &[ColumnInfo],
    unique_id_col: Option<&str>,
) -> Result<ConfigWorksheet> {
    let uid = choose_unique_id(table, columns, unique_id_col)?;
    let mut rows: Vec<ColumnDescriptor> = columns
        .iter()
        .map(|c| ColumnDescriptor {
            column_name: c.name.clone(),
            data_type: c.data_type,
            column_group: String::new(),
            description: String::new(),
            is_unique_id: c.name == uid,
            is_strata: false,
            is_filter: false,
            is_metric: false,
            extra: BTreeMap::new(),
        })
        .collect();
    rows.sort_by(|a, b| {
        let key = |c: &ColumnDescriptor| {
            (
                !c.is_unique_id,
                c.data_type != crate::datatype::DataType::CharacterVarying,
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.column_name.as_bytes().cmp(b.column_name.as_bytes()))
    });
    let ws = ConfigWorksheet {
        table_name: table.to_string(),
        columns: rows,
    };
    validate_worksheet(&ws)?;
    Ok(ws)
}

/// Introspect `schema.table` and build its sheet.
pub async fn bootstrap(
    wh: &Warehouse,
    schema: Option<&str>,
    table: &str,
    unique_id_col: Option<&str>,
) -> Result<ConfigWorksheet> {
    let columns = wh.columns(schema, table).await?;
    worksheet_from_columns(table, &columns, unique_id_col)
}

/// [`bootstrap`] over its own connection to `dsn`.
pub async fn bootstrap_dsn(
    dsn: &crate::dsn::Dsn,
    schema: Option<&str>,
    table: &str,
    unique_id_col: Option<&str>,
) -> Result<ConfigWorksheet> {
    let wh = Warehouse::connect(dsn).await?;
    let ws = bootstrap(&wh, schema, table, unique_id_col).await;
    wh.close().await;
    ws
}

fn flag(b: bool) -> String {
    if b { "true".into() } else { String::new() }
}

/// Sheet rows, header first (see docs/compatibility.md#column-metadata-sheets); `true` or empty.
pub fn sheet_rows(ws: &ConfigWorksheet) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(ws.columns.len() + 1);
    out.push(HEADER.iter().map(|h| h.to_string()).collect());
    for c in &ws.columns {
        out.push(vec![
            c.column_name.clone(),
            c.data_type.as_str().to_string(),
            c.column_group.clone(),
            c.description.clone(),
            flag(c.is_unique_id),
            flag(c.is_strata),
            flag(c.is_filter),
            flag(c.is_metric),
        ]);
    }
    out
}

/// Write the sheet as CSV (minimal quoting, `\n` line ends).
pub fn write_csv(ws: &ConfigWorksheet, w: &mut dyn Write) -> Result<()> {
    let mut wr = csv::WriterBuilder::new().from_writer(w);
    for row in sheet_rows(ws) {
        wr.write_record(&row)
            .map_err(|e| Error::runtime(format!("writing the sheet: {e}")))?;
    }
    wr.flush()
        .map_err(|e| Error::runtime(format!("writing the sheet: {e}")))?;
    Ok(())
}

/// The CSV text of a sheet.
pub fn to_csv_string(ws: &ConfigWorksheet) -> String {
    let mut buf = Vec::new();
    write_csv(ws, &mut buf).expect("writing to memory");
    String::from_utf8(buf).expect("sheet cells are UTF-8")
}

/// The sheet as a table for reading.
pub fn to_table_string(ws: &ConfigWorksheet) -> String {
    let mut t = crate::output::table();
    let rows = sheet_rows(ws);
    t.set_header(rows[0].clone());
    for r in &rows[1..] {
        t.add_row(r.clone());
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datatype::DataType;

    fn col(name: &str, t: DataType, pk: Option<u32>) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            sql_type: t.as_str().into(),
            nullable: pk.is_none(),
            primary_key: pk.is_some(),
            pk_position: pk,
            data_type: t,
        }
    }

    #[test]
    fn order_and_unique_id_rules() {
        let cols = vec![
            col("zeta", DataType::Integer, None),
            col("b_name", DataType::CharacterVarying, None),
            col("id", DataType::Integer, None),
            col("a_name", DataType::CharacterVarying, None),
            col("Alpha", DataType::Date, None),
            col("key2", DataType::Bigint, Some(2)),
            col("key1", DataType::CharacterVarying, Some(1)),
        ];
        let ws = worksheet_from_columns("t", &cols, None).unwrap();
        let names: Vec<&str> = ws.columns.iter().map(|c| c.column_name.as_str()).collect();
        assert_eq!(
            names,
            ["key1", "a_name", "b_name", "Alpha", "id", "key2", "zeta"]
        );
        assert_eq!(ws.unique_id().unwrap().column_name, "key1");

        let no_pk: Vec<ColumnInfo> = cols
            .iter()
            .cloned()
            .map(|mut c| {
                c.primary_key = false;
                c.pk_position = None;
                c
            })
            .collect();
        assert_eq!(
            worksheet_from_columns("t", &no_pk, None).unwrap().columns[0].column_name,
            "id"
        );
        assert_eq!(
            worksheet_from_columns("t", &no_pk, Some("zeta"))
                .unwrap()
                .columns[0]
                .column_name,
            "zeta"
        );
        let e = worksheet_from_columns("t", &no_pk, Some("nope")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with(&format!(
            "{UNIQUE_ID_COL} 'nope' is not a column of table 't'; its columns are: zeta, b_name, id"
        )));
        let without_id: Vec<ColumnInfo> = no_pk.into_iter().filter(|c| c.name != "id").collect();
        let e = worksheet_from_columns("t", &without_id, None).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.to_string()
                .contains(&format!("pass {UNIQUE_ID_COL} COLUMN"))
        );
    }

    #[test]
    fn csv_round_trips_through_the_parser() {
        let cols = vec![
            col("id", DataType::Integer, Some(1)),
            col("name, with comma", DataType::CharacterVarying, None),
            col("ts", DataType::TimestampWithTimeZone, None),
        ];
        let ws = worksheet_from_columns("people", &cols, None).unwrap();
        let text = to_csv_string(&ws);
        assert_eq!(
            text,
            "column_name,data_type,column_group,description,is_unique_id,is_strata,is_filter,is_metric\n\
             id,integer,,,true,,,\n\
             \"name, with comma\",character varying,,,,,,\n\
             ts,timestamp with time zone,,,,,,\n"
        );
        let back = crate::sheet::parse_csv_bytes("x.csv", "people", text.as_bytes()).unwrap();
        assert_eq!(back, ws);
    }
}

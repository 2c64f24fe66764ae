//! Audience filters (docs/compatibility.md#filters): the reference's filter model, its validation
//! messages, type checks against the sheet's DataType, and the SQL (quoted identifiers, bound
//! parameters) for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Filters come from `--filter "FIELD RELATION V1,V2"` ([`parse_cli_filter`]) or a JSON file of
//! the reference's filter objects ([`load_filters_file`]). [`validate`] checks them against the
//! sheet, reporting every problem; [`where_clause`] builds the `WHERE` fragment (filters are
//! AND-ed) and its parameters.
//!
//! SQL semantics (the reference's 2026 `queries.py`):
//!
//! | relation | values | predicate |
//! |---|---|---|
//! | includes | a, b | `x IN (a, b)` (NULL rows excluded) |
//! | includes | a, NULL | `x IS NULL OR x IN (a)` |
//! | includes | NULL | `x IS NULL` |
//! | excludes | a, b | `x IS NULL OR x NOT IN (a, b)` (NULL rows kept) |
//! | excludes | a, NULL | `x IS NOT NULL AND x NOT IN (a)` |
//! | excludes | NULL | `x IS NOT NULL` |
//! | between | a, b | `x >= a AND x <= b` |
//! | between | a, NULL / NULL, b | `x >= a` / `x <= b` |
//! | between | a, b, NULL | the same `OR x IS NULL` |
//! | boolean includes | true, NULL | `x IS TRUE OR x IS NULL` |
//! | boolean excludes | true | `x IS NOT TRUE` (NULL rows kept) |
//!
//! Fields named `*experiment_ids` hold comma-separated lists, matched case-insensitively per
//! element: PostgreSQL `lower(x) ~ '(^v$)|(^v,)|(,v$)|(,v,)'` with `v = (v1|v2)` (values
//! lower-cased and regex-escaped), MySQL/MariaDB the same with `REGEXP`. SQLite has no REGEXP
//! function by default, so there the equivalent `instr(',' || lower(x) || ',', ',' || ? || ',') > 0`
//! is used per value (values contain no commas, so "some element equals v" is exactly that
//! substring test). SQLite's `lower()` folds ASCII only, so non-ASCII experiment ids compare
//! case-sensitively there. Excludes is `x IS NULL OR length(x) = 0 OR NOT (match)`.
//!
//! Text `includes`/`excludes` compare exact values on every database: on MySQL/MariaDB the
//! column is compared as UTF-8 bytes (`CAST(CONVERT(x USING utf8mb4) AS BINARY) IN (?, ?)`,
//! after the index-friendly `x IN (?, ?)` for includes), since the default collations there
//! ignore case and trailing spaces.
//!
//! Date and timestamp values are ISO-8601 text in UTC (`Z`, a zero offset or none); another
//! offset is refused with the reference's "must be in UTC" message. A date column takes a
//! date-time too and compares its date; timestamps are compared to the whole second.

use crate::input::names::*;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde::Serialize;
use serde_json::Value as Json;

use crate::datatype::DataType;
use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;
use crate::warehouse::SqlDialect;
use crate::warehouse::Value;

/// `includes`, `excludes` or `between`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    Includes,
    Excludes,
    Between,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Includes => "includes",
            Relation::Excludes => "excludes",
            Relation::Between => "between",
        }
    }

    fn parse(s: &str) -> Option<Relation> {
        match s.to_ascii_lowercase().as_str() {
            "includes" => Some(Relation::Includes),
            "excludes" => Some(Relation::Excludes),
            "between" => Some(Relation::Between),
            _ => None,
        }
    }
}

/// One value of a filter. JSON filters are strictly typed (`"1"` is not `1`); values from the
/// command line are [`FilterValue::Raw`] text, read according to the column's DataType.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Untyped text from `--filter`.
    Raw(String),
}

impl FilterValue {
    pub fn is_null(&self) -> bool {
        matches!(self, FilterValue::Null)
    }

    fn kind(&self) -> &'static str {
        match self {
            FilterValue::Null => "null",
            FilterValue::Bool(_) => "boolean",
            FilterValue::Int(_) | FilterValue::Float(_) => "number",
            FilterValue::Text(_) => "string",
            FilterValue::Raw(_) => "raw",
        }
    }

    fn describe(&self) -> String {
        match self {
            FilterValue::Null => "null".into(),
            FilterValue::Bool(b) => b.to_string(),
            FilterValue::Int(i) => i.to_string(),
            FilterValue::Float(f) => f.to_string(),
            FilterValue::Text(s) | FilterValue::Raw(s) => format!("{s:?}"),
        }
    }
}

/// A filter object (`{field_name, relation, value}`; E1's `filter_name` is accepted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filter {
    pub field_name: String,
    pub relation: Relation,
    pub value: Vec<FilterValue>,
    /// Where the filter came from, for messages (`--filter "age between 18,"`,
    /// `filters.json: filters[2]`).
    #[serde(skip)]
    pub origin: String,
}

/// A validated filter, its values typed for the column (None = NULL).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFilter {
    pub field_name: String,
    pub data_type: DataType,
    pub relation: Relation,
    pub values: Vec<Option<Value>>,
}

impl ResolvedFilter {
    /// The filter as a reference filter object with typed values (for design records):
    /// `{"field_name": "age", "relation": "between", "value": [18, null]}`.
    pub fn to_json(&self) -> Json {
        let value: Vec<Json> = self
            .values
            .iter()
            .map(|v| v.as_ref().map_or(Json::Null, Value::to_json))
            .collect();
        serde_json::json!({
            "field_name": self.field_name,
            "relation": self.relation.as_str(),
            "value": value,
        })
    }
}

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse `FIELD RELATION V1,V2,...`: values are split as one CSV record (double quotes around a
/// value that holds commas), `null` (any case, unquoted or quoted) is NULL, and an empty side of
/// `between` is open (NULL). Relation names are case-insensitive.
pub fn parse_cli_filter(spec: &str) -> Result<Filter> {
    let origin = format!("{FILTER} {spec:?}");
    let usage = |why: &str| {
        Error::usage(format!(
            "{origin}: {why}; expected \"FIELD RELATION V1,V2\" with RELATION one of includes, excludes, between \
             (e.g. {FILTER} \"gender includes female,male\" or {FILTER} \"age between 18,\")"
        ))
    };
    let trimmed = spec.trim_start();
    let (field, rest) = trimmed
        .split_once(char::is_whitespace)
        .ok_or_else(|| usage("missing relation"))?;
    let rest = rest.trim_start();
    let (relation, values) = match rest.split_once(char::is_whitespace) {
        Some((r, v)) => (r, v.trim()),
        None => (rest, ""),
    };
    let relation = Relation::parse(relation)
        .ok_or_else(|| usage(&format!("unknown relation {relation:?}")))?;
    let mut value = Vec::new();
    if !values.is_empty() || relation == Relation::Between {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(values.as_bytes());
        let mut record = csv::StringRecord::new();
        let got = reader
            .read_record(&mut record)
            .map_err(|e| usage(&format!("cannot split the values: {e}")))?;
        if got {
            for v in record.iter() {
                value.push(
                    if v.eq_ignore_ascii_case("null")
                        || (v.is_empty() && relation == Relation::Between)
                    {
                        FilterValue::Null
                    } else {
                        FilterValue::Raw(v.to_string())
                    },
                );
            }
        } else if relation == Relation::Between {
            value = vec![FilterValue::Null, FilterValue::Null];
        }
        if reader
            .read_record(&mut record)
            .map_err(|e| usage(&e.to_string()))?
        {
            return Err(usage("the values must be on one line"));
        }
    }
    Ok(Filter {
        field_name: field.to_string(),
        relation,
        value,
        origin,
    })
}

/// Every audience filter of a command: the CLI expressions in order, then the filters of a
/// JSON file. The one place filters are parsed ([`crate::audience::resolve_audience`]).
pub fn collect(cli: &[String], file: Option<&Path>) -> Result<Vec<Filter>> {
    let mut all = cli
        .iter()
        .map(|f| parse_cli_filter(f))
        .collect::<Result<Vec<_>>>()?;
    if let Some(p) = file {
        all.extend(load_filters_file(p)?);
    }
    Ok(all)
}

/// Read a JSON file holding filter objects: either a list `[{...}, ...]` or an object with a
/// `filters` list. Each object has `field_name` (or `filter_name`), `relation` and `value`;
/// unknown keys are errors. All problems are reported (exit 3); an unreadable file is exit 1.
pub fn load_filters_file(path: &Path) -> Result<Vec<Filter>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file = path.display().to_string();
    let doc: Json = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{file}:{}:{}: not valid JSON: {}",
            e.line(),
            e.column(),
            strip_pos(&e.to_string())
        ))
    })?;
    let (list, prefix) = match doc {
        Json::Array(a) => (a, String::new()),
        Json::Object(mut o) if o.contains_key("filters") => match o.remove("filters") {
            Some(Json::Array(a)) => (a, "filters".to_string()),
            _ => {
                return Err(Error::invalid(format!(
                    "{file}: filters: expected a list of filter objects"
                )));
            }
        },
        _ => {
            return Err(Error::invalid(format!(
                "{file}: expected a list of filter objects ({{\"field_name\": ..., \"relation\": ..., \"value\": [...]}}) \
                 or an object with a \"filters\" list"
            )));
        }
    };
    let mut filters = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let at = if prefix.is_empty() {
            format!("{file}: [{i}]")
        } else {
            format!("{file}: {prefix}[{i}]")
        };
        match filter_from_json(item, &at) {
            Ok(f) => filters.push(f),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(filters)
    } else {
        Err(Error::Invalid(errors))
    }
}

fn strip_pos(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// One filter object from JSON (strict value typing).
pub fn filter_from_json(item: Json, at: &str) -> std::result::Result<Filter, Vec<String>> {
    let Json::Object(obj) = item else {
        return Err(vec![format!(
            "{at}: expected a filter object {{\"field_name\", \"relation\", \"value\"}}"
        )]);
    };
    let mut errors = Vec::new();
    let mut field = None;
    let mut relation = None;
    let mut value = None;
    for (k, v) in obj {
        match k.as_str() {
            "field_name" | "filter_name" => match v {
                Json::String(s) => field = Some(s),
                other => errors.push(format!("{at}.{k}: expected a string, got {other}")),
            },
            "relation" => match v.as_str().and_then(Relation::parse) {
                Some(r) => relation = Some(r),
                None => errors.push(format!(
                    "{at}.relation: expected \"includes\", \"excludes\" or \"between\", got {v}"
                )),
            },
            "value" => match v {
                Json::Array(items) => {
                    let mut vals = Vec::new();
                    for (j, x) in items.into_iter().enumerate() {
                        match x {
                            Json::Null => vals.push(FilterValue::Null),
                            Json::Bool(b) => vals.push(FilterValue::Bool(b)),
                            Json::String(s) => vals.push(FilterValue::Text(s)),
                            Json::Number(n) => match n.as_i64() {
                                Some(i) => vals.push(FilterValue::Int(i)),
                                None => match n.as_f64() {
                                    Some(f) if f.is_finite() && !n.is_u64() => vals.push(FilterValue::Float(f)),
                                    _ => errors.push(format!("{at}.value[{j}]: number {n} is out of range")),
                                },
                            },
                            other => errors.push(format!(
                                "{at}.value[{j}]: expected a number, string, boolean or null, got {other}"
                            )),
                        }
                    }
                    value = Some(vals);
                }
                other => errors.push(format!(
                    "{at}.value: expected a list of values, got {other}"
                )),
            },
            other => errors.push(format!(
                "{at}: unknown key {other:?} (a filter has field_name, relation and value)"
            )),
        }
    }
    if field.is_none() {
        errors.push(format!("{at}: field_name: Field required"));
    }
    if relation.is_none() && !errors.iter().any(|e| e.contains(".relation")) {
        errors.push(format!("{at}: relation: Field required"));
    }
    if value.is_none() && !errors.iter().any(|e| e.contains(".value")) {
        errors.push(format!("{at}: value: Field required"));
    }
    match (field, relation, value) {
        (Some(field_name), Some(relation), Some(value)) if errors.is_empty() => {
            let origin = format!("{at} ({field_name})");
            Ok(Filter {
                field_name,
                relation,
                value,
                origin,
            })
        }
        _ => Err(errors),
    }
}

/// Check the filter-model rules that do not need the sheet; messages are the reference's.
fn model_errors(f: &Filter) -> Vec<String> {
    let mut e = Vec::new();
    if !valid_field_name(&f.field_name) {
        e.push(format!(
            "field_name {:?} must start with letter/underscore and contain only letters, numbers, underscores",
            f.field_name
        ));
    }
    let non_null: Vec<&FilterValue> = f.value.iter().filter(|v| !v.is_null()).collect();
    // One value type per list (ints and floats are both numbers).
    let kinds: std::collections::BTreeSet<&str> = non_null.iter().map(|v| v.kind()).collect();
    if kinds.len() > 1 {
        e.push(format!(
            "value must be a list of numbers, of strings or of booleans (with nulls), got a mix of {}",
            kinds.into_iter().collect::<Vec<_>>().join(" and ")
        ));
    }
    match f.relation {
        Relation::Includes | Relation::Excludes => {
            if f.value.is_empty() {
                e.push("value must be a non-empty list".into());
            }
        }
        Relation::Between => {
            if !(2..=3).contains(&f.value.len()) {
                e.push("BETWEEN relation requires exactly 2 or 3 values".into());
            } else {
                if f.value[0].is_null() && f.value[1].is_null() {
                    e.push("BETWEEN relation can have at most one None value among its bounds (give a lower or an upper bound)".into());
                }
                if f.value.len() == 3 && !f.value[2].is_null() {
                    e.push(
                        "the third BETWEEN value, if present, must be null (it means \"or NULL\")"
                            .into(),
                    );
                }
            }
        }
    }
    if f.field_name.to_lowercase().ends_with("experiment_ids") {
        if f.relation == Relation::Between {
            e.push(
                "filters on experiment_id fields must have relations of type excludes, includes"
                    .into(),
            );
        }
        for v in &non_null {
            if let FilterValue::Text(s) | FilterValue::Raw(s) = v
                && (s.contains(',') || s.trim() != s)
            {
                e.push(format!(
                    "experiment id {s:?} may not contain commas or leading/trailing whitespace"
                ));
            }
        }
    }
    e
}

/// Validate `filters` against the sheet: the model rules, the field (present in the sheet and
/// marked `is_filter`) and each value's type. Every problem is reported (exit 3), one line each,
/// prefixed with where the filter came from.
pub fn validate(filters: &[Filter], sheet: &ConfigWorksheet) -> Result<()> {
    resolve(filters, sheet).map(|_| ())
}

/// [`resolve`], with its problems added to `errors` (a caller that checks more than the
/// filters reports everything at once); Ok(empty) when there were problems.
pub fn resolve_into(
    filters: &[Filter],
    sheet: &ConfigWorksheet,
    errors: &mut Vec<String>,
) -> Result<Vec<ResolvedFilter>> {
    match resolve(filters, sheet) {
        Ok(r) => Ok(r),
        Err(Error::Invalid(e)) => {
            errors.extend(e);
            Ok(Vec::new())
        }
        Err(other) => Err(other),
    }
}

/// [`validate`], returning the filters with values typed for their columns.
pub fn resolve(filters: &[Filter], sheet: &ConfigWorksheet) -> Result<Vec<ResolvedFilter>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in filters {
        let origin = if f.origin.is_empty() {
            format!("filter on {:?}", f.field_name)
        } else {
            f.origin.clone()
        };
        let mut errs = model_errors(f);
        let column = sheet.column(&f.field_name);
        let mut values = Vec::new();
        match column {
            None if valid_field_name(&f.field_name) => {
                let known: Vec<&str> = sheet.filters().map(|c| c.column_name.as_str()).collect();
                errs.push(format!(
                    "no column {:?} in the sheet for {}; filter fields: {}",
                    f.field_name,
                    sheet.table_name,
                    if known.is_empty() {
                        "(none marked is_filter)".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            None => {}
            Some(col) => {
                if !col.is_filter {
                    errs.push(format!(
                        "column {:?} is not marked is_filter in the sheet for {} (set is_filter to TRUE there to filter on it)",
                        col.column_name, sheet.table_name
                    ));
                }
                errs.extend(boolean_rules(f, col.data_type));
                for v in &f.value {
                    match typed_value(v, col.data_type) {
                        Ok(tv) => values.push(tv),
                        Err(msg) => errs.push(msg),
                    }
                }
            }
        }
        if errs.is_empty()
            && let Some(col) = column
        {
            out.push(ResolvedFilter {
                field_name: f.field_name.clone(),
                data_type: col.data_type,
                relation: f.relation,
                values,
            });
        }
        errors.extend(errs.into_iter().map(|m| format!("{origin}: {m}")));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invalid(errors))
    }
}

/// The boolean-list rules (E2.5+).
fn boolean_rules(f: &Filter, t: DataType) -> Vec<String> {
    if t != DataType::Boolean {
        return Vec::new();
    }
    let mut e = Vec::new();
    if f.relation == Relation::Between {
        e.push("Values do not support BETWEEN.".to_string());
        return e;
    }
    let norm: Vec<Option<bool>> = f
        .value
        .iter()
        .map(|v| match v {
            FilterValue::Bool(b) => Some(*b),
            FilterValue::Raw(s) => parse_bool(s),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    if f.value
        .iter()
        .zip(&norm)
        .any(|(v, n)| !seen.insert(if v.is_null() { None } else { Some(*n) }))
    {
        e.push("Duplicate values detected.".into());
    }
    let has = |b: Option<bool>| {
        f.value
            .iter()
            .zip(&norm)
            .any(|(v, n)| if b.is_none() { v.is_null() } else { *n == b })
    };
    if has(Some(true)) && has(Some(false)) && has(None) {
        e.push(match f.relation {
            Relation::Includes => "Boolean filter allows all possible values.".into(),
            _ => "Boolean filter rejects all possible values.".into(),
        });
    }
    e
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Type one value for a column (None = NULL); the error says what the column accepts.
fn typed_value(v: &FilterValue, t: DataType) -> std::result::Result<Option<Value>, String> {
    let bad = |accepts: &str| {
        format!(
            "value {} does not fit column type {t}: expected {accepts}",
            v.describe()
        )
    };
    if v.is_null() {
        return Ok(None);
    }
    let raw = |s: &str| -> std::result::Result<Value, String> {
        match t {
            DataType::Boolean => parse_bool(s)
                .map(Value::Bool)
                .ok_or_else(|| bad("true or false")),
            DataType::Integer | DataType::Bigint => s
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| bad("an integer")),
            DataType::DoublePrecision | DataType::Numeric => match s.parse::<i64>() {
                Ok(i) => Ok(Value::Int(i)),
                Err(_) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::Float)
                    .ok_or_else(|| bad("a number")),
            },
            _ => text_value(s, t).map_err(|e| e.unwrap_or_else(|| bad(accepts_text(t)))),
        }
    };
    let value = match (v, t) {
        (FilterValue::Raw(s), _) => raw(s)?,
        (_, DataType::JsonbUnsupported | DataType::JsonUnsupported | DataType::Unsupported) => {
            return Err(format!("column type {t} cannot be filtered"));
        }
        (FilterValue::Bool(b), DataType::Boolean) => Value::Bool(*b),
        (_, DataType::Boolean) => return Err(bad("true, false or null")),
        (FilterValue::Int(i), DataType::Integer | DataType::Bigint) => Value::Int(*i),
        // bigint also takes a numeric string (ids beyond JavaScript's safe integers).
        (FilterValue::Text(s), DataType::Bigint) => Value::Int(
            s.trim()
                .parse::<i64>()
                .map_err(|_| bad("an integer or a string of digits"))?,
        ),
        (_, DataType::Integer | DataType::Bigint) => return Err(bad("an integer")),
        (FilterValue::Int(i), DataType::DoublePrecision | DataType::Numeric) => Value::Int(*i),
        (FilterValue::Float(f), DataType::DoublePrecision | DataType::Numeric) => Value::Float(*f),
        (_, DataType::DoublePrecision | DataType::Numeric) => return Err(bad("a number")),
        (FilterValue::Text(s), _) => {
            text_value(s, t).map_err(|e| e.unwrap_or_else(|| bad(accepts_text(t))))?
        }
        (_, _) => return Err(bad(accepts_text(t))),
    };
    Ok(Some(value))
}

fn accepts_text(t: DataType) -> &'static str {
    match t {
        DataType::Uuid => "a UUID string such as 0e3b5c1a-8f4e-4d1b-9c3a-2f6e7d8c9b0a",
        DataType::Date => {
            "an ISO-8601 date string such as 2024-01-31 (a UTC date-time is cut to its date)"
        }
        DataType::TimestampWithoutTimeZone | DataType::TimestampWithTimeZone => {
            "an ISO-8601 UTC timestamp string such as 2024-01-31T12:00:00Z (UTC only)"
        }
        DataType::JsonbUnsupported | DataType::JsonUnsupported | DataType::Unsupported => {
            "nothing (unsupported type)"
        }
        _ => "a string",
    }
}

/// A text value typed for column type `t`. `Err(None)`: not a value of that type (the caller
/// says what the column accepts); `Err(Some(msg))`: a date-time with a non-UTC offset, refused
/// with the reference's message.
fn text_value(s: &str, t: DataType) -> std::result::Result<Value, Option<String>> {
    let instant = |s: &str| {
        iso_instant(s).map_err(|e| match e {
            InstantError::NotIso => None,
            InstantError::NotUtc => Some(format!(
                "datetime-type filter values must be in UTC, or not be tagged with an explicit timezone: {s}"
            )),
        })
    };
    match t {
        DataType::CharacterVarying => Ok(Value::Text(s.to_string())),
        DataType::Uuid => uuid::Uuid::parse_str(s.trim())
            .map(Value::Uuid)
            .map_err(|_| None),
        DataType::Date => instant(s).map(|n| Value::Date(n.date())),
        DataType::TimestampWithoutTimeZone => instant(s).map(Value::Timestamp),
        DataType::TimestampWithTimeZone => instant(s).map(|n| Value::TimestampTz(n.and_utc())),
        _ => Err(None),
    }
}

/// Why a text is not a UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstantError {
    /// Not an ISO-8601 date or date-time.
    NotIso,
    /// A date-time with an offset other than UTC.
    NotUtc,
}

/// An ISO-8601 date or date-time in UTC, in the forms the Python tool reads (its
/// `datetime.fromisoformat`): `2024-01-31`, `2024-01-31T12`, `2024-01-31T12:00`,
/// `2024-01-31T12:00:00[.ffffff]`, a space instead of `T`, optionally followed by `Z` or a zero
/// offset (`+00:00`, `+0000`, `+00`). A date alone is midnight. Sub-second digits are dropped,
/// as the reference does so that every warehouse compares the same instant (see
/// `docs/compatibility.md#filters`).
fn iso_instant(s: &str) -> std::result::Result<NaiveDateTime, InstantError> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    let mut t = s.to_string();
    if t.as_bytes().get(10) == Some(&b' ') {
        t.replace_range(10..11, "T");
    }
    let whole_seconds = |n: NaiveDateTime| n.with_nanosecond(0).unwrap_or(n);
    const NAIVE: [&str; 3] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"];
    let (naive, zulu) = match t.strip_suffix(['Z', 'z']) {
        Some(rest) => (rest, true),
        None => (t.as_str(), false),
    };
    if let Some(n) = NAIVE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
    {
        return Ok(whole_seconds(n));
    }
    if zulu {
        return Err(InstantError::NotIso);
    }
    const OFFSET: [&str; 3] = [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%dT%H%#z",
    ];
    match OFFSET
        .iter()
        .find_map(|f| DateTime::parse_from_str(&t, f).ok())
    {
        Some(dt) if dt.offset().local_minus_utc() == 0 => Ok(whole_seconds(dt.naive_utc())),
        Some(_) => Err(InstantError::NotUtc),
        None => Err(InstantError::NotIso),
    }
}

/// The `WHERE` fragment for `filters` (AND-ed; `1=1` when there are none) and its parameters,
/// numbered from `first_param_index` (1-based) for PostgreSQL's `$n`. Validates first.
pub fn where_clause(
    dialect: &dyn SqlDialect,
    filters: &[Filter],
    sheet: &ConfigWorksheet,
    first_param_index: usize,
) -> Result<(String, Vec<Value>)> {
    let resolved = resolve(filters, sheet)?;
    Ok(where_clause_resolved(dialect, &resolved, first_param_index))
}

/// [`where_clause`] for filters already resolved.
pub fn where_clause_resolved(
    dialect: &dyn SqlDialect,
    filters: &[ResolvedFilter],
    first_param_index: usize,
) -> (String, Vec<Value>) {
    let mut b = SqlBuilder {
        dialect,
        params: Vec::new(),
        first: first_param_index.max(1),
    };
    let parts: Vec<String> = filters
        .iter()
        .map(|f| format!("({})", b.predicate(f)))
        .collect();
    if parts.is_empty() {
        ("1=1".to_string(), b.params)
    } else {
        (parts.join(" AND "), b.params)
    }
}

struct SqlBuilder<'d> {
    dialect: &'d dyn SqlDialect,
    params: Vec<Value>,
    first: usize,
}

impl SqlBuilder<'_> {
    fn bind(&mut self, v: Value) -> String {
        self.params.push(v);
        self.dialect.placeholder(self.first + self.params.len() - 1)
    }

    fn list(&mut self, vals: &[&Value]) -> String {
        vals.iter()
            .map(|v| self.bind((*v).clone()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The expression `includes`/`excludes` test for membership. A text column is compared
    /// exactly (the dialect's `exact_text`: as its UTF-8 bytes on MySQL/MariaDB, whose default
    /// collations ignore case and trailing spaces, `Bob` = `bob ` there). NULL stays NULL, so the
    /// NULL tests are unchanged.
    fn member_operand(&self, col: &str, t: DataType) -> String {
        match t {
            DataType::CharacterVarying => self.dialect.exact_text(col),
            _ => col.to_string(),
        }
    }

    /// `member IN (values)`. When `member` is not the bare column (exact text on MySQL/MariaDB),
    /// the collation's `col IN (values)`, a superset of the exact matches, comes first so that an
    /// index on the column can still narrow the rows.
    fn member_in(&mut self, col: &str, member: &str, vals: &[&Value]) -> String {
        if member == col {
            format!("{col} IN ({})", self.list(vals))
        } else {
            let indexed = self.list(vals);
            format!(
                "({col} IN ({indexed}) AND {member} IN ({}))",
                self.list(vals)
            )
        }
    }

    fn predicate(&mut self, f: &ResolvedFilter) -> String {
        let col = self.dialect.quote_ident(&f.field_name);
        let non_null: Vec<&Value> = f.values.iter().flatten().collect();
        let has_null = f.values.iter().any(Option::is_none);
        if f.field_name.to_lowercase().ends_with("experiment_ids") && !non_null.is_empty() {
            return self.experiment_ids(&col, f.relation, &non_null);
        }
        if f.data_type == DataType::Boolean {
            let tests: Vec<String> = f
                .values
                .iter()
                .map(|v| match v {
                    Some(Value::Bool(true)) => "TRUE",
                    Some(Value::Bool(false)) => "FALSE",
                    _ => "NULL",
                })
                .map(|lit| match f.relation {
                    Relation::Includes => format!("{col} IS {lit}"),
                    _ => format!("{col} IS NOT {lit}"),
                })
                .collect();
            return tests.join(if f.relation == Relation::Includes {
                " OR "
            } else {
                " AND "
            });
        }
        let member = self.member_operand(&col, f.data_type);
        match f.relation {
            Relation::Includes => match (non_null.is_empty(), has_null) {
                (true, _) => format!("{col} IS NULL"),
                (false, false) => self.member_in(&col, &member, &non_null),
                (false, true) => {
                    format!(
                        "{col} IS NULL OR {}",
                        self.member_in(&col, &member, &non_null)
                    )
                }
            },
            Relation::Excludes => match (non_null.is_empty(), has_null) {
                (true, _) => format!("{col} IS NOT NULL"),
                (false, false) => {
                    format!(
                        "{col} IS NULL OR {member} NOT IN ({})",
                        self.list(&non_null)
                    )
                }
                (false, true) => format!(
                    "{col} IS NOT NULL AND {member} NOT IN ({})",
                    self.list(&non_null)
                ),
            },
            Relation::Between => {
                let mut range = Vec::new();
                if let Some(Some(lo)) = f.values.first() {
                    range.push(format!("{col} >= {}", self.bind(lo.clone())));
                }
                if let Some(Some(hi)) = f.values.get(1) {
                    range.push(format!("{col} <= {}", self.bind(hi.clone())));
                }
                let range = range.join(" AND ");
                if f.values.len() == 3 {
                    format!("({range}) OR {col} IS NULL")
                } else {
                    range
                }
            }
        }
    }

    fn experiment_ids(&mut self, col: &str, relation: Relation, values: &[&Value]) -> String {
        let ids: Vec<String> = values
            .iter()
            .filter_map(|v| v.to_text())
            .map(|s| s.to_lowercase())
            .collect();
        let matched = match self.dialect.lower_matches_regex("", "") {
            None => {
                let tests: Vec<String> = ids
                    .iter()
                    .map(|id| {
                        let p = self.bind(Value::Text(id.clone()));
                        format!("instr(',' || lower({col}) || ',', ',' || {p} || ',') > 0")
                    })
                    .collect();
                format!("({})", tests.join(" OR "))
            }
            Some(_) => {
                let x = format!(
                    "({})",
                    ids.iter()
                        .map(|s| regex::escape(s))
                        .collect::<Vec<_>>()
                        .join("|")
                );
                let pattern = format!("(^{x}$)|(^{x},)|(,{x}$)|(,{x},)");
                let p = self.bind(Value::Text(pattern));
                self.dialect
                    .lower_matches_regex(col, &p)
                    .unwrap_or_default()
            }
        };
        match relation {
            Relation::Includes => matched,
            _ => format!("{col} IS NULL OR length({col}) = 0 OR NOT ({matched})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_syntax() {
        let f = parse_cli_filter("age between 18,").unwrap();
        assert_eq!(f.relation, Relation::Between);
        assert_eq!(
            f.value,
            vec![FilterValue::Raw("18".into()), FilterValue::Null]
        );
        let f = parse_cli_filter("city includes \"Paris, TX\",Lyon,null").unwrap();
        assert_eq!(
            f.value,
            vec![
                FilterValue::Raw("Paris, TX".into()),
                FilterValue::Raw("Lyon".into()),
                FilterValue::Null
            ]
        );
        let f = parse_cli_filter("  x   EXCLUDES   NULL ").unwrap();
        assert_eq!(
            (f.field_name.as_str(), f.relation, f.value.clone()),
            ("x", Relation::Excludes, vec![FilterValue::Null])
        );
        let r = ResolvedFilter {
            field_name: "age".into(),
            data_type: DataType::Integer,
            relation: Relation::Between,
            values: vec![Some(Value::Int(18)), None],
        };
        assert_eq!(
            r.to_json().to_string(),
            r#"{"field_name":"age","relation":"between","value":[18,null]}"#
        );
        let f = parse_cli_filter("age between ,65,null").unwrap();
        assert_eq!(
            f.value,
            vec![
                FilterValue::Null,
                FilterValue::Raw("65".into()),
                FilterValue::Null
            ]
        );
        let e = parse_cli_filter("age within 1,2").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("unknown relation \"within\""), "{e}");
        assert!(parse_cli_filter("age").is_err());
    }
}

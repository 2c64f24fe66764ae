//! JSON Schemas of the settings file and of the sheet (`xngin export-json-schemas`).
//!
//! Derived by schemars from the same types that load the files: every constraint is an
//! attribute on the model ([`super::model`], [`crate::sheet`]), so that an editor flags what
//! `validate-settings` flags. Keys are sorted and printed with a 2-space indent so that the
//! files are stable in version control.

use std::path::{Path, PathBuf};

use schemars::Schema;
use serde_json::{Value, json};

use super::model::XnginSettings;
use crate::error::{Error, Result};
use crate::sheet::ConfigWorksheet;

fn generate<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.to_value()
}

/// A schemars transform for a property that serde also accepts under an older name
/// (`#[serde(alias)]`, which schemars does not see): `alias` gets the same subschema, and a
/// required `name` becomes "exactly one of the two"; an optional one "not both".
pub fn older_name(name: &'static str, alias: &'static str) -> impl Fn(&mut Schema) {
    move |schema: &mut Schema| {
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        let Some(sub) = obj.get("properties").and_then(|p| p.get(name)).cloned() else {
            return;
        };
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            props.insert(alias.to_string(), sub);
        }
        let required = match obj.get_mut("required") {
            Some(Value::Array(req)) => match req.iter().position(|r| r == name) {
                Some(i) => {
                    req.remove(i);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if obj
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            obj.remove("required");
        }
        if required {
            obj.insert(
                "oneOf".into(),
                json!([{ "required": [name] }, { "required": [alias] }]),
            );
        } else {
            obj.insert("not".into(), json!({ "required": [name, alias] }));
        }
    }
}

/// Sort object keys recursively.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `XnginSettings.schema.json` (properties in declaration order; [`render`] sorts them).
pub fn settings_schema() -> Value {
    generate::<XnginSettings>()
}

/// `ConfigWorksheet.schema.json` (a parsed sheet, as `parse-config-spreadsheet` prints it).
pub fn worksheet_schema() -> Value {
    generate::<ConfigWorksheet>()
}

/// Render a schema: sorted keys, 2-space indent, trailing newline.
pub fn render(schema: &Value) -> String {
    let mut s =
        serde_json::to_string_pretty(&sorted(schema.clone())).expect("a JSON value serializes");
    s.push('\n');
    s
}

/// Write both schemas into `dir` (created if missing); returns the paths written.
pub fn write_schemas(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for (name, schema) in [
        ("XnginSettings", settings_schema()),
        ("ConfigWorksheet", worksheet_schema()),
    ] {
        let path = dir.join(format!("{name}.schema.json"));
        let text = render(&schema);
        crate::output::write_atomic(&path, true, |w| {
            w.write_all(text.as_bytes())
                .map_err(|e| Error::io(&path, e))
        })?;
        out.push(path);
    }
    Ok(out)
}

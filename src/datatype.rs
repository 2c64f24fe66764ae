//! The column DataType enum shared by sheets, settings, introspection and filters
//! (docs/compatibility.md#data-types-and-introspection). Serialized as the enum *value* (`date`),
//! which is what sheets and settings files hold.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum DataType {
    #[serde(rename = "boolean")]
    Boolean,
    #[serde(rename = "character varying")]
    CharacterVarying,
    #[serde(rename = "date")]
    Date,
    #[serde(rename = "integer")]
    Integer,
    #[serde(rename = "double precision")]
    DoublePrecision,
    #[serde(rename = "numeric")]
    Numeric,
    #[serde(rename = "timestamp without time zone")]
    TimestampWithoutTimeZone,
    #[serde(rename = "bigint")]
    Bigint,
    #[serde(rename = "uuid")]
    Uuid,
    #[serde(rename = "timestamp with time zone")]
    TimestampWithTimeZone,
    #[serde(rename = "jsonb (unsupported)")]
    JsonbUnsupported,
    #[serde(rename = "json (unsupported)")]
    JsonUnsupported,
    #[serde(rename = "unsupported")]
    Unsupported,
}

/// How a field can be filtered (docs/compatibility.md#data-types-and-introspection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterClass {
    /// `includes` / `excludes` on distinct values.
    Discrete,
    /// `between` on a range.
    Numeric,
    /// Cannot be filtered.
    Unknown,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Boolean,
        DataType::CharacterVarying,
        DataType::Date,
        DataType::Integer,
        DataType::DoublePrecision,
        DataType::Numeric,
        DataType::TimestampWithoutTimeZone,
        DataType::Bigint,
        DataType::Uuid,
        DataType::TimestampWithTimeZone,
        DataType::JsonbUnsupported,
        DataType::JsonUnsupported,
        DataType::Unsupported,
    ];

    /// The serialized value, e.g. `character varying`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Boolean => "boolean",
            DataType::CharacterVarying => "character varying",
            DataType::Date => "date",
            DataType::Integer => "integer",
            DataType::DoublePrecision => "double precision",
            DataType::Numeric => "numeric",
            DataType::TimestampWithoutTimeZone => "timestamp without time zone",
            DataType::Bigint => "bigint",
            DataType::Uuid => "uuid",
            DataType::TimestampWithTimeZone => "timestamp with time zone",
            DataType::JsonbUnsupported => "jsonb (unsupported)",
            DataType::JsonUnsupported => "json (unsupported)",
            DataType::Unsupported => "unsupported",
        }
    }

    /// Parse a sheet cell: lower-cased and trimmed, must equal an enum value
    /// (`Character Varying` is fine, `varchar` is not).
    pub fn parse(cell: &str) -> Option<DataType> {
        let lower = cell.trim().to_lowercase();
        DataType::ALL.into_iter().find(|t| t.as_str() == lower)
    }

    /// Integers, floats and decimals: the types a power check can average.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            DataType::Integer | DataType::Bigint | DataType::DoublePrecision | DataType::Numeric
        )
    }

    /// The filter class of a field of this type named `field_name`: any `*_id` field is discrete.
    pub fn filter_class(self, field_name: &str) -> FilterClass {
        if field_name.to_lowercase().ends_with("_id") {
            return FilterClass::Discrete;
        }
        match self {
            DataType::Boolean | DataType::CharacterVarying | DataType::Uuid => {
                FilterClass::Discrete
            }
            DataType::Date
            | DataType::TimestampWithoutTimeZone
            | DataType::TimestampWithTimeZone
            | DataType::Integer
            | DataType::Bigint
            | DataType::DoublePrecision
            | DataType::Numeric => FilterClass::Numeric,
            _ => FilterClass::Unknown,
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_on_values_only() {
        assert_eq!(
            DataType::parse("Character Varying"),
            Some(DataType::CharacterVarying)
        );
        assert_eq!(DataType::parse(" BIGINT "), Some(DataType::Bigint));
        assert_eq!(DataType::parse("varchar"), None);
        for t in DataType::ALL {
            assert_eq!(DataType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
    }

    #[test]
    fn id_fields_are_discrete() {
        assert_eq!(
            DataType::Integer.filter_class("school_ID"),
            FilterClass::Discrete
        );
        assert_eq!(DataType::Integer.filter_class("age"), FilterClass::Numeric);
        assert_eq!(
            DataType::Unsupported.filter_class("x"),
            FilterClass::Unknown
        );
    }
}

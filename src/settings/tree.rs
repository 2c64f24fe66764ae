//! The position-carrying tree that both settings syntaxes are read into (see [`super::locate`]),
//! and [`LineIndex`], which turns its byte offsets into 1-based lines and columns counted in
//! characters.

/// Which syntax a settings file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Toml,
}

impl Syntax {
    /// By extension (`.json` / `.toml`), else by content (a leading `{` means JSON).
    pub fn detect(path: &std::path::Path, text: &str) -> Syntax {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("json") => Syntax::Json,
            Some("toml") => Syntax::Toml,
            _ => {
                if text
                    .trim_start_matches('\u{feff}')
                    .trim_start()
                    .starts_with('{')
                {
                    Syntax::Json
                } else {
                    Syntax::Toml
                }
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Syntax::Json => "JSON",
            Syntax::Toml => "TOML",
        }
    }
}

/// A parsed value with the byte offset where it starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: usize,
    pub kind: Kind,
    /// Set when `${secret:...}` references inside this string were substituted: the text is a
    /// secret and must never be echoed in a message.
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A TOML date/time literal (no JSON equivalent; always a type error in settings).
    Datetime(String),
    Array(Vec<Node>),
    Object(Vec<Entry>),
}

/// One key of an object / TOML table, in source order (duplicates kept so they can be reported).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: usize,
    pub value: Node,
}

impl Node {
    pub fn new(pos: usize, kind: Kind) -> Node {
        Node {
            pos,
            kind,
            secret: false,
        }
    }

    /// The tree of a JSON document read by `jsonc-parser`; `offset` is added to every position.
    pub fn from_json(v: &jsonc_parser::ast::Value<'_>, offset: usize) -> Node {
        use jsonc_parser::{ast::Value as V, common::Ranged};
        let kind = match v {
            V::NullKeyword(_) => Kind::Null,
            V::BooleanLit(b) => Kind::Bool(b.value),
            V::StringLit(s) => Kind::Str(s.value.to_string()),
            V::NumberLit(n) => match n.value.parse::<i64>() {
                Ok(i) if !n.value.contains(['.', 'e', 'E']) => Kind::Int(i),
                _ => Kind::Float(n.value.parse().unwrap_or(f64::NAN)),
            },
            V::Array(a) => Kind::Array(
                a.elements
                    .iter()
                    .map(|e| Node::from_json(e, offset))
                    .collect(),
            ),
            V::Object(o) => Kind::Object(
                (o.properties.iter())
                    .map(|p| Entry {
                        key: p.name.as_str().to_string(),
                        key_pos: offset + p.name.start(),
                        value: Node::from_json(&p.value, offset),
                    })
                    .collect(),
            ),
        };
        Node::new(offset + v.start(), kind)
    }

    /// The tree of a TOML document read by the `toml` crate (keys in source order).
    pub fn from_toml(root: &toml::de::DeTable<'_>) -> Node {
        use toml::de::{DeTable, DeValue};
        fn conv(v: &toml::Spanned<DeValue<'_>>) -> Node {
            let kind = match v.get_ref() {
                DeValue::String(s) => Kind::Str(s.to_string()),
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => Kind::Int(n),
                    Err(_) => Kind::Float(i.as_str().parse().unwrap_or(f64::INFINITY)),
                },
                DeValue::Float(f) => Kind::Float(f.as_str().parse().unwrap_or(f64::NAN)),
                DeValue::Boolean(b) => Kind::Bool(*b),
                DeValue::Datetime(d) => Kind::Datetime(d.to_string()),
                DeValue::Array(a) => Kind::Array(a.iter().map(conv).collect()),
                DeValue::Table(t) => Kind::Object(table(t)),
            };
            Node::new(v.span().start, kind)
        }
        fn table(t: &DeTable<'_>) -> Vec<Entry> {
            let mut entries: Vec<Entry> = (t.iter())
                .map(|(k, v)| Entry {
                    key: k.get_ref().to_string(),
                    key_pos: k.span().start,
                    value: conv(v),
                })
                .collect();
            // DeTable is ordered by key; restore source order.
            entries.sort_by_key(|e| e.key_pos);
            entries
        }
        Node::new(0, Kind::Object(table(root)))
    }

    /// "a string", "an integer"... for type-mismatch messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Str(_) => "a string",
            Kind::Datetime(_) => "a date/time",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Object(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// Plain JSON (for deserializing into the typed model once validation passed).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(*b),
            Kind::Int(i) => J::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Kind::Str(s) | Kind::Datetime(s) => J::String(s.clone()),
            Kind::Array(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Kind::Object(entries) => {
                let mut m = serde_json::Map::new();
                for e in entries {
                    m.insert(e.key.clone(), e.value.to_json());
                }
                J::Object(m)
            }
        }
    }
}

/// A syntax error at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: usize,
    pub message: String,
}

/// Byte offset -> (line, column), both 1-based; columns count characters.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        LineIndex { text, starts }
    }

    pub fn line_col(&self, pos: usize) -> (usize, usize) {
        let pos = pos.min(self.text.len());
        let line = match self.starts.binary_search(&pos) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let mut end = pos;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col = self.text[start..end]
            .chars()
            .filter(|c| *c != '\u{feff}')
            .count()
            + 1;
        (line + 1, col)
    }
}

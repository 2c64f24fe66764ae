//! Source positions for settings files.
//!
//! Both formats are parsed into one position-carrying tree ([`Node`]) so that every validation
//! problem can be reported as `FILE:LINE:COL` of the offending value. JSON is parsed by a small
//! recursive-descent parser written here (serde_json does not expose value positions); TOML is
//! parsed with the `toml` crate's spanned `DeTable`. Positions are byte offsets into the source;
//! [`LineIndex`] turns them into 1-based lines and 1-based columns counted in characters.

use std::borrow::Cow;

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

/// Parse a settings file of either syntax.
pub fn parse(text: &str, syntax: Syntax) -> Result<Node, SyntaxError> {
    match syntax {
        Syntax::Json => parse_json(text),
        Syntax::Toml => parse_toml(text),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Parse strict JSON (RFC 8259) keeping the position of every value and key.
pub fn parse_json(text: &str) -> Result<Node, SyntaxError> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
    };
    if text.starts_with('\u{feff}') {
        p.i = 3;
    }
    p.ws()?;
    if p.i >= p.s.len() {
        return Err(p.err("the file is empty; expected a JSON object"));
    }
    let v = p.value()?;
    p.ws()?;
    if p.i < p.s.len() {
        return Err(p.err(&format!(
            "unexpected {} after the end of the JSON document",
            p.describe()
        )));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn err(&self, msg: &str) -> SyntaxError {
        SyntaxError {
            pos: self.i,
            message: msg.to_string(),
        }
    }

    fn describe(&self) -> String {
        match self.text.get(self.i..).and_then(|r| r.chars().next()) {
            None => "end of file".into(),
            Some(c) if c.is_control() => format!("character U+{:04X}", c as u32),
            Some(c) => format!("'{c}'"),
        }
    }

    fn ws(&mut self) -> Result<(), SyntaxError> {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b' ' | b'\t' | b'\n' | b'\r' => self.i += 1,
                b'/' if matches!(self.s.get(self.i + 1), Some(b'/') | Some(b'*')) => {
                    return Err(self.err(
                        "comments are not allowed in JSON (use a TOML settings file for comments)",
                    ));
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let start = self.i;
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("unexpected end of file; expected a value"));
        };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Ok(Node::new(start, Kind::Str(self.string()?))),
            b't' | b'f' | b'n' => {
                for (word, kind) in [
                    ("true", Kind::Bool(true)),
                    ("false", Kind::Bool(false)),
                    ("null", Kind::Null),
                ] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        let after = self.s.get(self.i + word.len());
                        if !after.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                            self.i += word.len();
                            return Ok(Node::new(start, kind));
                        }
                    }
                }
                Err(self.bad_token())
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'\'' => Err(self.err("strings must use double quotes in JSON")),
            _ => Err(self.bad_token()),
        }
    }

    fn bad_token(&self) -> SyntaxError {
        let word: String = self.text[self.i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$' || *c == '.')
            .take(40)
            .collect();
        if word.is_empty() {
            self.err(&format!("unexpected {}; expected a value", self.describe()))
        } else {
            self.err(&format!(
                "unexpected '{word}'; expected a value (strings must be in double quotes; literals are true, false, null)"
            ))
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > 128 {
            return Err(self.err("nesting is too deep (more than 128 levels)"));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Node, SyntaxError> {
        let start = self.i;
        self.enter()?;
        self.i += 1;
        let mut entries = Vec::new();
        self.ws()?;
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Node::new(start, Kind::Object(entries)));
        }
        loop {
            self.ws()?;
            match self.s.get(self.i) {
                Some(b'"') => {}
                Some(b'}') if !entries.is_empty() => {
                    return Err(self.err("trailing comma before '}' is not allowed in JSON"));
                }
                Some(b'\'') => return Err(self.err("object keys must use double quotes in JSON")),
                _ => {
                    return Err(self.err(&format!(
                        "expected a key in double quotes, found {}",
                        self.describe()
                    )));
                }
            }
            let key_pos = self.i;
            let key = self.string()?;
            self.ws()?;
            if self.s.get(self.i) != Some(&b':') {
                return Err(self.err(&format!(
                    "expected ':' after the key \"{key}\", found {}",
                    self.describe()
                )));
            }
            self.i += 1;
            self.ws()?;
            let value = self.value()?;
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
            self.ws()?;
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                None => {
                    return Err(self.err(
                        "unexpected end of file; expected ',' or '}' (an object is not closed)",
                    ));
                }
                _ => {
                    return Err(self.err(&format!(
                        "expected ',' or '}}' after an object member, found {}",
                        self.describe()
                    )));
                }
            }
        }
        self.depth -= 1;
        Ok(Node::new(start, Kind::Object(entries)))
    }

    fn array(&mut self) -> Result<Node, SyntaxError> {
        let start = self.i;
        self.enter()?;
        self.i += 1;
        let mut items = Vec::new();
        self.ws()?;
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Node::new(start, Kind::Array(items)));
        }
        loop {
            self.ws()?;
            if self.s.get(self.i) == Some(&b']') && !items.is_empty() {
                return Err(self.err("trailing comma before ']' is not allowed in JSON"));
            }
            items.push(self.value()?);
            self.ws()?;
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                None => {
                    return Err(self.err(
                        "unexpected end of file; expected ',' or ']' (an array is not closed)",
                    ));
                }
                _ => {
                    return Err(self.err(&format!(
                        "expected ',' or ']' after an array element, found {}",
                        self.describe()
                    )));
                }
            }
        }
        self.depth -= 1;
        Ok(Node::new(start, Kind::Array(items)))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let h = self
            .text
            .get(self.i..self.i + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match h {
            Some(h) => {
                self.i += 4;
                Ok(u32::from_str_radix(h, 16).expect("hex digits"))
            }
            None => Err(self.err("invalid \\u escape: expected 4 hex digits")),
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err(SyntaxError {
                    pos: open,
                    message: "string is not closed (missing '\"')".into(),
                });
            };
            match b {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(SyntaxError {
                            pos: open,
                            message: "string is not closed (missing '\"')".into(),
                        });
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i) == Some(&b'\\')
                                    && self.s.get(self.i + 1) == Some(&b'u')
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(
                                            self.err("invalid \\u escape: unpaired surrogate")
                                        );
                                    }
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            match c {
                                Some(c) => out.push(c),
                                None => {
                                    return Err(self.err("invalid \\u escape: unpaired surrogate"));
                                }
                            }
                        }
                        _ => {
                            self.i -= 2;
                            return Err(self.err("invalid escape in string (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"));
                        }
                    }
                }
                b'\n' | b'\r' => {
                    return Err(SyntaxError {
                        pos: open,
                        message: "string is not closed before the end of the line (missing '\"')"
                            .into(),
                    });
                }
                0..=0x1f => {
                    return Err(self.err("control character (e.g. a raw newline or tab) inside a string; escape it as \\n or \\t"));
                }
                _ => {
                    let rest = &self.text[self.i..];
                    let end = rest.find(['"', '\\']).unwrap_or(rest.len());
                    let end = rest[..end].find(|c: char| (c as u32) < 0x20).unwrap_or(end);
                    out.push_str(&rest[..end]);
                    self.i += end;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Node, SyntaxError> {
        let start = self.i;
        let s = self.s;
        let mut j = self.i;
        if s.get(j) == Some(&b'-') {
            j += 1;
        }
        let int_start = j;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == int_start {
            self.i = j;
            return Err(self.err("invalid number: expected a digit after '-'"));
        }
        if s[int_start] == b'0' && j - int_start > 1 {
            return Err(self.err("invalid number: leading zeros are not allowed in JSON"));
        }
        let mut float = false;
        if s.get(j) == Some(&b'.') {
            float = true;
            j += 1;
            let f = j;
            while s.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if f == j {
                self.i = j;
                return Err(self.err("invalid number: expected a digit after '.'"));
            }
        }
        if matches!(s.get(j), Some(b'e') | Some(b'E')) {
            float = true;
            j += 1;
            if matches!(s.get(j), Some(b'+') | Some(b'-')) {
                j += 1;
            }
            let f = j;
            while s.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if f == j {
                self.i = j;
                return Err(self.err("invalid number: expected a digit in the exponent"));
            }
        }
        if s.get(j)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        {
            self.i = start;
            return Err(self.bad_token());
        }
        let lit = &self.text[start..j];
        self.i = j;
        let kind = match lit.parse::<i64>() {
            Ok(i) if !float => Kind::Int(i),
            _ => match lit.parse::<f64>() {
                Ok(f) if f.is_finite() => Kind::Float(f),
                _ => {
                    return Err(SyntaxError {
                        pos: start,
                        message: "number out of range".into(),
                    });
                }
            },
        };
        Ok(Node::new(start, kind))
    }
}

// ---------------------------------------------------------------------------------------------
// TOML

/// Parse a TOML document with the `toml` crate, keeping spans.
pub fn parse_toml(text: &str) -> Result<Node, SyntaxError> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let mut message = toml_message(e.message());
        if message == "duplicate key"
            && let Some(key) = text
                .get(span.clone())
                .filter(|k| !k.is_empty() && !k.contains('\n'))
        {
            message = format!("duplicate key '{key}'");
        }
        SyntaxError {
            pos: span.start,
            message,
        }
    })?;

    fn conv(v: &toml::Spanned<DeValue<'_>>) -> Node {
        let pos = v.span().start;
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
        Node::new(pos, kind)
    }
    fn table(t: &DeTable<'_>) -> Vec<Entry> {
        let mut entries: Vec<Entry> = t
            .iter()
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
    let root = doc.get_ref();
    Ok(Node::new(0, Kind::Object(table(root))))
}

/// The toml crate's messages are lower-case fragments; keep them, drop a trailing newline.
fn toml_message(msg: &str) -> String {
    let m: Cow<str> = Cow::Borrowed(msg.trim());
    m.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, pos: usize) -> (usize, usize) {
        LineIndex::new(text).line_col(pos)
    }

    #[test]
    fn json_positions() {
        let t = "{\n  \"a\": [1, \"x\"],\n  \"é\": {\"b\": null}\n}";
        let n = parse_json(t).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(at(t, a.pos), (2, 8));
        let Kind::Array(items) = &a.kind else {
            panic!()
        };
        assert_eq!(at(t, items[1].pos), (2, 12));
        let Kind::Object(es) = &n.kind else { panic!() };
        assert_eq!(es[1].key, "é");
        assert_eq!(at(t, es[1].key_pos), (3, 3));
        // columns count characters: the value after the 1-char key "é" (2 bytes)
        assert_eq!(at(t, es[1].value.pos), (3, 8));
    }

    #[test]
    fn json_syntax_errors() {
        let cases = [
            ("{\"a\": 1,}", 8, "trailing comma"),
            ("{\"a\": 1 \"b\": 2}", 8, "expected ',' or '}'"),
            ("{\"a\": tru}", 6, "unexpected 'tru'"),
            ("{\"a\": \"x}", 6, "not closed"),
            ("{\"a\": \"x\n\"}", 6, "end of the line"),
            ("{\"a\": 01}", 6, "leading zeros"),
            ("{'a': 1}", 1, "double quotes"),
            ("{\"a\": 1} x", 9, "after the end"),
            ("", 0, "empty"),
            ("{\"a\": [1,]}", 9, "trailing comma"),
            ("{ // c\n}", 2, "comments"),
        ];
        for (text, pos, msg) in cases {
            let e = parse_json(text).unwrap_err();
            assert_eq!(e.pos, pos, "{text}: {e:?}");
            assert!(e.message.contains(msg), "{text}: {e:?}");
        }
    }

    #[test]
    fn json_strings_and_numbers() {
        let n = parse_json(r#"{"s": "a\"b\u00e9\ud83d\ude00", "i": -12, "f": 1.5e2, "big": 123456789012345678901}"#).unwrap();
        assert_eq!(n.get("s").unwrap().as_str(), Some("a\"bé😀"));
        assert_eq!(n.get("i").unwrap().kind, Kind::Int(-12));
        assert_eq!(n.get("f").unwrap().kind, Kind::Float(150.0));
        assert!(matches!(n.get("big").unwrap().kind, Kind::Float(_)));
    }

    #[test]
    fn toml_positions_and_errors() {
        let t = "a = 1\n\n[[datasources]]\nid = \"x\"\n[datasources.config]\ntype = 'remote'\n";
        let n = parse_toml(t).unwrap();
        let Kind::Array(ds) = &n.get("datasources").unwrap().kind else {
            panic!()
        };
        assert_eq!(at(t, ds[0].pos), (3, 1));
        assert_eq!(at(t, ds[0].get("id").unwrap().pos), (4, 6));
        let cfg = ds[0].get("config").unwrap();
        assert_eq!(at(t, cfg.pos), (5, 1));
        assert_eq!(at(t, cfg.get("type").unwrap().pos), (6, 8));
        let e = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(at("a = 1\nb = \n", e.pos).0, 2);
        let e = parse_toml("a = 1\na = 2\n").unwrap_err();
        assert_eq!(at("a = 1\na = 2\n", e.pos), (2, 1));
        assert!(e.message.contains("duplicate"), "{e:?}");
    }

    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\\\\\"é😀 \\n\\t\\u{1}]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z_é]{1,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every node's position is where its value's text starts.
    fn check_positions(text: &str, n: &Node) {
        let rest = &text[n.pos..];
        let ok = match &n.kind {
            Kind::Null => rest.starts_with("null"),
            Kind::Bool(b) => rest.starts_with(if *b { "true" } else { "false" }),
            Kind::Int(_) | Kind::Float(_) => {
                rest.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            }
            Kind::Str(_) => rest.starts_with('"'),
            Kind::Array(items) => {
                items.iter().for_each(|i| check_positions(text, i));
                rest.starts_with('[')
            }
            Kind::Object(es) => {
                for e in es {
                    assert!(text[e.key_pos..].starts_with('"'));
                    check_positions(text, &e.value);
                }
                rest.starts_with('{')
            }
            Kind::Datetime(_) => false,
        };
        assert!(
            ok,
            "node {:?} at {} -> {:?}",
            n.kind,
            n.pos,
            &rest[..rest.len().min(10)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The parser reads what serde_json writes (compact and pretty), with exact positions.
        #[test]
        fn round_trips_serde_json(v in json_value()) {
            for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                let n = parse_json(&text).unwrap();
                check_positions(&text, &n);
                let back = n.to_json();
                // Floats that are whole numbers are written as "1.0" and read back as floats.
                prop_assert_eq!(back, v.clone());
            }
        }

        /// After deleting or inserting a character, the parser accepts exactly what serde_json
        /// accepts.
        #[test]
        fn accepts_exactly_what_serde_json_accepts(
            v in json_value(),
            at in any::<prop::sample::Index>(),
            insert in prop::option::of(prop::sample::select(vec!['{', '}', '[', ']', ',', ':', '"', '\\', ' ', '0', '-', 'e', '.', 'a', '\n'])),
        ) {
            let mut chars: Vec<char> = serde_json::to_string_pretty(&v).unwrap().chars().collect();
            let i = at.index(chars.len() + 1);
            match insert {
                Some(c) => chars.insert(i, c),
                None if i < chars.len() => { chars.remove(i); }
                None => {}
            }
            let text: String = chars.into_iter().collect();
            let ours = parse_json(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: ours {:?}, serde_json {:?}", text, ours.err(), theirs.err());
        }
    }
}

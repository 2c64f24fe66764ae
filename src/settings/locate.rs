//! Reading settings files into the position-carrying tree ([`Node`]), for `FILE:LINE:COL`.
//! JSON: `serde_json` decides what is valid (strict RFC 8259) and its error is reworded here;
//! `jsonc-parser` then gives the range of every key and value. TOML: the `toml` crate's spans.

use serde_json::error::Category;

pub use super::tree::{Entry, Kind, LineIndex, Node, Syntax, SyntaxError};

/// Parse a settings file of either syntax.
pub fn parse(text: &str, syntax: Syntax) -> Result<Node, SyntaxError> {
    match syntax {
        Syntax::Json => parse_json(text),
        Syntax::Toml => parse_toml(text),
    }
}

/// Parse strict JSON, keeping the position of every value and key (a leading BOM is skipped).
pub fn parse_json(text: &str) -> Result<Node, SyntaxError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bom = text.len() - body.len();
    let at = |pos: usize, message: String| SyntaxError {
        pos: bom + pos,
        message,
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(body) {
        let (pos, message) = json_error(body, &e);
        return Err(at(pos, message));
    }
    // serde_json accepted the text, so jsonc-parser (a superset of JSON) reads the same value.
    match jsonc_parser::parse_to_ast(body, &Default::default(), &Default::default()) {
        Ok(parsed) => (parsed.value.as_ref())
            .map(|v| Node::from_json(v, bom))
            .ok_or_else(|| at(0, EMPTY.into())),
        Err(e) => Err(at(e.range().start, e.kind().to_string())),
    }
}

const EMPTY: &str = "the file is empty; expected a JSON object";

/// serde_json's error as (byte offset, message). It reports the 1-based line and the 1-based
/// byte column of the character it stopped at (column 0: the line break before that line).
fn json_error(text: &str, e: &serde_json::Error) -> (usize, String) {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let code = full.strip_suffix(&suffix).unwrap_or(&full);
    let line_start: usize = (text.split_inclusive('\n').take(e.line().saturating_sub(1)))
        .map(str::len)
        .sum();
    let pos = match e.classify() {
        Category::Eof => text.len(),
        _ => text.floor_char_boundary((line_start + e.column()).saturating_sub(1)),
    };
    let rest = &text[pos..];
    let found = match rest.chars().next() {
        None => "end of file".to_string(),
        Some(c) if c.is_control() => format!("character U+{:04X}", c as u32),
        Some(c) => format!("'{c}'"),
    };
    // The opening quote of the string being read: the last unescaped '"' before `pos`.
    let open_quote = || {
        let head = &text.as_bytes()[..pos];
        let escaped =
            |i: usize| head[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1;
        (0..pos)
            .rev()
            .find(|&i| head[i] == b'"' && !escaped(i))
            .unwrap_or(pos)
    };
    let (close, what, item) = match code.contains('}') || code.ends_with("object") {
        true => ('}', "an object", "an object member"),
        false => (']', "an array", "an array element"),
    };
    let comment = rest.starts_with("//") || rest.starts_with("/*");
    let message = match code {
        _ if comment => {
            "comments are not allowed in JSON (use a TOML settings file for comments)".into()
        }
        "trailing comma" => format!("trailing comma before {found} is not allowed in JSON"),
        "expected `,` or `}`" | "expected `,` or `]`" => {
            format!("expected ',' or '{close}' after {item}, found {found}")
        }
        "EOF while parsing an object" | "EOF while parsing a list" => {
            format!("unexpected end of file; expected ',' or '{close}' ({what} is not closed)")
        }
        "EOF while parsing a value" if text.trim().is_empty() => EMPTY.into(),
        "EOF while parsing a value" => "unexpected end of file; expected a value".into(),
        "EOF while parsing a string" => {
            return (open_quote(), "string is not closed (missing '\"')".into());
        }
        _ if code.starts_with("control character")
            && matches!(rest.chars().next(), Some('\n' | '\r')) =>
        {
            return (
                open_quote(),
                "string is not closed before the end of the line (missing '\"')".into(),
            );
        }
        _ if code.starts_with("control character") => {
            "control character (e.g. a raw tab) inside a string; escape it as \\t or \\n".into()
        }
        "key must be a string" if rest.starts_with('\'') => {
            "object keys must use double quotes in JSON".into()
        }
        "key must be a string" => format!("expected a key in double quotes, found {found}"),
        "expected value" | "expected ident" if rest.starts_with('\'') => {
            "strings must use double quotes in JSON".into()
        }
        "expected value" | "expected ident" => {
            // Point at the start of a bare word (`tru`, `yes`) rather than where it ended.
            let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '$' | '.');
            let start = text[..pos].trim_end_matches(word).len();
            let w: String = text[start..]
                .chars()
                .take_while(|c| word(*c))
                .take(40)
                .collect();
            let what = Some(w)
                .filter(|w| !w.is_empty())
                .map_or(found, |w| format!("'{w}'"));
            let m = format!(
                "unexpected {what}; expected a value (strings must be in double quotes; literals are true, false, null)"
            );
            return (start, m);
        }
        "trailing characters" => format!("unexpected {found} after the end of the JSON document"),
        other => other.replace('`', "'"),
    };
    (pos, message)
}

/// Parse a TOML document with the `toml` crate, keeping spans.
pub fn parse_toml(text: &str) -> Result<Node, SyntaxError> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // The toml crate's messages are lower-case fragments; keep the first line.
        let mut message = e.message().trim().lines().next().unwrap_or("").to_string();
        if message == "duplicate key"
            && let Some(key) =
                (text.get(span.clone())).filter(|k| !k.is_empty() && !k.contains('\n'))
        {
            message = format!("duplicate key '{key}'");
        }
        SyntaxError {
            pos: span.start,
            message,
        }
    })?;
    Ok(Node::from_toml(doc.get_ref()))
}

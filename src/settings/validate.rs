//! Structural validation of a settings tree (docs/compatibility.md#settings): every problem is
//! collected, each with the position of the offending value (or key) and its dotted path.
//!
//! The rules mirror [`super::model`] (which serde then fills from a valid tree) plus the checks
//! serde cannot express: ports, sslmode, the Redshift rules, unique participant types and
//! datasource ids, BigQuery shapes, webhook methods and URLs, and the sheet rules for inline
//! `schema` participants. Strings that still hold an unresolved `${secret:NAME}` are only
//! type-checked (their content is unknown until `--deep` resolves them). Messages never echo a
//! value that came from a secret, nor a password.

use std::collections::HashMap;

use base64::Engine;

use super::locate::{Kind, LineIndex, Node};
use super::model::{DRIVERS, METHODS, PORT_MAX, PORT_MIN, SSLMODES};
use super::secrets::has_reference;
use crate::datatype::DataType;

/// One problem: byte position in the source, dotted path, message.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub pos: usize,
    pub path: String,
    pub message: String,
}

/// Validate the whole settings tree.
pub fn validate(root: &Node, lines: &LineIndex<'_>) -> Vec<Problem> {
    let mut v = V {
        out: Vec::new(),
        lines,
    };
    v.root(root);
    v.out
        .sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.path.cmp(&b.path)));
    v.out.dedup();
    v.out
}

struct V<'a> {
    out: Vec<Problem>,
    lines: &'a LineIndex<'a>,
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

/// Edit distance with adjacent transpositions (optimal string alignment), for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `word` if it is a plausible typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let lw = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lw, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The value for a message: quoted when shown, withheld when it came from a secret.
fn shown(node: &Node, s: &str) -> String {
    if node.secret {
        "the value (from a secret)".to_string()
    } else {
        format!("'{s}'")
    }
}

type Fields<'n> = HashMap<&'n str, &'n Node>;

impl V<'_> {
    fn push(&mut self, pos: usize, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem {
            pos,
            path: path.into(),
            message: message.into(),
        });
    }

    fn type_err(&mut self, node: &Node, path: &str, expected: &str) {
        self.push(
            node.pos,
            path,
            format!("expected {expected}, found {}", node.type_name()),
        );
    }

    /// Check an object's keys: unknown keys (with a hint), duplicates, missing required keys.
    /// `hints` give a specific message for a known-but-misplaced key.
    fn object<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
        required: &[&str],
        hints: &[(&str, &str)],
    ) -> Option<Fields<'n>> {
        let Kind::Object(entries) = &node.kind else {
            self.type_err(node, path, "an object");
            return None;
        };
        let mut fields: Fields<'n> = HashMap::new();
        let mut first_pos: HashMap<&str, usize> = HashMap::new();
        for e in entries {
            let kp = join(path, &e.key);
            if let Some(first) = first_pos.get(e.key.as_str()) {
                let (l, _) = self.lines.line_col(*first);
                self.push(
                    e.key_pos,
                    kp,
                    format!("duplicate key '{}' (first defined on line {l})", e.key),
                );
                continue;
            }
            first_pos.insert(&e.key, e.key_pos);
            if allowed.contains(&e.key.as_str()) {
                fields.insert(&e.key, &e.value);
            } else if let Some((_, hint)) = hints.iter().find(|(k, _)| *k == e.key) {
                self.push(e.key_pos, kp, format!("unknown key '{}' {hint}", e.key));
            } else if let Some(s) = suggest(
                &e.key,
                allowed.iter().copied().filter(|a| !a.starts_with('$')),
            ) {
                self.push(
                    e.key_pos,
                    kp,
                    format!("unknown key '{}' (did you mean '{s}'?)", e.key),
                );
            } else {
                let list: Vec<&str> = allowed
                    .iter()
                    .copied()
                    .filter(|a| !a.starts_with('$'))
                    .collect();
                self.push(
                    e.key_pos,
                    kp,
                    format!("unknown key '{}'; allowed keys: {}", e.key, list.join(", ")),
                );
            }
        }
        for r in required {
            if !first_pos.contains_key(r) {
                self.push(
                    node.pos,
                    join(path, r),
                    format!("missing required key '{r}'"),
                );
            }
        }
        Some(fields)
    }

    fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::Str(s) => Some(s),
            _ => {
                self.type_err(node, path, "a string");
                None
            }
        }
    }

    fn nonempty<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.push(node.pos, path, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn opt_string<'n>(&mut self, node: Option<&&'n Node>, path: &str) -> Option<&'n str> {
        match node {
            None => None,
            Some(n) if n.kind == Kind::Null => None,
            Some(n) => self.string(n, path),
        }
    }

    fn boolean(&mut self, node: &Node, path: &str, nullable: bool) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            Kind::Null if nullable => None,
            _ => {
                if let Kind::Str(s) = &node.kind
                    && matches!(s.to_lowercase().as_str(), "true" | "false")
                {
                    self.push(
                        node.pos,
                        path,
                        format!(
                            "expected a boolean, found a string; write {} without quotes",
                            s.to_lowercase()
                        ),
                    );
                } else {
                    self.type_err(
                        node,
                        path,
                        if nullable {
                            "a boolean or null"
                        } else {
                            "a boolean"
                        },
                    );
                }
                None
            }
        }
    }

    /// A string that must be one of `allowed` (exact).
    fn one_of<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'n str> {
        let s = self.string(node, path)?;
        if allowed.contains(&s) {
            return Some(s);
        }
        if has_reference(s) {
            self.push(
                node.pos,
                path,
                format!(
                    "{what} cannot come from a secret; write one of: {}",
                    allowed.join(", ")
                ),
            );
            return None;
        }
        let hint = match allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s) || a.replace('-', "_") == s)
        {
            Some(a) => format!(" (did you mean '{a}'?)"),
            None => match suggest(s, allowed.iter().copied()) {
                Some(a) if !node.secret => format!(" (did you mean '{a}'?)"),
                _ => String::new(),
            },
        };
        self.push(
            node.pos,
            path,
            format!(
                "{} is not a valid {what}{hint}; expected one of: {}",
                shown(node, s),
                allowed.join(", ")
            ),
        );
        None
    }

    fn array<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Array(items) => Some(items),
            _ => {
                self.type_err(node, path, "an array");
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------

    fn root(&mut self, node: &Node) {
        let Kind::Object(_) = node.kind else {
            self.push(
                node.pos,
                "",
                format!("the settings must be an object, found {}", node.type_name()),
            );
            return;
        };
        let allowed = [
            "$schema",
            "datasources",
            "client_configs",
            "trusted_ips",
            "db_connect_timeout_secs",
        ];
        let Some(f) = self.object(node, "", &allowed, &[], &[]) else {
            return;
        };
        if let Some(s) = f.get("$schema") {
            self.string(s, "$schema");
        }
        let list = match (f.get("datasources"), f.get("client_configs")) {
            (Some(d), Some(c)) => {
                self.push(
                    c.pos,
                    "client_configs",
                    "use either 'datasources' or 'client_configs' (its older name), not both",
                );
                Some(("datasources", *d))
            }
            (Some(d), None) => Some(("datasources", *d)),
            (None, Some(c)) => Some(("client_configs", *c)),
            (None, None) => {
                self.push(
                    node.pos,
                    "datasources",
                    "missing required key 'datasources' (or its older name 'client_configs')",
                );
                None
            }
        };
        if let Some((name, list)) = list
            && let Some(items) = self.array(list, name)
        {
            if items.is_empty() {
                self.push(list.pos, name, "must list at least one datasource");
            }
            let mut ids: HashMap<String, usize> = HashMap::new();
            for (i, ds) in items.iter().enumerate() {
                let path = join(name, &i.to_string());
                if let Some((id, pos)) = self.datasource(ds, &path) {
                    if let Some(first) = ids.get(&id) {
                        let (l, _) = self.lines.line_col(*first);
                        self.push(pos, join(&path, "id"), format!("datasource id '{id}' is already used (line {l}); ids must be unique"));
                    } else {
                        ids.insert(id, pos);
                    }
                }
            }
        }
        if let Some(t) = f.get("trusted_ips")
            && let Some(items) = self.array(t, "trusted_ips")
        {
            for (i, ip) in items.iter().enumerate() {
                self.string(ip, &join("trusted_ips", &i.to_string()));
            }
        }
        if let Some(t) = f.get("db_connect_timeout_secs") {
            match t.kind {
                Kind::Int(n) if n >= 1 && n <= u32::MAX as i64 => {}
                Kind::Int(n) => self.push(
                    t.pos,
                    "db_connect_timeout_secs",
                    format!("must be a positive number of seconds, found {n}"),
                ),
                _ => self.type_err(t, "db_connect_timeout_secs", "an integer"),
            }
        }
    }

    /// Returns the datasource id and its position.
    fn datasource(&mut self, node: &Node, path: &str) -> Option<(String, usize)> {
        let f = self.object(
            node,
            path,
            &["id", "config", "require_api_key"],
            &["id", "config"],
            &[],
        )?;
        if let Some(r) = f.get("require_api_key") {
            self.boolean(r, &join(path, "require_api_key"), true);
        }
        if let Some(c) = f.get("config") {
            self.config(c, &join(path, "config"));
        }
        let idn = f.get("id")?;
        let id = self.nonempty(idn, &join(path, "id"))?;
        Some((id.to_string(), idn.pos))
    }

    fn config(&mut self, node: &Node, path: &str) {
        let Kind::Object(_) = node.kind else {
            self.type_err(node, path, "an object");
            return;
        };
        let Some(t) = node.get("type") else {
            self.push(
                node.pos,
                join(path, "type"),
                "missing required key 'type' (one of: remote, sqlite_local)",
            );
            return;
        };
        let Some(kind) = self.one_of(
            t,
            &join(path, "type"),
            "datasource type",
            &["remote", "sqlite_local"],
        ) else {
            return;
        };
        let participants = if kind == "remote" {
            let Some(f) = self.object(
                node,
                path,
                &[
                    "type",
                    "participants",
                    "webhook_config",
                    "dwh",
                    "dbapi_args",
                ],
                &["participants", "dwh"],
                &[(
                    "sqlite_filename",
                    "(sqlite_filename belongs to type = \"sqlite_local\")",
                )],
            ) else {
                return;
            };
            if let Some(d) = f.get("dwh") {
                self.dwh(d, &join(path, "dwh"));
            }
            if let Some(w) = f.get("webhook_config")
                && w.kind != Kind::Null
            {
                self.webhook(w, &join(path, "webhook_config"));
            }
            if let Some(a) = f.get("dbapi_args")
                && a.kind != Kind::Null
            {
                let ap = join(path, "dbapi_args");
                if let Some(items) = self.array(a, &ap) {
                    for (i, it) in items.iter().enumerate() {
                        let ip = join(&ap, &i.to_string());
                        if let Some(g) =
                            self.object(it, &ip, &["arg", "value"], &["arg", "value"], &[])
                        {
                            for k in ["arg", "value"] {
                                if let Some(n) = g.get(k) {
                                    self.string(n, &join(&ip, k));
                                }
                            }
                        }
                    }
                }
            }
            f.get("participants").copied()
        } else {
            let Some(f) = self.object(
                node,
                path,
                &["type", "sqlite_filename", "participants"],
                &["sqlite_filename", "participants"],
                &[("dwh", "(dwh belongs to type = \"remote\"; a sqlite_local datasource names its sqlite_filename)")],
            ) else {
                return;
            };
            if let Some(n) = f.get("sqlite_filename") {
                let p = join(path, "sqlite_filename");
                if let Some(s) = self.nonempty(n, &p)
                    && s.starts_with("sqlite:")
                {
                    self.push(
                        n.pos,
                        p,
                        "sqlite_filename is a file path, not a URL: drop the 'sqlite://' prefix",
                    );
                }
            }
            f.get("participants").copied()
        };
        if let Some(p) = participants {
            self.participants(p, &join(path, "participants"));
        }
    }

    fn participants(&mut self, node: &Node, path: &str) {
        let Some(items) = self.array(node, path) else {
            return;
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let ip = join(path, &i.to_string());
            if let Some((pt, pos)) = self.participant(item, &ip) {
                if let Some(first) = seen.get(&pt) {
                    let (l, _) = self.lines.line_col(*first);
                    self.push(
                        pos,
                        join(&ip, "participant_type"),
                        format!("Participants with conflicting identifiers found: participant type '{pt}' is already defined on line {l}"),
                    );
                } else {
                    seen.insert(pt, pos);
                }
            }
        }
    }

    /// Returns the participant type and its position.
    fn participant(&mut self, node: &Node, path: &str) -> Option<(String, usize)> {
        if !matches!(node.kind, Kind::Object(_)) {
            self.type_err(node, path, "an object");
            return None;
        }
        let kind = match node.get("type") {
            None => "sheet",
            Some(t) => self.one_of(
                t,
                &join(path, "type"),
                "participants type",
                &["sheet", "schema"],
            )?,
        };
        let f = if kind == "sheet" {
            self.object(
                node,
                path,
                &["type", "participant_type", "table_name", "sheet"],
                &["participant_type", "table_name", "sheet"],
                &[(
                    "fields",
                    "(inline fields need type = \"schema\" instead of a sheet)",
                )],
            )?
        } else {
            self.object(
                node,
                path,
                &["type", "participant_type", "table_name", "fields"],
                &["participant_type", "table_name", "fields"],
                &[("sheet", "(type = \"schema\" carries its fields inline; use type = \"sheet\" to reference a sheet)")],
            )?
        };
        if let Some(t) = f.get("table_name") {
            self.nonempty(t, &join(path, "table_name"));
        }
        if let Some(s) = f.get("sheet") {
            let sp = join(path, "sheet");
            if let Some(g) = self.object(s, &sp, &["url", "worksheet"], &["url", "worksheet"], &[])
            {
                for k in ["url", "worksheet"] {
                    if let Some(n) = g.get(k) {
                        self.nonempty(n, &join(&sp, k));
                    }
                }
            }
        }
        if let Some(fl) = f.get("fields") {
            self.fields(fl, &join(path, "fields"));
        }
        let pn = f.get("participant_type")?;
        let pt = self.nonempty(pn, &join(path, "participant_type"))?;
        Some((pt.to_string(), pn.pos))
    }

    /// Inline sheet rows: the sheet's cell rules as JSON types, then the worksheet rules.
    fn fields(&mut self, node: &Node, path: &str) {
        let Some(items) = self.array(node, path) else {
            return;
        };
        let before = self.out.len();
        if items.is_empty() {
            self.push(node.pos, path, "must contain at least one field");
            return;
        }
        const KEYS: [&str; 10] = [
            "field_name",
            "column_name",
            "data_type",
            "column_group",
            "description",
            "is_unique_id",
            "is_strata",
            "is_filter",
            "is_metric",
            "extra",
        ];
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut uniques: Vec<(String, usize, String)> = Vec::new();
        let mut unique_unknown = false; // an is_unique_id of the wrong type: do not count
        for (i, it) in items.iter().enumerate() {
            let ip = join(path, &i.to_string());
            let Some(f) = self.object(it, &ip, &KEYS, &["data_type"], &[]) else {
                continue;
            };
            let name = match (f.get("field_name"), f.get("column_name")) {
                (Some(_), Some(c)) => {
                    self.push(
                        c.pos,
                        join(&ip, "column_name"),
                        "give either field_name or column_name, not both",
                    );
                    None
                }
                (Some(n), None) => self
                    .nonempty(n, &join(&ip, "field_name"))
                    .map(|s| (s, n.pos, "field_name")),
                (None, Some(n)) => self
                    .nonempty(n, &join(&ip, "column_name"))
                    .map(|s| (s, n.pos, "column_name")),
                (None, None) => {
                    self.push(
                        it.pos,
                        join(&ip, "field_name"),
                        "missing required key 'field_name'",
                    );
                    None
                }
            };
            if let Some(d) = f.get("data_type") {
                let dp = join(&ip, "data_type");
                if let Some(s) = self.string(d, &dp)
                    && !DataType::ALL.iter().any(|t| t.as_str() == s)
                {
                    let allowed: Vec<&str> = DataType::ALL.iter().map(|t| t.as_str()).collect();
                    let hint = match DataType::parse(s) {
                        Some(t) => format!(" (write it in lower case: '{t}')"),
                        None => String::new(),
                    };
                    self.push(
                        d.pos,
                        dp,
                        format!(
                            "'{s}' is not a valid DataType{hint}; expected one of: {}",
                            allowed.join(", ")
                        ),
                    );
                }
            }
            for k in ["column_group", "description"] {
                if let Some(n) = f.get(k) {
                    self.string(n, &join(&ip, k));
                }
            }
            for k in ["is_unique_id", "is_strata", "is_filter", "is_metric"] {
                let Some(n) = f.get(k) else { continue };
                match self.boolean(n, &join(&ip, k), false) {
                    Some(true) if k == "is_unique_id" => uniques.push((
                        name.map(|n| n.0.to_string()).unwrap_or_default(),
                        n.pos,
                        join(&ip, k),
                    )),
                    None if k == "is_unique_id" => unique_unknown = true,
                    _ => {}
                }
            }
            if let Some(x) = f.get("extra") {
                let xp = join(&ip, "extra");
                if let Kind::Object(es) = &x.kind {
                    for e in es {
                        self.string(&e.value, &join(&xp, &e.key));
                    }
                } else {
                    self.type_err(x, &xp, "an object of strings");
                }
            }
            if let Some((name, pos, key)) = name {
                if let Some(first) = names.get(name) {
                    let (l, _) = self.lines.line_col(*first);
                    self.push(
                        pos,
                        join(&ip, key),
                        format!("Duplicate field name '{name}' (first defined on line {l})"),
                    );
                } else {
                    names.insert(name.to_string(), pos);
                }
            }
        }
        match uniques.len() {
            0 if unique_unknown => {}
            0 => self.push(
                node.pos,
                path,
                "There are no fields marked as unique ID; set is_unique_id = true on exactly one field",
            ),
            1 => {}
            k => {
                let mut all: Vec<&str> = uniques.iter().map(|u| u.0.as_str()).collect();
                all.sort();
                for (_, pos, p) in uniques.iter().skip(1) {
                    self.push(
                        *pos,
                        p.clone(),
                        format!(
                            "There are {k} fields marked as the unique ID, but there should only be one: {}",
                            all.join(", ")
                        ),
                    );
                }
            }
        }
        if self.out.len() == before {
            self.sheet_rules(node, items, path);
        }
    }

    /// The sheet module's worksheet rules, for any rule beyond those checked above (which
    /// locate their problems precisely); reported at the field they name, else at `fields`.
    fn sheet_rules(&mut self, node: &Node, items: &[Node], path: &str) {
        let columns: Option<Vec<crate::sheet::ColumnDescriptor>> = items
            .iter()
            .map(|it| serde_json::from_value(it.to_json()).ok())
            .collect();
        let Some(columns) = columns else { return };
        let ws = crate::sheet::ConfigWorksheet {
            table_name: String::new(),
            columns,
        };
        for p in crate::sheet::worksheet_problems(&ws) {
            match p.index.and_then(|i| items.get(i).map(|it| (i, it))) {
                Some((i, it)) => {
                    let key = match p.field {
                        Some("column_name") if it.get("field_name").is_some() => Some("field_name"),
                        other => other,
                    };
                    let ip = join(path, &i.to_string());
                    match key.and_then(|k| it.get(k).map(|n| (k, n))) {
                        Some((k, n)) => self.push(n.pos, join(&ip, k), p.message),
                        None => self.push(it.pos, ip, p.message),
                    }
                }
                None => self.push(node.pos, path, p.message),
            }
        }
    }

    fn dwh(&mut self, node: &Node, path: &str) {
        match &node.kind {
            Kind::Str(s) => self.dwh_url(node, s, path),
            Kind::Object(_) => {
                if node.get("url").is_some() {
                    if let Some(f) = self.object(node, path, &["url"], &["url"], &[])
                        && let Some(u) = f.get("url")
                    {
                        let up = join(path, "url");
                        if let Some(s) = self.nonempty(u, &up) {
                            self.dwh_url(u, s, &up);
                        }
                    }
                    return;
                }
                let Some(d) = node.get("driver") else {
                    self.push(
                        node.pos,
                        join(path, "driver"),
                        format!(
                            "missing required key 'driver' (one of: {})",
                            DRIVERS.join(", ")
                        ),
                    );
                    return;
                };
                let Some(driver) = self.one_of(d, &join(path, "driver"), "driver", &DRIVERS) else {
                    return;
                };
                if driver == "bigquery" {
                    self.bigquery(node, path);
                } else {
                    self.dsn(node, path, driver);
                }
            }
            _ => self.type_err(node, path, "a DSN object or a DSN URL string"),
        }
    }

    fn dwh_url(&mut self, node: &Node, s: &str, path: &str) {
        if has_reference(s) {
            return; // checked once --deep resolves the secrets
        }
        match crate::dsn::Dsn::parse(s) {
            Err(e) => {
                let msg = e.to_string();
                // Dsn::parse shows the DSN redacted; a secret-derived DSN is not shown at all.
                let msg = if node.secret {
                    "the DSN (from a secret) is not valid".to_string()
                } else {
                    msg
                };
                self.push(node.pos, path, msg);
            }
            Ok(dsn) => {
                if dsn.redshift {
                    if dsn.scheme != "postgresql+psycopg2" {
                        self.push(
                            node.pos,
                            path,
                            "Redshift connections must use the postgresql+psycopg2 driver (scheme)",
                        );
                    }
                    if dsn.sslmode.as_deref() != Some("verify-full") {
                        self.push(
                            node.pos,
                            path,
                            "Redshift connections must use sslmode=verify-full",
                        );
                    }
                }
            }
        }
    }

    fn dsn(&mut self, node: &Node, path: &str, driver: &str) {
        let keys = [
            "driver",
            "host",
            "port",
            "user",
            "password",
            "dbname",
            "sslmode",
            "search_path",
        ];
        let hints = [
            (
                "project_id",
                "(project_id belongs to driver = \"bigquery\")",
            ),
            (
                "dataset_id",
                "(dataset_id belongs to driver = \"bigquery\")",
            ),
            (
                "credentials",
                "(credentials belongs to driver = \"bigquery\")",
            ),
        ];
        let Some(f) = self.object(
            node,
            path,
            &keys,
            &["driver", "host", "user", "password", "dbname"],
            &hints,
        ) else {
            return;
        };
        let host = f
            .get("host")
            .and_then(|h| self.nonempty(h, &join(path, "host")));
        // One host name or address (a secret's value is checked once resolved; the message
        // never shows the value).
        if let (Some(h), Some(node)) = (host, f.get("host"))
            && !has_reference(h)
            && let Err(e) = crate::dsn::check_host(h)
        {
            self.push(node.pos, join(path, "host"), e.to_string());
        }
        if let Some(p) = f.get("port") {
            let pp = join(path, "port");
            match p.kind {
                Kind::Int(n) if (PORT_MIN..=PORT_MAX).contains(&n) => {}
                Kind::Int(n) => self.push(
                    p.pos,
                    pp,
                    format!("port must be between {PORT_MIN} and {PORT_MAX}, found {n}"),
                ),
                Kind::Str(ref s) if s.trim().parse::<i64>().is_ok() => self.push(
                    p.pos,
                    pp,
                    format!(
                        "expected an integer, found a string; write {} without quotes",
                        s.trim()
                    ),
                ),
                _ => self.type_err(p, &pp, "an integer"),
            }
        }
        if let Some(u) = f.get("user") {
            self.string(u, &join(path, "user"));
        }
        if let Some(u) = f.get("password") {
            self.string(u, &join(path, "password"));
        }
        if let Some(u) = f.get("dbname") {
            self.nonempty(u, &join(path, "dbname"));
        }
        let sslmode = match f.get("sslmode") {
            Some(n) if n.kind != Kind::Null => self
                .one_of(n, &join(path, "sslmode"), "sslmode", &SSLMODES)
                .map(|s| (s, n.pos)),
            _ => None,
        };
        self.opt_string(f.get("search_path"), &join(path, "search_path"));
        // Redshift rules (only when the host is known).
        if let Some(h) = host
            && !has_reference(h)
            && h.trim_end_matches('.')
                .to_ascii_lowercase()
                .ends_with("redshift.amazonaws.com")
        {
            if driver != "postgresql+psycopg2"
                && let Some(d) = f.get("driver")
            {
                self.push(
                    d.pos,
                    join(path, "driver"),
                    "Redshift connections must use the postgresql+psycopg2 driver",
                );
            }
            match f.get("sslmode") {
                Some(_) if sslmode.is_some_and(|(s, _)| s == "verify-full") => {}
                Some(n) if n.kind == Kind::Null || sslmode.is_some() => {
                    self.push(n.pos, join(path, "sslmode"), "Redshift connections must use sslmode=verify-full")
                }
                Some(_) => {} // an invalid sslmode is already reported
                None => self.push(
                    node.pos,
                    join(path, "sslmode"),
                    "Redshift connections must use sslmode=verify-full (add sslmode = \"verify-full\")",
                ),
            }
        }
    }

    fn bigquery(&mut self, node: &Node, path: &str) {
        let keys = ["driver", "project_id", "dataset_id", "credentials"];
        let Some(f) = self.object(node, path, &keys, &keys, &[]) else {
            return;
        };
        if let Some(p) = f.get("project_id") {
            let pp = join(path, "project_id");
            if let Some(s) = self.string(p, &pp)
                && !has_reference(s)
            {
                let n = s.chars().count();
                if !(6..=30).contains(&n) {
                    self.push(
                        p.pos,
                        pp,
                        format!("project_id must be 6 to 30 characters long, found {n}"),
                    );
                } else if !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    self.push(p.pos, pp, "project_id may only contain lower-case letters, digits and '-' (pattern ^[a-z0-9-]+$)");
                }
            }
        }
        if let Some(p) = f.get("dataset_id") {
            let pp = join(path, "dataset_id");
            if let Some(s) = self.string(p, &pp)
                && !has_reference(s)
            {
                let n = s.chars().count();
                if !(1..=1024).contains(&n) {
                    self.push(
                        p.pos,
                        pp,
                        format!("dataset_id must be 1 to 1024 characters long, found {n}"),
                    );
                } else if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.push(p.pos, pp, "dataset_id may only contain letters, digits and '_' (pattern ^[a-zA-Z0-9_]+$)");
                }
            }
        }
        let Some(c) = f.get("credentials") else {
            return;
        };
        let cp = join(path, "credentials");
        if !matches!(c.kind, Kind::Object(_)) {
            self.type_err(c, &cp, "an object");
            return;
        }
        let Some(t) = c.get("type") else {
            self.push(
                c.pos,
                join(&cp, "type"),
                "missing required key 'type' (one of: serviceaccountinfo, serviceaccountfile)",
            );
            return;
        };
        let Some(kind) = self.one_of(
            t,
            &join(&cp, "type"),
            "credentials type",
            &["serviceaccountinfo", "serviceaccountfile"],
        ) else {
            return;
        };
        if kind == "serviceaccountfile" {
            if let Some(g) = self.object(c, &cp, &["type", "path"], &["path"], &[])
                && let Some(p) = g.get("path")
            {
                self.nonempty(p, &join(&cp, "path"));
            }
            return;
        }
        let Some(g) = self.object(
            c,
            &cp,
            &["type", "content_base64"],
            &["content_base64"],
            &[],
        ) else {
            return;
        };
        let Some(b) = g.get("content_base64") else {
            return;
        };
        let bp = join(&cp, "content_base64");
        let Some(s) = self.string(b, &bp) else { return };
        if has_reference(s) {
            return;
        }
        let n = s.chars().count();
        if !(4..=8000).contains(&n) {
            self.push(
                b.pos,
                bp,
                format!("content_base64 must be 4 to 8000 characters long, found {n}"),
            );
            return;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.trim()) else {
            self.push(b.pos, bp, "Invalid base64 content");
            return;
        };
        let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&bytes)
        else {
            self.push(b.pos, bp, "Invalid JSON in service account credentials");
            return;
        };
        let missing: Vec<&str> = [
            "type",
            "project_id",
            "private_key_id",
            "private_key",
            "client_email",
        ]
        .into_iter()
        .filter(|k| !m.contains_key(*k))
        .collect();
        if !missing.is_empty() {
            self.push(
                b.pos,
                bp,
                format!(
                    "Missing required fields in service account JSON: {}",
                    missing.join(", ")
                ),
            );
        } else if m.get("type").and_then(|t| t.as_str()) != Some("service_account") {
            self.push(
                b.pos,
                bp,
                "Service account JSON must have type=\"service_account\"",
            );
        }
    }

    fn webhook(&mut self, node: &Node, path: &str) {
        let Some(f) = self.object(
            node,
            path,
            &["actions", "common_headers"],
            &["actions", "common_headers"],
            &[],
        ) else {
            return;
        };
        if let Some(a) = f.get("actions") {
            let ap = join(path, "actions");
            let names = [
                "commit",
                "assignment_file",
                "update_timestamps",
                "update_description",
            ];
            if let Some(g) = self.object(a, &ap, &names, &[], &[]) {
                for k in names {
                    let Some(u) = g.get(k) else { continue };
                    if u.kind == Kind::Null {
                        continue;
                    }
                    let up = join(&ap, k);
                    let Some(h) = self.object(u, &up, &["method", "url"], &["method", "url"], &[])
                    else {
                        continue;
                    };
                    if let Some(m) = h.get("method") {
                        self.one_of(m, &join(&up, "method"), "HTTP method", &METHODS);
                    }
                    if let Some(un) = h.get("url") {
                        let upp = join(&up, "url");
                        if let Some(s) = self.nonempty(un, &upp)
                            && !has_reference(s)
                        {
                            let ok = url::Url::parse(s).is_ok_and(|u| {
                                matches!(u.scheme(), "http" | "https") && u.host().is_some()
                            });
                            if !ok {
                                let what = if un.secret {
                                    "the value (from a secret)".to_string()
                                } else {
                                    format!("'{s}'")
                                };
                                self.push(
                                    un.pos,
                                    upp,
                                    format!("{what} is not an http:// or https:// URL"),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(h) = f.get("common_headers") {
            let hp = join(path, "common_headers");
            if let Some(g) = self.object(h, &hp, &["authorization"], &["authorization"], &[]) {
                self.opt_string(g.get("authorization"), &join(&hp, "authorization"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("prot", "port"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(suggest("prot", ["port", "host"]), Some("port"));
        assert_eq!(suggest("hots", ["port", "host"]), Some("host"));
        assert_eq!(suggest("Port", ["port"]), Some("port"));
        assert_eq!(suggest("colour", ["port", "host"]), None);
    }
}

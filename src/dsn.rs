//! Warehouse DSNs: every spelling of docs/compatibility.md#dsns parsed into one typed value.
//!
//! Accepted: `sqlite:///rel/path`, `sqlite:////abs/path`, `sqlite::memory:`, `sqlite:path`;
//! `postgres://`, `postgresql://`, `postgresql+psycopg://`, `postgresql+psycopg2://` (Redshift
//! recognised by a host ending in `redshift.amazonaws.com`); `mysql://`, `mariadb://`,
//! `mysql+pymysql://` (any `mysql+DRIVER`); `bigquery://PROJECT/DATASET` (see
//! [`crate::warehouse::bigquery::BigQueryTarget::parse`]).
//!
//! The password never leaves this module in text form: `Display` and `Debug` print
//! `postgres://user:***@host:5432/db`. Every password (and every resolved `${secret:NAME}`
//! value) is also put in a process-wide registry ([`register_secret`]), and [`scrub_secrets`]
//! masks those known values, in every spelling (as written, percent-encoded, decoded,
//! JSON-escaped), plus anything shaped like URL credentials, in any text the binary prints.
//! A DSN that cannot be parsed is never echoed as written: errors show [`redact_dsn_text`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Which kind of warehouse a DSN names: a plain tag. What SQL each one speaks lives in
/// `src/warehouse/` ([`crate::warehouse::SqlDialect`], see [`Dsn::dialect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
    Mysql,
    BigQuery,
}

impl Engine {
    /// The canonical scheme: `sqlite`, `postgres`, `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::BigQuery => "bigquery",
        }
    }
}

/// Refuse identifiers that no dialect can hold (empty, NUL, over 63 bytes for PostgreSQL /
/// 64 characters for MySQL), naming `what` (e.g. `--table-name`).
pub fn check_ident(what: &str, ident: &str) -> Result<()> {
    if ident.is_empty() {
        return Err(Error::usage(format!("{what}: a name cannot be empty")));
    }
    if ident.contains('\0') {
        return Err(Error::usage(format!(
            "{what}: a name cannot contain a NUL byte"
        )));
    }
    if ident.len() > 63 {
        return Err(Error::usage(format!(
            "{what}: '{ident}' is longer than 63 bytes, the longest name PostgreSQL keeps"
        )));
    }
    Ok(())
}

/// Where an SQLite database lives.
#[derive(Clone, PartialEq, Eq)]
pub enum SqliteTarget {
    Memory,
    File(PathBuf),
}

/// A parsed warehouse DSN.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    pub engine: Engine,
    /// The scheme as written (`postgresql+psycopg2`), kept for messages.
    pub scheme: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    password: Option<String>,
    pub sslmode: Option<String>,
    pub search_path: Option<String>,
    /// PostgreSQL host ending in `redshift.amazonaws.com`.
    pub redshift: bool,
    pub sqlite: Option<SqliteTarget>,
    /// The project, dataset and credentials of a `bigquery://` DSN.
    pub bigquery: Option<crate::warehouse::bigquery::BigQueryTarget>,
}

/// Valid `sslmode` values (libpq's), shared with the settings model.
pub const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl Dsn {
    /// The SQL dialect of this DSN's warehouse.
    pub fn dialect(&self) -> &'static dyn crate::warehouse::SqlDialect {
        crate::warehouse::dialect::dialect_for_dsn(self)
    }

    /// Parse any accepted spelling. Errors are usage errors (exit 2) that show the DSN with
    /// everything that could be a credential masked ([`redact_dsn_text`]).
    pub fn parse(input: &str) -> Result<Dsn> {
        let input = input.trim();
        let bad =
            |why: &str| Error::usage(format!("invalid DSN '{}': {why}", redact_dsn_text(input)));
        let scheme = match input.split_once(':') {
            Some((s, _)) if is_scheme(s) => s,
            _ => {
                return Err(bad(
                    "expected SCHEME://..., e.g. postgres://user@host/db or sqlite:///file.db",
                ));
            }
        };
        let scheme_l = scheme.to_ascii_lowercase();
        let base = scheme_l.split('+').next().unwrap_or("");
        match base {
            "sqlite" | "sqlite3" => Self::parse_sqlite(input, scheme),
            "postgres" | "postgresql" | "redshift" => {
                Self::parse_url(input, Engine::Postgres, &scheme_l)
            }
            "mysql" | "mariadb" => Self::parse_url(input, Engine::Mysql, &scheme_l),
            "bigquery" => Self::parse_bigquery(input),
            _ => Err(bad(&format!(
                "unknown scheme '{scheme}'; use sqlite:///PATH, postgres://, postgresql+psycopg://, mysql:// or mariadb://"
            ))),
        }
    }

    /// `bigquery://PROJECT/DATASET[?credentials_path=FILE|credentials_base64=KEY]`; a base64
    /// key is registered as a secret before anything can show it.
    fn parse_bigquery(input: &str) -> Result<Dsn> {
        let path = input.split('?').next().unwrap_or("");
        if path.contains('@') {
            // `bigquery://user:password@...` is not a BigQuery DSN; never echo what it holds.
            return Err(Error::usage(format!(
                "invalid DSN '{}': a BigQuery DSN has no user or password; use \
                 bigquery://PROJECT/DATASET?credentials_path=KEY.json",
                redact_dsn_text(input)
            )));
        }
        if let Some((_, q)) = input.split_once('?') {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                if k == "credentials_base64" && !v.is_empty() {
                    register_secret(&v);
                }
            }
        }
        let target = crate::warehouse::bigquery::BigQueryTarget::parse(input)?;
        Ok(Dsn::bigquery(target))
    }

    /// A BigQuery DSN from its typed parts (the settings' `driver = "bigquery"` object); a
    /// base64 key is registered as a secret first, so that nothing can show it.
    pub fn bigquery(target: crate::warehouse::bigquery::BigQueryTarget) -> Dsn {
        if let Some(k) = target.secret() {
            register_secret(k);
        }
        Dsn {
            engine: Engine::BigQuery,
            scheme: "bigquery".into(),
            host: None,
            port: None,
            database: Some(target.dataset.clone()),
            user: None,
            password: None,
            sslmode: None,
            search_path: None,
            redshift: false,
            sqlite: None,
            bigquery: Some(target),
        }
    }

    fn parse_sqlite(input: &str, scheme: &str) -> Result<Dsn> {
        let rest = &input[scheme.len() + 1..];
        let rest = rest.split('?').next().unwrap_or("");
        // `sqlite://user:pw@host/db` is a network DSN with the wrong scheme, not a file named
        // `user:pw@host/db` (SQLAlchemy refuses it too).
        let first = rest.strip_prefix("//").unwrap_or(rest);
        if !rest.starts_with("///") && first.split('/').next().is_some_and(|a| a.contains('@')) {
            return Err(Error::usage(format!(
                "invalid DSN '{}': an SQLite DSN has no user, password or host; use sqlite:///path/to/file.db \
                 (or postgres:// / mysql:// for a server)",
                redact_dsn_text(input)
            )));
        }
        let target = if rest == ":memory:"
            || rest == "//:memory:"
            || rest == "///:memory:"
            || rest == "//"
        {
            SqliteTarget::Memory
        } else if let Some(p) = rest.strip_prefix("////") {
            SqliteTarget::File(PathBuf::from(format!("/{p}")))
        } else if let Some(p) = rest.strip_prefix("///") {
            SqliteTarget::File(sqlite_three_slash_path(p))
        } else if let Some(p) = rest.strip_prefix("//") {
            SqliteTarget::File(PathBuf::from(p))
        } else {
            SqliteTarget::File(PathBuf::from(rest))
        };
        if let SqliteTarget::File(p) = &target
            && p.as_os_str().is_empty()
        {
            return Err(Error::usage(format!(
                "invalid DSN '{}': no database file; use sqlite:///path/to/file.db or sqlite::memory:",
                redact_dsn_text(input)
            )));
        }
        Ok(Dsn {
            engine: Engine::Sqlite,
            scheme: scheme.to_string(),
            host: None,
            port: None,
            database: None,
            user: None,
            password: None,
            sslmode: None,
            search_path: None,
            redshift: false,
            sqlite: Some(target),
            bigquery: None,
        })
    }

    fn parse_url(input: &str, engine: Engine, scheme: &str) -> Result<Dsn> {
        let bad =
            |why: String| Error::usage(format!("invalid DSN '{}': {why}", redact_dsn_text(input)));
        // `postgres:/u:pw@h/db` would parse as a path (a local socket, with the password in the
        // database name): a network DSN must be SCHEME://.
        if !input[scheme.len() + 1..].starts_with("//") {
            return Err(bad(format!(
                "expected '//' after '{scheme}:', as in {scheme}://user@host:5432/db"
            )));
        }
        let url = url::Url::parse(input).map_err(|e| bad(e.to_string()))?;
        // Known before anything can fail, so that no later message can show it.
        if let Some(p) = url.password() {
            register_secret(p);
        }
        let decode = |s: &str| -> Result<String> {
            percent_decode(s).ok_or_else(|| {
                bad("a percent-escape in the user or password is not valid UTF-8".into())
            })
        };
        let user = if url.username().is_empty() {
            None
        } else {
            Some(decode(url.username())?)
        };
        let mut password = match url.password() {
            Some(p) => Some(decode(p)?),
            None => None,
        };
        if let Some(p) = &password {
            register_secret(p);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_matches(['[', ']']).to_string());
        let database = {
            let p = url.path().trim_start_matches('/');
            if p.is_empty() { None } else { Some(decode(p)?) }
        };
        let mut sslmode = None;
        let mut search_path = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" | "ssl-mode" | "ssl_mode" => {
                    let v = v.to_ascii_lowercase().replace('_', "-");
                    if !SSLMODES.contains(&v.as_str()) && engine == Engine::Postgres {
                        return Err(bad(format!(
                            "sslmode '{v}' is not one of {}",
                            SSLMODES.join(", ")
                        )));
                    }
                    sslmode = Some(v);
                }
                "search_path" | "currentSchema" => search_path = Some(v.to_string()),
                // libpq's `?password=`: used when the URL has none, and a secret either way.
                "password" => {
                    register_secret(&v);
                    if password.is_none() && !v.is_empty() {
                        password = Some(v.to_string());
                    }
                }
                "options" => {
                    // libpq style: options=-csearch_path=foo
                    for opt in v.split_whitespace() {
                        if let Some(sp) = opt.strip_prefix("-csearch_path=") {
                            search_path = Some(sp.to_string());
                        }
                    }
                }
                _ => {} // client_encoding, connect_timeout, charset...: harmless, ignored
            }
        }
        let redshift = engine == Engine::Postgres
            && (scheme == "redshift"
                || host
                    .as_deref()
                    .is_some_and(|h| h.ends_with("redshift.amazonaws.com")));
        Ok(Dsn {
            engine,
            scheme: scheme.to_string(),
            host,
            port: url.port(),
            database,
            user,
            password,
            sslmode,
            search_path,
            redshift,
            sqlite: None,
            bigquery: None,
        })
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Fill the password from `--password` / `PGPASSWORD` when the DSN names a user but no
    /// password (docs/compatibility.md#commands). A password written in the DSN wins.
    pub fn fill_password(&mut self, password: Option<&str>) {
        if self.user.is_some()
            && self.password.is_none()
            && let Some(p) = password
        {
            register_secret(p);
            self.password = Some(p.to_string());
        }
    }

    pub fn set_password(&mut self, password: Option<String>) {
        if let Some(p) = &password {
            register_secret(p);
        }
        self.password = password;
    }

    /// A PostgreSQL or MySQL DSN built from typed parts (a settings DSN object), never by
    /// pasting text into a URL: a host, user or password holding `@`, `/`, `?` or `:` stays
    /// that one part. The host must be a host name or an IP address (see [`check_host`]).
    pub fn from_parts(engine: Engine, scheme: &str, parts: NetParts) -> Result<Dsn> {
        if let Some(p) = &parts.password {
            register_secret(p);
        }
        let host = check_host(&parts.host)?;
        let redshift = engine == Engine::Postgres && host.ends_with("redshift.amazonaws.com");
        Ok(Dsn {
            engine,
            scheme: scheme.to_string(),
            host: Some(host),
            port: Some(parts.port),
            database: Some(parts.database).filter(|d| !d.is_empty()),
            user: Some(parts.user).filter(|u| !u.is_empty()),
            password: parts.password.filter(|p| !p.is_empty()),
            sslmode: parts.sslmode,
            search_path: parts.search_path,
            redshift,
            sqlite: None,
            bigquery: None,
        })
    }

    /// The SQLite file, if this is a file-backed SQLite DSN.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.sqlite {
            Some(SqliteTarget::File(p)) => Some(p),
            _ => None,
        }
    }

    /// A DSN for an SQLite file.
    pub fn sqlite_file(path: &Path) -> Dsn {
        Dsn {
            engine: Engine::Sqlite,
            scheme: "sqlite".into(),
            host: None,
            port: None,
            database: None,
            user: None,
            password: None,
            sslmode: None,
            search_path: None,
            redshift: false,
            sqlite: Some(SqliteTarget::File(path.to_path_buf())),
            bigquery: None,
        }
    }

    fn fmt_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = &self.bigquery {
            // Shows a credentials path, never a base64 key.
            return write!(f, "{t}");
        }
        if let Some(t) = &self.sqlite {
            return match t {
                SqliteTarget::Memory => write!(f, "sqlite::memory:"),
                // `sqlite:///` + `/abs/x.db` is SQLAlchemy's absolute form `sqlite:////abs/x.db`.
                SqliteTarget::File(p) => write!(f, "sqlite:///{}", p.display()),
            };
        }
        let scheme = self.engine.name();
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}")?;
            if self.password.is_some() {
                write!(f, ":***")?;
            }
            write!(f, "@")?;
        }
        if let Some(h) = &self.host {
            if h.contains(':') {
                write!(f, "[{h}]")?
            } else {
                write!(f, "{h}")?
            }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "/")?;
        if let Some(d) = &self.database {
            write!(f, "{d}")?;
        }
        let mut sep = '?';
        if let Some(s) = &self.sslmode {
            write!(f, "{sep}sslmode={s}")?;
            sep = '&';
        }
        if let Some(s) = &self.search_path {
            write!(f, "{sep}search_path={s}")?;
        }
        Ok(())
    }
}

/// The parts of a network DSN, for [`Dsn::from_parts`].
#[derive(Clone, Default)]
pub struct NetParts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub sslmode: Option<String>,
    pub search_path: Option<String>,
}

/// A host name (letters, digits, `-`, `_`, `.`) or an IP address (IPv6 with or without
/// brackets). Anything else (`/` would mean a local socket to the drivers; `@`, `?`, `#`,
/// spaces would change what a URL means) is refused; the value is not echoed, since it may
/// come from a secret.
pub fn check_host(host: &str) -> Result<String> {
    let h = host.trim();
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_string());
    }
    let name_ok = !bare.is_empty()
        && bare.len() <= 253
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name_ok {
        Ok(bare.to_string())
    } else {
        Err(Error::invalid(
            "the host is not a host name or an IP address (only letters, digits, '-', '_' and \
             '.'; put the port, user and database in their own keys)",
        ))
    }
}

/// `SCHEME` as in RFC 3986: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Query keys whose values are shown in a redacted DSN; any other key's value is masked.
const SHOWN_QUERY_KEYS: [&str; 10] = [
    "sslmode",
    "ssl-mode",
    "ssl_mode",
    "search_path",
    "currentSchema",
    "options",
    "charset",
    "client_encoding",
    "connect_timeout",
    "application_name",
];

/// A DSN as the user wrote it, with everything that could be a credential masked, for
/// messages about a DSN that may not parse: everything before the last `@` but the user name
/// of a well-formed `SCHEME://USER:`, a non-numeric "port" when there is no `@`
/// (`postgres://u:pw/db`), and the value of every query key but the harmless ones.
pub fn redact_dsn_text(input: &str) -> String {
    let (head, body, proper) = match input.split_once(':') {
        Some((s, rest)) if is_scheme(s) => match rest.strip_prefix("//") {
            Some(r) => (&input[..s.len() + 3], r, true),
            None => (&input[..s.len() + 1], rest, false),
        },
        _ => ("", input, false),
    };
    let mut out = head.to_string();
    let rest = match body.rfind('@') {
        Some(at) => {
            let userinfo = &body[..at];
            match userinfo.split_once(':') {
                _ if !proper => out.push_str("***"),
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &body[at + 1..]
        }
        // `SCHEME:text` without `//` or `@` (`u:password`): the text may be the password.
        None if !proper && !head.is_empty() && !body.is_empty() => {
            out.push_str("***");
            return out;
        }
        None => body,
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // Without an `@`, `host:xxx` where xxx is not a port may be `user:password`.
    let auth_end = main.find('/').unwrap_or(main.len());
    let (auth, path) = main.split_at(auth_end);
    match auth.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && !port.bytes().all(|b| b.is_ascii_digit())
                && !auth.ends_with(']') =>
        {
            out.push_str(h);
            out.push_str(":***");
        }
        _ => out.push_str(auth),
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        let shown: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if !SHOWN_QUERY_KEYS.contains(&k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push_str(&shown.join("&"));
    }
    out
}

/// SQLAlchemy reads `sqlite:///x.db` as the relative path `x.db` and `sqlite:////x.db` as
/// absolute; sqlx reads `sqlite:///tmp/x.db` as absolute. We follow SQLAlchemy, except when the
/// relative reading names a directory that does not exist while the absolute one does
/// (`sqlite:///tmp/run-1/x.db` from a working directory without `tmp/`), which can only mean
/// the absolute path.
fn sqlite_three_slash_path(p: &str) -> PathBuf {
    let rel = PathBuf::from(p);
    let abs = PathBuf::from(format!("/{p}"));
    let dir_exists = |path: &Path| match path.parent() {
        None => true,
        Some(d) if d.as_os_str().is_empty() => true,
        Some(d) => d.is_dir(),
    };
    if !dir_exists(&rel) && dir_exists(&abs) && abs.parent().is_some_and(|d| d != Path::new("/")) {
        abs
    } else {
        rel
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_redacted(f)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dsn(")?;
        self.fmt_redacted(f)?;
        write!(f, ")")
    }
}

/// Values shorter than this (in characters) are masked only as whole words, so that a
/// one-letter password does not blank out that letter everywhere.
const MASK_EVERYWHERE_FROM: usize = 3;

/// Every spelling of every known secret, longest first.
static KNOWN_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Percent-encode everything but RFC 3986's unreserved characters (a URL component).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The spellings under which `value` may be printed: as is, percent-encoded (upper- and
/// lower-case hex, the URL crate's userinfo set, form encoding), percent-decoded, JSON-escaped.
fn secret_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let encoded = encode_component(value);
    // The same escapes with lower-case hex digits.
    let mut lower = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            lower.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            lower.push(c.to_ascii_lowercase());
        } else {
            lower.push(c);
        }
    }
    forms.push(lower);
    forms.push(encoded);
    if let Ok(mut u) = url::Url::parse("x://u@h")
        && u.set_password(Some(value)).is_ok()
        && let Some(p) = u.password()
    {
        forms.push(p.to_string());
    }
    forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
    if let Some(d) = percent_decode(value) {
        forms.push(d);
    }
    if let Ok(j) = serde_json::to_string(value) {
        forms.push(j[1..j.len() - 1].to_string());
    }
    forms.retain(|f| !f.is_empty());
    forms
}

/// Remember `value` as a secret: from now on [`scrub_secrets`] masks it (in every spelling)
/// wherever the binary prints it. Passwords and resolved `${secret:NAME}` values are
/// registered by the code that reads them.
pub fn register_secret(value: &str) {
    if value.is_empty() {
        return;
    }
    let forms = secret_forms(value);
    let mut known = KNOWN_SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let before = known.len();
    for f in forms {
        if !known.contains(&f) {
            known.push(f);
        }
    }
    if known.len() != before {
        known.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }
}

/// Mask every known secret ([`register_secret`]) and anything shaped like URL credentials
/// (`scheme://user:password@`) in `text`. Everything the binary prints goes through this.
pub fn scrub_secrets(text: &str) -> String {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        // The password runs to the last `@` before whitespace (a password may hold an `@`).
        regex::Regex::new(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^\s]*@").unwrap()
    });
    let mut out = match RE.is_match(text) {
        true => RE.replace_all(text, "$pre:***@").into_owned(),
        false => text.to_string(),
    };
    let known = KNOWN_SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for secret in known.iter() {
        if !out.contains(secret.as_str()) {
            continue;
        }
        out = if secret.chars().count() >= MASK_EVERYWHERE_FROM {
            out.replace(secret.as_str(), "***")
        } else {
            mask_word(&out, secret)
        };
    }
    out
}

/// Replace `word` in `text` where it is not part of a longer run of letters and digits.
fn mask_word(text: &str, word: &str) -> String {
    let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(word) {
        if i < last {
            continue;
        }
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        if !alnum(before) && !alnum(after) {
            out.push_str(&text[last..i]);
            out.push_str("***");
            last = i + word.len();
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spellings() {
        for s in [
            "postgres://u:sp-unit-9x@h:5433/db",
            "postgresql://u:sp-unit-9x@h:5433/db",
            "postgresql+psycopg://u:sp-unit-9x@h:5433/db",
            "postgresql+psycopg2://u:sp-unit-9x@h:5433/db",
        ] {
            let d = Dsn::parse(s).unwrap();
            assert_eq!(d.engine, Engine::Postgres);
            assert_eq!(d.host.as_deref(), Some("h"));
            assert_eq!(d.port, Some(5433));
            assert_eq!(d.database.as_deref(), Some("db"));
            assert_eq!(d.user.as_deref(), Some("u"));
            assert_eq!(d.password(), Some("sp-unit-9x"));
            assert_eq!(d.to_string(), "postgres://u:***@h:5433/db");
            assert!(!format!("{d:?}").contains("sp-unit-9x"));
        }
    }

    #[test]
    fn query_parameters_and_redshift() {
        let d = Dsn::parse("postgresql+psycopg2://u:qp%40unit-9x@x.redshift.amazonaws.com:5439/dev?sslmode=verify-full&search_path=transforms").unwrap();
        assert!(d.redshift);
        assert_eq!(d.password(), Some("qp@unit-9x"));
        assert_eq!(d.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(d.search_path.as_deref(), Some("transforms"));
        let d = Dsn::parse("postgres://u@h/db?options=-csearch_path%3Dabc").unwrap();
        assert_eq!(d.search_path.as_deref(), Some("abc"));
        assert!(Dsn::parse("postgres://u@h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn mysql_spellings() {
        for s in [
            "mysql://root@127.0.0.1:3306/test",
            "mariadb://root@127.0.0.1:3306/test",
            "mysql+pymysql://root@127.0.0.1:3306/test",
        ] {
            let d = Dsn::parse(s).unwrap();
            assert_eq!(d.engine, Engine::Mysql);
            assert_eq!(d.database.as_deref(), Some("test"));
            assert_eq!(d.password(), None);
        }
    }

    #[test]
    fn sqlite_spellings() {
        assert!(matches!(
            Dsn::parse("sqlite::memory:").unwrap().sqlite,
            Some(SqliteTarget::Memory)
        ));
        assert_eq!(
            Dsn::parse("sqlite:///x.db").unwrap().sqlite_path(),
            Some(Path::new("x.db"))
        );
        assert_eq!(
            Dsn::parse("sqlite:////abs/x.db").unwrap().sqlite_path(),
            Some(Path::new("/abs/x.db"))
        );
        // /tmp exists, ./tmp/<random> does not: the absolute reading wins.
        assert_eq!(
            Dsn::parse("sqlite:///tmp/x.db").unwrap().sqlite_path(),
            Some(if Path::new("tmp").is_dir() {
                Path::new("tmp/x.db")
            } else {
                Path::new("/tmp/x.db")
            })
        );
        assert_eq!(
            Dsn::parse("sqlite:data/x.db").unwrap().sqlite_path(),
            Some(Path::new("data/x.db"))
        );
        assert!(Dsn::parse("sqlite:///").is_err());
    }

    #[test]
    fn errors_are_usage_and_redacted() {
        let e = Dsn::parse("oracle://u:ts-unit-9x@h/db").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("ts-unit-9x"), "{e}");
        let e = Dsn::parse("bigquery://u:bq-unit-9x@project-x/ds").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("bq-unit-9x"), "{e}");
        let e = Dsn::parse("bigquery://project-x").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("the dataset is missing"), "{e}");
        let e = Dsn::parse("no-scheme-here").unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn bigquery_dsns_name_project_and_dataset_and_never_show_a_base64_key() {
        let d = Dsn::parse("bigquery://my-project/my_data").unwrap();
        assert_eq!(d.engine, Engine::BigQuery);
        let t = d.bigquery.as_ref().unwrap();
        assert_eq!(
            (t.project.as_str(), t.dataset.as_str()),
            ("my-project", "my_data")
        );
        assert_eq!(d.to_string(), "bigquery://my-project/my_data");
        let d = Dsn::parse("bigquery://my-project/my_data?credentials_base64=c2VjcmV0LWtleS11bml0")
            .unwrap();
        assert_eq!(
            d.to_string(),
            "bigquery://my-project/my_data?credentials_base64=***"
        );
        assert!(!format!("{d:?}").contains("c2VjcmV0LWtleS11bml0"));
        assert_eq!(
            scrub_secrets("key c2VjcmV0LWtleS11bml0 here"),
            "key *** here"
        );
    }

    #[test]
    fn fill_password_only_when_missing() {
        let mut d = Dsn::parse("postgres://u@h/db").unwrap();
        d.fill_password(Some("fp-unit-9x"));
        assert_eq!(d.password(), Some("fp-unit-9x"));
        d.fill_password(Some("fo-unit-9x"));
        assert_eq!(d.password(), Some("fp-unit-9x"));
        let mut d = Dsn::parse("postgres://h/db").unwrap();
        d.fill_password(Some("fn-unit-9x"));
        assert_eq!(d.password(), None);
    }

    #[test]
    fn scrub() {
        assert_eq!(
            scrub_secrets("failed: postgres://a:b@c/d x"),
            "failed: postgres://a:***@c/d x"
        );
        assert_eq!(scrub_secrets("no url"), "no url");
    }

    /// The DSN shapes of issue 9 that were printed: each is refused or redacted, and the
    /// message never holds the password.
    #[test]
    fn malformed_dsns_are_not_echoed() {
        for (input, code) in [
            ("postgres://u:my SQ-unit-9x@h:99999/db", 2),
            ("postgres://u:my\tSQ-unit-9x@h:99999/db", 2),
            ("postgres://u:p@SQ-unit-9x@h:99999/db", 2),
            ("postgres:/u:SQ-unit-9x@127.0.0.1/db", 2),
            ("postgres//u:SQ-unit-9x@h/db", 2),
            ("u:SQ-unit-9x@h/db", 2),
            ("postgres://u:SQ-unit-9x/h/db", 2),
            ("postgres://u@h:99999/db?password=SQ-unit-9x", 2),
            ("mysql:u:SQ-unit-9x@h/db", 2),
            ("sqlite://u:SQ-unit-9x@h/db", 2),
            ("sqlite:u:SQ-unit-9x@h/db", 2),
        ] {
            let e = Dsn::parse(input).unwrap_err();
            assert_eq!(e.exit_code(), code, "{input}: {e}");
            assert!(!e.to_string().contains("SQ-unit-9x"), "{input}: {e}");
            assert!(e.to_string().starts_with("invalid DSN '"), "{input}: {e}");
        }
    }

    #[test]
    fn missing_double_slash_is_refused_not_read_as_a_socket_path() {
        let e = Dsn::parse("postgres:/u:ms-unit-9x@127.0.0.1/db").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid DSN 'postgres:***@127.0.0.1/db': expected '//' after 'postgres:', as in postgres://user@host:5432/db"
        );
    }

    #[test]
    fn redacted_dsn_text_keeps_the_shape() {
        for (input, shown) in [
            ("oracle://reader:pw@db/a", "oracle://reader:***@db/a"),
            ("postgres://u:a@b@h/db", "postgres://u:***@h/db"),
            ("postgres://only-user@h/db", "postgres://only-user@h/db"),
            ("u:pw@h/db", "u:***@h/db"),
            ("postgres//u:pw@h/db", "***@h/db"),
            ("postgres://u:pw/h/db", "postgres://u:***/h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            ("postgres://[::1]/db", "postgres://[::1]/db"),
            (
                "postgres://h/db?sslmode=require&password=x&token=y",
                "postgres://h/db?sslmode=require&password=***&token=***",
            ),
            ("not a dsn", "not a dsn"),
            ("u:pw-alone", "u:***"),
            ("my host:pw", "my host:***"),
        ] {
            assert_eq!(redact_dsn_text(input), shown, "{input}");
        }
    }

    #[test]
    fn query_password_is_used_and_known() {
        let d = Dsn::parse("postgres://u@h/db?password=qp-unit-9x").unwrap();
        assert_eq!(d.password(), Some("qp-unit-9x"));
        assert_eq!(scrub_secrets("x qp-unit-9x y"), "x *** y");
    }

    #[test]
    fn known_secrets_are_masked_in_every_spelling() {
        // A password with a space, an `@`, a `/` and non-ASCII, read from a URL.
        let d = Dsn::parse("postgres://u:k%20n%40w%2Fn-unit-%C3%A9@h/db").unwrap();
        assert_eq!(d.password(), Some("k n@w/n-unit-é"));
        for spelling in [
            "k n@w/n-unit-é",
            "k%20n%40w%2Fn-unit-%C3%A9",
            "k%20n%40w%2fn-unit-%c3%a9",
            "k+n%40w%2Fn-unit-%C3%A9",
        ] {
            let text = format!("before {spelling} after");
            assert_eq!(scrub_secrets(&text), "before *** after", "{spelling}");
        }
        // A tab shows as `\t` in JSON.
        register_secret("tab\tunit-9x");
        assert_eq!(scrub_secrets(r#"{"m": "tab\tunit-9x"}"#), r#"{"m": "***"}"#);
        // Registered as written (encoded): the decoded form is masked too.
        register_secret("pe%41unit-9x");
        assert_eq!(scrub_secrets("peAunit-9x"), "***");
    }

    #[test]
    fn short_secrets_are_masked_as_whole_words() {
        register_secret("Zq");
        assert_eq!(
            scrub_secrets("password Zq, 'Zq' and Zqx / xZq"),
            "password ***, '***' and Zqx / xZq"
        );
        register_secret("Ж");
        assert_eq!(scrub_secrets("a Ж b ЖЖ"), "a *** b ЖЖ");
    }

    #[test]
    fn url_credentials_are_masked_up_to_the_last_at() {
        assert_eq!(
            scrub_secrets("failed: mysql://a:b@c@d/e x"),
            "failed: mysql://a:***@d/e x"
        );
    }

    #[test]
    fn hosts_from_parts_must_be_names_or_addresses() {
        for ok in ["db.example.org", "127.0.0.1", "::1", "[::1]", "my_host-2"] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/var/run/postgresql",
            "evil@127.0.0.1",
            "h/zz",
            "h:5432",
            "h?x",
            "a b",
            "",
            "h#x",
        ] {
            let e = check_host(bad).unwrap_err();
            assert_eq!(e.exit_code(), 3, "{bad}");
        }
        let d = Dsn::from_parts(
            Engine::Postgres,
            "postgresql",
            NetParts {
                host: "x.redshift.amazonaws.com".into(),
                port: 5439,
                user: "u@x".into(),
                password: Some("fp/unit@9x?".into()),
                database: "d b".into(),
                sslmode: None,
                search_path: None,
            },
        )
        .unwrap();
        assert_eq!(d.host.as_deref(), Some("x.redshift.amazonaws.com"));
        assert_eq!(d.user.as_deref(), Some("u@x"));
        assert_eq!(d.password(), Some("fp/unit@9x?"));
        assert!(d.redshift);
        assert_eq!(scrub_secrets("p=fp/unit@9x?"), "p=***");
    }
}

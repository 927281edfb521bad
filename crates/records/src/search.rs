//! Search: parameters parsed from the query, SQL over the index tables (one id set per
//! parameter, OR across its comma-separated values, the sets intersected), keyset paging,
//! `_total`, `_include` / `_revinclude`.
//!
//! Paging is by key, not offset: the default order is by id (tenant-minted UUIDv7, so by
//! creation, and ids never change), `_sort=_lastUpdated` / `-_lastUpdated` by
//! (last updated, id). A page's key is handed to the caller, which seals it into a cursor
//! bound to the tenant; resources written between pages never shift the next page.

use crate::{
    Result, TenantDb,
    index::{self, Kind},
    resource::{Issue, ResourceType},
    store::Version,
};

/// Sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By id (creation order).
    Id,
    /// Oldest change first.
    LastUpdated,
    /// Newest change first.
    LastUpdatedDesc,
}

/// Where the next page starts (after this key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    /// Last updated (ms) of the last resource of the page.
    pub lu: i64,
    /// Its id.
    pub id: String,
}

/// A date prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// eq
    Eq,
    /// ne
    Ne,
    /// lt
    Lt,
    /// gt
    Gt,
    /// le
    Le,
    /// ge
    Ge,
    /// sa
    Sa,
    /// eb
    Eb,
    /// ap
    Ap,
}

/// String matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrMode {
    /// Starts with, ignoring case and accents.
    Starts,
    /// Exactly as written.
    Exact,
    /// Contains, ignoring case and accents.
    Contains,
}

/// One value condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `_id`.
    Id(String),
    /// `_lastUpdated`.
    LastUpdated(Prefix, i64, i64),
    /// Token: `system|code`, `|code` (no system), `code`, `system|`.
    Token {
        /// `None`: any system; `Some(None)`: no system; `Some(Some(s))`: that one.
        system: Option<Option<String>>,
        /// The code (`None` with `system|`).
        code: Option<String>,
    },
    /// String.
    Str(StrMode, String),
    /// Date range.
    Date(Prefix, i64, i64),
    /// Reference.
    Ref(Option<String>, String),
}

/// One parameter: any of its values matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Parameter name (index `param`), `_id` or `_lastUpdated`.
    pub param: &'static str,
    /// Values (OR).
    pub any_of: Vec<Cond>,
}

/// `_include` / `_revinclude`: source type and reference parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The type holding the reference.
    pub source: ResourceType,
    /// The reference parameter.
    pub param: &'static str,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The type searched.
    pub rtype: ResourceType,
    /// Parameters (AND).
    pub filters: Vec<Filter>,
    /// Order.
    pub sort: Sort,
    /// Page size.
    pub count: usize,
    /// Start after.
    pub after: Option<Key>,
    /// Count all matches.
    pub total: bool,
    /// Only the count (`_summary=count`).
    pub count_only: bool,
    /// `_include`.
    pub includes: Vec<Include>,
    /// `_revinclude`.
    pub revincludes: Vec<Include>,
    /// `_elements`.
    pub elements: Vec<String>,
}

/// Most results per page.
pub const MAX_COUNT: usize = 1000;
/// Default page size.
pub const DEFAULT_COUNT: usize = 20;

/// Parameters understood by [`parse`] besides the search parameters.
pub const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_include",
    "_revinclude",
    "_elements",
    "_cursor",
    "_format",
    "_pretty",
];

fn prefix_of(v: &str) -> (Prefix, &str) {
    let ps = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("lt", Prefix::Lt),
        ("gt", Prefix::Gt),
        ("le", Prefix::Le),
        ("ge", Prefix::Ge),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (s, p) in ps {
        if let Some(rest) = v.strip_prefix(s)
            && rest.starts_with(|c: char| c.is_ascii_digit())
        {
            return (p, rest);
        }
    }
    (Prefix::Eq, v)
}

/// Most values one parameter may list (`identifier=a,b,…`): a longer OR list is refused
/// with a clear error instead of reaching the database.
pub const MAX_VALUES_PER_PARAM: usize = 100;
/// Most values across all parameters of one search.
pub const MAX_VALUES_PER_SEARCH: usize = 400;

pub use crate::resource::forbidden_control;

/// `a OR b OR …` as a balanced tree, so the expression's depth grows with the logarithm
/// of the list, not the list (SQLite refuses trees deeper than 1,000).
fn or_balanced(parts: &[String]) -> String {
    match parts {
        [] => "1 = 0".to_owned(),
        [one] => one.clone(),
        _ => {
            let (a, b) = parts.split_at(parts.len() / 2);
            format!("({} OR {})", or_balanced(a), or_balanced(b))
        }
    }
}

/// Splits a comma-separated value list (`\,` escapes a comma).
fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in v.chars() {
        match (esc, c) {
            (true, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
                esc = false;
            }
            (false, '\\') => esc = true,
            (false, ',') => out.push(String::new()),
            (false, c) => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn issue(loc: &str, msg: impl Into<String>) -> Issue {
    Issue {
        location: loc.to_owned(),
        diagnostics: msg.into(),
    }
}

/// Parses the query parameters of a search on `rtype`. Returns the query and the
/// parameters it ignored (unknown ones); with `strict`, unknown parameters are errors.
pub fn parse(
    rtype: ResourceType,
    params: &[(String, String)],
    strict: bool,
) -> std::result::Result<(Query, Vec<String>), Vec<Issue>> {
    let mut q = Query {
        rtype,
        filters: Vec::new(),
        sort: Sort::Id,
        count: DEFAULT_COUNT,
        after: None,
        total: false,
        count_only: false,
        includes: Vec::new(),
        revincludes: Vec::new(),
        elements: Vec::new(),
    };
    let mut issues = Vec::new();
    let mut ignored = Vec::new();
    let mut values_seen = 0usize;
    for (k, v) in params {
        if let Some(c) = k.chars().chain(v.chars()).find(|c| forbidden_control(*c)) {
            issues.push(issue(
                k,
                format!("control character U+{:04X} is not allowed", c as u32),
            ));
            continue;
        }
        let n = v.split(',').count();
        values_seen += n;
        if n > MAX_VALUES_PER_PARAM {
            issues.push(issue(
                k,
                format!("at most {MAX_VALUES_PER_PARAM} values per parameter ({n} given)"),
            ));
            continue;
        }
        if values_seen > MAX_VALUES_PER_SEARCH {
            issues.push(issue(
                k,
                format!("at most {MAX_VALUES_PER_SEARCH} values in one search"),
            ));
            break;
        }
        let (name, modifier) = match k.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (k.as_str(), None),
        };
        match name {
            "_count" => match v.parse::<usize>() {
                Ok(n) => q.count = n.clamp(1, MAX_COUNT),
                Err(_) => issues.push(issue("_count", "must be a positive number")),
            },
            "_sort" => {
                q.sort = match v.as_str() {
                    "_lastUpdated" => Sort::LastUpdated,
                    "-_lastUpdated" => Sort::LastUpdatedDesc,
                    "_id" => Sort::Id,
                    _ => {
                        issues.push(issue(
                            "_sort",
                            "supported: _id, _lastUpdated, -_lastUpdated",
                        ));
                        Sort::Id
                    }
                }
            }
            "_total" => q.total = v == "accurate" || v == "estimate",
            "_summary" => {
                if v == "count" {
                    q.count_only = true;
                    q.total = true;
                } else if v != "false" {
                    ignored.push(k.clone());
                }
            }
            "_elements" => {
                q.elements = v
                    .split(',')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            }
            "_include" | "_revinclude" => {
                let mut it = v.split(':');
                let src = it.next().and_then(ResourceType::parse);
                let prm = it.next();
                match (src, prm) {
                    (Some(src), Some(pn)) => match index::param(src.as_str(), pn) {
                        Some(p) if p.kind == Kind::Reference => {
                            let inc = Include {
                                source: src,
                                param: p.name,
                            };
                            if name == "_include" {
                                if src != rtype {
                                    issues.push(issue(
                                        "_include",
                                        format!("must start with {rtype}"),
                                    ));
                                } else {
                                    q.includes.push(inc);
                                }
                            } else {
                                q.revincludes.push(inc);
                            }
                        }
                        _ => issues.push(issue(
                            name,
                            format!("{pn} is not a reference parameter of {src}"),
                        )),
                    },
                    _ => issues.push(issue(name, "expected Type:parameter")),
                }
            }
            "_cursor" | "_format" | "_pretty" => {}
            "_id" => {
                let vals: Vec<Cond> = split_values(v).into_iter().map(Cond::Id).collect();
                if !vals.is_empty() {
                    q.filters.push(Filter {
                        param: "_id",
                        any_of: vals,
                    });
                }
            }
            "_lastUpdated" => {
                let mut any = Vec::new();
                for val in split_values(v) {
                    let (p, d) = prefix_of(&val);
                    match index::date_range(d) {
                        Some((lo, hi)) => any.push(Cond::LastUpdated(p, lo, hi)),
                        None => issues.push(issue("_lastUpdated", "not a FHIR date")),
                    }
                }
                if !any.is_empty() {
                    q.filters.push(Filter {
                        param: "_lastUpdated",
                        any_of: any,
                    });
                }
            }
            _ => {
                let Some(p) = index::param(rtype.as_str(), name) else {
                    ignored.push(k.clone());
                    continue;
                };
                let mut any = Vec::new();
                for val in split_values(v) {
                    match (p.kind, modifier) {
                        (Kind::Token, None) => {
                            let c = match val.split_once('|') {
                                None => Cond::Token {
                                    system: None,
                                    code: Some(val.clone()),
                                },
                                Some(("", code)) => Cond::Token {
                                    system: Some(None),
                                    code: Some(code.to_owned()),
                                },
                                Some((sys, "")) => Cond::Token {
                                    system: Some(Some(sys.to_owned())),
                                    code: None,
                                },
                                Some((sys, code)) => Cond::Token {
                                    system: Some(Some(sys.to_owned())),
                                    code: Some(code.to_owned()),
                                },
                            };
                            any.push(c);
                        }
                        (Kind::String, m) => {
                            let mode = match m {
                                None => StrMode::Starts,
                                Some("exact") => StrMode::Exact,
                                Some("contains") => StrMode::Contains,
                                Some(other) => {
                                    issues.push(issue(k, format!("unsupported modifier :{other}")));
                                    continue;
                                }
                            };
                            any.push(Cond::Str(mode, val.clone()));
                        }
                        (Kind::Date, None) => {
                            let (pf, d) = prefix_of(&val);
                            match index::date_range(d) {
                                Some((lo, hi)) => any.push(Cond::Date(pf, lo, hi)),
                                None => issues.push(issue(k, "not a FHIR date")),
                            }
                        }
                        (Kind::Reference, None) => {
                            let (t, id) = match index::parse_reference(&val) {
                                Some((t, id)) => (Some(t.to_owned()), id.to_owned()),
                                None if crate::resource::valid_id(&val) => {
                                    (p.target.map(str::to_owned), val.clone())
                                }
                                None => {
                                    issues.push(issue(k, "expected an id or Type/id"));
                                    continue;
                                }
                            };
                            any.push(Cond::Ref(t, id));
                        }
                        (_, Some(m)) => {
                            issues.push(issue(k, format!("unsupported modifier :{m}")));
                        }
                    }
                }
                if !any.is_empty() {
                    q.filters.push(Filter {
                        param: p.name,
                        any_of: any,
                    });
                }
            }
        }
    }
    if strict && !ignored.is_empty() {
        for k in &ignored {
            issues.push(issue(
                k,
                "unknown search parameter (Prefer: handling=strict)",
            ));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok((q, ignored))
}

/// A SQL argument.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

struct Sql {
    pg: bool,
    args: Vec<Arg>,
}

impl Sql {
    fn new(pg: bool) -> Self {
        Self {
            pg,
            args: Vec::new(),
        }
    }

    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        if self.pg {
            format!("${}", self.args.len())
        } else {
            format!("?{}", self.args.len())
        }
    }

    fn text(&mut self, s: &str) -> String {
        self.arg(Arg::Text(s.to_owned()))
    }

    fn int(&mut self, i: i64) -> String {
        self.arg(Arg::Int(i))
    }

    fn live(&self) -> &'static str {
        if self.pg {
            "NOT r.deleted"
        } else {
            "r.deleted = 0"
        }
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn date_sql(sql: &mut Sql, lo_col: &str, hi_col: &str, p: Prefix, lo: i64, hi: i64) -> String {
    // Only the bound a prefix uses becomes a parameter (PostgreSQL refuses unused ones).
    match p {
        Prefix::Eq => {
            let (a, b) = (sql.int(lo), sql.int(hi));
            format!("({lo_col} >= {a} AND {hi_col} <= {b})")
        }
        Prefix::Ne => {
            let (a, b) = (sql.int(lo), sql.int(hi));
            format!("NOT ({lo_col} >= {a} AND {hi_col} <= {b})")
        }
        Prefix::Gt => format!("({hi_col} > {})", sql.int(hi)),
        Prefix::Lt => format!("({lo_col} < {})", sql.int(lo)),
        Prefix::Ge => format!("({hi_col} >= {})", sql.int(lo)),
        Prefix::Le => format!("({lo_col} <= {})", sql.int(hi)),
        Prefix::Sa => format!("({lo_col} > {})", sql.int(hi)),
        Prefix::Eb => format!("({hi_col} < {})", sql.int(lo)),
        Prefix::Ap => {
            // Within 10 % of the distance from now, at least a day.
            let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            let pad = ((now - lo).abs() / 10).max(86_400_000);
            let (c, d) = (
                sql.int(lo.saturating_sub(pad)),
                sql.int(hi.saturating_add(pad)),
            );
            format!("({lo_col} <= {d} AND {hi_col} >= {c})")
        }
    }
}

/// The condition on one index row `x` (`None` for `_id` / `_lastUpdated`, which are on `r`).
fn row_cond(sql: &mut Sql, c: &Cond) -> String {
    match c {
        Cond::Id(id) => format!("r.id = {}", sql.text(id)),
        Cond::LastUpdated(p, lo, hi) => {
            date_sql(sql, "r.last_updated", "r.last_updated", *p, *lo, *hi)
        }
        Cond::Token { system, code } => {
            let mut s = String::from("(1 = 1");
            if let Some(code) = code {
                s.push_str(&format!(" AND x.code = {}", sql.text(code)));
            }
            match system {
                None => {}
                Some(None) => s.push_str(" AND x.system IS NULL"),
                Some(Some(sys)) => s.push_str(&format!(" AND x.system = {}", sql.text(sys))),
            }
            s.push(')');
            s
        }
        Cond::Str(mode, text) => match mode {
            StrMode::Exact => format!("x.raw = {}", sql.text(text)),
            StrMode::Starts => format!(
                "x.norm LIKE {} ESCAPE '\\'",
                sql.text(&format!("{}%", like_escape(&index::normalise(text))))
            ),
            StrMode::Contains => format!(
                "x.norm LIKE {} ESCAPE '\\'",
                sql.text(&format!("%{}%", like_escape(&index::normalise(text))))
            ),
        },
        Cond::Date(pf, lo, hi) => date_sql(sql, "x.lo", "x.hi", *pf, *lo, *hi),
        Cond::Ref(t, id) => {
            let mut s = format!("(x.target_id = {}", sql.text(id));
            if let Some(t) = t {
                s.push_str(&format!(" AND x.target_type = {}", sql.text(t)));
            }
            s.push(')');
            s
        }
    }
}

/// The index table a condition is answered from (`None`: a column of `r`).
fn table_of(c: &Cond) -> Option<&'static str> {
    match c {
        Cond::Id(_) | Cond::LastUpdated(..) => None,
        Cond::Token { .. } => Some("fhir_idx_token"),
        Cond::Str(..) => Some("fhir_idx_string"),
        Cond::Date(..) => Some("fhir_idx_date"),
        Cond::Ref(..) => Some("fhir_idx_ref"),
    }
}

/// The search's conditions. Index parameters become one id set each (`SELECT x.id FROM
/// index WHERE type, param AND (value OR value …)`), intersected and joined once to the
/// resource rows, so a search reads the small index sets first and only the matching
/// resources (not every resource of the type with a probe per parameter); `_id` and
/// `_lastUpdated` are conditions on the resource row itself. Tenant scope is the
/// database's (the SQLite file; forced RLS on every table in PostgreSQL).
fn where_sql(sql: &mut Sql, q: &Query) -> String {
    let t = sql.text(q.rtype.as_str());
    let mut w = format!("r.type = {t} AND {}", sql.live());
    let mut sets: Vec<String> = Vec::new();
    for f in &q.filters {
        let Some(first) = f.any_of.first() else {
            continue;
        };
        let ors: Vec<String> = f.any_of.iter().map(|c| row_cond(sql, c)).collect();
        match table_of(first) {
            None => w.push_str(&format!(" AND ({})", or_balanced(&ors))),
            Some(table) => {
                let p = sql.text(f.param);
                sets.push(format!(
                    "SELECT x.id FROM {table} x WHERE x.type = {t} AND x.param = {p} AND ({})",
                    or_balanced(&ors)
                ));
            }
        }
    }
    if !sets.is_empty() {
        // PostgreSQL: the id set is computed once (an InitPlan) and the resources fetched
        // by primary key. As `IN (…)` the planner may turn it into a semi-join that walks
        // every resource of the type with a probe each — quadratic on a tenant whose tables
        // have no statistics yet (a fresh tenant being loaded). SQLite materialises
        // `IN (…)` and looks the resources up by key.
        let ids = sets.join(" INTERSECT ");
        if sql.pg {
            w.push_str(&format!(" AND r.id = ANY(ARRAY({ids}))"));
        } else {
            w.push_str(&format!(" AND r.id IN ({ids})"));
        }
    }
    w
}

/// A page of results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The matches, in order.
    pub matches: Vec<Version>,
    /// The key of the next page, if there is one.
    pub next: Option<Key>,
    /// All matches (with `_total`).
    pub total: Option<u64>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<Version>,
}

type RawRow = (String, String, i64, i64, Option<String>);

async fn run(db: TenantDb<'_>, sql: String, args: Vec<Arg>) -> Result<Vec<RawRow>> {
    match db {
        TenantDb::Sqlite(s) => Ok(s
            .run(move |c| {
                let mut st = c.prepare(&sql)?;
                let vals: Vec<rusqlite::types::Value> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Text(t) => rusqlite::types::Value::Text(t.clone()),
                        Arg::Int(i) => rusqlite::types::Value::Integer(*i),
                    })
                    .collect();
                st.query_map(rusqlite::params_from_iter(vals.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?),
        TenantDb::Pg(p) => Ok(p
            .transaction(move |tx| {
                Box::pin(async move {
                    use tokio_postgres::types::{ToSql, Type};
                    // Typed parameters: one round trip, no separate prepare.
                    let params: Vec<(&(dyn ToSql + Sync), Type)> = args
                        .iter()
                        .map(|a| -> (&(dyn ToSql + Sync), Type) {
                            match a {
                                Arg::Text(t) => (t, Type::TEXT),
                                Arg::Int(i) => (i, Type::INT8),
                            }
                        })
                        .collect();
                    let rows = tx.query_typed(&sql, &params).await?;
                    Ok(rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                        .collect())
                })
            })
            .await?),
    }
}

async fn count(db: TenantDb<'_>, sql: String, args: Vec<Arg>) -> Result<u64> {
    let wrapped = format!(
        "SELECT CAST('' AS TEXT), CAST('' AS TEXT), count(*), CAST(0 AS BIGINT), CAST(NULL AS TEXT) \
         FROM ({sql}) AS c"
    );
    let rows = run(db, wrapped, args).await?;
    Ok(rows.first().map(|r| r.2.max(0) as u64).unwrap_or(0))
}

fn version_of(r: RawRow) -> Option<Version> {
    let rtype = ResourceType::parse(&r.0)?;
    Some(Version {
        rtype,
        id: r.1,
        version: r.2.max(0) as u64,
        last_updated: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.3) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        deleted: false,
        doc: r.4,
    })
}

/// Runs a search.
pub async fn search(db: TenantDb<'_>, q: &Query) -> Result<Page> {
    let pg = matches!(db, TenantDb::Pg(_));
    let mut page = Page::default();
    if q.total {
        let mut sql = Sql::new(pg);
        let w = where_sql(&mut sql, q);
        page.total = Some(
            count(
                db,
                format!("SELECT r.id FROM fhir_resources r WHERE {w}"),
                sql.args,
            )
            .await?,
        );
    }
    if q.count_only {
        return Ok(page);
    }
    let mut sql = Sql::new(pg);
    let mut w = where_sql(&mut sql, q);
    if let Some(k) = &q.after {
        let keyset = match q.sort {
            Sort::Id => format!("r.id > {}", sql.text(&k.id)),
            Sort::LastUpdated => {
                let (a, b, c) = (sql.int(k.lu), sql.int(k.lu), sql.text(&k.id));
                format!("(r.last_updated > {a} OR (r.last_updated = {b} AND r.id > {c}))")
            }
            Sort::LastUpdatedDesc => {
                let (a, b, c) = (sql.int(k.lu), sql.int(k.lu), sql.text(&k.id));
                format!("(r.last_updated < {a} OR (r.last_updated = {b} AND r.id < {c}))")
            }
        };
        w.push_str(&format!(" AND {keyset}"));
    }
    let order = match q.sort {
        Sort::Id => "r.id",
        Sort::LastUpdated => "r.last_updated, r.id",
        Sort::LastUpdatedDesc => "r.last_updated DESC, r.id DESC",
    };
    let limit = sql.int(q.count as i64 + 1);
    let rows = run(
        db,
        format!(
            "SELECT r.type, r.id, r.version, r.last_updated, r.doc FROM fhir_resources r \
             WHERE {w} ORDER BY {order} LIMIT {limit}"
        ),
        sql.args,
    )
    .await?;
    let mut matches: Vec<Version> = rows.into_iter().filter_map(version_of).collect();
    if matches.len() > q.count {
        matches.truncate(q.count);
        page.next = matches.last().map(|v| Key {
            lu: (v.last_updated.unix_timestamp_nanos() / 1_000_000) as i64,
            id: v.id.clone(),
        });
    }
    if !matches.is_empty() {
        let ids: Vec<String> = matches.iter().map(|v| v.id.clone()).collect();
        for inc in &q.includes {
            let mut sql = Sql::new(pg);
            let (t, p) = (sql.text(inc.source.as_str()), sql.text(inc.param));
            let list: Vec<String> = ids.iter().map(|i| sql.text(i)).collect();
            let tj = if pg {
                " AND r.tenant_id = x.tenant_id"
            } else {
                ""
            };
            let live = sql.live();
            let rows = run(
                db,
                format!(
                    "SELECT DISTINCT r.type, r.id, r.version, r.last_updated, r.doc FROM fhir_idx_ref x \
                     JOIN fhir_resources r ON r.type = x.target_type AND r.id = x.target_id{tj} \
                     WHERE x.type = {t} AND x.param = {p} AND x.id IN ({}) AND {live}",
                    list.join(", ")
                ),
                sql.args,
            )
            .await?;
            page.included
                .extend(rows.into_iter().filter_map(version_of));
        }
        for inc in &q.revincludes {
            let mut sql = Sql::new(pg);
            let (t, p, target) = (
                sql.text(inc.source.as_str()),
                sql.text(inc.param),
                sql.text(q.rtype.as_str()),
            );
            let list: Vec<String> = ids.iter().map(|i| sql.text(i)).collect();
            let tj = if pg {
                " AND r.tenant_id = x.tenant_id"
            } else {
                ""
            };
            let live = sql.live();
            let rows = run(
                db,
                format!(
                    "SELECT DISTINCT r.type, r.id, r.version, r.last_updated, r.doc FROM fhir_idx_ref x \
                     JOIN fhir_resources r ON r.type = x.type AND r.id = x.id{tj} \
                     WHERE x.type = {t} AND x.param = {p} AND x.target_type = {target} \
                     AND x.target_id IN ({}) AND {live}",
                    list.join(", ")
                ),
                sql.args,
            )
            .await?;
            page.included
                .extend(rows.into_iter().filter_map(version_of));
        }
        let mut seen: std::collections::HashSet<(ResourceType, String)> =
            matches.iter().map(|v| (v.rtype, v.id.clone())).collect();
        page.included
            .retain(|v| seen.insert((v.rtype, v.id.clone())));
    }
    page.matches = matches;
    Ok(page)
}

/// Ids of the live resources of `rtype` matching `params` (conditional create and
/// conditional references); at most `limit`.
pub async fn matching_ids(
    db: TenantDb<'_>,
    rtype: ResourceType,
    params: &[(String, String)],
    limit: usize,
) -> std::result::Result<Result<Vec<String>>, Vec<Issue>> {
    let (mut q, ignored) = parse(rtype, params, true)?;
    if !ignored.is_empty() || q.filters.is_empty() {
        return Err(vec![issue(
            "$",
            "a condition needs at least one known search parameter",
        )]);
    }
    q.count = limit;
    Ok(search(db, &q)
        .await
        .map(|p| p.matches.into_iter().map(|v| v.id).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn parses_tokens_dates_strings_and_result_parameters() {
        let obs = ResourceType::parse("Observation").unwrap();
        let (q, ignored) = parse(
            obs,
            &pairs("patient=abc&category=http://x|vital-signs,laboratory&date=ge2020-01&code=|x&_count=5&_sort=-_lastUpdated&_total=accurate&foo=1"),
            false,
        )
        .unwrap();
        assert_eq!(ignored, vec!["foo"]);
        assert_eq!(q.count, 5);
        assert_eq!(q.sort, Sort::LastUpdatedDesc);
        assert!(q.total);
        assert_eq!(q.filters.len(), 4);
        assert_eq!(
            q.filters[0].any_of,
            vec![Cond::Ref(Some("Patient".into()), "abc".into())]
        );
        assert_eq!(q.filters[1].any_of.len(), 2);
        assert!(matches!(
            q.filters[2].any_of[0],
            Cond::Date(Prefix::Ge, _, _)
        ));
        assert_eq!(
            q.filters[3].any_of[0],
            Cond::Token {
                system: Some(None),
                code: Some("x".into())
            }
        );
        assert!(
            parse(obs, &pairs("foo=1"), true).is_err(),
            "strict handling"
        );
        assert!(parse(obs, &pairs("date=yesterday"), false).is_err());
        assert!(parse(obs, &pairs("_include=Patient:name"), false).is_err());
        let pat = ResourceType::parse("Patient").unwrap();
        let (q, _) = parse(pat, &pairs("name:contains=silv&family:exact=Silva"), false).unwrap();
        assert_eq!(
            q.filters[0].any_of[0],
            Cond::Str(StrMode::Contains, "silv".into())
        );
        assert_eq!(
            q.filters[1].any_of[0],
            Cond::Str(StrMode::Exact, "Silva".into())
        );
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
    }
}

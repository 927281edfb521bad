//! SQL over the index tables: one id set per parameter (OR across its values as a
//! balanced tree, so depth grows with log n), the sets intersected, with bound arguments.

use super::*;

/// A SQL argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

pub(crate) struct Sql {
    pub(crate) pg: bool,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(pg: bool) -> Self {
        Self {
            pg,
            args: Vec::new(),
        }
    }

    pub(crate) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        if self.pg {
            format!("${}", self.args.len())
        } else {
            format!("?{}", self.args.len())
        }
    }

    pub(crate) fn text(&mut self, s: &str) -> String {
        self.arg(Arg::Text(s.to_owned()))
    }

    pub(crate) fn int(&mut self, i: i64) -> String {
        self.arg(Arg::Int(i))
    }

    pub(crate) fn live(&self) -> &'static str {
        if self.pg {
            "NOT r.deleted"
        } else {
            "r.deleted = 0"
        }
    }
}

pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub(crate) fn date_sql(
    sql: &mut Sql,
    lo_col: &str,
    hi_col: &str,
    p: Prefix,
    lo: i64,
    hi: i64,
) -> String {
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
pub(crate) fn row_cond(sql: &mut Sql, c: &Cond) -> String {
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
pub(crate) fn table_of(c: &Cond) -> Option<&'static str> {
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
pub(crate) fn where_sql(sql: &mut Sql, q: &Query) -> String {
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
                // A parameter covering others (`index::covers`) reads their rows too.
                let also = index::covers(q.rtype.as_str(), f.param);
                let p = if also.is_empty() {
                    format!("x.param = {}", sql.text(f.param))
                } else {
                    let mut ps = vec![sql.text(f.param)];
                    ps.extend(also.iter().map(|a| sql.text(a)));
                    format!("x.param IN ({})", ps.join(", "))
                };
                sets.push(format!(
                    "SELECT x.id FROM {table} x WHERE x.type = {t} AND {p} AND ({})",
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

/// `a OR b OR …` as a balanced tree, so the expression's depth grows with the logarithm
/// of the list, not the list (SQLite refuses trees deeper than 1,000).
pub(crate) fn or_balanced(parts: &[String]) -> String {
    match parts {
        [] => "1 = 0".to_owned(),
        [one] => one.clone(),
        _ => {
            let (a, b) = parts.split_at(parts.len() / 2);
            format!("({} OR {})", or_balanced(a), or_balanced(b))
        }
    }
}

//! Search: parameters parsed from the query, SQL over the index tables (one id set per
//! parameter, OR across its comma-separated values, the sets intersected), keyset paging,
//! `_total`, `_include` / `_revinclude`.
//!
//! Paging is by key, not offset: the default order is by id (tenant-minted UUIDv7, so by
//! creation, and ids never change), `_sort=_lastUpdated` / `-_lastUpdated` by
//! (last updated, id). A page's key is handed to the caller, which seals it into a cursor
//! bound to the tenant; resources written between pages never shift the next page.

mod cursor;
mod parse;
mod sql;

pub use cursor::{open_cursor, seal_cursor};
pub use parse::*;
use sql::*;

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
        TenantDb::Pg(p) => {
            use tokio_postgres::types::{ToSql, Type};
            // Typed literals: the context and the query in one message (one implicit
            // transaction).
            let params: Vec<(&(dyn ToSql + Sync), Type)> = args
                .iter()
                .map(|a| -> (&(dyn ToSql + Sync), Type) {
                    match a {
                        Arg::Text(t) => (t, Type::TEXT),
                        Arg::Int(i) => (i, Type::INT8),
                    }
                })
                .collect();
            use tenantplane_tenant_data::literal::TextRow;
            let rows = p.query_text_once(&sql, &params).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.text(0).unwrap_or_default(),
                        r.text(1).unwrap_or_default(),
                        r.int(2)?,
                        r.int(3)?,
                        r.text(4),
                    ))
                })
                .collect()
        }
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

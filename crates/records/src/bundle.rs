//! `batch` and `transaction` Bundles.
//!
//! A transaction is planned first — ids minted for every `POST`, `ifNoneExist` conditions
//! looked up (an existing match is used instead of creating), conditional references such
//! as `Practitioner?identifier=system|value` resolved (exactly one match, else 412), and
//! `urn:uuid:` references rewritten to `Type/id` — and then written in **one** database
//! transaction: any failure rolls back every entry. A batch runs its entries one by one in
//! order, each on its own, so a later entry can refer (conditionally) to an earlier one.
//!
//! References are rewritten in the resource's JSON text (the string value `"urn:uuid:…"`
//! becomes `"Patient/…"`), so the stored resource stays lossless; a reference that could not
//! be rewritten is an error, never a dangling `urn:uuid`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    DataError, RecordsError, Result, TenantDb,
    index::parse_reference,
    resource::{self, Issue, ResourceType},
    search,
    store::{self, Limits, Prepared, Version},
};

/// Most entries in one bundle.
pub const MAX_ENTRIES: usize = 5000;

#[derive(Debug, Deserialize)]
struct RawBundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, borrow)]
    entry: Vec<RawEntry<'a>>,
}

#[derive(Debug, Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
    request: Option<RawRequest>,
}

#[derive(Debug, Deserialize)]
struct RawRequest {
    method: Option<String>,
    url: Option<String>,
    #[serde(rename = "ifNoneExist")]
    if_none_exist: Option<String>,
    #[serde(rename = "ifMatch")]
    if_match: Option<String>,
}

/// Batch or transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Entries independent.
    Batch,
    /// All or nothing.
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

#[derive(Debug)]
struct Entry {
    full_url: Option<String>,
    resource: Option<String>,
    method: Method,
    rtype: ResourceType,
    id: Option<String>,
    if_none_exist: Option<String>,
    if_match: Option<u64>,
}

/// The outcome of one entry.
#[derive(Debug, Clone)]
pub struct EntryResult {
    /// HTTP status (e.g. `201 Created`).
    pub status: u16,
    /// `Type/id/_history/v` of what was written.
    pub location: Option<String>,
    /// The version written or read.
    pub version: Option<Version>,
    /// Whether the entry wrote (create, update, delete) rather than read or matched an
    /// existing resource (`ifNoneExist`).
    pub wrote: bool,
    /// An error: FHIR issue code and diagnostics.
    pub error: Option<(&'static str, String)>,
}

/// Why a whole bundle failed.
#[derive(Debug)]
pub enum BundleError {
    /// The bundle itself is malformed (400).
    Invalid(Vec<Issue>),
    /// Entry `index` failed: status, issue code, diagnostics (a transaction fails whole).
    Entry(usize, u16, &'static str, String),
    /// The store failed.
    Store(RecordsError),
}

impl BundleError {
    /// What a client is told of a failed entry (of a transaction, which wrote nothing).
    pub fn entry_detail(index: usize, message: &str) -> String {
        format!("entry {index}: {message}; nothing was written")
    }

    /// What a client is told of a malformed bundle: each issue as `location: diagnostics`.
    pub fn issues_detail(issues: &[Issue]) -> String {
        issues
            .iter()
            .map(|i| format!("{}: {}", i.location, i.diagnostics))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl From<RecordsError> for BundleError {
    fn from(e: RecordsError) -> Self {
        BundleError::Store(e)
    }
}

fn bad(loc: String, msg: impl Into<String>) -> Issue {
    Issue {
        location: loc,
        diagnostics: msg.into(),
    }
}

/// Parses a `batch` or `transaction` Bundle.
fn parse(body: &[u8]) -> std::result::Result<(Kind, Vec<Entry>), Vec<Issue>> {
    let raw: RawBundle<'_> = serde_json::from_slice(body).map_err(|e| {
        vec![bad(
            "$".into(),
            format!("not a Bundle: {}", resource::json_error(&e)),
        )]
    })?;
    if raw.resource_type.as_deref() != Some("Bundle") {
        return Err(vec![bad(
            "resourceType".into(),
            "POST to the base takes a Bundle",
        )]);
    }
    let kind = match raw.kind.as_deref() {
        Some("batch") => Kind::Batch,
        Some("transaction") => Kind::Transaction,
        _ => {
            return Err(vec![bad(
                "Bundle.type".into(),
                "only batch and transaction bundles are processed",
            )]);
        }
    };
    if raw.entry.len() > MAX_ENTRIES {
        return Err(vec![bad(
            "Bundle.entry".into(),
            format!("at most {MAX_ENTRIES} entries"),
        )]);
    }
    let mut issues = Vec::new();
    let mut out = Vec::new();
    for (i, e) in raw.entry.into_iter().enumerate() {
        let loc = |f: &str| format!("Bundle.entry[{i}].{f}");
        let Some(req) = e.request else {
            issues.push(bad(loc("request"), "every entry needs a request"));
            continue;
        };
        let method = match req.method.as_deref() {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("DELETE") => Method::Delete,
            _ => {
                issues.push(bad(loc("request.method"), "GET, POST, PUT or DELETE"));
                continue;
            }
        };
        let url = req.url.unwrap_or_default();
        if [
            Some(&url),
            req.if_none_exist.as_ref(),
            req.if_match.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|s| s.chars().any(resource::forbidden_control))
        {
            issues.push(bad(
                loc("request"),
                "control characters are not allowed in FHIR strings",
            ));
            continue;
        }
        let path = url.split('?').next().unwrap_or("");
        let mut parts = path.trim_matches('/').split('/');
        let rtype = parts.next().and_then(ResourceType::parse);
        let id = parts.next().map(str::to_owned);
        let Some(rtype) = rtype else {
            issues.push(bad(loc("request.url"), "must start with a resource type"));
            continue;
        };
        let needs_id = matches!(method, Method::Put | Method::Delete | Method::Get);
        if needs_id && !id.as_deref().is_some_and(resource::valid_id) {
            issues.push(bad(
                loc("request.url"),
                "must be Type/id (conditional updates and deletes are not supported)",
            ));
            continue;
        }
        if method == Method::Post && id.is_some() {
            issues.push(bad(loc("request.url"), "POST takes a type, not an id"));
            continue;
        }
        let resource = e.resource.map(|r| r.get().to_owned());
        if matches!(method, Method::Post | Method::Put) && resource.is_none() {
            issues.push(bad(loc("resource"), "POST and PUT need a resource"));
            continue;
        }
        let if_match = match req.if_match.as_deref() {
            None => None,
            Some(v) => {
                let inner = v.trim().strip_prefix("W/").unwrap_or(v.trim());
                match inner.trim_matches('"').parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        issues.push(bad(loc("request.ifMatch"), "an ETag such as W/\"3\""));
                        continue;
                    }
                }
            }
        };
        out.push(Entry {
            full_url: e.full_url,
            resource,
            method,
            rtype,
            id,
            if_none_exist: req.if_none_exist,
            if_match,
        });
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok((kind, out))
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `reference` string in `v`.
fn references(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "reference"
                    && let serde_json::Value::String(s) = x
                {
                    out.push(s.clone());
                } else {
                    references(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// Resolves one conditional reference `Type?params` to `Type/id`.
async fn resolve_conditional(
    db: TenantDb<'_>,
    r: &str,
) -> std::result::Result<Option<String>, (u16, &'static str, String)> {
    let Some((t, q)) = r.split_once('?') else {
        return Ok(None);
    };
    let Some(rt) = ResourceType::parse(t) else {
        return Ok(None);
    };
    let ids = match search::matching_ids(db, rt, &query_pairs(q), 2).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => return Err(store_failure(e)),
        Err(issues) => {
            return Err((
                400,
                "invalid",
                issues
                    .first()
                    .map(|i| i.diagnostics.clone())
                    .unwrap_or_default(),
            ));
        }
    };
    match ids.as_slice() {
        [one] => Ok(Some(format!("{rt}/{one}"))),
        [] => Err((
            412,
            "not-found",
            format!("the conditional reference {t}?… matches nothing"),
        )),
        _ => Err((
            412,
            "multiple-matches",
            format!("the conditional reference {t}?… matches more than one resource"),
        )),
    }
}

/// Rewrites the references of `json` with `map` (and conditional references looked up);
/// returns the rewritten text.
async fn rewrite(
    db: TenantDb<'_>,
    json: &str,
    map: &HashMap<String, String>,
    cache: &mut HashMap<String, String>,
) -> std::result::Result<String, (u16, &'static str, String)> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| (400, "structure", resource::json_error(&e)))?;
    let mut refs = Vec::new();
    references(&v, &mut refs);
    refs.sort();
    refs.dedup();
    let mut out = json.to_owned();
    for r in refs {
        let target = if let Some(t) = map.get(&r) {
            Some(t.clone())
        } else if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
            return Err((
                400,
                "not-found",
                format!("the reference {r} names no entry of this bundle"),
            ));
        } else if r.contains('?') && parse_reference(&r).is_none() {
            if let Some(t) = cache.get(&r) {
                Some(t.clone())
            } else {
                let t = resolve_conditional(db, &r).await?;
                if let Some(t) = &t {
                    cache.insert(r.clone(), t.clone());
                }
                t
            }
        } else {
            None
        };
        if let Some(t) = target {
            let from = serde_json::Value::from(r.as_str()).to_string();
            let to = serde_json::Value::from(t.as_str()).to_string();
            if !out.contains(&from) {
                return Err((
                    400,
                    "structure",
                    format!("the reference {r} is escaped in a way that cannot be rewritten"),
                ));
            }
            out = out.replace(&from, &to);
        }
    }
    Ok(out)
}

fn issue_text(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {}", i.location, i.diagnostics))
        .collect::<Vec<_>>()
        .join("; ")
}

enum Plan {
    Write(Prepared, u16),
    Read(Version),
}

async fn plan_entry(
    db: TenantDb<'_>,
    e: &Entry,
    id_for_post: Option<String>,
    map: &HashMap<String, String>,
    cache: &mut HashMap<String, String>,
    limits: Limits,
) -> std::result::Result<Plan, (u16, &'static str, String)> {
    match e.method {
        Method::Get => {
            let id = e.id.clone().unwrap_or_default();
            match store::read(db, e.rtype, &id).await {
                Ok(Some(v)) if !v.deleted => Ok(Plan::Read(v)),
                Ok(Some(_)) => Err((410, "deleted", "the resource was deleted".into())),
                Ok(None) => Err((404, "not-found", "no such resource".into())),
                Err(x) => Err(store_failure(x)),
            }
        }
        Method::Delete => Ok(Plan::Write(
            Prepared::delete(e.rtype, e.id.clone().unwrap_or_default()),
            204,
        )),
        Method::Post | Method::Put => {
            let json = rewrite(db, e.resource.as_deref().unwrap_or("{}"), map, cache).await?;
            let incoming = resource::parse(json.as_bytes(), Some(e.rtype))
                .map_err(|i| (400, "structure", issue_text(&i)))?;
            crate::validate::check(e.rtype, &incoming.value)
                .map_err(|i| (400, "invalid", issue_text(&i)))?;
            if e.method == Method::Post {
                Ok(Plan::Write(
                    Prepared::create(id_for_post.unwrap_or_default(), incoming, limits),
                    201,
                ))
            } else {
                let id = e.id.clone().unwrap_or_default();
                if incoming.id.as_deref() != Some(id.as_str()) {
                    return Err((
                        400,
                        "structure",
                        "the resource id differs from the URL".into(),
                    ));
                }
                Ok(Plan::Write(
                    Prepared::update(id, incoming, e.if_match, limits),
                    200,
                ))
            }
        }
    }
}

/// Looks up the `ifNoneExist` of a POST entry: `Some(existing)` if one resource matches.
async fn existing(
    db: TenantDb<'_>,
    e: &Entry,
) -> std::result::Result<Option<Version>, (u16, &'static str, String)> {
    let Some(cond) = &e.if_none_exist else {
        return Ok(None);
    };
    let ids = match search::matching_ids(db, e.rtype, &query_pairs(cond), 2).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(x)) => return Err(store_failure(x)),
        Err(i) => return Err((400, "invalid", issue_text(&i))),
    };
    match ids.as_slice() {
        [] => Ok(None),
        [one] => match store::read(db, e.rtype, one).await {
            Ok(v) => Ok(v),
            Err(x) => Err(store_failure(x)),
        },
        _ => Err((
            412,
            "multiple-matches",
            "ifNoneExist matches more than one resource".into(),
        )),
    }
}

fn written(v: Option<Version>, status: u16, wrote: bool) -> EntryResult {
    EntryResult {
        status,
        wrote,
        location: v
            .as_ref()
            .map(|v| format!("{}/{}/_history/{}", v.rtype, v.id, v.version)),
        version: v,
        error: None,
    }
}

fn failed(status: u16, code: &'static str, msg: String) -> EntryResult {
    EntryResult {
        status,
        location: None,
        version: None,
        wrote: false,
        error: Some((code, msg)),
    }
}

/// A store failure inside an entry: logged (SQLSTATE and message only, never row values),
/// answered without the store's own text — `503 transient` when the store is out of reach
/// (retry), else `500 exception`.
fn store_failure(e: RecordsError) -> (u16, &'static str, String) {
    match e {
        RecordsError::Data(DataError::Busy | DataError::Unavailable(_)) => {
            tracing::warn!(error = %e, "tenant store unavailable during a bundle entry");
            (
                503,
                "transient",
                "the tenant's store is unavailable; retry shortly".into(),
            )
        }
        other => {
            tracing::error!(error = %other, "store failed during a bundle entry");
            (
                500,
                "exception",
                "the store failed; the error has been logged".into(),
            )
        }
    }
}

fn store_error(e: RecordsError) -> (u16, &'static str, String) {
    match e {
        RecordsError::NotFound => (404, "not-found", "no such resource".into()),
        RecordsError::VersionConflict { current } => (
            412,
            "conflict",
            format!("ifMatch does not match the current version ({current})"),
        ),
        RecordsError::QuotaExceeded {
            quota,
            limit,
            current,
        } => (
            403,
            "too-costly",
            format!("quota {quota} exceeded: limit {limit}, current {current}"),
        ),
        other => store_failure(other),
    }
}

/// Processes a Bundle posted to the base. Returns its kind and one result per entry.
pub async fn process(
    db: TenantDb<'_>,
    body: &[u8],
    limits: Limits,
    who: &store::Actor,
) -> std::result::Result<(Kind, Vec<EntryResult>), BundleError> {
    let (kind, entries) = parse(body).map_err(BundleError::Invalid)?;
    let mut cache = HashMap::new();
    match kind {
        Kind::Transaction => {
            // Ids and conditional creates first, so references can name them.
            let mut map = HashMap::new();
            let mut post_ids: Vec<Option<String>> = Vec::with_capacity(entries.len());
            let mut existing_of: Vec<Option<Version>> = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                let mut id = None;
                let mut ex = None;
                if e.method == Method::Post {
                    ex = existing(db, e)
                        .await
                        .map_err(|(s, c, m)| BundleError::Entry(i, s, c, m))?;
                    let chosen = match &ex {
                        Some(v) => v.id.clone(),
                        None => db.mint_id().to_string(),
                    };
                    if let Some(fu) = &e.full_url {
                        map.insert(fu.clone(), format!("{}/{chosen}", e.rtype));
                    }
                    id = Some(chosen);
                } else if let (Some(fu), Some(eid)) = (&e.full_url, &e.id) {
                    map.insert(fu.clone(), format!("{}/{eid}", e.rtype));
                }
                post_ids.push(id);
                existing_of.push(ex);
            }
            let mut writes = Vec::new();
            let mut slots: Vec<Result<usize, EntryResult>> = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                if let Some(v) = existing_of[i].take() {
                    slots.push(Err(written(Some(v), 200, false)));
                    continue;
                }
                match plan_entry(db, e, post_ids[i].clone(), &map, &mut cache, limits)
                    .await
                    .map_err(|(s, c, m)| BundleError::Entry(i, s, c, m))?
                {
                    Plan::Write(p, status) => {
                        writes.push((p, status, i));
                        slots.push(Ok(writes.len() - 1));
                    }
                    Plan::Read(v) => slots.push(Err(written(Some(v), 200, false))),
                }
            }
            let statuses: Vec<(u16, usize)> = writes.iter().map(|(_, s, i)| (*s, *i)).collect();
            let outcomes = store::apply(
                db,
                writes.into_iter().map(|(p, _, _)| p).collect(),
                true,
                who,
            )
            .await?;
            let mut results_of_writes = Vec::with_capacity(outcomes.len());
            for (k, o) in outcomes.into_iter().enumerate() {
                let (status, entry) = statuses[k];
                match o {
                    Some(Ok(v)) => results_of_writes.push(written(v, status, true)),
                    Some(Err(e)) => {
                        let (s, c, m) = store_error(e);
                        return Err(BundleError::Entry(entry, s, c, m));
                    }
                    None => results_of_writes.push(written(None, status, true)),
                }
            }
            let results = slots
                .into_iter()
                .map(|s| match s {
                    Ok(k) => results_of_writes[k].clone(),
                    Err(r) => r,
                })
                .collect();
            Ok((kind, results))
        }
        Kind::Batch => {
            let mut map = HashMap::new();
            let mut results = Vec::with_capacity(entries.len());
            for e in &entries {
                let r = async {
                    let mut id = None;
                    if e.method == Method::Post {
                        if let Some(v) = existing(db, e).await? {
                            if let Some(fu) = &e.full_url {
                                map.insert(fu.clone(), format!("{}/{}", e.rtype, v.id));
                            }
                            return Ok(written(Some(v), 200, false));
                        }
                        let chosen = db.mint_id().to_string();
                        if let Some(fu) = &e.full_url {
                            map.insert(fu.clone(), format!("{}/{chosen}", e.rtype));
                        }
                        id = Some(chosen);
                    }
                    match plan_entry(db, e, id, &map, &mut cache, limits).await? {
                        Plan::Write(p, status) => {
                            match store::apply(db, vec![p], false, who)
                                .await
                                .map_err(store_error)?
                                .pop()
                                .flatten()
                            {
                                Some(Ok(v)) => Ok(written(v, status, true)),
                                Some(Err(x)) => Err(store_error(x)),
                                None => Ok(written(None, status, true)),
                            }
                        }
                        Plan::Read(v) => Ok(written(Some(v), 200, false)),
                    }
                }
                .await;
                results.push(match r {
                    Ok(x) => x,
                    Err((s, c, m)) => failed(s, c, m),
                });
            }
            Ok((kind, results))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_refuses_malformed_bundles() {
        let ok = br#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
            {"resource":{"resourceType":"Patient","id":"x"},"request":{"method":"PUT","url":"Patient/x","ifMatch":"W/\"2\""}},
            {"request":{"method":"DELETE","url":"Observation/y"}}]}"#;
        let (k, e) = parse(ok).unwrap();
        assert_eq!(k, Kind::Transaction);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].if_match, Some(2));
        for (body, loc) in [
            (&br#"{"resourceType":"Patient"}"#[..], "resourceType"),
            (br#"{"resourceType":"Bundle","type":"collection"}"#, "Bundle.type"),
            (br#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{}}]}"#, "Bundle.entry[0].request"),
            (br#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PATCH","url":"Patient/1"}}]}"#, "Bundle.entry[0].request.method"),
            (br#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PUT","url":"Patient?x=1"},"resource":{}}]}"#, "Bundle.entry[0].request.url"),
            (br#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Patient"}}]}"#, "Bundle.entry[0].resource"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e[0].location, loc, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_pairs("identifier=https%3A%2F%2Fx%7Cabc&name=a+b"),
            vec![
                ("identifier".to_owned(), "https://x|abc".to_owned()),
                ("name".to_owned(), "a b".to_owned())
            ]
        );
        assert_eq!(pct_decode("100%"), "100%");
    }
}

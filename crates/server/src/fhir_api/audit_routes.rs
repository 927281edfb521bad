//! The tenant's audit log as FHIR R4 `AuditEvent` resources: `GET /fhir/AuditEvent` (search
//! by date, agent, entity, action, outcome and type, newest first, tenant-bound cursors) and
//! `GET /fhir/AuditEvent/{id}`. Readable with `audit:read` (the auditor role; a clinician
//! or nurse is refused) and writable by nobody: every other method is 405. Each search of
//! the log is itself recorded in it.

use axum::extract::RawQuery;
use tenantplane_audit::{Activity, Category, Entry};
use tenantplane_core::cursor;
use tenantplane_tenant_data::audit_log::{self, AuditQuery, Stored};
use time::format_description::well_known::Rfc3339;

use super::*;

const CURSOR_KIND: &str = "audit-events";
const DEFAULT_COUNT: u32 = 50;
const MAX_COUNT: u32 = 500;

fn bad(msg: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, "invalid", msg)
}

/// A `date` value's bounds in ms: a day (`2026-12-06`) or an instant (RFC 3339).
fn date_bounds(v: &str) -> Option<(i64, i64)> {
    if v.len() == 10 {
        let mut it = v.split('-');
        let y: i32 = it.next()?.parse().ok()?;
        let m: u8 = it.next()?.parse().ok()?;
        let d: u8 = it.next()?.parse().ok()?;
        let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
        let lo = date.midnight().assume_utc().unix_timestamp() * 1_000;
        return Some((lo, lo + 86_400_000));
    }
    let t = OffsetDateTime::parse(v, &Rfc3339).ok()?;
    let lo = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    Some((lo, lo + 1))
}

/// The query of a search's parameters (fail closed: an unknown or malformed parameter is
/// refused, never ignored).
fn parse_query(
    tenant: tenantplane_core::TenantId,
    params: &[(String, String)],
) -> FhirResult<AuditQuery> {
    let mut q = AuditQuery {
        limit: DEFAULT_COUNT,
        ..Default::default()
    };
    let narrow = |cur: Option<i64>, v: i64, lower: bool| match cur {
        Some(c) if lower => Some(c.max(v)),
        Some(c) => Some(c.min(v)),
        None => Some(v),
    };
    for (k, v) in params {
        match k.as_str() {
            "date" => {
                let (prefix, rest) = match v.get(..2) {
                    Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
                    _ => ("eq", v.as_str()),
                };
                let (lo, hi) = date_bounds(rest).ok_or_else(|| {
                    bad("date must be YYYY-MM-DD or an RFC 3339 instant, with ge/gt/le/lt/eq")
                })?;
                match prefix {
                    "ge" => q.since_ms = narrow(q.since_ms, lo, true),
                    "gt" => q.since_ms = narrow(q.since_ms, hi, true),
                    "le" => q.until_ms = narrow(q.until_ms, hi, false),
                    "lt" => q.until_ms = narrow(q.until_ms, lo, false),
                    _ => {
                        q.since_ms = narrow(q.since_ms, lo, true);
                        q.until_ms = narrow(q.until_ms, hi, false);
                    }
                }
            }
            "agent" => {
                // A user's id alone, or the stored form (`user/…`, `operator/…`).
                let a = if v.contains('/') {
                    v.clone()
                } else {
                    format!("user/{v}")
                };
                q.agent = Some(a);
            }
            "entity" => {
                if !v.contains('/') || v.len() > 200 {
                    return Err(bad("entity must be a reference such as Patient/123"));
                }
                q.entity = Some(v.clone());
            }
            "action" => {
                if !matches!(v.as_str(), "C" | "R" | "U" | "D" | "E") {
                    return Err(bad("action must be one of C, R, U, D, E"));
                }
                q.code = Some(v.clone());
            }
            "outcome" => {
                q.outcome = Some(match v.as_str() {
                    "0" => 0,
                    "4" => 4,
                    "8" => 8,
                    "12" => 12,
                    _ => return Err(bad("outcome must be one of 0, 4, 8, 12")),
                });
            }
            "type" => {
                q.category = Some(Category::parse(v).ok_or_else(|| {
                    bad("type must be one of clinical, security, login, admin, operator")
                })?);
            }
            "_count" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| bad(format!("_count must be between 1 and {MAX_COUNT}")))?;
            }
            "_cursor" => {
                q.before_id = Some(
                    cursor::open::<i64>(cursor::Scope::Tenant(tenant), CURSOR_KIND, v)
                        .ok_or_else(|| {
                            bad("the _cursor is not valid here (expired, altered, or from another search)")
                        })?,
                );
            }
            other => {
                return Err(bad(format!(
                    "unknown search parameter '{}' for AuditEvent (date, agent, entity, action, outcome, type, _count)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(q)
}

fn type_coding(c: Category) -> serde_json::Value {
    let (system, code, display) = match c {
        Category::Clinical => (
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            "RESTful Operation",
        ),
        Category::Security => (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110113",
            "Security Alert",
        ),
        Category::Login => (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110114",
            "User Authentication",
        ),
        Category::Admin => (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110137",
            "User Security Attributes Changed",
        ),
        Category::Operator => (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110100",
            "Application Activity",
        ),
    };
    json!({"system": system, "code": code, "display": display})
}

/// One stored entry as an `AuditEvent`.
fn resource(s: &Stored) -> serde_json::Value {
    let e = &s.entry;
    let recorded = e.recorded().format(&Rfc3339).unwrap_or_default();
    let subtype_system = if e.category == Category::Clinical {
        "http://hl7.org/fhir/restful-interaction"
    } else {
        "urn:tenantplane:audit-action"
    };
    let subtype = match (e.category, e.action.as_str()) {
        (Category::Clinical, "history") => "history-instance",
        (Category::Clinical, "search") => "search-type",
        (_, a) => a,
    };
    let mut agent = json!({
        "who": {"identifier": {"system": "urn:tenantplane:agent", "value": e.agent}},
        "requestor": true,
    });
    if let Some(p) = &e.peer {
        agent["network"] = json!({"address": p, "type": if p.contains(':') { "3" } else { "2" }});
    }
    let mut entity = Vec::new();
    if let Some(w) = &e.entity {
        let mut ent = json!({"what": {"reference": w}});
        if let Some(d) = &e.detail {
            ent["detail"] = json!([{"type": "detail", "valueString": d}]);
        }
        entity.push(ent);
    } else if let Some(d) = &e.detail {
        entity.push(json!({"detail": [{"type": "detail", "valueString": d}]}));
    }
    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": s.id.to_string(),
        "type": type_coding(e.category),
        "subtype": [{"system": subtype_system, "code": subtype}],
        "action": e.code,
        "recorded": recorded,
        "outcome": e.outcome.to_string(),
        "agent": [agent],
        "source": {
            "observer": {"display": "tenantplane"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                      "code": "4", "display": "Application Server"}],
        },
    });
    if !entity.is_empty() {
        r["entity"] = serde_json::Value::Array(entity);
    }
    let mut ext = Vec::new();
    if let Some(rid) = &e.request_id {
        ext.push(json!({"url": "urn:tenantplane:request-id", "valueString": rid}));
    }
    if let Some(seq) = s.seq {
        ext.push(json!({"url": "urn:tenantplane:audit-chain-seq", "valueInteger": seq}));
    }
    if !ext.is_empty() {
        r["extension"] = serde_json::Value::Array(ext);
    }
    r
}

/// Records that `u` read the audit log (the log's readers are in the log too).
fn record_read(s: &TenantSide, u: &UserCtx, what: &str) {
    let entry = Entry::now(
        Category::Admin,
        "audit-read",
        "R",
        format!("user/{}", u.claims.sub),
    )
    .entity(what.to_owned())
    .origin(u.peer.map(|p| p.to_string()), u.request_id.clone());
    s.audit.activity(Activity {
        tenant_id: u.tenant.tenant().id,
        entry,
        in_store: false,
    });
}

/// `GET /fhir/AuditEvent`.
pub async fn audit_search(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    RawQuery(raw): RawQuery,
) -> FhirResult<Response> {
    require(&u, Permission::AuditRead)?;
    let params = parse_form(raw.as_deref().unwrap_or(""), false)?;
    if params.len() > 50 || params.iter().any(|(k, v)| k.len() > 64 || v.len() > 512) {
        return Err(bad("at most 50 parameters of 512 bytes each"));
    }
    let tenant = u.tenant.tenant().id;
    let mut q = parse_query(tenant, &params)?;
    let want = q.limit;
    q.limit = want + 1;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let mut rows = audit_log::search(db, q)
        .await
        .map_err(|e| FhirError::from(tenantplane_records::RecordsError::from(e)))?;
    let more = rows.len() > want as usize;
    rows.truncate(want as usize);
    record_read(&s, &u, "AuditEvent");
    let base = u.tenant.url("/fhir");
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "_cursor")
        .cloned()
        .collect();
    let mut link = vec![
        json!({"relation": "self", "url": format!("{base}/AuditEvent?{}", query_string(&kept))}),
    ];
    if more && let Some(last) = rows.last() {
        let mut next = kept.clone();
        next.push((
            "_cursor".into(),
            cursor::seal(cursor::Scope::Tenant(tenant), CURSOR_KIND, &last.id),
        ));
        link.push(json!({"relation": "next", "url": format!("{base}/AuditEvent?{}", query_string(&next))}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": link,
        "entry": rows.iter().map(|r| json!({
            "fullUrl": format!("{base}/AuditEvent/{}", r.id),
            "resource": resource(r),
            "search": {"mode": "match"},
        })).collect::<Vec<_>>(),
    });
    Ok(fhir_body(StatusCode::OK, bundle.to_string()))
}

/// `GET /fhir/AuditEvent/{id}`.
pub async fn audit_read(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    require(&u, Permission::AuditRead)?;
    let not_found = || {
        FhirError::not_found(&format!(
            "AuditEvent/{}",
            id.chars().take(64).collect::<String>()
        ))
    };
    let n: i64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(not_found)?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let row = audit_log::search(
        db,
        AuditQuery {
            id: Some(n),
            limit: 1,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| FhirError::from(tenantplane_records::RecordsError::from(e)))?
    .pop()
    .ok_or_else(not_found)?;
    record_read(&s, &u, &format!("AuditEvent/{n}"));
    Ok(fhir_body(StatusCode::OK, resource(&row).to_string()))
}

/// Any write to the audit log: nobody may.
pub async fn audit_write(FhirTenant(_ctx): FhirTenant) -> FhirError {
    FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        "the audit log is written by the server only",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_days_or_instants() {
        let (lo, hi) = date_bounds("2026-12-06").unwrap_or_default();
        assert_eq!(hi - lo, 86_400_000);
        let (lo, hi) = date_bounds("2026-12-06T10:00:00Z").unwrap_or_default();
        assert_eq!(hi - lo, 1);
        assert!(date_bounds("2026-13-06").is_none());
        assert!(date_bounds("yesterday").is_none());
    }

    #[test]
    fn searches_read_strictly() {
        let t = tenantplane_core::TenantId::new();
        let p = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let q = parse_query(t, &p("date", "ge2026-12-06")).unwrap_or_default();
        assert!(q.since_ms.is_some() && q.until_ms.is_none());
        assert_eq!(
            parse_query(t, &p("agent", "abc"))
                .unwrap_or_default()
                .agent
                .as_deref(),
            Some("user/abc")
        );
        for (k, v) in [
            ("action", "X"),
            ("outcome", "3"),
            ("type", "x"),
            ("_count", "0"),
            ("entity", "nope"),
            ("date", "soon"),
            ("_cursor", "forged"),
            ("name", "ana"),
        ] {
            assert!(parse_query(t, &p(k, v)).is_err(), "{k}={v}");
        }
    }
}

//! The FHIR R4 API of a hospital tenant, on its host under `/fhir` (and `/t/{slug}/fhir`).
//!
//! Interactions: `metadata`, create, read, vread, update (`If-Match`), delete, instance
//! history. Bodies are `application/fhir+json` (or `application/json`); every answer is
//! `application/fhir+json`, errors are `OperationOutcome` with the FHIR status (400, 401,
//! 403, 404, 405, 409, 410, 412, 415, 422, 429, 503). Reads need `records:read`, writes
//! `records:write`; every access to clinical data is an audit event (who, what, when, from
//! where — never the data). The module is on for hospital tenants and can be switched per
//! tenant by an operator (setting `records`); where it is off, `/fhir` answers 404.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequestParts, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tenantplane_core::{Permission, Tenant};
use tenantplane_records::{
    RecordsError,
    resource::{self, ResourceType},
    response_bundle, search,
    store::{self, Limits, Version},
};
use time::OffsetDateTime;

use crate::{context::UserCtx, gate::TenantCtx, problem::ApiError, state::TenantSide};
use tenantplane_audit::{ClinicalAccess, ClinicalAction};

mod audit_routes;
mod bundle_routes;
mod errors;
mod search_routes;

pub use audit_routes::{audit_read, audit_search, audit_write};
pub use bundle_routes::*;
pub use errors::*;
pub use search_routes::*;

pub use tenantplane_control::tenant_ops::records_enabled;

/// The tenant, with records switched on.
pub struct FhirTenant(pub TenantCtx);

impl<S: Send + Sync> FromRequestParts<S> for FhirTenant {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> FhirResult<Self> {
        let ctx = TenantCtx::from_request_parts(parts, s).await?;
        if !records_enabled(ctx.tenant()) {
            return Err(FhirError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "this tenant has no FHIR endpoint",
            ));
        }
        Ok(Self(ctx))
    }
}

/// An authenticated user of a tenant with records on.
pub struct FhirUser(pub UserCtx);

impl<S: Send + Sync> FromRequestParts<S> for FhirUser
where
    TenantSide: FromRef<S>,
{
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> FhirResult<Self> {
        FhirTenant::from_request_parts(parts, s).await?;
        let u = UserCtx::from_request_parts(parts, s).await?;
        Ok(Self(u))
    }
}

fn require(u: &UserCtx, p: Permission) -> FhirResult<()> {
    u.require(p).map_err(FhirError::from)
}

fn rtype(name: &str) -> FhirResult<ResourceType> {
    ResourceType::parse(name).ok_or_else(|| {
        FhirError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!(
                "'{}' is not a resource type of this server",
                name.chars().take(64).collect::<String>()
            ),
        )
    })
}

fn check_id(id: &str) -> FhirResult<()> {
    if resource::valid_id(id) {
        Ok(())
    } else {
        Err(FhirError::not_found("the resource"))
    }
}

/// Not found here: the same answer whether or not another tenant minted the id (recorded
/// as a cross-tenant attempt when it did).
fn not_here(u: &UserCtx, s: &TenantSide, id: &str) -> FhirError {
    if let Ok(uuid) = id.parse::<uuid::Uuid>() {
        let _ = u.not_found(s, &uuid, "resource");
    }
    FhirError::not_found("the resource")
}

fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn version_headers(r: &mut Response, v: &Version, base: &str, location: bool) {
    let h = r.headers_mut();
    if let Ok(x) = HeaderValue::from_str(&response_bundle::weak_etag(v.version)) {
        h.insert(header::ETAG, x);
    }
    if let Ok(x) = HeaderValue::from_str(&http_date(v.last_updated)) {
        h.insert(header::LAST_MODIFIED, x);
    }
    if location
        && let Ok(x) = HeaderValue::from_str(&format!(
            "{base}/{}/{}/_history/{}",
            v.rtype, v.id, v.version
        ))
    {
        h.insert(header::LOCATION, x);
    }
}

fn prefer_minimal(h: &HeaderMap) -> bool {
    h.get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
}

fn check_content_type(h: &HeaderMap) -> FhirResult<()> {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/fhir+json" || mime == "application/json" {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send application/fhir+json",
        ))
    }
}

fn parse_if_match(h: &HeaderMap) -> FhirResult<Option<u64>> {
    use crate::extract::{IfMatchHeader, if_match};
    match if_match(h) {
        IfMatchHeader::Absent => Ok(None),
        IfMatchHeader::Strong(n) | IfMatchHeader::Weak(n) => Ok(Some(n)),
        IfMatchHeader::Any | IfMatchHeader::Other => Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "If-Match must be an ETag such as W/\"3\"",
        )),
    }
}

fn limits(s: &TenantSide, t: &Tenant) -> Limits {
    Limits::of(s.plans.get(&t.plan))
}

/// One of the tenant's slots for expensive requests (its plan's `max_concurrent_heavy`),
/// held until the response is built; past the wait, 429 with `Retry-After`.
pub(crate) async fn heavy_slot(
    s: &TenantSide,
    t: &Tenant,
) -> FhirResult<tokio::sync::OwnedSemaphorePermit> {
    let limit = s.plans.get(&t.plan).map_or(1, |q| q.max_concurrent_heavy);
    s.heavy.enter(t.id, limit).await.map_err(FhirError::from)
}

fn audit(
    s: &TenantSide,
    u: &UserCtx,
    action: ClinicalAction,
    rtype: ResourceType,
    id: &str,
    status: StatusCode,
) {
    s.audit.access(access(u, action, rtype, id, status));
}

fn access(
    u: &UserCtx,
    action: ClinicalAction,
    rtype: ResourceType,
    id: &str,
    status: StatusCode,
) -> ClinicalAccess {
    ClinicalAccess {
        at: OffsetDateTime::now_utc(),
        tenant_id: u.tenant.tenant().id,
        user_id: Some(u.claims.sub),
        operator: None,
        action,
        resource_type: rtype.as_str(),
        resource_id: id.chars().take(64).collect(),
        status: status.as_u16(),
        peer: u.peer,
        request_id: u.request_id.clone(),
        // A write that succeeded committed its entry with it (`store::Actor`).
        in_store: status.is_success()
            && matches!(
                action,
                ClinicalAction::Create | ClinicalAction::Update | ClinicalAction::Delete
            ),
    }
}

/// The user as the author of a write (its audit entry commits with it).
pub(crate) fn actor(u: &UserCtx) -> store::Actor {
    store::Actor {
        agent: format!("user/{}", u.claims.sub),
        peer: u.peer.map(|p| p.to_string()),
        request_id: u.request_id.clone(),
    }
}

/// A refused write, in the audit log with its status (nothing was written).
fn audit_refused(
    s: &TenantSide,
    u: &UserCtx,
    action: ClinicalAction,
    rtype: ResourceType,
    id: &str,
    e: FhirError,
) -> FhirError {
    audit(s, u, action, rtype, id, e.status);
    e
}

fn resource_response(
    status: StatusCode,
    v: &Version,
    base: &str,
    minimal: bool,
    location: bool,
) -> Response {
    let mut r = if minimal {
        let mut r = status.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r
    } else {
        fhir_body(status, v.doc.clone().unwrap_or_default())
    };
    version_headers(&mut r, v, base, location);
    r
}

/// `GET /fhir/metadata`: what this server supports (no token needed).
pub async fn metadata(State(_s): State<TenantSide>, FhirTenant(ctx): FhirTenant) -> Response {
    let interactions = json!([
        {"code": "read"}, {"code": "vread"}, {"code": "update"},
        {"code": "delete"}, {"code": "history-instance"}, {"code": "create"},
        {"code": "search-type"}
    ]);
    let kind = |k: tenantplane_records::index::Kind| match k {
        tenantplane_records::index::Kind::Token => "token",
        tenantplane_records::index::Kind::String => "string",
        tenantplane_records::index::Kind::Date => "date",
        tenantplane_records::index::Kind::Reference => "reference",
    };
    let resources: Vec<serde_json::Value> = resource::R4_TYPES
        .iter()
        .filter(|t| ResourceType::parse(t).is_some())
        .map(|t| {
            let mut params = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            params.extend(
                tenantplane_records::index::params_of(t)
                    .map(|p| json!({"name": p.name, "type": kind(p.kind)})),
            );
            let includes: Vec<String> = tenantplane_records::index::params_of(t)
                .filter(|p| p.kind == tenantplane_records::index::Kind::Reference)
                .map(|p| format!("{t}:{}", p.name))
                .collect();
            json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": true,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchInclude": includes,
                "searchRevInclude": includes,
                "searchParam": params,
            })
        })
        .collect();
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": resource::instant(OffsetDateTime::now_utc()),
        "publisher": "Tenantplane",
        "kind": "instance",
        "software": {"name": "Tenantplane", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": format!("FHIR endpoint of {}", ctx.tenant().display_name),
            "url": ctx.url("/fhir"),
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Bearer access token of a tenant user (POST /auth/login or single sign-on); records:read to read, records:write to write.",
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }],
    });
    fhir_body(StatusCode::OK, body.to_string())
}

/// `POST /fhir/{type}`: create.
pub async fn create(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    let rt = rtype(&t)?;
    check_content_type(&headers)?;
    let incoming = resource::parse(&body, Some(rt)).map_err(FhirError::invalid)?;
    let tenant = u.tenant.tenant();
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let out = store::create(db, incoming, limits(&s, tenant), &actor(&u)).await;
    match out {
        Ok(v) => {
            audit(
                &s,
                &u,
                ClinicalAction::Create,
                rt,
                &v.id,
                StatusCode::CREATED,
            );
            Ok(resource_response(
                StatusCode::CREATED,
                &v,
                &u.tenant.url("/fhir"),
                prefer_minimal(&headers),
                true,
            ))
        }
        Err(e) => Err(audit_refused(
            &s,
            &u,
            ClinicalAction::Create,
            rt,
            "",
            e.into(),
        )),
    }
}

/// `GET /fhir/{type}/{id}`: read (410 once deleted).
pub async fn read(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsRead)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    match store::read(db, rt, &id).await? {
        None => Err(not_here(&u, &s, &id)),
        Some(v) if v.deleted => {
            audit(&s, &u, ClinicalAction::Read, rt, &id, StatusCode::GONE);
            let mut e = FhirError::new(StatusCode::GONE, "deleted", "the resource was deleted");
            if let Ok(x) = HeaderValue::from_str(&response_bundle::weak_etag(v.version)) {
                e.headers.push((header::ETAG, x));
            }
            Err(e)
        }
        Some(v) => {
            audit(&s, &u, ClinicalAction::Read, rt, &id, StatusCode::OK);
            Ok(resource_response(
                StatusCode::OK,
                &v,
                &u.tenant.url("/fhir"),
                false,
                false,
            ))
        }
    }
}

/// `GET /fhir/{type}/{id}/_history/{vid}`: one version.
pub async fn vread(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path((t, id, vid)): Path<(String, String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsRead)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let Ok(n) = vid.parse::<u64>() else {
        return Err(FhirError::not_found("the version"));
    };
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    match store::vread(db, rt, &id, n).await? {
        None => {
            if store::read(db, rt, &id).await?.is_none() {
                return Err(not_here(&u, &s, &id));
            }
            Err(FhirError::not_found("the version"))
        }
        Some(v) if v.deleted => {
            audit(&s, &u, ClinicalAction::Vread, rt, &id, StatusCode::GONE);
            Err(FhirError::new(
                StatusCode::GONE,
                "deleted",
                "this version is a deletion",
            ))
        }
        Some(v) => {
            audit(&s, &u, ClinicalAction::Vread, rt, &id, StatusCode::OK);
            Ok(resource_response(
                StatusCode::OK,
                &v,
                &u.tenant.url("/fhir"),
                false,
                false,
            ))
        }
    }
}

/// `PUT /fhir/{type}/{id}`: a new version (`If-Match` → 412 on mismatch). Ids are
/// server-assigned: updating an unknown id is refused (405).
pub async fn update(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    let rt = rtype(&t)?;
    check_content_type(&headers)?;
    let if_match = parse_if_match(&headers)?;
    let incoming = resource::parse(&body, Some(rt)).map_err(FhirError::invalid)?;
    match incoming.id.as_deref() {
        Some(b) if b == id => {}
        Some(_) => {
            return Err(FhirError::invalid(vec![resource::Issue {
                location: format!("{rt}.id"),
                diagnostics: "the id in the body differs from the id in the URL".into(),
            }]));
        }
        None => {
            return Err(FhirError::invalid(vec![resource::Issue {
                location: format!("{rt}.id"),
                diagnostics: "an update needs the resource's id in the body".into(),
            }]));
        }
    }
    let tenant = u.tenant.tenant();
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    match store::update(db, &id, incoming, if_match, limits(&s, tenant), &actor(&u)).await {
        Ok(v) => {
            audit(&s, &u, ClinicalAction::Update, rt, &id, StatusCode::OK);
            Ok(resource_response(
                StatusCode::OK,
                &v,
                &u.tenant.url("/fhir"),
                prefer_minimal(&headers),
                true,
            ))
        }
        Err(RecordsError::NotFound) => {
            let _ = not_here(&u, &s, &id);
            Err(FhirError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                "ids are assigned by the server: create with POST, update only existing resources",
            ))
        }
        Err(e) => Err(audit_refused(
            &s,
            &u,
            ClinicalAction::Update,
            rt,
            &id,
            e.into(),
        )),
    }
}

/// `DELETE /fhir/{type}/{id}`.
pub async fn delete(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    match store::delete(db, rt, &id, &actor(&u)).await {
        Ok(v) => {
            audit(
                &s,
                &u,
                ClinicalAction::Delete,
                rt,
                &id,
                StatusCode::NO_CONTENT,
            );
            let mut r = StatusCode::NO_CONTENT.into_response();
            if let Some(v) = v
                && let Ok(x) = HeaderValue::from_str(&response_bundle::weak_etag(v.version))
            {
                r.headers_mut().insert(header::ETAG, x);
            }
            Ok(r)
        }
        Err(RecordsError::NotFound) => Err(not_here(&u, &s, &id)),
        Err(e) => Err(audit_refused(
            &s,
            &u,
            ClinicalAction::Delete,
            rt,
            &id,
            e.into(),
        )),
    }
}

/// `GET /fhir/{type}/{id}/_history`: every version, newest first (`_count`, default 100).
pub async fn history(
    State(s): State<TenantSide>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsRead)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let count = q
        .get("_count")
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let _slot = heavy_slot(&s, u.tenant.tenant()).await?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let versions = store::history(db, rt, &id, count).await?;
    if versions.is_empty() {
        return Err(not_here(&u, &s, &id));
    }
    audit(&s, &u, ClinicalAction::History, rt, &id, StatusCode::OK);
    let base = u.tenant.url("/fhir");
    let out = tenantplane_records::response_bundle::history(&base, rt, &id, count, &versions)?;
    Ok(fhir_body(StatusCode::OK, out))
}

/// Any other `/fhir` route.
pub async fn unknown(FhirTenant(_ctx): FhirTenant) -> FhirError {
    FhirError::new(
        StatusCode::NOT_FOUND,
        "not-supported",
        "this interaction is not supported (see /fhir/metadata)",
    )
}

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
    extract::{FromRequestParts, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tenantplane_core::{Permission, Profile, Tenant};
use tenantplane_records::{
    RecordsError,
    resource::{self, ResourceType},
    search,
    store::{self, Limits, Version},
};
use time::OffsetDateTime;

use crate::{
    app::AppState,
    audit::{ClinicalAccess, ClinicalAction},
    identity_api::UserCtx,
    problem::ApiError,
    tenant_api::TenantCtx,
};

/// The FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A FHIR error: status, issue code and diagnostics, answered as an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct FhirError {
    status: StatusCode,
    code: &'static str,
    issues: Vec<(String, Option<String>)>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl FhirError {
    /// One issue.
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self {
            status,
            code,
            issues: vec![(diagnostics.into(), None)],
            headers: Vec::new(),
        }
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} is not known on this server"),
        )
    }

    /// The resource does not conform to the R4 schema.
    fn schema(issues: Vec<resource::Issue>) -> Self {
        let mut e = Self::invalid(issues);
        e.code = "invalid";
        e
    }

    fn invalid(issues: Vec<resource::Issue>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "structure",
            issues: issues
                .into_iter()
                .map(|i| (i.diagnostics, Some(i.location)))
                .collect(),
            headers: Vec::new(),
        }
    }
}

/// An `OperationOutcome` body.
pub fn outcome(
    code: &str,
    severity: &str,
    issues: &[(String, Option<String>)],
) -> serde_json::Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(|(d, e)| {
            let mut i = json!({"severity": severity, "code": code, "diagnostics": d});
            if let Some(e) = e {
                i["expression"] = json!([e]);
            }
            i
        }).collect::<Vec<_>>(),
    })
}

fn fhir_body(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

impl IntoResponse for FhirError {
    fn into_response(mut self) -> Response {
        if self.status.is_server_error()
            && let Some(id) = crate::problem::current_request_id()
        {
            self.issues.push((format!("request id {id}"), None));
        }
        let mut r = fhir_body(
            self.status,
            outcome(self.code, "error", &self.issues).to_string(),
        );
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        if self.status == StatusCode::UNAUTHORIZED
            && !r.headers().contains_key(header::WWW_AUTHENTICATE)
        {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenantplane\""),
            );
        }
        r
    }
}

/// Whether `path` (as the client sent it) is under a tenant's FHIR base: `/fhir…` or
/// `/t/{slug}/fhir…`.
pub fn is_fhir_path(path: &str) -> bool {
    let rest = match path.strip_prefix("/t/") {
        Some(r) => match r.split_once('/') {
            Some((_, tail)) => tail,
            None => return false,
        },
        None => path.strip_prefix('/').unwrap_or(path),
    };
    rest == "fhir" || rest.starts_with("fhir/") || rest.starts_with("fhir?")
}

/// The FHIR issue code of an HTTP error status.
fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 => "not-supported",
        409 | 412 => "conflict",
        410 => "deleted",
        413 | 414 | 431 => "too-long",
        415 => "not-supported",
        429 => "throttled",
        503 | 504 => "transient",
        _ => "exception",
    }
}

/// Middleware for the FHIR paths: every error answer is an `OperationOutcome`, whoever
/// produced it (resolution, limits, timeouts, body limits, extractor rejections). Problem
/// documents keep their detail; any other body (a library's plain-text rejection) is
/// replaced by a generic diagnostic, never passed through.
pub async fn outcome_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !is_fhir_path(req.uri().path()) {
        return next.run(req).await;
    }
    let res = next.run(req).await;
    let status = res.status();
    let is_fhir = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/fhir+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let problem: Option<tenantplane_core::api::Problem> = if is_problem {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    let diagnostics = match &problem {
        Some(p) => p.detail.clone().unwrap_or_else(|| p.title.clone()),
        None => match status.as_u16() {
            413 => "the request body is too large".to_owned(),
            400 => "the request is malformed".to_owned(),
            s => status
                .canonical_reason()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {s}")),
        },
    };
    let code = match &problem {
        Some(p) if p.quota.is_some() => "too-costly",
        _ => issue_code(status),
    };
    let mut e = FhirError::new(status, code, diagnostics);
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            e.headers.push((name, v.clone()));
        }
    }
    let mut out = e.into_response();
    for (k, v) in parts.headers.iter() {
        let n = k.as_str();
        if n.starts_with("ratelimit") || n == "x-request-id" {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        let code = match e.status.as_u16() {
            400 => "invalid",
            401 => "login",
            403 if e.quota.is_some() => "too-costly",
            403 => "forbidden",
            404 => "not-found",
            409 | 412 => "conflict",
            410 => "deleted",
            413 => "too-long",
            415 => "not-supported",
            429 => "throttled",
            503 => "transient",
            _ => "exception",
        };
        let mut diag = e.detail.clone().unwrap_or_else(|| e.title.to_owned());
        if let Some((q, limit, current)) = e.quota {
            diag = format!("{diag} (quota {q}: limit {limit}, current {current})");
        }
        let mut headers = e.headers.clone();
        if let Some(s) = e.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            headers.push((header::RETRY_AFTER, v));
        }
        let mut issues: Vec<(String, Option<String>)> = vec![(diag, None)];
        for fe in &e.errors {
            issues.push((fe.detail.clone(), Some(fe.pointer.clone())));
        }
        Self {
            status: e.status,
            code,
            issues,
            headers,
        }
    }
}

impl From<RecordsError> for FhirError {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::Data(_)
            | RecordsError::QuotaExceeded { .. }
            | RecordsError::Internal(_) => ApiError::from(e).into(),
            RecordsError::NotFound => Self::not_found("the resource"),
            RecordsError::VersionConflict { current } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                format!("If-Match does not match the current version ({current})"),
            ),
        }
    }
}

type FhirResult<T> = Result<T, FhirError>;

/// Whether the records module is on for `tenant`: the setting `records` (or
/// `modules.records`), else on for hospitals.
pub fn records_enabled(t: &Tenant) -> bool {
    t.settings
        .get("records")
        .or_else(|| t.settings.get("modules").and_then(|m| m.get("records")))
        .and_then(|v| v.as_bool())
        .unwrap_or(t.profile == Profile::Hospital)
}

/// The tenant, with records switched on.
pub struct FhirTenant(pub TenantCtx);

impl FromRequestParts<AppState> for FhirTenant {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> FhirResult<Self> {
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

impl FromRequestParts<AppState> for FhirUser {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> FhirResult<Self> {
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
fn not_here(u: &UserCtx, s: &AppState, id: &str) -> FhirError {
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
    if let Ok(x) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
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
    let Some(v) = h.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let inner = s.strip_prefix("W/").unwrap_or(s);
    inner
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "If-Match must be an ETag such as W/\"3\"",
            )
        })
}

fn limits(s: &AppState, t: &Tenant) -> Limits {
    s.svc
        .quotas(&t.plan)
        .map(|q| Limits {
            max_patients: q.max_patients,
            storage_bytes: q.storage_bytes,
        })
        .unwrap_or(Limits::NONE)
}

fn audit(
    s: &AppState,
    u: &UserCtx,
    action: ClinicalAction,
    rtype: ResourceType,
    id: &str,
    status: StatusCode,
) {
    s.svc.audit.record(access(u, action, rtype, id, status));
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
    }
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
pub async fn metadata(State(_s): State<AppState>, FhirTenant(ctx): FhirTenant) -> Response {
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
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    let rt = rtype(&t)?;
    check_content_type(&headers)?;
    let incoming = resource::parse(&body, Some(rt)).map_err(FhirError::invalid)?;
    tenantplane_records::validate::check(rt, &incoming.value).map_err(FhirError::schema)?;
    let tenant = u.tenant.tenant();
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    let out = store::create(db, incoming, limits(&s, tenant)).await;
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
        Err(e) => Err(e.into()),
    }
}

/// `GET /fhir/{type}/{id}`: read (410 once deleted).
pub async fn read(
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsRead)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    match store::read(db, rt, &id).await? {
        None => Err(not_here(&u, &s, &id)),
        Some(v) if v.deleted => {
            audit(&s, &u, ClinicalAction::Read, rt, &id, StatusCode::GONE);
            let mut e = FhirError::new(StatusCode::GONE, "deleted", "the resource was deleted");
            if let Ok(x) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
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
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path((t, id, vid)): Path<(String, String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsRead)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let Ok(n) = vid.parse::<u64>() else {
        return Err(FhirError::not_found("the version"));
    };
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
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
    State(s): State<AppState>,
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
    tenantplane_records::validate::check(rt, &incoming.value).map_err(FhirError::schema)?;
    let tenant = u.tenant.tenant();
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    match store::update(db, &id, incoming, if_match, limits(&s, tenant)).await {
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
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /fhir/{type}/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path((t, id)): Path<(String, String)>,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    let rt = rtype(&t)?;
    check_id(&id)?;
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    match store::delete(db, rt, &id).await {
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
                && let Ok(x) = HeaderValue::from_str(&format!("W/\"{}\"", v.version))
            {
                r.headers_mut().insert(header::ETAG, x);
            }
            Ok(r)
        }
        Err(RecordsError::NotFound) => Err(not_here(&u, &s, &id)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /fhir/{type}/{id}/_history`: every version, newest first (`_count`, default 100).
pub async fn history(
    State(s): State<AppState>,
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
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    let versions = store::history(db, rt, &id, count).await?;
    if versions.is_empty() {
        return Err(not_here(&u, &s, &id));
    }
    audit(&s, &u, ClinicalAction::History, rt, &id, StatusCode::OK);
    let base = u.tenant.url("/fhir");
    let mut out = String::from("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":");
    out.push_str(&versions.len().to_string());
    out.push_str(",\"link\":[{\"relation\":\"self\",\"url\":");
    out.push_str(
        &serde_json::Value::from(format!("{base}/{rt}/{id}/_history?_count={count}")).to_string(),
    );
    out.push_str("}],\"entry\":[");
    for (i, v) in versions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let full = format!("{base}/{rt}/{}", v.id);
        out.push_str("{\"fullUrl\":");
        out.push_str(&serde_json::Value::from(full).to_string());
        if let Some(d) = &v.doc {
            out.push_str(",\"resource\":");
            out.push_str(d);
        }
        let (method, status) = match (v.deleted, v.version) {
            (true, _) => ("DELETE", "204"),
            (false, 1) => ("POST", "201"),
            (false, _) => ("PUT", "200"),
        };
        let url = if method == "POST" {
            rt.to_string()
        } else {
            format!("{rt}/{}", v.id)
        };
        out.push_str(&format!(
            ",\"request\":{{\"method\":\"{method}\",\"url\":{}}},\"response\":{{\"status\":\"{status}\",\"etag\":\"W/\\\"{}\\\"\",\"lastModified\":\"{}\"}}}}",
            serde_json::Value::from(url),
            v.version,
            resource::instant(v.last_updated)
        ));
    }
    out.push_str("]}");
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

fn cursor_encode(tenant: tenantplane_core::TenantId, sort: &str, k: &search::Key) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = serde_json::json!({"s": sort, "lu": k.lu, "id": k.id}).to_string();
    let mac = tenantplane_core::id_tags::seal_mac(tenant, body.as_bytes());
    format!("{}.{}", b64.encode(body), b64.encode(mac))
}

fn cursor_decode(tenant: tenantplane_core::TenantId, sort: &str, c: &str) -> Option<search::Key> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, mac) = c.split_once('.')?;
    let body = b64.decode(body).ok()?;
    let mac = b64.decode(mac).ok()?;
    let want = tenantplane_core::id_tags::seal_mac(tenant, &body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        mac.as_slice(),
        want.as_slice(),
    )) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    if v["s"].as_str()? != sort {
        return None;
    }
    Some(search::Key {
        lu: v["lu"].as_i64()?,
        id: v["id"].as_str()?.to_owned(),
    })
}

/// `application/x-www-form-urlencoded` of `params` (for links).
fn query_string(params: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut o = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'|'
                | b',' => o.push(b as char),
                _ => o.push_str(&format!("%{b:02X}")),
            }
        }
        o
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Largest `_search` form body.
pub const MAX_SEARCH_FORM_BYTES: usize = 64 * 1024;

fn bad_query(msg: &str) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, "invalid", msg)
}

/// Parses `application/x-www-form-urlencoded` search parameters, failing closed: a query
/// that cannot be read exactly is refused, never searched as if it had no parameters.
/// `strict_chars` (form bodies) also refuses characters a form encoder never leaves raw
/// (space, `"`, `<`, …); query strings have been through the URI parser already.
fn parse_form(raw: &str, strict_chars: bool) -> FhirResult<Vec<(String, String)>> {
    fn decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = b.get(i + 1..i + 3)?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    if strict_chars
        && let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%|".contains(*c)))
    {
        let shown = if c.is_ascii_graphic() {
            format!("'{c}'")
        } else {
            format!("U+{:04X}", c as u32)
        };
        return Err(bad_query(&format!(
            "the form body is not valid application/x-www-form-urlencoded ({shown} must be percent-encoded)"
        )));
    }
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return Err(bad_query(
                "a search parameter is not valid percent-encoded UTF-8",
            ));
        };
        if k.is_empty() {
            return Err(bad_query("a search parameter has no name"));
        }
        if let Some(bad) = k.chars().chain(v.chars()).find(|c| forbidden_control(*c)) {
            return Err(bad_query(&format!(
                "search parameters cannot contain control characters (U+{:04X})",
                bad as u32
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

use tenantplane_records::resource::forbidden_control;

async fn run_search(
    s: &AppState,
    u: &UserCtx,
    t: &str,
    params: Vec<(String, String)>,
    headers: &HeaderMap,
    base: &str,
) -> FhirResult<Response> {
    require(u, Permission::RecordsRead)?;
    let rt = rtype(t)?;
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=strict"));
    if params.len() > 100 || params.iter().any(|(k, v)| k.len() > 128 || v.len() > 2048) {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "too-long",
            "at most 100 parameters of 2 KiB each",
        ));
    }
    let (mut q, ignored) = search::parse(rt, &params, strict).map_err(FhirError::invalid)?;
    let tenant = u.tenant.tenant().id;
    let sort = params
        .iter()
        .find(|(k, _)| k == "_sort")
        .map(|(_, v)| v.as_str())
        .unwrap_or("_id");
    if let Some((_, c)) = params.iter().find(|(k, _)| k == "_cursor") {
        q.after = Some(cursor_decode(tenant, sort, c).ok_or_else(|| {
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the _cursor is not valid here (expired, altered, or from another search)",
            )
        })?);
    }
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    let page = search::search(db, &q).await?;
    s.svc.audit.record_bulk(
        page.matches
            .iter()
            .chain(page.included.iter())
            .map(|v| access(u, ClinicalAction::Search, v.rtype, &v.id, StatusCode::OK))
            .collect(),
    );
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "_cursor" && !ignored.contains(k))
        .cloned()
        .collect();
    let self_url = format!("{base}/{rt}?{}", query_string(&kept));
    let mut out = String::from("{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    if let Some(n) = page.total {
        out.push_str(&format!(",\"total\":{n}"));
    }
    out.push_str(",\"link\":[{\"relation\":\"self\",\"url\":");
    out.push_str(&serde_json::Value::from(self_url.clone()).to_string());
    out.push('}');
    if let Some(k) = &page.next {
        let mut next = kept.clone();
        next.push(("_cursor".into(), cursor_encode(tenant, sort, k)));
        let url = format!("{base}/{rt}?{}", query_string(&next));
        out.push_str(",{\"relation\":\"next\",\"url\":");
        out.push_str(&serde_json::Value::from(url).to_string());
        out.push('}');
    }
    out.push_str("],\"entry\":[");
    let mut first = true;
    for (mode, v) in page
        .matches
        .iter()
        .map(|v| ("match", v))
        .chain(page.included.iter().map(|v| ("include", v)))
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"fullUrl\":");
        out.push_str(&serde_json::Value::from(format!("{base}/{}/{}", v.rtype, v.id)).to_string());
        out.push_str(",\"resource\":");
        let doc = v.doc.as_deref().unwrap_or("{}");
        if q.elements.is_empty() || mode == "include" {
            out.push_str(doc);
        } else {
            out.push_str(&resource::subset(doc, &q.elements));
        }
        out.push_str(&format!(",\"search\":{{\"mode\":\"{mode}\"}}}}"));
    }
    out.push_str("]}");
    if !ignored.is_empty() {
        tracing::debug!(ignored = ?ignored, "search parameters ignored");
    }
    Ok(fhir_body(StatusCode::OK, out))
}

/// `GET /fhir/{type}?…`: search.
pub async fn search_get(
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path(t): Path<String>,
    here: axum::http::Uri,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let params = parse_form(here.query().unwrap_or(""), false)?;
    run_search(&s, &u, &t, params, &headers, &u.tenant.url("/fhir")).await
}

/// `POST /fhir/{type}/_search` (form body): search.
pub async fn search_post(
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    Path(t): Path<String>,
    here: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "_search takes application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_SEARCH_FORM_BYTES {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "too-long",
            format!(
                "the _search form body is over {} KiB",
                MAX_SEARCH_FORM_BYTES / 1024
            ),
        ));
    }
    let form = std::str::from_utf8(&body).map_err(|_| bad_query("the form body is not UTF-8"))?;
    let mut params = parse_form(here.query().unwrap_or(""), false)?;
    params.extend(parse_form(form, true)?);
    let base = u.tenant.url("/fhir");
    run_search(&s, &u, &t, params, &headers, &base).await
}

/// Largest Bundle accepted at the base (`POST /fhir`).
pub const MAX_BUNDLE_BYTES: usize = 32 << 20;

fn status_text(s: u16) -> String {
    let reason = StatusCode::from_u16(s)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("");
    format!("{s} {reason}").trim_end().to_owned()
}

/// `POST /fhir`: a `batch` or `transaction` Bundle.
pub async fn bundle(
    State(s): State<AppState>,
    FhirUser(u): FhirUser,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<Response> {
    require(&u, Permission::RecordsWrite)?;
    check_content_type(&headers)?;
    let representation = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("return=representation"));
    let tenant = u.tenant.tenant();
    let db = u.tenant.db(&s.svc.data).map_err(FhirError::from)?;
    let started = std::time::Instant::now();
    let (kind, results) =
        match tenantplane_records::bundle::process(db, &body, limits(&s, tenant)).await {
            Ok(x) => x,
            Err(tenantplane_records::bundle::BundleError::Invalid(issues)) => {
                return Err(FhirError::invalid(issues));
            }
            Err(tenantplane_records::bundle::BundleError::Entry(i, status, code, msg)) => {
                return Err(FhirError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    code,
                    format!("entry {i}: {msg}; nothing was written"),
                ));
            }
            Err(tenantplane_records::bundle::BundleError::Store(e)) => return Err(e.into()),
        };
    let base = u.tenant.url("/fhir");
    let accesses = std::cell::RefCell::new(Vec::new());
    let record = |action: ClinicalAction, v: &Version, status: StatusCode| {
        accesses
            .borrow_mut()
            .push(access(&u, action, v.rtype, &v.id, status));
    };
    let response = bundle_response(kind, &results, &base, representation, started, &record);
    s.svc.audit.record_bulk(accesses.into_inner());
    Ok(response)
}

/// The response Bundle of a processed batch or transaction; `record` is called for every
/// entry that read or wrote a resource.
pub fn bundle_response(
    kind: tenantplane_records::bundle::Kind,
    results: &[tenantplane_records::bundle::EntryResult],
    full_base: &str,
    representation: bool,
    started: std::time::Instant,
    record: &dyn Fn(ClinicalAction, &Version, StatusCode),
) -> Response {
    let kind_name = match kind {
        tenantplane_records::bundle::Kind::Batch => "batch-response",
        tenantplane_records::bundle::Kind::Transaction => "transaction-response",
    };
    metrics::histogram!("tenantplane_fhir_bundle_seconds", "type" => kind_name)
        .record(started.elapsed().as_secs_f64());
    let mut out = format!("{{\"resourceType\":\"Bundle\",\"type\":\"{kind_name}\",\"entry\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if let Some(v) = &r.version {
            let action = ClinicalAction::of_entry(r);
            record(
                action,
                v,
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
            );
            out.push_str("\"fullUrl\":");
            out.push_str(
                &serde_json::Value::from(format!("{full_base}/{}/{}", v.rtype, v.id)).to_string(),
            );
            out.push(',');
            if representation && let Some(d) = &v.doc {
                out.push_str("\"resource\":");
                out.push_str(d);
                out.push(',');
            }
        }
        let mut resp = serde_json::json!({"status": status_text(r.status)});
        if let Some(l) = &r.location {
            resp["location"] = serde_json::Value::from(l.clone());
        }
        if let Some(v) = &r.version {
            resp["etag"] = serde_json::Value::from(format!("W/\"{}\"", v.version));
            resp["lastModified"] = serde_json::Value::from(resource::instant(v.last_updated));
        }
        if let Some((code, msg)) = &r.error {
            resp["outcome"] = outcome(code, "error", &[(msg.clone(), None)]);
        }
        out.push_str("\"response\":");
        out.push_str(&resp.to_string());
        out.push('}');
    }
    out.push_str("]}");
    fhir_body(StatusCode::OK, out)
}

//! FHIR errors: `OperationOutcome` answers, the middleware that makes every error under
//! `/fhir` one, and the mappings from problems and record errors.

use super::*;

/// The FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A FHIR error: status, issue code and diagnostics, answered as an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct FhirError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) issues: Vec<(String, Option<String>)>,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
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

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} is not known on this server"),
        )
    }

    /// The resource does not conform to the R4 schema.
    pub(crate) fn schema(issues: Vec<resource::Issue>) -> Self {
        let mut e = Self::invalid(issues);
        e.code = "invalid";
        e
    }

    pub(crate) fn invalid(issues: Vec<resource::Issue>) -> Self {
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

pub(crate) fn fhir_body(status: StatusCode, body: String) -> Response {
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
pub(crate) fn issue_code(status: StatusCode) -> &'static str {
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
        let code = if e.quota.is_some() {
            "too-costly"
        } else {
            issue_code(e.status)
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
            RecordsError::Invalid(issues) => Self::schema(issues),
            RecordsError::VersionConflict { current } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                format!("If-Match does not match the current version ({current})"),
            ),
        }
    }
}

pub(crate) type FhirResult<T> = Result<T, FhirError>;

//! RFC 9457 problem+json errors: one type for every API failure, one mapping from error
//! kind to HTTP status and stable `type`. Internal messages are logged, never sent.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tenantplane_catalog::{CatalogError, Conflict};
use tenantplane_core::{
    ErrorKind, TenantStatus, ValidationErrors,
    api::{Problem, ProblemFieldError},
    lifecycle::IllegalTransition,
};

tokio::task_local! {
    /// The id of the request being served (set by the edge around every request), so an
    /// error logged deep inside can be answered with the id an operator finds in the log.
    static REQUEST_ID: std::sync::Arc<str>;
}

/// Runs `f` with `id` as the current request id.
pub async fn with_request_id<F: std::future::Future>(id: std::sync::Arc<str>, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The id of the request being served, if any.
pub fn current_request_id() -> Option<std::sync::Arc<str>> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// An API failure, rendered as `application/problem+json` (boxed: errors stay one pointer
/// wide on the happy path).
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorInner>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorInner;
    fn deref(&self) -> &ApiErrorInner {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorInner {
        &mut self.0
    }
}

/// The members of an [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiErrorInner {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable problem code (the suffix of `type`).
    pub code: &'static str,
    /// Human summary of the kind.
    pub title: &'static str,
    /// Human explanation of this occurrence (never internal details).
    pub detail: Option<String>,
    /// Field errors.
    pub errors: Vec<ProblemFieldError>,
    /// Reachable statuses, for illegal transitions.
    pub allowed: Option<Vec<TenantStatus>>,
    /// Current version, for precondition failures.
    pub current_version: Option<u64>,
    /// Seconds to wait, for 503s and 429s.
    pub retry_after: Option<u64>,
    /// For quota problems: (quota, limit, current).
    pub quota: Option<(&'static str, u64, u64)>,
    /// Extra response headers (rate-limit state).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A problem with no extra members.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self(Box::new(ApiErrorInner {
            status,
            code,
            title,
            detail: None,
            errors: Vec::new(),
            allowed: None,
            current_version: None,
            retry_after: None,
            quota: None,
            headers: Vec::new(),
        }))
    }

    /// Adds a detail message.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// The error kind this problem belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self.status.as_u16() {
            400 | 413 | 415 | 422 => ErrorKind::Validation,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 | 405 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            409 => ErrorKind::Conflict,
            410 => ErrorKind::Gone,
            412 => ErrorKind::PreconditionFailed,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    /// 400 with field errors.
    pub fn validation(errs: ValidationErrors) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "validation-failed",
            "Invalid request",
        )
        .detail("one or more fields are invalid");
        e.errors = errs
            .0
            .into_iter()
            .map(|f| ProblemFieldError {
                pointer: f.pointer,
                detail: f.detail,
            })
            .collect();
        e
    }

    /// 400 for one field.
    pub fn field(pointer: &str, detail: impl Into<String>) -> Self {
        Self::validation(ValidationErrors::single(pointer, detail))
    }

    /// 400 for a body that is not the expected JSON.
    pub fn malformed(detail: impl Into<String>, pointer: Option<String>) -> Self {
        let detail = detail.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "Malformed request body",
        )
        .detail(detail.clone());
        if let Some(p) = pointer {
            e.errors.push(ProblemFieldError { pointer: p, detail });
        }
        e
    }

    /// 401.
    pub fn unauthorized(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .detail(detail)
    }

    /// 403.
    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").detail(detail)
    }

    /// 404 for a named resource kind.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail(format!("{what} not found"))
    }

    /// 412 with the current version.
    pub fn version_mismatch(current: u64) -> Self {
        let mut e = Self::new(
            StatusCode::PRECONDITION_FAILED,
            "version-mismatch",
            "The resource changed since you read it",
        )
        .detail(format!(
            "If-Match does not match the current version {current}; read it again and retry"
        ));
        e.current_version = Some(current);
        e
    }

    /// 409 for an illegal lifecycle transition.
    pub fn illegal_transition(t: &IllegalTransition) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "illegal-transition",
            "Illegal status transition",
        )
        .detail(t.to_string());
        e.allowed = Some(t.allowed.clone());
        e
    }

    /// 500; `internal` is logged, not sent.
    pub fn internal(internal: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %internal, "internal error");
        let detail = match current_request_id() {
            Some(id) => {
                format!("an unexpected error occurred; it has been logged with request id {id}")
            }
            None => "an unexpected error occurred; it has been logged".to_owned(),
        };
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail(detail)
    }

    /// 403 `quota-exceeded` for `quota` with the plan's limit and the current usage.
    pub fn quota_exceeded(quota: &'static str, limit: u64, current: u64) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "quota-exceeded", "Quota exceeded").detail(
            format!("the plan allows {limit} ({quota}); {current} in use — upgrade the plan or free some"),
        );
        e.quota = Some((quota, limit, current));
        e
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(detail: &str, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(detail);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 503.
    pub fn unavailable(detail: &str, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail(detail);
        e.retry_after = Some(retry_after);
        e
    }

    /// The problem document.
    pub fn to_problem(&self) -> Problem {
        Problem {
            kind: format!("urn:tenantplane:problem:{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance: if self.status.is_server_error() {
                current_request_id().map(|id| format!("urn:tenantplane:request:{id}"))
            } else {
                None
            },
            errors: self.errors.clone(),
            allowed_transitions: self.allowed.clone(),
            current_version: self.current_version,
            quota: self.quota.map(|q| q.0.to_owned()),
            limit: self.quota.map(|q| q.1),
            current: self.quota.map(|q| q.2),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        for (k, v) in &self.headers {
            h.insert(k.clone(), v.clone());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenantplane\""),
            );
        }
        res
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        Self::validation(e)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound => Self::not_found("resource"),
            CatalogError::Conflict(Conflict::Slug(s)) => {
                Self::new(StatusCode::CONFLICT, "slug-taken", "Slug already in use")
                    .detail(format!("a tenant with slug '{s}' already exists"))
            }
            CatalogError::Conflict(Conflict::Domain(d)) => Self::new(
                StatusCode::CONFLICT,
                "domain-taken",
                "Domain already in use",
            )
            .detail(format!("domain '{d}' is already assigned")),
            CatalogError::Conflict(Conflict::OperatorName(n)) => Self::new(
                StatusCode::CONFLICT,
                "operator-name-taken",
                "Operator name already in use",
            )
            .detail(format!("an operator named '{n}' already exists")),
            CatalogError::Conflict(Conflict::Id) => {
                Self::new(StatusCode::CONFLICT, "conflict", "Conflict").detail("id already exists")
            }
            CatalogError::VersionMismatch { current } => Self::version_mismatch(current),
            CatalogError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "catalog unavailable");
                Self::unavailable("the catalog is unavailable; retry shortly", 5)
            }
            CatalogError::Internal(msg) => Self::internal(&msg),
        }
    }
}

impl From<tenantplane_tenant_data::DataError> for ApiError {
    fn from(e: tenantplane_tenant_data::DataError) -> Self {
        use tenantplane_tenant_data::DataError as D;
        match e {
            D::Busy => {
                metrics::counter!("tenantplane_tenant_store_busy_total").increment(1);
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant-store-busy",
                    "Tenant store busy",
                )
                .detail("all connections to the tenant's store are in use; retry shortly");
                e.retry_after = Some(1);
                e
            }
            D::Outdated { have, need } => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant-store-upgrading",
                    "Tenant store being upgraded",
                )
                .detail(format!(
                    "the tenant's data is at schema version {have}; this server needs {need}"
                ));
                e.retry_after = Some(10);
                e
            }
            D::Unavailable(msg) => {
                tracing::warn!(error = %msg, "tenant store unavailable");
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant-store-unavailable",
                    "Tenant store unavailable",
                )
                .detail("the tenant's store cannot be reached; retry shortly");
                e.retry_after = Some(5);
                e
            }
            D::Conflict(msg) => Self::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(msg),
            other => Self::internal(&other),
        }
    }
}

impl From<tenantplane_identity::IdentityError> for ApiError {
    fn from(e: tenantplane_identity::IdentityError) -> Self {
        use tenantplane_identity::IdentityError as I;
        match e {
            I::Data(d) => d.into(),
            I::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                "email-taken",
                "E-mail address already in use",
            )
            .detail("a user with this e-mail address exists in this tenant"),
            I::NotFound => Self::not_found("user"),
            I::VersionMismatch { current } => Self::version_mismatch(current),
            I::QuotaExceeded { limit, current } => {
                Self::quota_exceeded("max_users", limit, current)
            }
            I::Sso(e) => e.into(),
            I::Internal(msg) => Self::internal(&msg),
        }
    }
}

impl From<tenantplane_records::RecordsError> for ApiError {
    fn from(e: tenantplane_records::RecordsError) -> Self {
        use tenantplane_records::RecordsError as R;
        match e {
            R::Data(d) => d.into(),
            R::NotFound => Self::not_found("resource"),
            R::VersionConflict { current } => Self::version_mismatch(current),
            R::QuotaExceeded {
                quota,
                limit,
                current,
            } => Self::quota_exceeded(quota, limit, current),
            R::Invalid(issues) => Self::validation(tenantplane_core::ValidationErrors(
                issues
                    .into_iter()
                    .map(|i| tenantplane_core::error::FieldError {
                        pointer: i.location,
                        detail: i.diagnostics,
                    })
                    .collect(),
            )),
            R::Internal(m) => Self::internal(&m),
        }
    }
}

impl From<tenantplane_identity::sso::SsoError> for ApiError {
    fn from(e: tenantplane_identity::sso::SsoError) -> Self {
        use tenantplane_identity::sso::SsoError as S;
        match e {
            S::NotConfigured => Self::new(
                StatusCode::NOT_FOUND,
                "sso-not-configured",
                "Single sign-on not configured",
            )
            .detail("this tenant has no enabled identity provider; log in with a password"),
            S::InvalidState => Self::new(
                StatusCode::BAD_REQUEST,
                "sso-invalid-state",
                "Unknown sign-in flow",
            )
            .detail("the sign-in flow is unknown, expired or from another browser; start again"),
            S::Provider(msg) => {
                tracing::warn!(error = %msg, "identity provider failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "sso-provider-error",
                    "Identity provider error",
                )
                .detail("the tenant's identity provider could not be reached or gave an unusable answer")
            }
            S::Denied => Self::new(
                StatusCode::UNAUTHORIZED,
                "sso-denied",
                "Sign-in refused by the identity provider",
            )
            .detail("the identity provider did not authorize the sign-in"),
            S::Rejected(reason) => {
                tracing::warn!(target: "tenantplane::security", reason, "ID token rejected");
                Self::new(
                    StatusCode::UNAUTHORIZED,
                    "sso-rejected",
                    "Sign-in rejected",
                )
                .detail("the identity provider's answer did not pass validation")
            }
            S::NoAccount => Self::new(
                StatusCode::FORBIDDEN,
                "sso-no-account",
                "No account in this tenant",
            )
            .detail("you signed in at the identity provider, but this tenant has no account for you; ask its administrator"),
            S::Disabled => Self::new(
                StatusCode::FORBIDDEN,
                "account-disabled",
                "Account disabled",
            )
            .detail("your account in this tenant is disabled"),
            S::NoRole => Self::new(
                StatusCode::FORBIDDEN,
                "sso-no-role",
                "No role for this person",
            )
            .detail("none of your groups at the identity provider gives a role in this tenant"),
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<tenantplane_control::ControlError> for ApiError {
    fn from(e: tenantplane_control::ControlError) -> Self {
        use tenantplane_control::ControlError as C;
        match e {
            C::Invalid(errs) => Self::validation(errs),
            C::NotFound(what) => Self::not_found(what),
            C::NoSuchTenant(n) => Self::not_found("tenant").detail(format!("no tenant '{n}'")),
            C::VersionMismatch { current } => Self::version_mismatch(current),
            C::IllegalTransition(t) => Self::illegal_transition(&t),
            C::Contention { tenant } => {
                let e = Self::new(
                    StatusCode::CONFLICT,
                    "contention",
                    "Too many concurrent changes",
                );
                if tenant {
                    e.detail("the tenant is being changed concurrently; retry")
                } else {
                    e
                }
            }
            C::TenantGone => Self::new(StatusCode::GONE, "tenant-gone", "Tenant deleted")
                .detail("the tenant has been deleted"),
            C::DomainAlreadyAssigned(d) => Self::new(
                StatusCode::CONFLICT,
                "domain-taken",
                "Domain already in use",
            )
            .detail(format!("domain '{d}' is already assigned to this tenant")),
            C::NotProvisioning(status) => Self::new(
                StatusCode::CONFLICT,
                "not-provisioning",
                "Tenant is not being provisioned",
            )
            .detail(format!("the tenant is {status} now")),
            C::ProvisioningFailed { id, reason } => {
                let mut p = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provisioning-failed",
                    "Provisioning failed",
                )
                .detail(format!(
                    "the tenant was recorded in status 'failed' ({reason}); fix the cause, then \
                     POST /api/v1/tenants/{id}/retry"
                ));
                p.retry_after = Some(30);
                p
            }
            C::TenantNotReady(detail) => {
                Self::new(StatusCode::CONFLICT, "tenant-not-ready", "Tenant not ready")
                    .detail(detail)
            }
            C::RecordsDisabled => Self::new(
                StatusCode::CONFLICT,
                "records-disabled",
                "Records module off",
            )
            .detail(
                "this tenant has no FHIR records; an operator can switch them on with the \
                 setting records = true",
            ),
            C::InvalidBundle(detail) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-bundle", "Invalid bundle")
                    .detail(detail)
            }
            C::BundleEntryFailed {
                index,
                status,
                message,
            } => Self::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                "bundle-entry-failed",
                "Bundle entry failed",
            )
            .detail(tenantplane_records::bundle::BundleError::entry_detail(
                index, &message,
            )),
            C::Upstream(what) => {
                tracing::warn!(upstream = %what, "an upstream service failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unavailable",
                    "Upstream unavailable",
                )
                .detail("the cluster's metrics could not be read; try again later")
            }
            C::NoPrices => Self::new(StatusCode::CONFLICT, "no-prices", "No price sheet").detail(
                "costs need prices: set [costs] in the configuration or POST /api/v1/prices",
            ),
            C::KeyReused(keys) => Self::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "Idempotency key reused",
            )
            .detail(format!(
                "these idempotency keys were used before for other events, so nothing of \
                 the batch was recorded: {}{}",
                keys.iter()
                    .take(10)
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if keys.len() > 10 { ", …" } else { "" }
            )),
            C::SelfDisable => Self::new(
                StatusCode::CONFLICT,
                "self-disable",
                "Cannot disable yourself",
            )
            .detail("another platform-admin must disable this operator"),
            C::Catalog(e) => e.into(),
            C::Data(e) => e.into(),
            C::Identity(e) => e.into(),
            C::Records(e) => e.into(),
            C::Internal(msg) => Self::internal(&msg),
        }
    }
}

//! Tenant identity over HTTP, on the tenant's host: `/auth/*` (login, refresh, logout,
//! password change), `/.well-known/jwks.json`, and user management under
//! `/api/tenant/users` for holders of `users:manage`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json,
    extract::{ConnectInfo, Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tenantplane_core::{
    Email, Permission, RoleName, TenantId, UserId, cursor,
    identity::{
        ChangePassword, CreateUser, LoginRequest, MAX_PASSWORD_BYTES, RefreshRequest, RoleList,
        TokenResponse, UpdateUser, UserCredentials, UserList, UserView,
    },
};
use tenantplane_identity::{
    LoginOutcome, PasswordChange, RefreshOutcome, Tokens, user_admin, users,
};
use tenantplane_tenant_data::{audit_log::committed_with, directory};

use crate::{
    audit_trail::{self, Origin},
    context::{PendingUserCtx, UserCtx},
    extract::{ApiJson, ApiQuery, IfMatch, etag},
    gate::TenantCtx,
    limits::Limits,
    problem::{ApiError, ApiResult},
    state::TenantSide,
};
use tenantplane_audit::{EventKind, SecurityEvent};

pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn token_response(t: &Tokens) -> Response {
    no_store(
        Json(TokenResponse {
            access_token: t.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.clone(),
            refresh_expires_in: t.refresh_expires_in,
            password_change_required: t.password_change_required,
        })
        .into_response(),
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "Invalid credentials",
    )
    .detail("the e-mail address or the password is wrong")
}

fn peer_ip(c: &ConnectInfo<SocketAddr>) -> std::net::IpAddr {
    c.0.ip()
}

/// `POST /auth/login`: e-mail + password → access and refresh tokens.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "Malformed request or oversized credentials", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong e-mail or password (one answer for both)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts (see Retry-After)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(s): State<TenantSide>,
    State(limits): State<Arc<Limits>>,
    ctx: TenantCtx,
    conn: ConnectInfo<SocketAddr>,
    origin: Origin,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    if req.email.len() > tenantplane_core::identity::MAX_EMAIL_LEN {
        return Err(ApiError::field("/email", "too long"));
    }
    if req.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::field(
            "/password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let ip = peer_ip(&conn);
    limits
        .admit_sign_in(ip, "too many login attempts from this address")
        .await?;
    let tenant = ctx.tenant();
    let account = req.email.trim().to_ascii_lowercase();
    limits.refuse_if_locked(
        tenant.id,
        &account,
        "too many failed logins for this account; wait before trying again",
    )?;
    let db = ctx.db(&s.data)?;
    match s
        .identity
        .login(tenant, db, &req.email, req.password)
        .await?
    {
        LoginOutcome::Ok(t) => {
            limits.login_succeeded(tenant.id, &account);
            metrics::counter!("tenantplane_logins_total", "outcome" => "ok").increment(1);
            audit_trail::login(
                &s.audit,
                tenant.id,
                &origin,
                "login",
                format!("user/{}", t.user.id),
                true,
            );
            tracing::info!(user_id = %t.user.id, "tenant user logged in");
            Ok(token_response(&t))
        }
        LoginOutcome::Failed => {
            metrics::counter!("tenantplane_logins_total", "outcome" => "failed").increment(1);
            audit_trail::record(
                &s.audit,
                tenant.id,
                &origin,
                tenantplane_audit::Entry::now(
                    tenantplane_audit::Category::Login,
                    "login-failed",
                    "E",
                    "anonymous".into(),
                )
                .outcome(4)
                .detail(&serde_json::json!({ "account": account.chars().take(128).collect::<String>() })),
            );
            if let Some(d) = limits.login_failed(tenant.id, &account) {
                let mut ev = SecurityEvent::new(EventKind::LoginLockout);
                ev.tenant_id = Some(tenant.id);
                ev.peer = Some(ip);
                s.audit.security(ev);
                tracing::warn!(
                    lockout_secs = d.as_secs(),
                    "account locked out after failed logins"
                );
            }
            Err(invalid_credentials())
        }
    }
}

/// `POST /auth/refresh`: a refresh token (used once) → new tokens.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is now used", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or replayed refresh token", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(s): State<TenantSide>,
    ctx: TenantCtx,
    conn: ConnectInfo<SocketAddr>,
    origin: Origin,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Response> {
    let ip = peer_ip(&conn);
    let tenant = ctx.tenant();
    let db = ctx.db(&s.data)?;
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid-refresh-token",
            "Invalid refresh token",
        )
        .detail("the refresh token is unknown, expired, revoked or already used; log in again")
    };
    match s.identity.refresh(tenant, db, &req.refresh_token).await? {
        RefreshOutcome::Ok(t) => {
            audit_trail::login(
                &s.audit,
                tenant.id,
                &origin,
                "token-refresh",
                format!("user/{}", t.user.id),
                true,
            );
            Ok(token_response(&t))
        }
        RefreshOutcome::Replayed(user) => {
            let mut ev = SecurityEvent::new(EventKind::RefreshReplay);
            ev.tenant_id = Some(tenant.id);
            ev.user_id = Some(user);
            ev.peer = Some(ip);
            s.audit.security(ev);
            Err(bad())
        }
        RefreshOutcome::Invalid => {
            audit_trail::login(
                &s.audit,
                tenant.id,
                &origin,
                "token-refresh",
                "anonymous".into(),
                false,
            );
            Err(bad())
        }
    }
}

/// `POST /auth/logout`: ends the refresh token's session (idempotent).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Session ended")))]
pub async fn logout(
    State(s): State<TenantSide>,
    ctx: TenantCtx,
    origin: Origin,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    s.identity
        .logout(ctx.db(&s.data)?, &req.refresh_token)
        .await?;
    audit_trail::login(
        &s.audit,
        ctx.tenant().id,
        &origin,
        "logout",
        "anonymous".into(),
        true,
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /auth/password`: sets a new password (required after a one-time password).
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = ChangePassword,
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Changed; other sessions revoked; fresh tokens", body = TokenResponse),
        (status = 400, description = "Wrong current password or new one against the policy", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_password(
    State(s): State<TenantSide>,
    State(limits): State<Arc<Limits>>,
    PendingUserCtx(u): PendingUserCtx,
    ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<Response> {
    if req.current_password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::field("/current_password", "too long"));
    }
    let tenant = u.tenant.tenant();
    let account = format!("user:{}", u.claims.sub);
    limits.refuse_if_locked(
        tenant.id,
        &account,
        "too many wrong passwords; wait before trying again",
    )?;
    let db = u.tenant.db(&s.data)?;
    let entry = audit_trail::admin_entry(
        &u,
        "password-change",
        "U",
        Some(format!("User/{}", u.claims.sub)),
        None,
    );
    match committed_with(
        vec![entry.clone()],
        s.identity.change_password(
            tenant,
            db,
            u.claims.sub,
            req.current_password,
            req.new_password,
        ),
    )
    .await?
    {
        PasswordChange::Changed(t) => {
            limits.login_succeeded(tenant.id, &account);
            audit_trail::committed(&s.audit, &u, entry);
            Ok(token_response(&t))
        }
        PasswordChange::WrongPassword => {
            limits.login_failed(tenant.id, &account);
            audit_trail::login(
                &s.audit,
                tenant.id,
                &Origin {
                    peer: u.peer,
                    request_id: u.request_id.clone(),
                },
                "password-change-failed",
                format!("user/{}", u.claims.sub),
                false,
            );
            Err(ApiError::field("/current_password", "does not match"))
        }
        PasswordChange::Policy(m) => Err(ApiError::field("/new_password", m)),
    }
}

/// `GET /.well-known/jwks.json`: the tenant's public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK set (Ed25519, active and retiring keys)")))]
pub async fn jwks(State(s): State<TenantSide>, ctx: TenantCtx) -> ApiResult<Response> {
    let keys = s.identity.keys(ctx.tenant().id, ctx.db(&s.data)?).await?;
    let mut r = Json(keys.jwks.clone()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(r)
}

/// `POST /api/tenant/keys/rotate`: a new signing key; the previous one keeps verifying
/// until the tokens it signed have expired.
#[utoipa::path(post, path = "/api/tenant/keys/rotate", tag = "auth",
    security(("user_token" = [])),
    responses((status = 200, description = "The new key id")))]
pub async fn rotate_keys(
    State(s): State<TenantSide>,
    u: UserCtx,
) -> ApiResult<Json<serde_json::Value>> {
    u.require(Permission::IdentityManage)?;
    let kid = s
        .identity
        .keyring()
        .rotate(u.tenant.tenant().id, u.tenant.db(&s.data)?)
        .await?;
    tracing::info!(kid = %kid, user_id = %u.claims.sub, "signing key rotated");
    audit_trail::admin(
        &s.audit,
        &u,
        "keys-rotate",
        "U",
        "Keys".into(),
        Some(serde_json::json!({ "kid": kid })),
    );
    Ok(Json(serde_json::json!({ "kid": kid })))
}

fn user_response(status: StatusCode, u: &users::UserRecord) -> Response {
    let mut r = (status, Json(u.view())).into_response();
    r.headers_mut().insert(header::ETAG, etag(u.version));
    r
}

/// `GET /api/tenant/me`.
#[utoipa::path(get, path = "/api/tenant/me", tag = "users", security(("user_token" = [])),
    responses((status = 200, description = "The calling user", body = UserView)))]
pub async fn me(State(s): State<TenantSide>, u: PendingUserCtx) -> ApiResult<Response> {
    let u = u.0;
    let (rec, _) = users::get(u.tenant.db(&s.data)?, u.claims.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid access token"))?;
    Ok(user_response(StatusCode::OK, &rec))
}

/// `GET /api/tenant/roles`.
#[utoipa::path(get, path = "/api/tenant/roles", tag = "users", security(("user_token" = [])),
    responses((status = 200, description = "Roles and their permissions", body = RoleList)))]
pub async fn roles(State(s): State<TenantSide>, u: UserCtx) -> ApiResult<Json<RoleList>> {
    u.require(Permission::UsersRead)?;
    let r = s
        .identity
        .roles(u.tenant.tenant().id, u.tenant.db(&s.data)?)
        .await?;
    Ok(Json(RoleList {
        items: r.as_ref().clone(),
    }))
}

/// Paging of `GET /api/tenant/users`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Cursor from a previous page (opaque; others are refused).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

fn cursor_of(tenant: TenantId, email: &Email) -> String {
    cursor::seal(cursor::Scope::Tenant(tenant), "users", &email.as_str())
}

fn decode_cursor(tenant: TenantId, c: &str) -> Option<String> {
    cursor::open(cursor::Scope::Tenant(tenant), "users", c)
}

/// `GET /api/tenant/users`.
#[utoipa::path(get, path = "/api/tenant/users", tag = "users", params(UserListParams),
    security(("user_token" = [])),
    responses((status = 200, description = "Users by e-mail", body = UserList)))]
pub async fn list_users(
    State(s): State<TenantSide>,
    u: UserCtx,
    ApiQuery(p): ApiQuery<UserListParams>,
) -> ApiResult<Json<UserList>> {
    u.require(Permission::UsersRead)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::field("/limit", "must be between 1 and 200"));
    }
    let tenant = u.tenant.tenant().id;
    let after = match p.cursor.as_deref() {
        Some(c) => Some(
            decode_cursor(tenant, c).ok_or_else(|| ApiError::field("/cursor", "invalid cursor"))?,
        ),
        None => None,
    };
    let mut items = users::list(u.tenant.db(&s.data)?, after, limit + 1).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|l| cursor_of(tenant, &l.email)))
        .flatten();
    Ok(Json(UserList {
        items: items.iter().map(|r| r.view()).collect(),
        next_cursor,
    }))
}

async fn validate_roles_and_departments(
    s: &TenantSide,
    u: &UserCtx,
    roles: Option<&[String]>,
    departments: Option<&[uuid::Uuid]>,
    errs: &mut tenantplane_core::ValidationErrors,
) -> ApiResult<Vec<RoleName>> {
    let mut out = Vec::new();
    if let Some(roles) = roles {
        let known = s
            .identity
            .roles(u.tenant.tenant().id, u.tenant.db(&s.data)?)
            .await?;
        out = user_admin::resolve_roles(&known, roles, errs);
    }
    if let Some(ds) = departments {
        user_admin::check_department_count(ds, errs);
        for (i, d) in ds.iter().enumerate().take(user_admin::MAX_DEPARTMENTS) {
            if directory::get(u.tenant.db(&s.data)?, *d).await?.is_none() {
                // Recorded if another tenant minted it; the answer is the same.
                let _ = u.not_found(s, d, "department");
                errs.push(
                    format!("/departments/{i}"),
                    "no such department in this tenant",
                );
            }
        }
    }
    Ok(out)
}

/// `POST /api/tenant/users`: a new user with a one-time password (shown once).
#[utoipa::path(post, path = "/api/tenant/users", tag = "users", request_body = CreateUser,
    security(("user_token" = [])),
    responses(
        (status = 201, description = "Created", body = UserCredentials),
        (status = 400, description = "Invalid input", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed, or the plan's user quota is used up (quota-exceeded)", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
        (status = 409, description = "E-mail taken", body = tenantplane_core::api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(s): State<TenantSide>,
    u: UserCtx,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<Response> {
    u.require(Permission::UsersManage)?;
    let mut errs = tenantplane_core::ValidationErrors::new();
    let email = errs.check("/email", req.email.parse::<Email>());
    let name = user_admin::display_name(
        req.display_name.as_deref(),
        email.as_ref().map(|e| e.as_str()).unwrap_or("user"),
        &mut errs,
    );
    let roles =
        validate_roles_and_departments(&s, &u, Some(&req.roles), Some(&req.departments), &mut errs)
            .await?;
    errs.clone().into_result()?;
    let Some(email) = email else {
        return Err(ApiError::validation(errs));
    };
    let tenant = u.tenant.tenant();
    let max = s
        .plans
        .get(&tenant.plan)
        .map(|q| q.max_users)
        .unwrap_or(u64::MAX);
    let mut departments = req.departments.clone();
    departments.dedup();
    let entry = audit_trail::admin_entry(
        &u,
        "user-create",
        "C",
        None,
        Some(serde_json::json!({ "roles": roles, "departments": departments })),
    );
    let (rec, otp) = committed_with(
        vec![entry.clone()],
        s.identity
            .create_user(u.tenant.db(&s.data)?, email, name, roles, departments, max),
    )
    .await?;
    audit_trail::committed(&s.audit, &u, entry.entity(format!("User/{}", rec.id)));
    let mut r = no_store(
        (
            StatusCode::CREATED,
            Json(UserCredentials {
                user: rec.view(),
                one_time_password: otp,
            }),
        )
            .into_response(),
    );
    r.headers_mut().insert(header::ETAG, etag(rec.version));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/tenant/users/{}", rec.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn parse_user_id(raw: &str) -> ApiResult<UserId> {
    raw.parse().map_err(|_| ApiError::not_found("user"))
}

async fn load_user(s: &TenantSide, u: &UserCtx, id: &str) -> ApiResult<users::UserRecord> {
    let id = parse_user_id(id)?;
    users::get(u.tenant.db(&s.data)?, id)
        .await?
        .map(|x| x.0)
        .ok_or_else(|| u.not_found(s, id.as_uuid(), "user"))
}

/// `GET /api/tenant/users/{id}`.
#[utoipa::path(get, path = "/api/tenant/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path, description = "The user's id")),
    security(("user_token" = [])),
    responses((status = 200, description = "The user", body = UserView, headers(("ETag" = String))),
              (status = 404, description = "No such user in this tenant", body = tenantplane_core::api::Problem, content_type = "application/problem+json")))]
pub async fn get_user(
    State(s): State<TenantSide>,
    u: UserCtx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    u.require(Permission::UsersRead)?;
    let rec = load_user(&s, &u, &id).await?;
    Ok(user_response(StatusCode::OK, &rec))
}

/// `PATCH /api/tenant/users/{id}`: display name, roles, departments, disabled.
#[utoipa::path(patch, path = "/api/tenant/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    security(("user_token" = [])),
    responses((status = 200, description = "Updated", body = UserView),
              (status = 412, description = "If-Match does not match", body = tenantplane_core::api::Problem, content_type = "application/problem+json")))]
pub async fn update_user(
    State(s): State<TenantSide>,
    u: UserCtx,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Response> {
    u.require(Permission::UsersManage)?;
    let mut rec = load_user(&s, &u, &id).await?;
    if let Some(v) = if_match
        && v != rec.version
    {
        return Err(ApiError::version_mismatch(rec.version));
    }
    let mut errs = tenantplane_core::ValidationErrors::new();
    let roles = validate_roles_and_departments(
        &s,
        &u,
        req.roles.as_deref(),
        req.departments.as_deref(),
        &mut errs,
    )
    .await?;
    let change = user_admin::UserChange {
        display_name: req.display_name,
        roles: req.roles.is_some().then_some(roles),
        departments: req.departments,
        disabled: req.disabled,
    };
    let disabling = user_admin::apply_change(&mut rec, u.claims.sub, change, &mut errs);
    errs.into_result()?;
    let tenant = u.tenant.tenant().id;
    let entry = audit_trail::admin_entry(
        &u,
        if disabling {
            "user-disable"
        } else {
            "user-update"
        },
        "U",
        Some(format!("User/{}", rec.id)),
        Some(serde_json::json!({
            "roles": rec.roles, "departments": rec.departments, "disabled": rec.disabled
        })),
    );
    committed_with(
        vec![entry.clone()],
        s.identity
            .save_user(tenant, u.tenant.db(&s.data)?, &rec, disabling),
    )
    .await?;
    audit_trail::committed(&s.audit, &u, entry);
    if disabling {
        tracing::info!(user_id = %rec.id, "tenant user disabled; sessions revoked");
    }
    Ok(user_response(StatusCode::OK, &rec))
}

/// `POST /api/tenant/users/{id}/revoke-sessions`: logs the user out everywhere.
#[utoipa::path(post, path = "/api/tenant/users/{id}/revoke-sessions", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    security(("user_token" = [])),
    responses((status = 204, description = "Every refresh token revoked; access tokens refused")))]
pub async fn revoke_sessions(
    State(s): State<TenantSide>,
    u: UserCtx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    u.require(Permission::UsersManage)?;
    let id = parse_user_id(&id)?;
    let entry =
        audit_trail::admin_entry(&u, "sessions-revoke", "D", Some(format!("User/{id}")), None);
    committed_with(
        vec![entry.clone()],
        s.identity
            .revoke_sessions(u.tenant.tenant().id, u.tenant.db(&s.data)?, id),
    )
    .await?;
    audit_trail::committed(&s.audit, &u, entry);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/tenant/users/{id}/reset-password`: a new one-time password (shown once).
#[utoipa::path(post, path = "/api/tenant/users/{id}/reset-password", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    security(("user_token" = [])),
    responses((status = 200, description = "New one-time password; sessions revoked", body = UserCredentials)))]
pub async fn reset_password(
    State(s): State<TenantSide>,
    u: UserCtx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    u.require(Permission::UsersManage)?;
    let rec = load_user(&s, &u, &id).await?;
    let entry = audit_trail::admin_entry(
        &u,
        "password-reset",
        "U",
        Some(format!("User/{}", rec.id)),
        None,
    );
    let (rec, otp) = committed_with(
        vec![entry.clone()],
        s.identity
            .reset_password(u.tenant.tenant().id, u.tenant.db(&s.data)?, rec, &[]),
    )
    .await?;
    audit_trail::committed(&s.audit, &u, entry);
    Ok(no_store(
        Json(UserCredentials {
            user: rec.view(),
            one_time_password: otp,
        })
        .into_response(),
    ))
}

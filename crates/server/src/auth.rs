//! Request credentials: the one bearer-token parser, and operator authentication
//! ([`OperatorCtx`]) against the control plane's token cache.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use tenantplane_control::tokens::{MAX_TOKEN_LEN, hash_token};
use tenantplane_core::{Operator, OperatorRole};

use crate::{app::AppState, problem::ApiError};

/// The token of an `Authorization: Bearer <token>` header: `None` when the header is
/// missing, of another scheme, empty or longer than `max_len` bytes.
pub fn bearer_token(headers: &axum::http::HeaderMap, max_len: usize) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty() && t.len() <= max_len)
}

/// An authenticated operator (extractor for `/api/v1`).
#[derive(Debug, Clone)]
pub struct OperatorCtx {
    /// Who is calling.
    pub operator: Operator,
}

impl OperatorCtx {
    /// Refuses read-only operators.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.operator.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::forbidden(&format!(
                "role {} is read-only; this needs {}",
                self.operator.role,
                OperatorRole::PlatformAdmin
            )))
        }
    }
}

impl FromRequestParts<AppState> for OperatorCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(ApiError::unauthorized(
                "send an operator token as 'Authorization: Bearer <token>'",
            ));
        }
        let token = bearer_token(&parts.headers, MAX_TOKEN_LEN)
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        let hash = hash_token(token);
        let op = state
            .control
            .operator_cache()
            .lookup(state.control.catalog(), &hash)
            .await
            .map_err(ApiError::from)?;
        match op {
            Some(op) if !op.disabled => Ok(OperatorCtx { operator: op }),
            _ => {
                metrics::counter!("tenantplane_operator_auth_failures_total").increment(1);
                Err(ApiError::unauthorized("invalid or disabled operator token"))
            }
        }
    }
}

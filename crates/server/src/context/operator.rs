//! The authenticated operator of a platform request.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use tenantplane_control::{
    Control,
    tokens::{MAX_TOKEN_LEN, hash_token},
};
use tenantplane_core::{Operator, OperatorRole};

use crate::problem::ApiError;

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

impl<S> FromRequestParts<S> for OperatorCtx
where
    S: Send + Sync,
    Arc<Control>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let me = authenticate(parts, &Arc::<Control>::from_ref(state)).await?;
        if !me.operator.role.can_read() {
            return Err(ApiError::forbidden(&format!(
                "role {} may only report usage",
                me.operator.role
            )));
        }
        Ok(me)
    }
}

/// A caller that may report usage events: a platform administrator or a usage reporter
/// (a service token).
#[derive(Debug, Clone)]
pub struct ReporterCtx {
    /// Who is calling.
    pub operator: Operator,
}

impl<S> FromRequestParts<S> for ReporterCtx
where
    S: Send + Sync,
    Arc<Control>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let me = authenticate(parts, &Arc::<Control>::from_ref(state)).await?;
        if !me.operator.role.can_report_usage() {
            return Err(ApiError::forbidden(&format!(
                "role {} cannot report usage; this needs {} or {}",
                me.operator.role,
                OperatorRole::UsageReporter,
                OperatorRole::PlatformAdmin
            )));
        }
        Ok(ReporterCtx {
            operator: me.operator,
        })
    }
}

/// Where the platform audit middleware learns who acted (set once the token is verified).
#[derive(Debug, Clone, Default)]
pub struct ActingOperator(pub Arc<std::sync::OnceLock<String>>);

/// The operator named by the request's bearer token.
async fn authenticate(parts: &Parts, control: &Control) -> Result<OperatorCtx, ApiError> {
    let me = authenticate_token(parts, control).await?;
    if let Some(slot) = parts.extensions.get::<ActingOperator>() {
        let _ = slot.0.set(me.operator.name.clone());
    }
    Ok(me)
}

async fn authenticate_token(parts: &Parts, control: &Control) -> Result<OperatorCtx, ApiError> {
    {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(ApiError::unauthorized(
                "send an operator token as 'Authorization: Bearer <token>'",
            ));
        }
        let token = super::bearer_token(&parts.headers, MAX_TOKEN_LEN)
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        let hash = hash_token(token);
        let op = control
            .operator_cache()
            .lookup(control.catalog(), &hash)
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

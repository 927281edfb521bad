//! Error kinds shared by every crate. Each kind maps to exactly one HTTP status and one
//! stable problem `type` in the edge crate; what clients see never includes internal messages.

use serde::Serialize;

/// The classification of a failure, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Input failed validation (400).
    Validation,
    /// Missing or wrong credentials (401).
    Unauthorized,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// No such resource (404).
    NotFound,
    /// Uniqueness or state conflict (409).
    Conflict,
    /// The resource is gone (410).
    Gone,
    /// `If-Match` did not match (412).
    PreconditionFailed,
    /// Too many requests (429).
    RateLimited,
    /// A dependency is unavailable (503).
    Unavailable,
    /// A bug or an unexpected storage failure (500).
    Internal,
}

/// One field-level validation error (`pointer` is a JSON pointer into the request body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer of the offending field, e.g. `/slug` or `/branding/primary_color`.
    pub pointer: String,
    /// Human-readable reason.
    pub detail: String,
}

/// A list of field errors collected while validating one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.pointer, e.detail)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// An empty collection.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// A collection with a single error.
    pub fn single(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self(vec![FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }])
    }

    /// Adds an error.
    pub fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    /// Records the error of a parse result under `pointer`, returning the value if any.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        pointer: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(pointer, e.to_string());
                None
            }
        }
    }

    /// `Ok(())` when empty, the collection otherwise.
    pub fn into_result(self) -> Result<(), Self> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// True when no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a PostgreSQL SQLSTATE says the connection is gone rather than the statement
/// failed: class 08 (connection exception) and `57P01`–`57P03` (the server shut down,
/// crashed or is starting). Such failures are the store being unavailable (503 + retry);
/// the pools drop those connections (they report closed once the server hung up).
pub fn pg_connection_lost(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03")
}

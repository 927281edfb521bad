//! Who is calling: the request contexts that handlers take as extractors —
//! [`OperatorCtx`] on platform routes, [`UserCtx`] (and [`PendingUserCtx`]) on tenant routes —
//! and the one parser of `Authorization: Bearer` both use.

use axum::http::header;

mod operator;
mod user;

pub use operator::{ActingOperator, OperatorCtx, ReporterCtx};
pub use user::{PendingUserCtx, UserCtx};
pub(crate) use user::{peer, request_id};

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

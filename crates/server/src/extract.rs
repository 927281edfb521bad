//! Request extractors that turn every bad input into a stable problem: JSON bodies with
//! field pointers, `If-Match` preconditions, query strings.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body; problems: 415 wrong content type, 413 too large, 400 malformed (with the
/// JSON pointer of the offending field).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`] but an empty body yields `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
    let json = is_json(req.headers());
    let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            )
            .detail("the request body exceeds the configured limit")
        } else {
            ApiError::malformed("the request body could not be read", None)
        }
    })?;
    Ok((json, bytes))
}

/// Parses a JSON object body, reporting the pointer of the first failing field. Every
/// request body of the API is an object: serde would otherwise read a struct from an
/// array (`["ops.bob"]` as `{"name": "ops.bob"}`), accepting what the document refuses.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::malformed(
                "the request body must be a JSON object",
                None,
            ));
        }
        None => return Err(ApiError::malformed("the request body is empty", None)),
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde_json appends " at line X column Y"; keep the message, drop positions for
        // field errors (the pointer says where).
        let pointer = if path == "." || path.is_empty() {
            None
        } else {
            Some(format!("/{}", path.replace('.', "/")))
        };
        let msg = match msg.rfind(" at line ") {
            Some(i) if pointer.is_some() => msg[..i].to_owned(),
            _ => msg,
        };
        ApiError::malformed(msg, pointer)
    })
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
    )
    .detail("send the body as application/json")
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = body_bytes(req, state).await?;
        if !json {
            return Err(unsupported());
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = body_bytes(req, state).await?;
        // No body, or JSON `null` (the document allows it): the defaults.
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() || (json && trimmed == b"null") {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(unsupported());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The `If-Match` precondition: `None` when absent or `*`; the version of a strong ETag
/// (`"3"`); [`IfMatch::NEVER`] for anything else — a weak validator never matches for
/// If-Match (RFC 9110 §13.1.1), nor does a value that is no ETag of ours — so the request
/// is refused with 412 only after its body and path were found valid and the resource
/// exists, like any stale precondition.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<u64>);

impl IfMatch {
    /// A version no resource reaches: the precondition fails.
    pub const NEVER: u64 = u64::MAX;
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(match if_match(&parts.headers) {
            IfMatchHeader::Absent | IfMatchHeader::Any => None,
            IfMatchHeader::Strong(n) if n != Self::NEVER => Some(n),
            _ => Some(Self::NEVER),
        }))
    }
}

/// An `If-Match` header as sent: the one parser of every surface (the API wants strong
/// validators, FHIR weak ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatchHeader {
    /// No header.
    Absent,
    /// `*`.
    Any,
    /// `"3"`.
    Strong(u64),
    /// `W/"3"`.
    Weak(u64),
    /// Anything else (a list, an ETag that is no version of ours, bytes that are no text).
    Other,
}

/// Parses the `If-Match` header of a request.
pub fn if_match(headers: &HeaderMap) -> IfMatchHeader {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return IfMatchHeader::Absent;
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return IfMatchHeader::Any;
    }
    let (weak, tag) = match s.strip_prefix("W/") {
        Some(t) => (true, t),
        None => (false, s),
    };
    match tag
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) if weak => IfMatchHeader::Weak(n),
        Some(n) => IfMatchHeader::Strong(n),
        None => IfMatchHeader::Other,
    }
}

/// The `ETag` header value for a version.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A query string; problems: 400 naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_parse(q).map(ApiQuery)
    }
}

fn serde_urlencoded_parse<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::field("?", "the query string is not valid"))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| {
        use axum::extract::rejection::QueryRejection;
        let detail = match e {
            QueryRejection::FailedToDeserializeQueryString(inner) => inner.body_text(),
            other => other.body_text(),
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameters",
        )
        .detail(detail.replace("Failed to deserialize query string: ", ""))
    })
}

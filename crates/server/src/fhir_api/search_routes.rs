//! FHIR search over HTTP: query strings and `_search` forms read strictly, tenant-bound
//! page cursors, and the searchset Bundle.

use super::*;

/// `application/x-www-form-urlencoded` of `params` (for links).
pub(crate) fn query_string(params: &[(String, String)]) -> String {
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

pub(crate) fn bad_query(msg: &str) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, "invalid", msg)
}

/// Parses `application/x-www-form-urlencoded` search parameters, failing closed: a query
/// that cannot be read exactly is refused, never searched as if it had no parameters.
/// `strict_chars` (form bodies) also refuses characters a form encoder never leaves raw
/// (space, `"`, `<`, …); query strings have been through the URI parser already.
pub(crate) fn parse_form(raw: &str, strict_chars: bool) -> FhirResult<Vec<(String, String)>> {
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
        // Control characters are refused by `search::parse`, for every way in.
        out.push((k, v));
    }
    Ok(out)
}

pub(crate) async fn run_search(
    s: &TenantSide,
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
        q.after = Some(search::open_cursor(tenant, rt, sort, c).ok_or_else(|| {
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the _cursor is not valid here (expired, altered, or from another search)",
            )
        })?);
    }
    let _slot = heavy_slot(s, u.tenant.tenant()).await?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let page = search::search(db, &q).await?;
    s.audit.accesses(
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
    let next_url = page.next.as_ref().map(|k| {
        let mut next = kept.clone();
        next.push(("_cursor".into(), search::seal_cursor(tenant, rt, sort, k)));
        format!("{base}/{rt}?{}", query_string(&next))
    });
    let out = tenantplane_records::response_bundle::searchset(
        &tenantplane_records::response_bundle::SearchPage {
            base,
            self_url,
            next_url,
            total: page.total,
            matches: &page.matches,
            included: &page.included,
            elements: &q.elements,
        },
    )?;
    if !ignored.is_empty() {
        tracing::debug!(ignored = ?ignored, "search parameters ignored");
    }
    Ok(fhir_body(StatusCode::OK, out))
}

/// `GET /fhir/{type}?…`: search.
pub async fn search_get(
    State(s): State<TenantSide>,
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
    State(s): State<TenantSide>,
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

//! `batch` and `transaction` Bundles at the FHIR base and their response Bundle.

use super::*;

/// Largest Bundle accepted at the base (`POST /fhir`).
pub const MAX_BUNDLE_BYTES: usize = 32 << 20;

pub(crate) fn status_text(s: u16) -> String {
    let reason = StatusCode::from_u16(s)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("");
    format!("{s} {reason}").trim_end().to_owned()
}

/// `POST /fhir`: a `batch` or `transaction` Bundle.
pub async fn bundle(
    State(s): State<TenantSide>,
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
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
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
    s.audit.accesses(accesses.into_inner());
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
            let action = ClinicalAction::of_entry(r.wrote, r.status);
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

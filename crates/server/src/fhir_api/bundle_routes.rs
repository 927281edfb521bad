//! `batch` and `transaction` Bundles at the FHIR base and their response Bundle.

use tenantplane_records::response_bundle;

use super::*;

/// Largest Bundle accepted at the base (`POST /fhir`).
pub const MAX_BUNDLE_BYTES: usize = 32 << 20;

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
    let _slot = heavy_slot(&s, tenant).await?;
    let db = u.tenant.db(&s.data).map_err(FhirError::from)?;
    let started = std::time::Instant::now();
    let (kind, results) =
        match tenantplane_records::bundle::process(db, &body, limits(&s, tenant), &actor(&u)).await
        {
            Ok(x) => x,
            Err(tenantplane_records::bundle::BundleError::Invalid(issues)) => {
                return Err(FhirError::invalid(issues));
            }
            Err(tenantplane_records::bundle::BundleError::Entry(i, status, code, msg)) => {
                return Err(FhirError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    code,
                    tenantplane_records::bundle::BundleError::entry_detail(i, &msg),
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
    Ok(response?)
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
) -> Result<Response, RecordsError> {
    let kind_name = response_bundle::kind_name(kind);
    metrics::histogram!("tenantplane_fhir_bundle_seconds", "type" => kind_name)
        .record(started.elapsed().as_secs_f64());
    for r in results {
        if let Some(v) = &r.version {
            record(
                ClinicalAction::of_entry(r.wrote, r.status),
                v,
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
            );
        }
    }
    let body = response_bundle::batch_response(
        kind,
        results,
        full_base,
        representation,
        &response_bundle::EntryRendering {
            status_text: &status_text,
            outcome: &|code, msg| outcome(code, "error", &[(msg.to_owned(), None)]),
        },
    )?;
    Ok(fhir_body(StatusCode::OK, body))
}

/// `201 Created` and the like: a status with its reason phrase, as Bundle responses carry.
fn status_text(s: u16) -> String {
    let reason = StatusCode::from_u16(s)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("");
    format!("{s} {reason}").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts() {
        assert_eq!(status_text(201), "201 Created");
        assert_eq!(status_text(299), "299");
    }
}

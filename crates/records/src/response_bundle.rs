//! The Bundles the server answers with — `searchset`, `history`, `batch-response` and
//! `transaction-response` — as typed serde documents. Stored resources go in as
//! [`RawValue`]s: copied as stored (lossless, never re-parsed into a tree), only checked to be
//! JSON.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    RecordsError,
    bundle::{EntryResult, Kind},
    resource::{self, ResourceType},
    store::Version,
};

/// A response Bundle.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    link: Vec<Link>,
    entry: Vec<Entry<'a>>,
}

#[derive(Debug, Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Search>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Response>,
}

/// A resource as stored, or a subset of its elements made for this answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Resource<'a> {
    Stored(&'a RawValue),
    Made(Box<RawValue>),
}

#[derive(Debug, Serialize)]
struct Search {
    mode: &'static str,
}

#[derive(Debug, Serialize)]
struct Request {
    method: &'static str,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<serde_json::Value>,
}

fn stored(doc: &str) -> Result<&RawValue, RecordsError> {
    serde_json::from_str(doc)
        .map_err(|e| RecordsError::Internal(format!("a stored resource is not JSON: {e}")))
}

fn made(doc: String) -> Result<Box<RawValue>, RecordsError> {
    RawValue::from_string(doc)
        .map_err(|e| RecordsError::Internal(format!("an element subset is not JSON: {e}")))
}

fn to_string(b: &Bundle<'_>) -> Result<String, RecordsError> {
    serde_json::to_string(b).map_err(|e| RecordsError::Internal(format!("bundle: {e}")))
}

/// A weak ETag for a version: `W/"3"`.
pub fn weak_etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// A page of search results.
#[derive(Debug)]
pub struct SearchPage<'a> {
    /// `{base}/fhir` of the tenant.
    pub base: &'a str,
    /// The page's own URL.
    pub self_url: String,
    /// The next page's URL.
    pub next_url: Option<String>,
    /// Matches in total (`_total=accurate`).
    pub total: Option<u64>,
    /// The matches, in order.
    pub matches: &'a [Version],
    /// Resources included by `_include`/`_revinclude`.
    pub included: &'a [Version],
    /// `_elements`: the elements kept of each match (all when empty).
    pub elements: &'a [String],
}

/// The `searchset` Bundle of a page.
pub fn searchset(p: &SearchPage<'_>) -> Result<String, RecordsError> {
    let mut link = vec![Link {
        relation: "self",
        url: p.self_url.clone(),
    }];
    if let Some(n) = &p.next_url {
        link.push(Link {
            relation: "next",
            url: n.clone(),
        });
    }
    let mut entry = Vec::with_capacity(p.matches.len() + p.included.len());
    for (mode, v) in p
        .matches
        .iter()
        .map(|v| ("match", v))
        .chain(p.included.iter().map(|v| ("include", v)))
    {
        let doc = v.doc.as_deref().unwrap_or("{}");
        let resource = if p.elements.is_empty() || mode == "include" {
            Resource::Stored(stored(doc)?)
        } else {
            Resource::Made(made(resource::subset(doc, p.elements))?)
        };
        entry.push(Entry {
            full_url: Some(format!("{}/{}/{}", p.base, v.rtype, v.id)),
            resource: Some(resource),
            search: Some(Search { mode }),
            ..Default::default()
        });
    }
    to_string(&Bundle {
        resource_type: "Bundle",
        kind: "searchset",
        total: p.total,
        link,
        entry,
    })
}

/// The `history` Bundle of one resource: `versions` newest first, `count` as asked.
pub fn history(
    base: &str,
    rtype: ResourceType,
    id: &str,
    count: u64,
    versions: &[Version],
) -> Result<String, RecordsError> {
    let mut entry = Vec::with_capacity(versions.len());
    for v in versions {
        let (method, status) = match (v.deleted, v.version) {
            (true, _) => ("DELETE", "204"),
            (false, 1) => ("POST", "201"),
            (false, _) => ("PUT", "200"),
        };
        let url = if method == "POST" {
            rtype.to_string()
        } else {
            format!("{rtype}/{}", v.id)
        };
        entry.push(Entry {
            full_url: Some(format!("{base}/{rtype}/{}", v.id)),
            resource: v
                .doc
                .as_deref()
                .map(stored)
                .transpose()?
                .map(Resource::Stored),
            request: Some(Request { method, url }),
            response: Some(Response {
                status: status.into(),
                location: None,
                etag: Some(weak_etag(v.version)),
                last_modified: Some(resource::instant(v.last_updated)),
                outcome: None,
            }),
            ..Default::default()
        });
    }
    to_string(&Bundle {
        resource_type: "Bundle",
        kind: "history",
        total: Some(versions.len() as u64),
        link: vec![Link {
            relation: "self",
            url: format!("{base}/{rtype}/{id}/_history?_count={count}"),
        }],
        entry,
    })
}

/// How the HTTP edge renders what records cannot know of HTTP: an entry's status with its
/// reason phrase (`201 Created`), and an entry's error (FHIR issue code, diagnostics) as an
/// OperationOutcome.
pub struct EntryRendering<'a> {
    /// The status line of an entry's `response.status`.
    pub status_text: &'a dyn Fn(u16) -> String,
    /// The OperationOutcome of a failed entry.
    pub outcome: &'a dyn Fn(&str, &str) -> serde_json::Value,
}

/// The `batch-response` or `transaction-response` Bundle of processed entries (its writes
/// have committed: this never fails on a stored document). With `representation`
/// (`Prefer: return=representation`) written resources are included.
pub fn batch_response(
    kind: Kind,
    results: &[EntryResult],
    full_base: &str,
    representation: bool,
    render: &EntryRendering<'_>,
) -> Result<String, RecordsError> {
    let mut entry = Vec::with_capacity(results.len());
    for r in results {
        let mut e = Entry::default();
        if let Some(v) = &r.version {
            e.full_url = Some(format!("{full_base}/{}/{}", v.rtype, v.id));
            // What was just written: a document that is not JSON (it cannot be: this server
            // wrote it) is left out rather than failing an answer whose writes committed.
            if representation && let Some(d) = &v.doc {
                match stored(d) {
                    Ok(raw) => e.resource = Some(Resource::Stored(raw)),
                    Err(err) => {
                        tracing::error!(error = %err, id = %v.id, "written resource left out of the response")
                    }
                }
            }
        }
        e.response = Some(Response {
            status: (render.status_text)(r.status),
            location: r.location.clone(),
            etag: r.version.as_ref().map(|v| weak_etag(v.version)),
            last_modified: r
                .version
                .as_ref()
                .map(|v| resource::instant(v.last_updated)),
            outcome: r
                .error
                .as_ref()
                .map(|(code, msg)| (render.outcome)(code, msg)),
        });
        entry.push(e);
    }
    to_string(&Bundle {
        resource_type: "Bundle",
        kind: kind_name(kind),
        total: None,
        link: Vec::new(),
        entry,
    })
}

/// `batch-response` or `transaction-response`.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Batch => "batch-response",
        Kind::Transaction => "transaction-response",
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn patient() -> ResourceType {
        ResourceType::parse("Patient").unwrap_or_else(|| unreachable!())
    }

    fn v(id: &str, version: u64, doc: Option<&str>) -> Version {
        Version {
            rtype: patient(),
            id: id.into(),
            version,
            last_updated: OffsetDateTime::UNIX_EPOCH,
            deleted: doc.is_none(),
            doc: doc.map(str::to_owned),
        }
    }

    #[test]
    fn stored_documents_are_copied_as_stored() {
        let doc = r#"{"resourceType":"Patient","id":"a","name":[{"family":"Ünal"}],"x":1.50}"#;
        let m = [v("a", 1, Some(doc))];
        let out = searchset(&SearchPage {
            base: "https://h.example/fhir",
            self_url: "https://h.example/fhir/Patient?".into(),
            next_url: Some("https://h.example/fhir/Patient?_cursor=x".into()),
            total: Some(1),
            matches: &m,
            included: &[],
            elements: &[],
        })
        .unwrap_or_default();
        assert!(out.contains(doc), "{out}");
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(parsed["type"], "searchset");
        assert_eq!(parsed["total"], 1);
        assert_eq!(parsed["link"][1]["relation"], "next");
        assert_eq!(parsed["entry"][0]["search"]["mode"], "match");
        assert_eq!(
            parsed["entry"][0]["fullUrl"],
            "https://h.example/fhir/Patient/a"
        );
    }

    #[test]
    fn history_entries_say_what_each_version_was() {
        let vs = [
            v("a", 3, None),
            v("a", 2, Some(r#"{"id":"a"}"#)),
            v("a", 1, Some(r#"{"id":"a"}"#)),
        ];
        let out = history("b", patient(), "a", 10, &vs).unwrap_or_default();
        let p: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(p["total"], 3);
        let methods: Vec<&str> = p["entry"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["request"]["method"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(methods, ["DELETE", "PUT", "POST"]);
        assert!(p["entry"][0].get("resource").is_none());
        assert_eq!(p["entry"][1]["response"]["etag"], "W/\"2\"");
    }

    #[test]
    fn a_corrupt_stored_document_is_an_error_not_broken_json() {
        let m = [v("a", 1, Some("{not json"))];
        let r = searchset(&SearchPage {
            base: "b",
            self_url: "s".into(),
            next_url: None,
            total: None,
            matches: &m,
            included: &[],
            elements: &[],
        });
        assert!(matches!(r, Err(RecordsError::Internal(_))));
    }
}

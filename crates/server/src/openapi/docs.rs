//! A self-contained API reference page rendered from the OpenAPI document (no CDN, no
//! JavaScript): every operation with its parameters, body and responses.

use axum::response::Html;
use utoipa::openapi::{RefOr, path::Operation};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn schema_name<T>(r: &RefOr<T>) -> String {
    match r {
        RefOr::Ref(r) => r.ref_location.rsplit('/').next().unwrap_or("").to_owned(),
        RefOr::T(_) => "inline".to_owned(),
    }
}

fn operation(method: &str, path: &str, op: &Operation, out: &mut String) {
    let summary = op
        .summary
        .as_deref()
        .or(op.description.as_deref())
        .unwrap_or("");
    out.push_str(&format!(
        "<section class=\"op\"><h3><span class=\"m {m}\">{M}</span> <code>{p}</code></h3><p>{s}</p>",
        m = method,
        M = method.to_uppercase(),
        p = esc(path),
        s = esc(summary)
    ));
    if let Some(params) = &op.parameters {
        out.push_str("<h4>Parameters</h4><ul>");
        for p in params {
            out.push_str(&format!(
                "<li><code>{}</code> ({}) {}</li>",
                esc(&p.name),
                serde_json::to_value(&p.parameter_in)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                esc(p.description.as_deref().unwrap_or(""))
            ));
        }
        out.push_str("</ul>");
    }
    if let Some(body) = &op.request_body {
        out.push_str("<h4>Request body</h4><ul>");
        for (ct, c) in &body.content {
            let name = c.schema.as_ref().map(schema_name).unwrap_or_default();
            out.push_str(&format!("<li><code>{}</code> {}</li>", esc(ct), esc(&name)));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h4>Responses</h4><ul>");
    for (code, r) in &op.responses.responses {
        let desc = match r {
            RefOr::T(r) => r.description.clone(),
            RefOr::Ref(r) => r.ref_location.clone(),
        };
        out.push_str(&format!("<li><b>{}</b> {}</li>", esc(code), esc(&desc)));
    }
    out.push_str("</ul></section>");
}

/// `GET /api/v1/docs`.
pub async fn page() -> Html<String> {
    let doc = super::openapi();
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
         .op{{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}}\
         .m{{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:.8rem;padding:.1rem .3rem}}\
         .get{{background:#2b6cb0}}.post{{background:#2f855a}}.patch{{background:#b7791f}}.delete{{background:#c53030}}.put{{background:#6b46c1}}\
         code{{font-size:.95em}}</style></head><body><h1>{t}</h1><p>{d}</p>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a> (OpenAPI {v}). \
         Authenticate with <code>Authorization: Bearer &lt;operator token&gt;</code>.</p>",
        t = esc(&doc.info.title),
        d = esc(doc.info.description.as_deref().unwrap_or("")),
        v = esc(&serde_json::to_value(&doc.openapi).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
    ));
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ];
        for (m, op) in ops {
            if let Some(op) = op {
                operation(m, path, op, &mut out);
            }
        }
    }
    out.push_str("</body></html>");
    Html(out)
}

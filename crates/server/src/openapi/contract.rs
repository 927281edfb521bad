//! Completes the generated OpenAPI document so that a generated client (or schemathesis)
//! can trust it: operations served on a tenant's address declare their servers, and every
//! operation lists the error answers the edge can give it — derived from what the
//! operation is (secured, served on a tenant's host, has path parameters, takes a body or
//! `If-Match`), so a new handler gets them without repeating them.

use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, ResponseBuilder,
    path::{Operation, ParameterIn},
    server::{Server, ServerBuilder, ServerVariableBuilder},
};

/// Whether `path` is served on a tenant's address rather than the platform's.
fn on_tenant_host(path: &str) -> bool {
    path.starts_with("/api/tenant")
        || path.starts_with("/auth/")
        || path.starts_with("/.well-known/")
}

fn tenant_servers() -> Vec<Server> {
    let slug = || {
        ServerVariableBuilder::new()
            .default_value("demo-hospital")
            .description(Some("The tenant's slug"))
            .build()
    };
    vec![
        ServerBuilder::new()
            .url("/t/{slug}")
            .description(Some("The tenant's path prefix on the platform address"))
            .parameter("slug", slug())
            .build(),
        ServerBuilder::new()
            .url("{scheme}://{slug}.{base_domain}")
            .description(Some("The tenant's own host"))
            .parameter("slug", slug())
            .parameter(
                "base_domain",
                ServerVariableBuilder::new()
                    .default_value("localhost:8080")
                    .description(Some("server.base_domain (and port)"))
                    .build(),
            )
            .parameter(
                "scheme",
                ServerVariableBuilder::new()
                    .default_value("http")
                    .enum_values(Some(["http", "https"]))
                    .build(),
            )
            .build(),
    ]
}

/// Adds `status` with a problem+json body unless the operation documents it already.
fn add(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    if op.responses.responses.contains_key(&key) {
        return;
    }
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content)
        .build();
    op.responses.responses.insert(key, response.into());
}

fn complete_operation(path: &str, op: &mut Operation) {
    let tenant_host = on_tenant_host(path);
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path_params = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_if_match = params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("if-match"));
    add(
        op,
        400,
        "Malformed request: body, query, header or path parameter (problem+json with pointers)",
    );
    add(op, 429, "Rate limited (Retry-After, RateLimit headers)");
    if secured {
        add(op, 401, "Missing, malformed or invalid bearer token");
        add(op, 403, "Authenticated but not allowed");
    }
    if tenant_host {
        add(
            op,
            404,
            "No tenant at this address (tenant-not-found), or no such resource",
        );
        add(
            op,
            403,
            "Tenant suspended, or its monthly request quota used up",
        );
        add(op, 410, "Tenant deleted");
        add(
            op,
            503,
            "Tenant provisioning, or its store busy, unreachable or being upgraded (Retry-After)",
        );
    }
    if has_path_params {
        add(op, 404, "No such resource");
    }
    if op.request_body.is_some() {
        add(op, 413, "Request body too large");
        add(op, 415, "The body must be application/json");
    }
    if has_if_match {
        add(op, 412, "If-Match does not match the current version");
    }
}

/// Declares the servers of tenant-host operations and completes every operation's
/// responses.
pub fn complete(doc: &mut OpenApi) {
    let servers = tenant_servers();
    for (path, item) in doc.paths.paths.iter_mut() {
        if on_tenant_host(path) {
            item.servers = Some(servers.clone());
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete_operation(path, op);
        }
    }
}

//! A typed client for the Tenantplane control-plane API, used by the `tenantplane` CLI and by
//! the integration tests. Every API failure surfaces as the server's problem document.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use tenantplane_core::api::{
    AddDomain, CreateOperator, CreateTenant, OperatorCredentials, OperatorList, OperatorView,
    PlanList, Problem, PublicTenant, TenantList, TenantView, TransitionRequest, UpdatePlan,
    UpdateTenant,
};

/// Errors of client calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem document.
    #[error("{}", describe(.0))]
    Api(Problem),
    /// The server could not be reached.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server answered something unexpected.
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

/// `title (status): detail`, then each field error as `pointer: detail`.
fn describe(p: &Problem) -> String {
    let mut s = format!(
        "{} ({}): {}",
        p.title,
        p.status,
        p.detail.clone().unwrap_or_default()
    );
    for e in &p.errors {
        s.push_str(&format!("\n  {}: {}", e.pointer, e.detail));
    }
    s
}

impl ClientError {
    /// The problem document, if the server sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api(p) => Some(p),
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Filters of a tenant listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListQuery {
    /// Status filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Profile filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Plan filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Slug prefix or name substring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token,
            ..self.clone()
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` with the token attached.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T> {
        let res = rb
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected(e.to_string()))
        } else {
            match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => Err(ClientError::Api(p)),
                Err(_) => Err(ClientError::Unexpected(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))),
            }
        }
    }

    fn if_match(rb: RequestBuilder, v: Option<u64>) -> RequestBuilder {
        match v {
            Some(v) => rb.header(reqwest::header::IF_MATCH, format!("\"{v}\"")),
            None => rb,
        }
    }

    fn seg(s: &str) -> String {
        // Ids, slugs, plan and domain names never need escaping; anything else is refused by
        // the server, so encode conservatively.
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._@".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// `POST /api/v1/tenants`.
    pub async fn create_tenant(&self, req: &CreateTenant) -> Result<TenantView> {
        Self::send(self.request(Method::POST, "/api/v1/tenants").json(req)).await
    }

    /// `GET /api/v1/tenants`.
    pub async fn list_tenants(&self, q: &ListQuery) -> Result<TenantList> {
        Self::send(self.request(Method::GET, "/api/v1/tenants").query(q)).await
    }

    /// Every tenant matching `q`, following cursors.
    pub async fn list_all_tenants(&self, q: &ListQuery) -> Result<Vec<TenantView>> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list_tenants(&q).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// `GET /api/v1/tenants/{tenant}`.
    pub async fn get_tenant(&self, tenant: &str) -> Result<TenantView> {
        Self::send(self.request(
            Method::GET,
            &format!("/api/v1/tenants/{}", Self::seg(tenant)),
        ))
        .await
    }

    /// `POST /api/v1/tenants/{tenant}/fhir`: imports a FHIR Bundle; returns the response
    /// Bundle.
    pub async fn fhir_import(&self, tenant: &str, bundle: Vec<u8>) -> Result<serde_json::Value> {
        Self::send(
            self.request(
                Method::POST,
                &format!("/api/v1/tenants/{}/fhir", Self::seg(tenant)),
            )
            .header("content-type", "application/fhir+json")
            .body(bundle),
        )
        .await
    }

    /// `GET /api/v1/tenants/{tenant}/usage`.
    pub async fn tenant_usage(&self, tenant: &str) -> Result<tenantplane_core::api::TenantUsage> {
        Self::send(self.request(
            Method::GET,
            &format!("/api/v1/tenants/{}/usage", Self::seg(tenant)),
        ))
        .await
    }

    /// `POST /api/v1/usage/events`.
    pub async fn report_usage(
        &self,
        batch: &tenantplane_core::usage_api::UsageEventBatch,
    ) -> Result<tenantplane_core::usage_api::UsageEventsReport> {
        Self::send(
            self.request(Method::POST, "/api/v1/usage/events")
                .json(batch),
        )
        .await
    }

    /// `GET /api/v1/costs` as JSON.
    pub async fn costs(
        &self,
        q: &tenantplane_core::usage_api::CostQuery,
    ) -> Result<tenantplane_core::usage_api::CostReport> {
        let q = tenantplane_core::usage_api::CostQuery {
            format: None,
            ..q.clone()
        };
        Self::send(self.request(Method::GET, "/api/v1/costs").query(&q)).await
    }

    /// `GET /api/v1/tenants/{tenant}/statement` as JSON.
    pub async fn statement(
        &self,
        tenant: &str,
        month: Option<&str>,
    ) -> Result<tenantplane_core::usage_api::Statement> {
        let q = tenantplane_core::usage_api::StatementQuery {
            month: month.map(str::to_owned),
            format: None,
        };
        Self::send(
            self.request(
                Method::GET,
                &format!("/api/v1/tenants/{}/statement", Self::seg(tenant)),
            )
            .query(&q),
        )
        .await
    }

    /// `GET /api/v1/tenants/{tenant}/statement` as CSV (`csv`) or a printable page (`html`).
    pub async fn statement_text(
        &self,
        tenant: &str,
        month: Option<&str>,
        format: &str,
    ) -> Result<String> {
        let q = tenantplane_core::usage_api::StatementQuery {
            month: month.map(str::to_owned),
            format: Some(format.to_owned()),
        };
        Self::text(
            self.request(
                Method::GET,
                &format!("/api/v1/tenants/{}/statement", Self::seg(tenant)),
            )
            .query(&q),
        )
        .await
    }

    async fn text(rb: RequestBuilder) -> Result<String> {
        let res = rb
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if res.status().is_success() {
            return res
                .text()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()));
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Err(match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => ClientError::Api(p),
            Err(e) => ClientError::Unexpected(e.to_string()),
        })
    }

    /// `GET /api/v1/costs` as the server's CSV.
    pub async fn costs_csv(&self, q: &tenantplane_core::usage_api::CostQuery) -> Result<String> {
        let q = tenantplane_core::usage_api::CostQuery {
            format: Some("csv".into()),
            ..q.clone()
        };
        Self::text(self.request(Method::GET, "/api/v1/costs").query(&q)).await
    }

    /// `PATCH /api/v1/tenants/{tenant}`.
    pub async fn update_tenant(
        &self,
        tenant: &str,
        req: &UpdateTenant,
        if_match: Option<u64>,
    ) -> Result<TenantView> {
        let rb = self
            .request(
                Method::PATCH,
                &format!("/api/v1/tenants/{}", Self::seg(tenant)),
            )
            .json(req);
        Self::send(Self::if_match(rb, if_match)).await
    }

    /// `POST /api/v1/tenants/{tenant}/{suspend|resume|restore}`.
    pub async fn transition(
        &self,
        tenant: &str,
        action: &str,
        reason: Option<String>,
    ) -> Result<TenantView> {
        let rb = self
            .request(
                Method::POST,
                &format!(
                    "/api/v1/tenants/{}/{}",
                    Self::seg(tenant),
                    Self::seg(action)
                ),
            )
            .json(&TransitionRequest { reason });
        Self::send(rb).await
    }

    /// `DELETE /api/v1/tenants/{tenant}`.
    pub async fn delete_tenant(&self, tenant: &str, reason: Option<String>) -> Result<TenantView> {
        let rb = self
            .request(
                Method::DELETE,
                &format!("/api/v1/tenants/{}", Self::seg(tenant)),
            )
            .json(&TransitionRequest { reason });
        Self::send(rb).await
    }

    /// `POST /api/v1/tenants/{tenant}/domains`.
    pub async fn add_domain(&self, tenant: &str, domain: &str) -> Result<TenantView> {
        let rb = self
            .request(
                Method::POST,
                &format!("/api/v1/tenants/{}/domains", Self::seg(tenant)),
            )
            .json(&AddDomain {
                domain: domain.to_owned(),
            });
        Self::send(rb).await
    }

    /// `DELETE /api/v1/tenants/{tenant}/domains/{domain}`.
    pub async fn remove_domain(&self, tenant: &str, domain: &str) -> Result<TenantView> {
        Self::send(self.request(
            Method::DELETE,
            &format!(
                "/api/v1/tenants/{}/domains/{}",
                Self::seg(tenant),
                Self::seg(domain)
            ),
        ))
        .await
    }

    /// `GET /api/v1/plans`.
    pub async fn list_plans(&self) -> Result<PlanList> {
        Self::send(self.request(Method::GET, "/api/v1/plans")).await
    }

    /// `PATCH /api/v1/plans/{plan}`.
    pub async fn update_plan(
        &self,
        plan: &str,
        req: &UpdatePlan,
    ) -> Result<tenantplane_core::Plan> {
        Self::send(
            self.request(Method::PATCH, &format!("/api/v1/plans/{}", Self::seg(plan)))
                .json(req),
        )
        .await
    }

    /// `GET /api/v1/operators`.
    pub async fn list_operators(&self) -> Result<OperatorList> {
        Self::send(self.request(Method::GET, "/api/v1/operators")).await
    }

    /// `GET /api/v1/operators/me`.
    pub async fn me(&self) -> Result<OperatorView> {
        Self::send(self.request(Method::GET, "/api/v1/operators/me")).await
    }

    /// `POST /api/v1/operators`.
    pub async fn create_operator(&self, req: &CreateOperator) -> Result<OperatorCredentials> {
        Self::send(self.request(Method::POST, "/api/v1/operators").json(req)).await
    }

    /// `POST /api/v1/operators/{operator}/reset-token`.
    pub async fn reset_operator(&self, op: &str) -> Result<OperatorCredentials> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/operators/{}/reset-token", Self::seg(op)),
        ))
        .await
    }

    /// `POST /api/v1/operators/{operator}/disable`.
    pub async fn disable_operator(&self, op: &str) -> Result<OperatorView> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/operators/{}/disable", Self::seg(op)),
        ))
        .await
    }

    /// `GET /api/tenant` with an explicit `Host` (tenant resolution by domain).
    pub async fn tenant_profile_by_host(&self, host: &str) -> Result<PublicTenant> {
        Self::send(
            self.http
                .get(format!("{}/api/tenant", self.base))
                .header(reqwest::header::HOST, host),
        )
        .await
    }

    /// `GET /t/{slug}/api/tenant` (tenant resolution by path prefix).
    pub async fn tenant_profile_by_path(&self, slug: &str) -> Result<PublicTenant> {
        Self::send(
            self.http
                .get(format!("{}/t/{}/api/tenant", self.base, Self::seg(slug))),
        )
        .await
    }

    /// `POST /api/v1/tenants/{tenant}/audit/verify`: seals what is pending in the tenant's
    /// audit log and walks its chain.
    pub async fn verify_audit(
        &self,
        tenant: &str,
    ) -> Result<tenantplane_core::audit_api::VerifyReport> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/tenants/{}/audit/verify", Self::seg(tenant)),
        ))
        .await
    }

    /// `POST /api/v1/audit/verify`: walks the platform audit log's chain.
    pub async fn verify_platform_audit(&self) -> Result<tenantplane_core::audit_api::VerifyReport> {
        Self::send(self.request(Method::POST, "/api/v1/audit/verify")).await
    }

    /// `GET /api/v1/audit`: operators' actions, newest first.
    pub async fn platform_audit(
        &self,
        q: &tenantplane_core::audit_api::PlatformAuditParams,
    ) -> Result<tenantplane_core::audit_api::PlatformAuditPage> {
        Self::send(self.request(Method::GET, "/api/v1/audit").query(q)).await
    }

    /// `GET /api/v1/placement`.
    pub async fn placement(&self) -> Result<tenantplane_core::api::PlacementList> {
        Self::send(self.request(Method::GET, "/api/v1/placement")).await
    }

    /// `GET /t/{slug}/api/tenant/departments`.
    pub async fn departments(&self, slug: &str) -> Result<tenantplane_core::api::DepartmentList> {
        Self::send(self.http.get(format!(
            "{}/t/{}/api/tenant/departments",
            self.base,
            Self::seg(slug)
        )))
        .await
    }

    /// `POST /api/v1/tenants/{tenant}/retry`.
    pub async fn retry(&self, tenant: &str) -> Result<TenantView> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/tenants/{}/retry", Self::seg(tenant)),
        ))
        .await
    }

    /// `POST /api/v1/tenants/{t}/admin`: creates or resets a tenant administrator.
    pub async fn admin_reset(
        &self,
        tenant: &str,
        email: Option<String>,
    ) -> Result<tenantplane_core::identity::AdminCredentials> {
        Self::send(
            self.request(
                Method::POST,
                &format!("/api/v1/tenants/{}/admin", Self::seg(tenant)),
            )
            .json(&tenantplane_core::identity::AdminReset { email }),
        )
        .await
    }

    /// `GET /readyz`; true when ready.
    pub async fn ready(&self) -> Result<bool> {
        let res = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(res.status() == StatusCode::OK)
    }
}

//! Per-tenant single sign-on: the OpenID Connect authorization-code flow with PKCE against
//! the tenant's own provider, ID-token validation, and the stored settings.
//!
//! - The settings (issuer, client id, redirect URI, claim mapping) live in the tenant's own
//!   store; the client secret is sealed with the platform key bound to the tenant.
//! - `start` makes a `state`, a `nonce` and a PKCE verifier and seals them, bound to the
//!   tenant, into a short-lived cookie value: nothing is stored server-side, a cookie of one
//!   tenant does not open on another, and the callback needs the browser that started it.
//! - The callback exchanges the code (client_secret_basic, the verifier), then validates the
//!   ID token: an asymmetric algorithm only (never `none` or HMAC), a key of the provider's
//!   JWKS (refetched once when the `kid` is new), `iss` equal to the configured issuer,
//!   `aud` containing the tenant's client id (`azp` too when there are several), `exp`/`iat`
//!   and the `nonce` of this flow.
//! - The provider's discovery document and JWKS are cached per issuer; responses are read
//!   with a size cap and a timeout, and only `https` URLs are followed unless development
//!   mode allows `http`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenantplane_core::{TenantId, sso::SsoSettings};

use crate::{IdentityError, Result, keys::PlatformKey, unix_now};

mod settings;

pub use settings::{StoredSettings, delete, get, link, linked_user, put};

/// How long a started sign-in may take before the callback.
pub const FLOW_TTL_SECS: i64 = 600;
/// The cookie carrying the sealed flow state.
pub const COOKIE: &str = "tp_sso";
/// Largest provider response read.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Clock skew tolerated on ID tokens.
pub const ID_TOKEN_LEEWAY_SECS: u64 = 60;
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a sign-in failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsoError {
    /// The tenant has no (enabled) SSO provider.
    #[error("single sign-on is not configured for this tenant")]
    NotConfigured,
    /// The callback's state does not match the flow (missing, expired, or another
    /// tenant's / browser's cookie).
    #[error("the sign-in flow is unknown or expired; start again")]
    InvalidState,
    /// The provider could not be reached or answered something unusable.
    #[error("the identity provider failed: {0}")]
    Provider(String),
    /// The provider answered the authorization request with an error (e.g. the user
    /// cancelled).
    #[error("the identity provider refused the sign-in")]
    Denied,
    /// The ID token failed validation; the label says why (for logs and metrics, not for
    /// the client).
    #[error("the ID token was rejected ({0})")]
    Rejected(&'static str),
    /// No local user matches, and automatic creation is off.
    #[error("no account for this person in this tenant")]
    NoAccount,
    /// The local user is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// None of the person's groups maps to a role, and there are no default roles.
    #[error("no role is mapped for this person")]
    NoRole,
}

impl SsoError {
    /// Whether the rejection means the token was made for someone else (another client,
    /// another issuer): counted as a cross-tenant attempt.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::Rejected("issuer" | "audience" | "azp"))
    }
}

/// The provider's discovery document (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Issuer; must equal the configured one.
    pub issuer: String,
    /// Authorization endpoint.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// JWKS URI.
    pub jwks_uri: String,
}

struct Provider {
    meta: Discovery,
    fetched: Instant,
    jwks: RwLock<(Instant, Arc<Vec<Jwk>>)>,
}

/// The flow state sealed into the cookie.
#[derive(Debug, Serialize, Deserialize)]
struct FlowState {
    state: String,
    nonce: String,
    verifier: String,
    exp: i64,
}

/// What `start` hands the edge: where to send the browser, and the cookie to set.
#[derive(Debug, Clone)]
pub struct Started {
    /// The provider's authorization URL with this flow's parameters.
    pub location: String,
    /// The sealed flow state (the cookie value).
    pub cookie: String,
}

/// What the browser brings back to the callback.
#[derive(Debug, Clone, Copy)]
pub struct Returned<'a> {
    /// The flow cookie, if the browser sent it.
    pub cookie: Option<&'a str>,
    /// The `state` parameter.
    pub state: &'a str,
    /// The authorization code.
    pub code: &'a str,
}

/// What a validated ID token says about the person.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Issuer.
    pub issuer: String,
    /// Subject at the issuer.
    pub subject: String,
    /// E-mail claim, if any.
    pub email: Option<String>,
    /// `email_verified`.
    pub email_verified: bool,
    /// Display name (`name`), if any.
    pub name: Option<String>,
    /// Values of the roles claim.
    pub groups: Vec<String>,
}

/// The OpenID Connect client: one per process, providers cached by issuer.
pub struct OidcClient {
    http: reqwest::Client,
    allow_http: bool,
    providers: RwLock<HashMap<String, Arc<Provider>>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The PKCE S256 challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn state_aad(tenant: TenantId) -> Vec<u8> {
    format!("tenantplane/sso-state/{tenant}").into_bytes()
}

/// The associated data sealing a tenant's client secret.
pub fn secret_aad(tenant: TenantId) -> Vec<u8> {
    format!("tenantplane/sso-client-secret/{tenant}").into_bytes()
}

/// `application/x-www-form-urlencoded` escaping (RFC 6749 §2.3.1 asks for it on the
/// client id and secret before HTTP Basic).
fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const ALLOWED_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl OidcClient {
    /// A client; `allow_http` admits `http://` providers (development and tests only).
    pub fn new(allow_http: bool) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenantplane/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdentityError::Internal(format!("http client: {e}")))?;
        Ok(Self {
            http,
            allow_http,
            providers: RwLock::new(HashMap::new()),
        })
    }

    /// Whether `http://` providers are admitted.
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    fn check_url(&self, u: &str) -> std::result::Result<reqwest::Url, SsoError> {
        let url =
            reqwest::Url::parse(u).map_err(|_| SsoError::Provider(format!("not a URL: {u}")))?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.allow_http => Ok(url),
            _ => Err(SsoError::Provider(format!("not an https URL: {u}"))),
        }
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        what: &str,
    ) -> std::result::Result<T, SsoError> {
        let status = resp.status();
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| SsoError::Provider(format!("{what}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SsoError::Provider(format!("{what}: response too large")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            let code = serde_json::from_slice::<OAuthError>(&body)
                .map(|e| e.error)
                .unwrap_or_default();
            return Err(SsoError::Provider(format!("{what}: HTTP {status} {code}")));
        }
        serde_json::from_slice(&body).map_err(|e| SsoError::Provider(format!("{what}: {e}")))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> std::result::Result<T, SsoError> {
        let url = self.check_url(url)?;
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| SsoError::Provider(format!("{what}: {e}")))?;
        Self::read_json(resp, what).await
    }

    async fn fetch_jwks(&self, uri: &str) -> std::result::Result<Vec<Jwk>, SsoError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = self.get_json(uri, "jwks").await?;
        // Keys of unknown types or for encryption are skipped, not fatal.
        Ok(raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter(|k| {
                !matches!(
                    k.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                ) && !matches!(
                    k.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                )
            })
            .collect())
    }

    async fn provider(&self, issuer: &str) -> std::result::Result<Arc<Provider>, SsoError> {
        {
            let g = self.providers.read().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = g.get(issuer)
                && p.fetched.elapsed() < DISCOVERY_TTL
            {
                return Ok(p.clone());
            }
        }
        let meta: Discovery = self
            .get_json(
                &format!("{issuer}/.well-known/openid-configuration"),
                "discovery",
            )
            .await?;
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(SsoError::Provider(
                "discovery names another issuer".to_owned(),
            ));
        }
        for u in [
            &meta.authorization_endpoint,
            &meta.token_endpoint,
            &meta.jwks_uri,
        ] {
            self.check_url(u)?;
        }
        let keys = self.fetch_jwks(&meta.jwks_uri).await?;
        let p = Arc::new(Provider {
            meta,
            fetched: Instant::now(),
            jwks: RwLock::new((Instant::now(), Arc::new(keys))),
        });
        let mut g = self.providers.write().unwrap_or_else(|p| p.into_inner());
        if g.len() > 10_000 {
            g.clear();
        }
        g.insert(issuer.to_owned(), p.clone());
        Ok(p)
    }

    /// Begins a sign-in: the authorization URL and the sealed cookie.
    pub async fn start(
        &self,
        platform: &PlatformKey,
        tenant: TenantId,
        settings: &SsoSettings,
    ) -> Result<Started> {
        let p = self
            .provider(&settings.issuer)
            .await
            .map_err(IdentityError::Sso)?;
        let flow = FlowState {
            state: random_b64(32),
            nonce: random_b64(32),
            verifier: random_b64(32),
            exp: unix_now() + FLOW_TTL_SECS,
        };
        let mut scope = String::from("openid");
        for s in &settings.scopes {
            scope.push(' ');
            scope.push_str(s);
        }
        let challenge = pkce_challenge(&flow.verifier);
        let url = reqwest::Url::parse_with_params(
            &p.meta.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", settings.client_id.as_str()),
                ("redirect_uri", settings.redirect_uri.as_str()),
                ("scope", scope.as_str()),
                ("state", flow.state.as_str()),
                ("nonce", flow.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|_| IdentityError::Sso(SsoError::Provider("bad authorization endpoint".into())))?;
        let json = serde_json::to_vec(&flow)
            .map_err(|e| IdentityError::Internal(format!("sso state: {e}")))?;
        let sealed = platform.seal(&state_aad(tenant), &json)?;
        Ok(Started {
            location: url.into(),
            cookie: URL_SAFE_NO_PAD.encode(sealed),
        })
    }

    /// Completes a sign-in: checks the state against the cookie, exchanges the code and
    /// validates the ID token. Returns who signed in.
    pub async fn finish(
        &self,
        platform: &PlatformKey,
        tenant: TenantId,
        settings: &SsoSettings,
        client_secret: Option<&str>,
        back: &Returned<'_>,
    ) -> Result<Person> {
        let Returned {
            cookie,
            state,
            code,
        } = *back;
        let flow = open_flow(platform, tenant, cookie)?;
        if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(IdentityError::Sso(SsoError::InvalidState));
        }
        if code.is_empty() || code.len() > 4096 {
            return Err(IdentityError::Sso(SsoError::Rejected("code")));
        }
        let p = self
            .provider(&settings.issuer)
            .await
            .map_err(IdentityError::Sso)?;
        let mut req = self
            .http
            .post(
                self.check_url(&p.meta.token_endpoint)
                    .map_err(IdentityError::Sso)?,
            )
            .header(reqwest::header::ACCEPT, "application/json");
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", settings.redirect_uri.as_str()),
            ("code_verifier", flow.verifier.as_str()),
        ];
        match client_secret {
            Some(secret) => {
                req = req.basic_auth(form_escape(&settings.client_id), Some(form_escape(secret)));
            }
            // A public client identifies itself in the body.
            None => form.push(("client_id", settings.client_id.as_str())),
        }
        let resp =
            req.form(&form).send().await.map_err(|e| {
                IdentityError::Sso(SsoError::Provider(format!("token endpoint: {e}")))
            })?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
        }
        let answer: TokenAnswer = Self::read_json(resp, "token endpoint")
            .await
            .map_err(IdentityError::Sso)?;
        let id_token = answer.id_token.ok_or_else(|| {
            IdentityError::Sso(SsoError::Provider("no id_token in the answer".into()))
        })?;
        self.validate(&p, settings, &id_token, &flow.nonce)
            .await
            .map_err(IdentityError::Sso)
    }

    async fn key_for(
        &self,
        p: &Provider,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> std::result::Result<DecodingKey, SsoError> {
        for attempt in 0..2 {
            let keys = p.jwks.read().unwrap_or_else(|e| e.into_inner()).1.clone();
            let found = keys.iter().find(|k| {
                let kid_ok = match kid {
                    Some(kid) => k.common.key_id.as_deref() == Some(kid),
                    None => keys.len() == 1,
                };
                let alg_ok = k
                    .common
                    .key_algorithm
                    .and_then(|a| Algorithm::try_from(a).ok())
                    .is_none_or(|a| a == alg);
                kid_ok && alg_ok
            });
            if let Some(k) = found {
                return DecodingKey::from_jwk(k).map_err(|_| SsoError::Rejected("key"));
            }
            // A new kid: the provider may have rotated. Refetch (not too often).
            let stale =
                p.jwks.read().unwrap_or_else(|e| e.into_inner()).0.elapsed() >= JWKS_REFETCH_MIN;
            if attempt == 1 || !stale {
                break;
            }
            let fresh = self.fetch_jwks(&p.meta.jwks_uri).await?;
            *p.jwks.write().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), Arc::new(fresh));
        }
        Err(SsoError::Rejected("unknown-key"))
    }

    async fn validate(
        &self,
        p: &Provider,
        settings: &SsoSettings,
        token: &str,
        nonce: &str,
    ) -> std::result::Result<Person, SsoError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SsoError::Rejected("malformed"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| SsoError::Rejected("algorithm"))?;
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Err(SsoError::Rejected("algorithm"));
        }
        let key = self.key_for(p, header.kid.as_deref(), header.alg).await?;
        let mut v = Validation::new(header.alg);
        v.leeway = ID_TOKEN_LEEWAY_SECS;
        v.set_issuer(&[settings.issuer.as_str(), p.meta.issuer.as_str()]);
        v.set_audience(&[settings.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                .map_err(|e| {
                    use jsonwebtoken::errors::ErrorKind as K;
                    SsoError::Rejected(match e.kind() {
                        K::InvalidSignature => "signature",
                        K::ExpiredSignature => "expired",
                        K::ImmatureSignature => "not-yet-valid",
                        K::InvalidIssuer => "issuer",
                        K::InvalidAudience => "audience",
                        K::MissingRequiredClaim(_) => "claims",
                        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm",
                        _ => "malformed",
                    })
                })?;
        let c = data.claims;
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        // Several audiences: the authorized party must be us (OIDC Core §3.1.3.7).
        let multi_aud = c
            .get("aud")
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.len() > 1);
        if (multi_aud || c.contains_key("azp"))
            && s("azp").as_deref() != Some(settings.client_id.as_str())
        {
            return Err(SsoError::Rejected("azp"));
        }
        let iat = c.get("iat").and_then(|v| v.as_i64());
        if iat.is_none_or(|t| t > unix_now() + ID_TOKEN_LEEWAY_SECS as i64) {
            return Err(SsoError::Rejected("claims"));
        }
        let token_nonce = s("nonce").unwrap_or_default();
        if !bool::from(token_nonce.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(SsoError::Rejected("nonce"));
        }
        let subject = s("sub").filter(|x| !x.is_empty() && x.len() <= 255);
        let Some(subject) = subject else {
            return Err(SsoError::Rejected("claims"));
        };
        let groups = match settings.roles_claim.as_deref().and_then(|k| c.get(k)) {
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .take(1000)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Person {
            issuer: settings.issuer.clone(),
            subject,
            email: s(&settings.email_claim),
            email_verified: match c.get("email_verified") {
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::String(t)) => t == "true",
                _ => false,
            },
            name: s("name"),
            groups,
        })
    }
}

fn open_flow(platform: &PlatformKey, tenant: TenantId, cookie: Option<&str>) -> Result<FlowState> {
    let bad = || IdentityError::Sso(SsoError::InvalidState);
    let raw = cookie
        .filter(|c| c.len() <= 4096)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .ok_or_else(bad)?;
    let json = platform.open(&state_aad(tenant), &raw).map_err(|_| bad())?;
    let flow: FlowState = serde_json::from_slice(&json).map_err(|_| bad())?;
    if flow.exp < unix_now() {
        return Err(bad());
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn form_escaping() {
        assert_eq!(form_escape("a b:c/d%é"), "a+b%3Ac%2Fd%25%C3%A9");
    }

    #[test]
    fn flow_state_is_bound_to_the_tenant_and_expires() {
        let k = PlatformKey::generate();
        let (a, b) = (TenantId::new(), TenantId::new());
        let f = FlowState {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            exp: unix_now() + 60,
        };
        let sealed = URL_SAFE_NO_PAD.encode(
            k.seal(&state_aad(a), &serde_json::to_vec(&f).unwrap())
                .unwrap(),
        );
        assert!(open_flow(&k, a, Some(&sealed)).is_ok());
        assert!(open_flow(&k, b, Some(&sealed)).is_err());
        assert!(open_flow(&k, a, None).is_err());
        assert!(open_flow(&k, a, Some("garbage")).is_err());
        let old = FlowState {
            exp: unix_now() - 1,
            ..f
        };
        let sealed = URL_SAFE_NO_PAD.encode(
            k.seal(&state_aad(a), &serde_json::to_vec(&old).unwrap())
                .unwrap(),
        );
        assert!(open_flow(&k, a, Some(&sealed)).is_err());
    }
}

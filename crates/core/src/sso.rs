//! Per-tenant single sign-on with the tenant's own OpenID Connect provider: the settings a
//! tenant administrator gives, and their validation.
//!
//! Pure logic: the identity crate runs the authorization-code flow (PKCE, state, nonce),
//! validates ID tokens against the provider's JWKS and maps claims to a local user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{RoleName, ValidationErrors};

/// Longest URL accepted in the settings.
pub const MAX_URL_LEN: usize = 2048;
/// Longest client id, client secret, scope, claim name or group value.
pub const MAX_FIELD_LEN: usize = 512;
/// Most entries in the role map.
pub const MAX_ROLE_MAP: usize = 200;

/// `PUT /api/tenant/sso`: the tenant's OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettingsInput {
    /// The provider's issuer (`https://…`); its discovery document is
    /// `{issuer}/.well-known/openid-configuration` and its `issuer` must equal this exactly.
    pub issuer: String,
    /// The client id registered at the provider for this tenant.
    pub client_id: String,
    /// The client secret; omitted on an update to keep the stored one. Stored sealed with
    /// the platform key, never returned.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The redirect URI registered at the provider: this tenant's
    /// `https://{host}/auth/sso/callback`.
    pub redirect_uri: String,
    /// Scopes requested besides `openid` (default `email profile`).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim holding the user's e-mail address (default `email`).
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Refuse ID tokens whose `email_verified` is not `true` when linking by e-mail
    /// (default true).
    #[serde(default = "yes")]
    pub require_verified_email: bool,
    /// The claim holding the user's groups or roles at the provider (a string or an array
    /// of strings), e.g. `groups`. Without it, users keep the roles given here locally.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Provider group → local roles. When `roles_claim` is set, the user's roles are
    /// recomputed from this map at every SSO login (the provider is the source of truth).
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<String>>,
    /// Roles of a user none of whose groups is in the map (empty: such users are refused).
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// Create a local user at the first SSO login of an unknown person (default false:
    /// only people an administrator created, matched by e-mail, can sign in).
    #[serde(default)]
    pub auto_create: bool,
    /// SSO can be configured but switched off (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_email_claim() -> String {
    "email".into()
}

fn yes() -> bool {
    true
}

/// Validated SSO settings (without the secret), as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoSettings {
    /// The provider's issuer.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Redirect URI.
    pub redirect_uri: String,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// E-mail claim.
    pub email_claim: String,
    /// Whether `email_verified` must be true to link by e-mail.
    pub require_verified_email: bool,
    /// Group claim.
    pub roles_claim: Option<String>,
    /// Group → roles.
    pub role_map: BTreeMap<String, Vec<RoleName>>,
    /// Roles when no group matches.
    pub default_roles: Vec<RoleName>,
    /// Create unknown users.
    pub auto_create: bool,
    /// Whether SSO is on.
    pub enabled: bool,
}

/// `GET /api/tenant/sso`: the settings, and whether a secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoSettingsView {
    /// The settings.
    #[serde(flatten)]
    pub settings: SsoSettings,
    /// A client secret is stored (it is never shown).
    pub client_secret_set: bool,
    /// Version for optimistic concurrency.
    pub version: u64,
}

fn is_url(s: &str, allow_http: bool) -> bool {
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if allow_http && let Some(r) = s.strip_prefix("http://") {
        r
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && !host.contains('@')
        && !s.contains(char::is_whitespace)
        && s.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
}

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD_LEN && s.chars().all(|c| !c.is_control()) && s.trim() == s
}

impl SsoSettingsInput {
    /// Validates the input. `allow_http` admits `http://` URLs (development and tests; a
    /// production provider is always `https`). Role names are checked for form here and
    /// against the tenant's roles by the caller.
    pub fn validate(&self, allow_http: bool) -> Result<SsoSettings, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        if issuer.len() > MAX_URL_LEN || !is_url(&issuer, allow_http) || issuer.contains(['?', '#'])
        {
            errs.push(
                "/issuer",
                "must be an https:// URL without query or fragment",
            );
        }
        if !field_ok(&self.client_id) {
            errs.push("/client_id", "must be 1-512 printable characters");
        }
        if let Some(s) = &self.client_secret
            && !field_ok(s)
        {
            errs.push("/client_secret", "must be 1-512 printable characters");
        }
        if self.redirect_uri.len() > MAX_URL_LEN
            || !is_url(&self.redirect_uri, allow_http)
            || self.redirect_uri.contains('#')
        {
            errs.push("/redirect_uri", "must be an https:// URL without fragment");
        }
        let mut scopes = Vec::new();
        for (i, s) in self.scopes.iter().enumerate() {
            if !field_ok(s) || s.contains(' ') {
                errs.push(format!("/scopes/{i}"), "a scope is one word");
            } else if s != "openid" && !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        if !field_ok(&self.email_claim) {
            errs.push("/email_claim", "must be a claim name");
        }
        if let Some(c) = &self.roles_claim
            && !field_ok(c)
        {
            errs.push("/roles_claim", "must be a claim name");
        }
        if self.role_map.len() > MAX_ROLE_MAP {
            errs.push("/role_map", format!("at most {MAX_ROLE_MAP} entries"));
        }
        let mut role_map = BTreeMap::new();
        for (group, roles) in &self.role_map {
            if !field_ok(group) {
                errs.push(
                    "/role_map",
                    "group names must be 1-512 printable characters",
                );
                continue;
            }
            let ptr = format!("/role_map/{}", group.replace('~', "~0").replace('/', "~1"));
            let parsed = parse_roles(roles, &ptr, &mut errs);
            role_map.insert(group.clone(), parsed);
        }
        let default_roles = parse_roles(&self.default_roles, "/default_roles", &mut errs);
        if self.auto_create && self.roles_claim.is_none() && default_roles.is_empty() {
            errs.push(
                "/default_roles",
                "auto_create without roles_claim needs default roles",
            );
        }
        if !errs.0.is_empty() {
            return Err(errs);
        }
        Ok(SsoSettings {
            issuer,
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scopes,
            email_claim: self.email_claim.clone(),
            require_verified_email: self.require_verified_email,
            roles_claim: self.roles_claim.clone(),
            role_map,
            default_roles,
            auto_create: self.auto_create,
            enabled: self.enabled,
        })
    }
}

fn parse_roles(roles: &[String], ptr: &str, errs: &mut ValidationErrors) -> Vec<RoleName> {
    let mut out = Vec::new();
    for (i, r) in roles.iter().enumerate() {
        match r.parse::<RoleName>() {
            Ok(n) if !out.contains(&n) => out.push(n),
            Ok(_) => {}
            Err(e) => errs.push(format!("{ptr}/{i}"), e.to_string()),
        }
    }
    out
}

impl SsoSettings {
    /// The roles a user with `groups` at the provider gets: the union of the mapped roles,
    /// or the default roles when no group is mapped. `None` when `roles_claim` is not set
    /// (roles are managed locally).
    pub fn roles_for(&self, groups: &[String]) -> Option<Vec<RoleName>> {
        self.roles_claim.as_ref()?;
        let mut out: Vec<RoleName> = Vec::new();
        for g in groups {
            for r in self.role_map.get(g).into_iter().flatten() {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        if out.is_empty() {
            out = self.default_roles.clone();
        }
        out.sort();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SsoSettingsInput {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://login.example.org/realms/st-mary/",
            "client_id": "tenantplane",
            "client_secret": "s3cret",
            "redirect_uri": "https://st-mary.example.org/auth/sso/callback",
            "roles_claim": "groups",
            "role_map": {"doctors": ["clinician"], "ward": ["nurse", "staff"]},
            "default_roles": ["staff"]
        }))
        .unwrap()
    }

    #[test]
    fn defaults_and_normalisation() {
        let s = input().validate(false).unwrap();
        assert_eq!(s.issuer, "https://login.example.org/realms/st-mary");
        assert_eq!(s.scopes, vec!["email", "profile"]);
        assert_eq!(s.email_claim, "email");
        assert!(s.require_verified_email && s.enabled && !s.auto_create);
    }

    #[test]
    fn refuses_bad_urls_and_names() {
        let mut i = input();
        i.issuer = "http://login.example.org".into();
        i.redirect_uri = "javascript:alert(1)".into();
        i.role_map.insert("x".into(), vec!["Not A Role".into()]);
        i.scopes = vec!["two words".into()];
        let e = input_err(i.validate(false));
        for p in ["/issuer", "/redirect_uri", "/role_map/x/0", "/scopes/0"] {
            assert!(e.contains(&p.to_owned()), "{p} in {e:?}");
        }
        let mut i = input();
        i.issuer = "http://127.0.0.1:8080".into();
        i.redirect_uri = "http://127.0.0.1:9/auth/sso/callback".into();
        assert!(i.validate(true).is_ok());
        let mut i = input();
        i.issuer = "https://user@evil.example".into();
        assert!(i.validate(false).is_err());
    }

    fn input_err(r: Result<SsoSettings, ValidationErrors>) -> Vec<String> {
        r.unwrap_err().0.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn roles_from_groups() {
        let s = input().validate(false).unwrap();
        let names = |v: Option<Vec<RoleName>>| {
            v.unwrap()
                .into_iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(s.roles_for(&["ward".into(), "doctors".into()])),
            vec!["clinician", "nurse", "staff"]
        );
        assert_eq!(names(s.roles_for(&["unknown".into()])), vec!["staff"]);
        let mut local = s.clone();
        local.roles_claim = None;
        assert!(local.roles_for(&["doctors".into()]).is_none());
    }
}

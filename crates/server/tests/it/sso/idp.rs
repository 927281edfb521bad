//! A fake OpenID provider for the SSO tests: discovery, JWKS, an authorization-code token
//! endpoint, and ID tokens signed with its own RSA key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
use serde_json::{Value, json};
use sha2::Digest;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

pub(super) struct Signer {
    pub(super) kid: String,
    pub(super) der: Vec<u8>,
}

impl Signer {
    pub(super) fn new(kid: &str) -> (Self, Value) {
        let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(k.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()),
        });
        let der = k.to_pkcs1_der().unwrap().as_bytes().to_vec();
        (
            Self {
                kid: kid.into(),
                der,
            },
            jwk,
        )
    }

    pub(super) fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_der(&self.der)).unwrap()
    }
}

/// One authorization the fake provider will honour at its token endpoint.
#[derive(Clone)]
pub(super) struct Grant {
    pub(super) challenge: String,
    pub(super) redirect_uri: String,
    pub(super) id_token: String,
}

#[derive(Clone, Default)]
pub(super) struct Grants(pub(super) Arc<Mutex<HashMap<String, Grant>>>);

pub(super) struct TokenEndpoint {
    pub(super) grants: Grants,
    pub(super) basic: String,
}

impl Respond for TokenEndpoint {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let bad = |e: &str| ResponseTemplate::new(400).set_body_json(json!({"error": e}));
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != self.basic {
            return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
        }
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{body}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return bad("unsupported_grant_type");
        }
        // Codes work once.
        let Some(g) = form
            .get("code")
            .and_then(|c| self.grants.0.lock().unwrap().remove(c))
        else {
            return bad("invalid_grant");
        };
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        if challenge != g.challenge || form.get("redirect_uri") != Some(&g.redirect_uri) {
            return bad("invalid_grant");
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "provider-access-token", "token_type": "Bearer",
            "expires_in": 300, "id_token": g.id_token,
        }))
    }
}

pub(super) struct Idp {
    pub(super) server: MockServer,
    pub(super) good: Signer,
    /// Same kid as `good`, another key: its signatures do not verify.
    pub(super) impostor: Signer,
    /// A key the provider does not publish.
    pub(super) stranger: Signer,
    pub(super) grants: Grants,
}

pub(super) const CLIENT_A: &str = "tp-hospital-a";
pub(super) const CLIENT_B: &str = "tp-hospital-b";
pub(super) const SECRET: &str = "an idp client secret: with/odd+chars";

impl Idp {
    pub(super) async fn start() -> Self {
        let server = MockServer::start().await;
        let (good, jwk) = Signer::new("k1");
        let (impostor, _) = Signer::new("k1");
        let (stranger, _) = Signer::new("k-unpublished");
        let uri = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": uri,
                "authorization_endpoint": format!("{uri}/authorize"),
                "token_endpoint": format!("{uri}/token"),
                "jwks_uri": format!("{uri}/jwks"),
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [
                jwk,
                // Keys the client must skip: encryption, symmetric, unknown type.
                {"kty": "RSA", "use": "enc", "kid": "enc1", "n": "AQAB", "e": "AQAB"},
                {"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(SECRET)},
                {"kty": "XYZ", "kid": "odd"},
            ]})))
            .mount(&server)
            .await;
        let grants = Grants::default();
        for client in [CLIENT_A, CLIENT_B] {
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    client,
                    // RFC 6749 §2.3.1: form-encoded before Basic.
                    "an+idp+client+secret%3A+with%2Fodd%2Bchars"
                ))
            );
            Mock::given(method("POST"))
                .and(path("/token"))
                .and(wiremock::matchers::header("authorization", basic.as_str()))
                .respond_with(TokenEndpoint {
                    grants: grants.clone(),
                    basic: basic.clone(),
                })
                .mount(&server)
                .await;
        }
        Self {
            server,
            good,
            impostor,
            stranger,
            grants,
        }
    }

    pub(super) fn claims(
        &self,
        aud: &str,
        nonce: &str,
        sub: &str,
        email: &str,
        groups: &[&str],
    ) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": self.server.uri(), "aud": aud, "sub": sub, "nonce": nonce,
            "iat": now, "exp": now + 300, "auth_time": now,
            "email": email, "email_verified": true, "name": format!("Dr {sub}"),
            "groups": groups,
        })
    }
}

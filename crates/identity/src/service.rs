//! [`Identity`]: logins, token issue and refresh, password changes, one-time passwords and
//! session revocation for tenant users, over a tenant's [`TenantDb`].

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use rand::Rng;
use tenantplane_core::{
    Email, RoleName, Tenant, TenantId, UserId,
    sso::{SsoSettings, SsoSettingsView},
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    IdentityError, Result, TenantDb,
    keys::{Keyring, PlatformKey, TenantKeys},
    password::{Argon2Params, Hasher},
    roles, sessions,
    sessions::Rotation,
    sso::{self, SsoError},
    tokens::{self, AccessClaims, TokenError},
    users::{self, UserRecord},
};

/// Identity settings.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Argon2id cost.
    pub argon2: Argon2Params,
    /// Hashes computed at once.
    pub max_parallel_hashes: usize,
    /// Admit `http://` identity providers (development and tests; never in production).
    pub sso_allow_http: bool,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            argon2: Argon2Params::default(),
            max_parallel_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            sso_allow_http: false,
        }
    }
}

/// Tokens handed to a client.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Access JWT.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Refresh token.
    pub refresh_token: String,
    /// Its lifetime in seconds.
    pub refresh_expires_in: u64,
    /// The password must be changed first.
    pub password_change_required: bool,
    /// The user.
    pub user: UserRecord,
}

/// The result of a login attempt. Unknown account, wrong password and disabled account are
/// one outcome, reached in the same time.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Logged in.
    Ok(Box<Tokens>),
    /// Refused.
    Failed,
}

/// The result of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// New tokens.
    Ok(Box<Tokens>),
    /// A used token came back: its family and the user's access tokens were revoked.
    Replayed(UserId),
    /// Unknown, expired, revoked, or the user is disabled.
    Invalid,
}

/// Why a password change was refused.
#[derive(Debug)]
pub enum PasswordChange {
    /// Changed; new tokens (the other sessions were revoked).
    Changed(Box<Tokens>),
    /// The current password is wrong.
    WrongPassword,
    /// The new password breaks the policy (message safe to show).
    Policy(String),
}

#[derive(Clone)]
struct UserState {
    at: Instant,
    disabled: bool,
    valid_after_ms: i64,
    roles: Vec<RoleName>,
}

/// Identity operations. One per process; cheap to share.
pub struct Identity {
    cfg: IdentityConfig,
    hasher: Hasher,
    keyring: Keyring,
    states: RwLock<HashMap<(TenantId, UserId), UserState>>,
    roles: RwLock<HashMap<TenantId, CachedRoles>>,
    verified: tokens::VerifiedCache,
    oidc: sso::OidcClient,
    platform: PlatformKey,
}

type CachedRoles = (Instant, std::sync::Arc<Vec<tenantplane_core::Role>>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// The password-hash column of accounts that only sign in through SSO.
const NO_PASSWORD: &str = "!sso-only";

/// How long a user's disabled/revoked state is trusted from memory (other replicas see a
/// revocation within this time; the replica that made it sees it at once).
const STATE_TTL: Duration = Duration::from_secs(5);
const STATE_CAP: usize = 100_000;

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_ts() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A one-time password: 20 characters from an unambiguous alphabet in groups of five
/// (≈100 bits).
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    loop {
        let raw: Vec<u8> = (0..20)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect();
        let s = raw
            .chunks(5)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        if tenantplane_core::identity::check_password_policy(&s, None).is_ok() {
            return s;
        }
    }
}

impl Identity {
    /// Identity over `platform` (the key sealing tenant signing keys).
    pub fn new(cfg: IdentityConfig, platform: PlatformKey) -> Result<Self> {
        let hasher = Hasher::new(cfg.argon2, cfg.max_parallel_hashes)?;
        let overlap = cfg.access_ttl + Duration::from_secs(tokens::LEEWAY_SECS + 60);
        Ok(Self {
            oidc: sso::OidcClient::new(cfg.sso_allow_http)?,
            keyring: Keyring::new(platform.clone(), overlap),
            platform,
            hasher,
            cfg,
            states: RwLock::new(HashMap::new()),
            roles: RwLock::new(HashMap::new()),
            verified: tokens::VerifiedCache::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &IdentityConfig {
        &self.cfg
    }

    /// A key for `purpose` derived from the platform key.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.platform.derive(purpose)
    }

    /// The password hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Provisioning: the built-in roles of the tenant's profile and a first signing key
    /// (both idempotent).
    pub async fn provision(
        &self,
        tenant: TenantId,
        profile: tenantplane_core::Profile,
        db: TenantDb<'_>,
    ) -> Result<()> {
        roles::seed(db, profile).await?;
        self.keyring.load(tenant, db, true).await?;
        Ok(())
    }

    /// The tenant's keys (cached).
    pub async fn keys(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
    ) -> Result<std::sync::Arc<TenantKeys>> {
        self.keyring.load(tenant, db, false).await
    }

    /// Creates a user with a one-time password, within `max_users`.
    pub async fn create_user(
        &self,
        db: TenantDb<'_>,
        email: Email,
        display_name: String,
        roles: Vec<RoleName>,
        departments: Vec<Uuid>,
        max_users: u64,
    ) -> Result<(UserRecord, String)> {
        let otp = one_time_password();
        let hash = self.hasher.hash(otp.clone()).await?;
        let at = now_ts();
        let u = UserRecord {
            id: UserId::from_uuid(db.mint_id()),
            email,
            display_name,
            roles,
            departments,
            disabled: false,
            password_change_required: true,
            tokens_valid_after: 0,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        users::create(db, &u, &hash, max_users).await?;
        tracing::info!(user_id = %u.id, "tenant user created");
        Ok((u, otp))
    }

    /// Gives `user` a new one-time password, re-enables it and revokes its sessions.
    pub async fn reset_password(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        mut user: UserRecord,
        add_roles: &[RoleName],
    ) -> Result<(UserRecord, String)> {
        let otp = one_time_password();
        let hash = self.hasher.hash(otp.clone()).await?;
        user.password_change_required = true;
        user.disabled = false;
        for r in add_roles {
            if !user.roles.contains(r) {
                user.roles.push(r.clone());
            }
        }
        user.tokens_valid_after = now_ms();
        user.updated_at = now_ts();
        user.version += 1;
        users::update(db, &user, Some(hash)).await?;
        sessions::revoke_user(db, user.id).await?;
        self.forget(tenant, user.id);
        Ok((user, otp))
    }

    /// Sets `user`'s password directly (no one-time password): for demos and tooling run by
    /// the platform owner, never reachable over the tenant API. The policy still applies.
    pub async fn set_password(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        mut user: UserRecord,
        password: String,
    ) -> Result<UserRecord> {
        tenantplane_core::identity::check_password_policy(&password, Some(&user.email))
            .map_err(|m| IdentityError::Internal(format!("password policy: {m}")))?;
        let hash = self.hasher.hash(password).await?;
        user.password_change_required = false;
        user.disabled = false;
        user.updated_at = now_ts();
        user.version += 1;
        users::update(db, &user, Some(hash)).await?;
        self.forget(tenant, user.id);
        Ok(user)
    }

    /// Writes a changed user (CAS on `version`, which the caller has incremented); disabling
    /// revokes its sessions and access tokens.
    pub async fn save_user(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        user: &UserRecord,
        revoke: bool,
    ) -> Result<()> {
        users::update(db, user, None).await?;
        if revoke {
            sessions::revoke_user(db, user.id).await?;
        }
        self.forget(tenant, user.id);
        Ok(())
    }

    /// Revokes every session and access token of `user`.
    pub async fn revoke_sessions(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        user: UserId,
    ) -> Result<u64> {
        let (mut u, _) = users::get(db, user).await?.ok_or(IdentityError::NotFound)?;
        u.tokens_valid_after = now_ms();
        u.updated_at = now_ts();
        u.version += 1;
        users::update(db, &u, None).await?;
        let n = sessions::revoke_user(db, user).await?;
        self.forget(tenant, user);
        Ok(n)
    }

    fn forget(&self, tenant: TenantId, user: UserId) {
        self.states
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant, user));
    }

    async fn issue(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        user: UserRecord,
        family: Option<(Uuid, String)>,
    ) -> Result<Tokens> {
        let keys = self.keyring.load(tenant, db, false).await?;
        let (refresh_token, family) = match family {
            Some((fam, tok)) => (tok, fam),
            None => {
                let (tok, h) = sessions::generate();
                let fam = Uuid::now_v7();
                sessions::insert(db, h, fam, user.id, self.cfg.refresh_ttl.as_secs()).await?;
                (tok, fam)
            }
        };
        let mut c = tokens::claims(
            tenant,
            user.id,
            family,
            user.roles.clone(),
            self.cfg.access_ttl.as_secs(),
            user.password_change_required,
        );
        c.iatm = now_ms();
        let access_token = tokens::sign(&keys, &c)?;
        Ok(Tokens {
            access_token,
            expires_in: self.cfg.access_ttl.as_secs(),
            refresh_token,
            refresh_expires_in: self.cfg.refresh_ttl.as_secs(),
            password_change_required: user.password_change_required,
            user,
        })
    }

    /// Logs in with e-mail and password. The hash (or the dummy) is always verified.
    pub async fn login(
        &self,
        tenant: &Tenant,
        db: TenantDb<'_>,
        email: &str,
        password: String,
    ) -> Result<LoginOutcome> {
        let found = match email.parse::<Email>() {
            Ok(e) => users::by_email(db, &e).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        let ok = self.hasher.verify(password, hash).await?;
        match user {
            Some(u) if ok && !u.disabled => {
                let t = self.issue(tenant.id, db, u, None).await?;
                Ok(LoginOutcome::Ok(Box::new(t)))
            }
            _ => Ok(LoginOutcome::Failed),
        }
    }

    /// Rotates a refresh token.
    pub async fn refresh(
        &self,
        tenant: &Tenant,
        db: TenantDb<'_>,
        token: &str,
    ) -> Result<RefreshOutcome> {
        if !sessions::well_formed(token) {
            return Ok(RefreshOutcome::Invalid);
        }
        let (new_tok, new_hash) = sessions::generate();
        match sessions::rotate(
            db,
            sessions::hash(token),
            new_hash,
            self.cfg.refresh_ttl.as_secs(),
        )
        .await?
        {
            Rotation::Invalid => Ok(RefreshOutcome::Invalid),
            Rotation::Replayed { user, family } => {
                tracing::warn!(user_id = %user, session = %family, "refresh token replayed; session family revoked");
                // Theft detection: also cut the access tokens already handed out.
                if let Err(e) = self.revoke_sessions(tenant.id, db, user).await {
                    tracing::warn!(error = %e, "revoking after a replay failed");
                }
                Ok(RefreshOutcome::Replayed(user))
            }
            Rotation::Rotated { user, family } => {
                let Some((u, _)) = users::get(db, user).await? else {
                    return Ok(RefreshOutcome::Invalid);
                };
                if u.disabled {
                    sessions::revoke_user(db, u.id).await?;
                    return Ok(RefreshOutcome::Invalid);
                }
                let t = self
                    .issue(tenant.id, db, u, Some((family, new_tok)))
                    .await?;
                Ok(RefreshOutcome::Ok(Box::new(t)))
            }
        }
    }

    /// Ends the session of a refresh token (idempotent; unknown tokens are ignored).
    pub async fn logout(&self, db: TenantDb<'_>, token: &str) -> Result<()> {
        if sessions::well_formed(token) {
            sessions::revoke_by_token(db, sessions::hash(token)).await?;
        }
        Ok(())
    }

    /// Changes a user's password after checking the current one; revokes every other
    /// session and returns fresh tokens.
    pub async fn change_password(
        &self,
        tenant: &Tenant,
        db: TenantDb<'_>,
        user: UserId,
        current: String,
        new: String,
    ) -> Result<PasswordChange> {
        let (mut u, hash) = users::get(db, user).await?.ok_or(IdentityError::NotFound)?;
        if !self.hasher.verify(current.clone(), Some(hash)).await? || u.disabled {
            return Ok(PasswordChange::WrongPassword);
        }
        if let Err(m) = tenantplane_core::identity::check_password_policy(&new, Some(&u.email)) {
            return Ok(PasswordChange::Policy(m));
        }
        if new == current {
            return Ok(PasswordChange::Policy(
                "must differ from the current password".into(),
            ));
        }
        let new_hash = self.hasher.hash(new).await?;
        u.password_change_required = false;
        u.tokens_valid_after = now_ms();
        u.updated_at = now_ts();
        u.version += 1;
        users::update(db, &u, Some(new_hash)).await?;
        sessions::revoke_user(db, u.id).await?;
        self.forget(tenant.id, u.id);
        let t = self.issue(tenant.id, db, u, None).await?;
        Ok(PasswordChange::Changed(Box::new(t)))
    }

    /// Verifies an access token presented to `tenant`: signature with the tenant's keys
    /// (reloaded once if the kid is new), claims, and that the user is enabled and the token
    /// not revoked.
    pub async fn authenticate(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        token: &str,
    ) -> Result<Result<AccessClaims, TokenError>> {
        let keys = self.keyring.load(tenant, db, false).await?;
        let claims = match self.verified.verify(token, &keys) {
            Err(TokenError::UnknownKey) if self.keyring.may_reload(tenant) => {
                let keys = self.keyring.load(tenant, db, true).await?;
                self.verified.verify(token, &keys)
            }
            r => r,
        };
        let claims = match claims {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let state = self.user_state(tenant, db, claims.sub).await?;
        match state {
            Some(s) if !s.disabled && claims.iatm >= s.valid_after_ms => {
                // Permissions follow the user's current roles, not those at issue time.
                let mut claims = claims;
                claims.roles = s.roles;
                Ok(Ok(claims))
            }
            _ => Ok(Err(TokenError::Revoked)),
        }
    }

    /// The tenant's roles (cached for 30 s).
    pub async fn roles(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
    ) -> Result<std::sync::Arc<Vec<tenantplane_core::Role>>> {
        {
            let g = self.roles.read().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = g.get(&tenant)
                && at.elapsed() < Duration::from_secs(30)
            {
                return Ok(r.clone());
            }
        }
        let r = std::sync::Arc::new(roles::list(db).await?);
        let mut g = self.roles.write().unwrap_or_else(|p| p.into_inner());
        if g.len() >= STATE_CAP {
            g.clear();
        }
        g.insert(tenant, (Instant::now(), r.clone()));
        Ok(r)
    }

    /// The tenant's single sign-on settings.
    pub async fn sso_settings(&self, db: TenantDb<'_>) -> Result<Option<SsoSettingsView>> {
        Ok(sso::get(db).await?.map(|s| SsoSettingsView {
            client_secret_set: s.sealed_secret.is_some(),
            settings: s.settings,
            version: s.version,
        }))
    }

    /// Creates or replaces the tenant's SSO settings (validated by the caller). A `None`
    /// secret keeps the stored one; `expected` is the version the caller read (`None`: the
    /// current one).
    pub async fn put_sso(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        settings: SsoSettings,
        secret: Option<String>,
        expected: Option<u64>,
    ) -> Result<SsoSettingsView> {
        let current = sso::get(db).await?;
        let expected = match (expected, &current) {
            (Some(v), _) => Some(v),
            (None, Some(c)) => Some(c.version),
            (None, None) => None,
        };
        let sealed = match secret {
            Some(s) => Some(self.platform.seal(&sso::secret_aad(tenant), s.as_bytes())?),
            None => current.and_then(|c| c.sealed_secret),
        };
        let set = sealed.is_some();
        let version = sso::put(db, &settings, sealed, expected).await?;
        tracing::info!(issuer = %settings.issuer, "tenant single sign-on settings changed");
        Ok(SsoSettingsView {
            settings,
            client_secret_set: set,
            version,
        })
    }

    /// Removes the tenant's SSO settings and the links to provider accounts.
    pub async fn delete_sso(&self, db: TenantDb<'_>) -> Result<bool> {
        sso::delete(db).await
    }

    async fn enabled_sso(&self, db: TenantDb<'_>) -> Result<sso::StoredSettings> {
        sso::get(db)
            .await?
            .filter(|s| s.settings.enabled)
            .ok_or(IdentityError::Sso(SsoError::NotConfigured))
    }

    /// Starts a sign-in with the tenant's provider.
    pub async fn sso_start(&self, tenant: TenantId, db: TenantDb<'_>) -> Result<sso::Started> {
        let stored = self.enabled_sso(db).await?;
        self.oidc
            .start(&self.platform, tenant, &stored.settings)
            .await
    }

    /// Completes a sign-in: validates the provider's answer, finds (or, when allowed,
    /// creates within `max_users`) the local user, applies the role mapping and issues
    /// tokens.
    pub async fn sso_finish(
        &self,
        tenant: &Tenant,
        db: TenantDb<'_>,
        cookie: Option<&str>,
        state: &str,
        code: &str,
        max_users: u64,
    ) -> Result<Tokens> {
        let stored = self.enabled_sso(db).await?;
        let settings = &stored.settings;
        let secret = match &stored.sealed_secret {
            Some(b) => Some(
                String::from_utf8(self.platform.open(&sso::secret_aad(tenant.id), b)?)
                    .map_err(|_| IdentityError::Internal("stored client secret".into()))?,
            ),
            None => None,
        };
        let person = self
            .oidc
            .finish(
                &self.platform,
                tenant.id,
                settings,
                secret.as_deref(),
                &sso::Returned {
                    cookie,
                    state,
                    code,
                },
            )
            .await?;
        let mut user = match sso::linked_user(db, &person.issuer, &person.subject).await? {
            Some(id) => users::get(db, id).await?.map(|(u, _)| u),
            None => None,
        };
        if user.is_none() {
            user = self.sso_match(db, settings, &person, max_users).await?;
        }
        let mut user = user.ok_or(IdentityError::Sso(SsoError::NoAccount))?;
        if user.disabled {
            return Err(IdentityError::Sso(SsoError::Disabled));
        }
        if let Some(mut roles) = settings.roles_for(&person.groups) {
            if roles.is_empty() {
                return Err(IdentityError::Sso(SsoError::NoRole));
            }
            let mut have = user.roles.clone();
            have.sort();
            roles.sort();
            if have != roles {
                user.roles = roles;
                user.updated_at = now_ts();
                user.version += 1;
                users::update(db, &user, None).await?;
                self.forget(tenant.id, user.id);
                tracing::info!(user_id = %user.id, "roles updated from the identity provider");
            }
        }
        // The password was not used: no forced change for this session.
        let mut for_token = user;
        for_token.password_change_required = false;
        tracing::info!(user_id = %for_token.id, "single sign-on login");
        self.issue(tenant.id, db, for_token, None).await
    }

    /// Links the person to the local user with their e-mail address, or creates one.
    async fn sso_match(
        &self,
        db: TenantDb<'_>,
        settings: &SsoSettings,
        person: &sso::Person,
        max_users: u64,
    ) -> Result<Option<UserRecord>> {
        let Some(email) = person
            .email
            .as_deref()
            .and_then(|e| e.parse::<Email>().ok())
        else {
            return Ok(None);
        };
        if settings.require_verified_email && !person.email_verified {
            return Err(IdentityError::Sso(SsoError::Rejected("email-not-verified")));
        }
        for _ in 0..2 {
            if let Some((u, _)) = users::by_email(db, &email).await? {
                sso::link(db, &person.issuer, &person.subject, u.id).await?;
                return Ok(Some(u));
            }
            if !settings.auto_create {
                return Ok(None);
            }
            let roles = settings
                .roles_for(&person.groups)
                .unwrap_or_else(|| settings.default_roles.clone());
            if roles.is_empty() {
                return Err(IdentityError::Sso(SsoError::NoRole));
            }
            let at = now_ts();
            let u = UserRecord {
                id: UserId::from_uuid(db.mint_id()),
                display_name: person
                    .name
                    .clone()
                    .filter(|n| !n.trim().is_empty() && n.len() <= 200)
                    .unwrap_or_else(|| email.as_str().to_owned()),
                email: email.clone(),
                roles,
                departments: Vec::new(),
                disabled: false,
                password_change_required: false,
                tokens_valid_after: 0,
                created_at: at,
                updated_at: at,
                version: 1,
            };
            // No password: the hash column holds a marker no password verifies against.
            match users::create(db, &u, NO_PASSWORD, max_users).await {
                Ok(()) => {
                    sso::link(db, &person.issuer, &person.subject, u.id).await?;
                    tracing::info!(user_id = %u.id, "user created at first single sign-on");
                    return Ok(Some(u));
                }
                // Created concurrently by another sign-in of the same person: link to it.
                Err(IdentityError::EmailTaken) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn user_state(
        &self,
        tenant: TenantId,
        db: TenantDb<'_>,
        user: UserId,
    ) -> Result<Option<UserState>> {
        {
            let g = self.states.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = g.get(&(tenant, user))
                && s.at.elapsed() < STATE_TTL
            {
                return Ok(Some(s.clone()));
            }
        }
        let Some((u, _)) = users::get(db, user).await? else {
            return Ok(None);
        };
        let s = UserState {
            at: Instant::now(),
            disabled: u.disabled,
            valid_after_ms: u.tokens_valid_after,
            roles: u.roles,
        };
        let mut g = self.states.write().unwrap_or_else(|p| p.into_inner());
        if g.len() >= STATE_CAP {
            g.retain(|_, v| v.at.elapsed() < STATE_TTL);
            if g.len() >= STATE_CAP {
                g.clear();
            }
        }
        g.insert((tenant, user), s.clone());
        Ok(Some(s))
    }
}

//! The `identity` component's tenant-store migrations.

use tenantplane_tenant_data::migrate::Migration;

use tenantplane_tenant_data::tenant_rls as rls;

/// The identity component's migrations (after `directory`, whose departments users join).
pub const MIGRATIONS: &[Migration] = &[V1, V2];

const V1: Migration = Migration {
    component: "identity",
    version: 1,
    name: "users, roles, refresh tokens, signing keys",
    sqlite: "CREATE TABLE roles (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    ) STRICT;
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        password_hash TEXT NOT NULL,
        doc TEXT NOT NULL
    ) STRICT;
    CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        family TEXT NOT NULL,
        user_id TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
    CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        retire_after INTEGER,
        public_x TEXT NOT NULL,
        sealed BLOB NOT NULL
    ) STRICT;",
    postgres: concat!(
        "CREATE TABLE roles (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        name text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (tenant_id, name));\n",
        rls!("roles"),
        "CREATE TABLE users (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        id uuid NOT NULL,
        email text NOT NULL,
        version bigint NOT NULL,
        password_hash text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, email));\n",
        rls!("users"),
        "CREATE TABLE refresh_tokens (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        hash text NOT NULL,
        family uuid NOT NULL,
        user_id uuid NOT NULL,
        issued_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        used_at bigint,
        revoked boolean NOT NULL DEFAULT false,
        PRIMARY KEY (tenant_id, hash));
      CREATE INDEX refresh_tokens_family ON refresh_tokens (tenant_id, family);
      CREATE INDEX refresh_tokens_user ON refresh_tokens (tenant_id, user_id);\n",
        rls!("refresh_tokens"),
        "CREATE TABLE signing_keys (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        kid text NOT NULL,
        created_at bigint NOT NULL,
        status text NOT NULL,
        retire_after bigint,
        public_x text NOT NULL,
        sealed bytea NOT NULL,
        PRIMARY KEY (tenant_id, kid));\n",
        rls!("signing_keys"),
    ),
};

const V2: Migration = Migration {
    component: "identity",
    version: 2,
    name: "single sign-on settings and provider account links",
    sqlite: "CREATE TABLE sso_config (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        sealed_secret BLOB
    ) STRICT;
    CREATE TABLE sso_links (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject)
    ) STRICT;
    CREATE INDEX sso_links_user ON sso_links (user_id);",
    postgres: concat!(
        "CREATE TABLE sso_config (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        id integer NOT NULL CHECK (id = 1),
        version bigint NOT NULL,
        doc jsonb NOT NULL,
        sealed_secret bytea,
        PRIMARY KEY (tenant_id, id));\n",
        rls!("sso_config"),
        "CREATE TABLE sso_links (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        issuer text NOT NULL,
        subject text NOT NULL,
        user_id uuid NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (tenant_id, issuer, subject));
      CREATE INDEX sso_links_user ON sso_links (tenant_id, user_id);\n",
        rls!("sso_links"),
    ),
};

//! The `records` component's tenant-store migrations.

use tenantplane_tenant_data::migrate::Migration;

macro_rules! rls {
    ($t:literal) => {
        concat!(
            "ALTER TABLE ",
            $t,
            " ENABLE ROW LEVEL SECURITY;\n",
            "ALTER TABLE ",
            $t,
            " FORCE ROW LEVEL SECURITY;\n",
            "CREATE POLICY tenant_isolation ON ",
            $t,
            " USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)",
            " WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);\n"
        )
    };
}

/// The records component's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    component: "records",
    version: 1,
    name: "FHIR resources, their versions, usage counters",
    sqlite: "CREATE TABLE fhir_resources (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        doc TEXT,
        PRIMARY KEY (type, id)
    ) STRICT;
    CREATE INDEX fhir_resources_updated ON fhir_resources (type, last_updated, id);
    CREATE TABLE fhir_history (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        doc TEXT,
        PRIMARY KEY (type, id, version)
    ) STRICT;
    CREATE TABLE fhir_usage (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;",
    postgres: concat!(
        "CREATE TABLE fhir_resources (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL,
        id text NOT NULL,
        version bigint NOT NULL,
        last_updated bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        doc text,
        PRIMARY KEY (tenant_id, type, id));
      CREATE INDEX fhir_resources_updated ON fhir_resources (tenant_id, type, last_updated, id);\n",
        rls!("fhir_resources"),
        "CREATE TABLE fhir_history (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL,
        id text NOT NULL,
        version bigint NOT NULL,
        last_updated bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        doc text,
        PRIMARY KEY (tenant_id, type, id, version));\n",
        rls!("fhir_history"),
        "CREATE TABLE fhir_usage (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        key text NOT NULL,
        value bigint NOT NULL,
        PRIMARY KEY (tenant_id, key));\n",
        rls!("fhir_usage"),
    ),
}];

//! The `records` component's tenant-store migrations.

use tenantplane_tenant_data::migrate::Migration;

use tenantplane_tenant_data::tenant_rls as rls;

/// The records component's migrations.
pub const MIGRATIONS: &[Migration] = &[V1, V2, V3, V4, V5, V6];

const V1: Migration = Migration {
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
};

const V2: Migration = Migration {
    component: "records",
    version: 2,
    name: "search index: tokens, strings, dates, references",
    sqlite: "CREATE TABLE fhir_idx_token (
        type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        system TEXT, code TEXT NOT NULL
    ) STRICT;
    CREATE INDEX fhir_idx_token_q ON fhir_idx_token (type, param, code, system);
    CREATE INDEX fhir_idx_token_r ON fhir_idx_token (type, id);
    CREATE TABLE fhir_idx_string (
        type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        norm TEXT NOT NULL, raw TEXT NOT NULL
    ) STRICT;
    CREATE INDEX fhir_idx_string_q ON fhir_idx_string (type, param, norm);
    CREATE INDEX fhir_idx_string_r ON fhir_idx_string (type, id);
    CREATE TABLE fhir_idx_date (
        type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        lo INTEGER NOT NULL, hi INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX fhir_idx_date_q ON fhir_idx_date (type, param, lo);
    CREATE INDEX fhir_idx_date_r ON fhir_idx_date (type, id);
    CREATE TABLE fhir_idx_ref (
        type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        target_type TEXT NOT NULL, target_id TEXT NOT NULL
    ) STRICT;
    CREATE INDEX fhir_idx_ref_q ON fhir_idx_ref (type, param, target_id);
    CREATE INDEX fhir_idx_ref_t ON fhir_idx_ref (target_type, target_id);
    CREATE INDEX fhir_idx_ref_r ON fhir_idx_ref (type, id);",
    postgres: concat!(
        "CREATE TABLE fhir_idx_token (tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL, id text NOT NULL, param text NOT NULL, system text, code text NOT NULL);
      CREATE INDEX fhir_idx_token_q ON fhir_idx_token (tenant_id, type, param, code, system);
      CREATE INDEX fhir_idx_token_r ON fhir_idx_token (tenant_id, type, id);\n",
        rls!("fhir_idx_token"),
        "CREATE TABLE fhir_idx_string (tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL, id text NOT NULL, param text NOT NULL, norm text NOT NULL, raw text NOT NULL);
      CREATE INDEX fhir_idx_string_q ON fhir_idx_string (tenant_id, type, param, norm text_pattern_ops);
      CREATE INDEX fhir_idx_string_r ON fhir_idx_string (tenant_id, type, id);\n",
        rls!("fhir_idx_string"),
        "CREATE TABLE fhir_idx_date (tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL, id text NOT NULL, param text NOT NULL, lo bigint NOT NULL, hi bigint NOT NULL);
      CREATE INDEX fhir_idx_date_q ON fhir_idx_date (tenant_id, type, param, lo);
      CREATE INDEX fhir_idx_date_r ON fhir_idx_date (tenant_id, type, id);\n",
        rls!("fhir_idx_date"),
        "CREATE TABLE fhir_idx_ref (tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        type text NOT NULL, id text NOT NULL, param text NOT NULL, target_type text NOT NULL, target_id text NOT NULL);
      CREATE INDEX fhir_idx_ref_q ON fhir_idx_ref (tenant_id, type, param, target_id);
      CREATE INDEX fhir_idx_ref_t ON fhir_idx_ref (tenant_id, target_type, target_id);
      CREATE INDEX fhir_idx_ref_r ON fhir_idx_ref (tenant_id, type, id);\n",
        rls!("fhir_idx_ref"),
    ),
};

/// The query indexes end with the resource id: a search's id sets come from the index
/// alone (index-only scans in PostgreSQL, covering indexes in SQLite).
const V3: Migration = Migration {
    component: "records",
    version: 3,
    name: "search index: covering query indexes",
    sqlite: "DROP INDEX fhir_idx_token_q;
    CREATE INDEX fhir_idx_token_q ON fhir_idx_token (type, param, code, system, id);
    DROP INDEX fhir_idx_string_q;
    CREATE INDEX fhir_idx_string_q ON fhir_idx_string (type, param, norm, id);
    DROP INDEX fhir_idx_date_q;
    CREATE INDEX fhir_idx_date_q ON fhir_idx_date (type, param, lo, hi, id);
    DROP INDEX fhir_idx_ref_q;
    CREATE INDEX fhir_idx_ref_q ON fhir_idx_ref (type, param, target_id, id);",
    postgres: "DROP INDEX fhir_idx_token_q;
    CREATE INDEX fhir_idx_token_q ON fhir_idx_token (tenant_id, type, param, code, system, id);
    DROP INDEX fhir_idx_string_q;
    CREATE INDEX fhir_idx_string_q ON fhir_idx_string (tenant_id, type, param, norm text_pattern_ops, id);
    DROP INDEX fhir_idx_date_q;
    CREATE INDEX fhir_idx_date_q ON fhir_idx_date (tenant_id, type, param, lo, hi, id);
    DROP INDEX fhir_idx_ref_q;
    CREATE INDEX fhir_idx_ref_q ON fhir_idx_ref (tenant_id, type, param, target_id, id);",
};

/// PostgreSQL: the usage counters refuse a total past the bound a statement sets with them
/// (`lim`), so a transaction made only of creates is checked by the database in its one
/// statement (`store::creates_pg`). SQLite checks inside its write-locked transaction:
/// nothing to add.
const V4: Migration = Migration {
    component: "records",
    version: 4,
    name: "usage counters checked against a bound set with them",
    sqlite: "",
    postgres: "ALTER TABLE fhir_usage ADD COLUMN lim bigint;
    ALTER TABLE fhir_usage ADD CONSTRAINT fhir_usage_within_plan CHECK (lim IS NULL OR value <= lim);",
};

/// The history holds superseded versions only: the current version is read from
/// `fhir_resources` (one copy of each body, one row fewer per create). The copies of current
/// versions are removed; where row-level security hides them from the migrating role
/// (pg-shared without BYPASSRLS) they stay and the readers skip them.
const V5: Migration = Migration {
    component: "records",
    version: 5,
    name: "history holds superseded versions only",
    sqlite: "DELETE FROM fhir_history WHERE EXISTS (SELECT 1 FROM fhir_resources r \
        WHERE r.type = fhir_history.type AND r.id = fhir_history.id \
        AND r.version = fhir_history.version);",
    postgres: "DELETE FROM fhir_history h USING fhir_resources r WHERE r.tenant_id = h.tenant_id \
        AND r.type = h.type AND r.id = h.id AND r.version = h.version;",
};

/// A HumanName `name` part that is also a `family` or `given` row is stored once: `name`
/// searches read those rows too (`index::covers`). The existing copies are removed.
const V6: Migration = Migration {
    component: "records",
    version: 6,
    name: "name parts stored once",
    sqlite: "DELETE FROM fhir_idx_string WHERE param = 'name' \
        AND type IN ('Patient', 'Practitioner') AND EXISTS (SELECT 1 FROM fhir_idx_string f \
        WHERE f.type = fhir_idx_string.type AND f.id = fhir_idx_string.id \
        AND f.param IN ('family', 'given') AND f.norm = fhir_idx_string.norm \
        AND f.raw = fhir_idx_string.raw);",
    postgres: "DELETE FROM fhir_idx_string n WHERE n.param = 'name' \
        AND n.type IN ('Patient', 'Practitioner') AND EXISTS (SELECT 1 FROM fhir_idx_string f \
        WHERE f.tenant_id = n.tenant_id AND f.type = n.type AND f.id = n.id \
        AND f.param IN ('family', 'given') AND f.norm = n.norm AND f.raw = n.raw);",
};

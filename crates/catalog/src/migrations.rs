//! Versioned catalog schema, one list per dialect, embedded in the binary.

/// A catalog migration.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial catalog",
        sql: r#"
CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    status        TEXT NOT NULL,
    profile       TEXT NOT NULL,
    plan          TEXT NOT NULL,
    isolation     TEXT NOT NULL,
    delete_after  INTEGER,
    version       INTEGER NOT NULL,
    change_seq    INTEGER NOT NULL,
    doc           TEXT NOT NULL
) STRICT;
CREATE INDEX tenants_change_seq ON tenants (change_seq);
CREATE INDEX tenants_status ON tenants (status, id);
CREATE TABLE tenant_domains (
    name       TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id)
) STRICT;
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);
CREATE TABLE catalog_seq (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL) STRICT;
INSERT INTO catalog_seq (id, value) VALUES (1, 0);
CREATE TABLE plans (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    doc      TEXT NOT NULL
) STRICT;
CREATE TABLE operators (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    doc   TEXT NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 2,
        name: "tenant schema version and placement columns",
        sql: r#"
ALTER TABLE tenants ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN placement TEXT;
UPDATE tenants SET schema_version = coalesce(json_extract(doc, '$.schema_version'), 0),
                   placement = json_extract(doc, '$.placement');
CREATE INDEX tenants_schema ON tenants (schema_version, id);
"#,
    },
    Migration {
        version: 3,
        name: "monthly request counters",
        sql: r#"
CREATE TABLE usage_monthly (
    tenant_id TEXT NOT NULL,
    month     TEXT NOT NULL,
    requests  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
) STRICT;
"#,
    },
    Migration {
        version: 4,
        name: "standby stores",
        sql: r#"
CREATE TABLE standby_stores (
    id             TEXT PRIMARY KEY,
    isolation      TEXT NOT NULL,
    placement      TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    state          TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) STRICT;
CREATE INDEX standby_claim ON standby_stores (isolation, placement, state, schema_version);
"#,
    },
    Migration {
        version: 5,
        name: "usage ledger, gauges, idempotent meter events, price sheet",
        sql: r#"
CREATE TABLE usage_ledger (
    tenant_id TEXT NOT NULL,
    bucket    INTEGER NOT NULL,
    span      INTEGER NOT NULL,
    meter     TEXT NOT NULL,
    value     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, bucket, span, meter)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_ledger_span ON usage_ledger (span, bucket);
CREATE TABLE usage_gauges (
    tenant_id TEXT NOT NULL,
    hour      INTEGER NOT NULL,
    measure   TEXT NOT NULL,
    value     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hour, measure)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_gauges_hour ON usage_gauges (hour);
CREATE TABLE usage_events (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    digest      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_events_received ON usage_events (received_at);
CREATE TABLE price_sheet (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL,
    doc      TEXT NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 6,
        name: "budgets, alerts and their webhook deliveries",
        sql: r#"
CREATE TABLE budgets (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
) STRICT;
CREATE TABLE budget_alerts (
    id              TEXT PRIMARY KEY,
    budget_id       TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    period_start    INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    threshold       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    delivered_at    INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    UNIQUE (budget_id, tenant_id, period_start, kind, threshold)
) STRICT;
CREATE INDEX budget_alerts_due ON budget_alerts (next_attempt_at);
CREATE INDEX budget_alerts_tenant ON budget_alerts (tenant_id, created_at);
CREATE TABLE alert_deliveries (
    alert_id TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    status   INTEGER,
    error    TEXT,
    PRIMARY KEY (alert_id, attempt)
) STRICT;
"#,
    },
    Migration {
        version: 7,
        name: "the platform audit log",
        sql: r#"
CREATE TABLE platform_audit (
    seq         INTEGER PRIMARY KEY,
    recorded_ms INTEGER NOT NULL,
    category    TEXT NOT NULL,
    action      TEXT NOT NULL,
    code        TEXT NOT NULL,
    outcome     INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    entity      TEXT,
    peer        TEXT,
    request_id  TEXT,
    detail      TEXT,
    hash        BLOB NOT NULL
) STRICT;
CREATE INDEX platform_audit_recorded ON platform_audit (recorded_ms);
CREATE INDEX platform_audit_entity ON platform_audit (entity, seq);
CREATE TABLE platform_audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;
CREATE TRIGGER platform_audit_is_final BEFORE UPDATE ON platform_audit
BEGIN SELECT RAISE(ABORT, 'platform_audit is append-only'); END;
CREATE TRIGGER platform_audit_is_kept BEFORE DELETE ON platform_audit
BEGIN SELECT RAISE(ABORT, 'platform_audit is append-only'); END;
"#,
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial catalog",
        sql: r#"
CREATE TABLE tenants (
    id            UUID PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    status        TEXT NOT NULL,
    profile       TEXT NOT NULL,
    plan          TEXT NOT NULL,
    isolation     TEXT NOT NULL,
    delete_after  TIMESTAMPTZ,
    version       BIGINT NOT NULL,
    change_seq    BIGINT NOT NULL,
    doc           JSONB NOT NULL
);
CREATE INDEX tenants_change_seq ON tenants (change_seq);
CREATE INDEX tenants_status ON tenants (status, id);
CREATE TABLE tenant_domains (
    name       TEXT PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id)
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);
CREATE SEQUENCE catalog_change_seq;
CREATE TABLE plans (
    name     TEXT PRIMARY KEY,
    version  BIGINT NOT NULL,
    doc      JSONB NOT NULL
);
CREATE TABLE operators (
    id    UUID PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    doc   JSONB NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "tenant schema version and placement columns",
        sql: r#"
ALTER TABLE tenants ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN placement TEXT;
UPDATE tenants SET schema_version = coalesce((doc->>'schema_version')::int, 0),
                   placement = doc->>'placement';
CREATE INDEX tenants_schema ON tenants (schema_version, id);
"#,
    },
    Migration {
        version: 3,
        name: "monthly request counters",
        sql: r#"
CREATE TABLE usage_monthly (
    tenant_id UUID NOT NULL,
    month     TEXT NOT NULL,
    requests  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);
"#,
    },
    Migration {
        version: 4,
        name: "standby stores",
        sql: r#"
CREATE TABLE standby_stores (
    id             UUID PRIMARY KEY,
    isolation      TEXT NOT NULL,
    placement      TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    state          TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX standby_claim ON standby_stores (isolation, placement, state, schema_version);
"#,
    },
    Migration {
        version: 5,
        name: "usage ledger, gauges, idempotent meter events, price sheet",
        sql: r#"
CREATE TABLE usage_ledger (
    tenant_id UUID NOT NULL,
    bucket    BIGINT NOT NULL,
    span      INTEGER NOT NULL,
    meter     TEXT NOT NULL,
    value     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket, span, meter)
);
CREATE INDEX usage_ledger_span ON usage_ledger (span, bucket);
CREATE TABLE usage_gauges (
    tenant_id UUID NOT NULL,
    hour      BIGINT NOT NULL,
    measure   TEXT NOT NULL,
    value     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour, measure)
);
CREATE INDEX usage_gauges_hour ON usage_gauges (hour);
CREATE TABLE usage_events (
    tenant_id   UUID NOT NULL,
    key         TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    digest      BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX usage_events_received ON usage_events (received_at);
CREATE TABLE price_sheet (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL,
    doc      JSONB NOT NULL
);
"#,
    },
    Migration {
        version: 6,
        name: "budgets, alerts and their webhook deliveries",
        sql: r#"
CREATE TABLE budgets (
    id         UUID PRIMARY KEY,
    created_at BIGINT NOT NULL,
    doc        JSONB NOT NULL
);
CREATE TABLE budget_alerts (
    id              UUID PRIMARY KEY,
    budget_id       UUID NOT NULL,
    tenant_id       UUID NOT NULL,
    period_start    BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    threshold       INTEGER NOT NULL,
    created_at      BIGINT NOT NULL,
    payload         JSONB NOT NULL,
    delivered_at    BIGINT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    UNIQUE (budget_id, tenant_id, period_start, kind, threshold)
);
CREATE INDEX budget_alerts_due ON budget_alerts (next_attempt_at);
CREATE INDEX budget_alerts_tenant ON budget_alerts (tenant_id, created_at);
CREATE TABLE alert_deliveries (
    alert_id UUID NOT NULL,
    attempt  INTEGER NOT NULL,
    at       BIGINT NOT NULL,
    status   INTEGER,
    error    TEXT,
    PRIMARY KEY (alert_id, attempt)
);
"#,
    },
    Migration {
        version: 7,
        name: "the platform audit log",
        sql: r#"
CREATE TABLE platform_audit (
    seq         BIGINT PRIMARY KEY,
    recorded_ms BIGINT NOT NULL,
    category    TEXT NOT NULL,
    action      TEXT NOT NULL,
    code        TEXT NOT NULL,
    outcome     SMALLINT NOT NULL,
    agent       TEXT NOT NULL,
    entity      TEXT,
    peer        TEXT,
    request_id  TEXT,
    detail      TEXT,
    hash        BYTEA NOT NULL
);
CREATE INDEX platform_audit_recorded ON platform_audit (recorded_ms);
CREATE INDEX platform_audit_entity ON platform_audit (entity, seq);
CREATE TABLE platform_audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
CREATE FUNCTION platform_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'platform_audit is append-only';
END $$;
CREATE TRIGGER platform_audit_guard BEFORE UPDATE OR DELETE ON platform_audit
  FOR EACH ROW EXECUTE FUNCTION platform_audit_guard();
"#,
    },
];

//! The audit log on PostgreSQL (the three modes: `tenant_id` leads every key under forced
//! row-level security, as for every tenant table).

use tenantplane_audit::{
    Category, Entry,
    chain::{Checkpoint, CheckpointKey, Hash, genesis, hash_from, link},
};
use tenantplane_core::TenantId;
use tokio_postgres::{
    Error, Row, Transaction,
    types::{ToSql, Type},
};

use super::{
    Anchors,
    query::{AuditQuery, COLUMNS, Stored, Val, filter},
};

macro_rules! tenant_column {
    () => {
        "tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid"
    };
}

pub(super) const MIGRATION: &str = concat!(
    "CREATE TABLE audit_log (",
    tenant_column!(),
    ",
        id bigint GENERATED ALWAYS AS IDENTITY,
        seq bigint,
        recorded_ms bigint NOT NULL,
        category text NOT NULL,
        action text NOT NULL,
        code text NOT NULL,
        outcome smallint NOT NULL,
        agent text NOT NULL,
        entity text,
        peer text,
        request_id text,
        detail text,
        hash bytea,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, seq));
    CREATE INDEX audit_log_recorded ON audit_log (tenant_id, recorded_ms);
    CREATE INDEX audit_log_agent ON audit_log (tenant_id, agent, recorded_ms);
    CREATE INDEX audit_log_entity ON audit_log (tenant_id, entity text_pattern_ops, recorded_ms);
    CREATE INDEX audit_log_unsealed ON audit_log (tenant_id, id) WHERE seq IS NULL;
    CREATE TABLE audit_head (",
    tenant_column!(),
    ", seq bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (tenant_id));
    CREATE TABLE audit_checkpoints (",
    tenant_column!(),
    ", seq bigint NOT NULL, hash bytea NOT NULL, at_ms bigint NOT NULL, key_id text NOT NULL,
        signature bytea NOT NULL, PRIMARY KEY (tenant_id, seq));
    ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
    ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON audit_log
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
    ALTER TABLE audit_head ENABLE ROW LEVEL SECURITY;
    ALTER TABLE audit_head FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON audit_head
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
    ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
    ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON audit_checkpoints
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
    CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
      IF current_setting('tenantplane.erase', true) = 'on' THEN
        RETURN OLD;
      END IF;
      IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND
           (NEW.tenant_id, NEW.id, NEW.recorded_ms, NEW.category, NEW.action, NEW.code,
            NEW.outcome, NEW.agent, NEW.entity, NEW.peer, NEW.request_id, NEW.detail)
           IS NOT DISTINCT FROM
           (OLD.tenant_id, OLD.id, OLD.recorded_ms, OLD.category, OLD.action, OLD.code,
            OLD.outcome, OLD.agent, OLD.entity, OLD.peer, OLD.request_id, OLD.detail) THEN
          RETURN NEW;
        END IF;
      ELSIF OLD.seq IS NOT NULL AND OLD.seq <= (SELECT coalesce(max(c.seq), 0)
            FROM audit_checkpoints c WHERE c.tenant_id = OLD.tenant_id) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_log is append-only';
    END $$;
    CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON audit_log
      FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
    CREATE FUNCTION audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('tenantplane.erase', true) = 'on' THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit checkpoints are final';
    END $$;
    CREATE TRIGGER audit_checkpoints_guard BEFORE UPDATE OR DELETE ON audit_checkpoints
      FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_guard();"
);

pub(super) async fn insert(tx: &Transaction<'_>, entries: &[Entry]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let rec: Vec<i64> = entries.iter().map(|e| e.recorded_ms).collect();
    let cat: Vec<&str> = entries.iter().map(|e| e.category.as_str()).collect();
    let act: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    let code: Vec<&str> = entries.iter().map(|e| e.code.as_str()).collect();
    let out: Vec<i16> = entries.iter().map(|e| i16::from(e.outcome)).collect();
    let agent: Vec<&str> = entries.iter().map(|e| e.agent.as_str()).collect();
    let ent: Vec<Option<&str>> = entries.iter().map(|e| e.entity.as_deref()).collect();
    let peer: Vec<Option<&str>> = entries.iter().map(|e| e.peer.as_deref()).collect();
    let rid: Vec<Option<&str>> = entries.iter().map(|e| e.request_id.as_deref()).collect();
    let det: Vec<Option<&str>> = entries.iter().map(|e| e.detail.as_deref()).collect();
    tx.execute_typed(
        "INSERT INTO audit_log (recorded_ms, category, action, code, outcome, agent, entity, \
         peer, request_id, detail) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], \
         $4::text[], $5::smallint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
        &[
            (&rec, Type::INT8_ARRAY),
            (&cat, Type::TEXT_ARRAY),
            (&act, Type::TEXT_ARRAY),
            (&code, Type::TEXT_ARRAY),
            (&out, Type::INT2_ARRAY),
            (&agent, Type::TEXT_ARRAY),
            (&ent, Type::TEXT_ARRAY),
            (&peer, Type::TEXT_ARRAY),
            (&rid, Type::TEXT_ARRAY),
            (&det, Type::TEXT_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

/// Reads an entry from a row of [`COLUMNS`] (offset 2). An unknown category reads as
/// `security` so that verification, not parsing, reports the altered row.
fn entry(r: &Row) -> Entry {
    let cat: String = r.get(3);
    Entry {
        recorded_ms: r.get(2),
        category: Category::parse(&cat).unwrap_or(Category::Security),
        action: r.get(4),
        code: r.get(5),
        outcome: u8::try_from(r.get::<_, i16>(6)).unwrap_or(u8::MAX),
        agent: r.get(7),
        entity: r.get(8),
        peer: r.get(9),
        request_id: r.get(10),
        detail: r.get(11),
    }
}

pub(super) async fn seal(tx: &Transaction<'_>, tenant: TenantId, max: usize) -> Result<u64, Error> {
    // The head row serializes sealers of one tenant (replicas, the writer and a prune).
    tx.execute(
        "INSERT INTO audit_head (seq, hash) VALUES (0, $1) ON CONFLICT DO NOTHING",
        &[&genesis(tenant).as_slice()],
    )
    .await?;
    let h = tx
        .query_one("SELECT seq, hash FROM audit_head FOR UPDATE", &[])
        .await?;
    let (mut seq, mut prev): (i64, Hash) = (h.get(0), hash_from(h.get::<_, &[u8]>(1)));
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT $1"),
            &[&limit],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
    for r in &rows {
        seq += 1;
        prev = link(&prev, seq, &entry(r));
        ids.push(r.get::<_, i64>(0));
        seqs.push(seq);
        hashes.push(prev.to_vec());
    }
    tx.execute(
        "UPDATE audit_log SET seq = u.s, hash = u.h \
         FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(i, s, h) \
         WHERE audit_log.id = u.i AND audit_log.seq IS NULL",
        &[&ids, &seqs, &hashes],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2",
        &[&seq, &prev.as_slice()],
    )
    .await?;
    Ok(rows.len() as u64)
}

pub(super) async fn anchors(tx: &Transaction<'_>) -> Result<Anchors, Error> {
    let head = tx
        .query_opt("SELECT seq, hash FROM audit_head", &[])
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)));
    let checkpoint = tx
        .query_opt(
            "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints \
             ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|r| Checkpoint {
            seq: r.get(0),
            hash: hash_from(r.get::<_, &[u8]>(1)),
            at_ms: r.get(2),
            key_id: r.get(3),
            signature: r.get(4),
        });
    let unsealed: i64 = tx
        .query_one("SELECT count(*) FROM audit_log WHERE seq IS NULL", &[])
        .await?
        .get(0);
    Ok(Anchors {
        head: head.filter(|h| h.0 > 0),
        checkpoint,
        unsealed: unsealed as u64,
    })
}

pub(super) async fn sealed_after(
    tx: &Transaction<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Entry, Vec<u8>)>, Error> {
    Ok(tx
        .query(
            &format!("SELECT {COLUMNS}, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after, &limit],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(1),
                entry(r),
                r.get::<_, Option<Vec<u8>>>(12).unwrap_or_default(),
            )
        })
        .collect())
}

pub(super) async fn search(tx: &Transaction<'_>, q: &AuditQuery) -> Result<Vec<Stored>, Error> {
    let (clause, vals) = filter(q, |n| format!("${n}"), true);
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {clause} ORDER BY id DESC LIMIT {}",
        q.limit
    );
    let params: Vec<(&(dyn ToSql + Sync), Type)> = vals
        .iter()
        .map(|v| match v {
            Val::Int(i) => (i as &(dyn ToSql + Sync), Type::INT8),
            Val::Text(s) => (s as &(dyn ToSql + Sync), Type::TEXT),
        })
        .collect();
    Ok(tx
        .query_typed(&sql, &params)
        .await?
        .iter()
        .map(|r| Stored {
            id: r.get(0),
            seq: r.get(1),
            entry: entry(r),
        })
        .collect())
}

pub(super) async fn prune(
    tx: &Transaction<'_>,
    tenant: TenantId,
    before_ms: i64,
    key: &CheckpointKey,
    at_ms: i64,
) -> Result<Option<i64>, Error> {
    // Under the head row: no seal moves the chain meanwhile.
    tx.query_opt("SELECT seq FROM audit_head FOR UPDATE", &[])
        .await?;
    let first_kept: Option<i64> = tx
        .query_one(
            "SELECT min(seq) FROM audit_log WHERE seq IS NOT NULL AND recorded_ms >= $1",
            &[&before_ms],
        )
        .await?
        .get(0);
    let last = match first_kept {
        Some(k) => {
            tx.query_opt(
                "SELECT seq, hash FROM audit_log WHERE seq = $1",
                &[&(k - 1)],
            )
            .await?
        }
        None => {
            tx.query_opt(
                "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?
        }
    };
    let Some(last) = last else {
        return Ok(None);
    };
    let (seq, hash): (i64, Vec<u8>) = (last.get(0), last.get(1));
    let done: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM audit_checkpoints", &[])
        .await?
        .get(0);
    if seq <= done {
        return Ok(None);
    }
    let cp = key.sign(tenant, seq, hash_from(&hash), at_ms);
    tx.execute(
        "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &cp.seq,
            &cp.hash.as_slice(),
            &cp.at_ms,
            &cp.key_id,
            &cp.signature,
        ],
    )
    .await?;
    tx.execute("DELETE FROM audit_log WHERE seq <= $1", &[&seq])
        .await?;
    Ok(Some(seq))
}

//! Creates on PostgreSQL in one statement and one round trip.
//!
//! A create has a freshly minted id: nothing to read or lock first. So a transaction made
//! only of creates (a `POST`, a transaction Bundle of new resources) is one statement —
//! the current rows (a new resource has no history yet), every index row and the usage
//! counters and the writes' audit entries, each table written once with multi-row `unnest`
//! inserts — sent with the tenant's context as one message, one implicit transaction
//! ([`PgTenant::query_text_once`]).
//!
//! The quota is checked by the database: the counters are changed by an upsert that also
//! sets each counter's `lim` for this statement, and the check constraint
//! `fhir_usage_within_plan` (`lim IS NULL OR value <= lim`, migration records/4) refuses a
//! total past it — the statement fails, its implicit transaction rolls back, and the caller
//! runs it again holding the counters for the exact per-write answer. `lim` is chosen so the
//! check is the same as checking every write in order: write *i* adds `dᵢ` after the
//! earlier ones, so it fits when `start + Pᵢ ≤ limitᵢ` (`Pᵢ` its prefix sum); all fit when
//! `start ≤ min(limitᵢ − Pᵢ)`, i.e. when the final total `start + Pₙ ≤ min(limitᵢ − Pᵢ) + Pₙ`.

use tenantplane_tenant_data::{DataError, PgTenant};
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};

use super::{Actor, Applied, Outcome, Write, at_ms, index_rows::IndexArrays};
use crate::{RecordsError, Result};

/// The constraint of migration records/4 that refuses counters past the plan.
pub(super) const WITHIN_PLAN: &str = "fhir_usage_within_plan";

/// The value for `lim` of one counter: `None` when no write limits it (or the bound is
/// beyond any total).
fn bound(deltas: impl Iterator<Item = (i64, u64)>) -> Option<i64> {
    let (mut prefix, mut min_room): (i128, Option<i128>) = (0, None);
    for (d, limit) in deltas {
        prefix += i128::from(d);
        if d > 0 && limit != u64::MAX {
            let room = i128::from(limit) - prefix;
            min_room = Some(min_room.map_or(room, |m| m.min(room)));
        }
    }
    // Below zero (only with negative deltas) the bound can never be met; -1 keeps it so.
    min_room.and_then(|m| i64::try_from((m + prefix).max(-1)).ok())
}

/// Writes `writes` (all creates) in one transaction. `Ok(None)`: the counters would pass
/// the plan — nothing was written; the caller runs the locked path.
pub(super) async fn create_all(
    p: PgTenant<'_>,
    writes: &[Write],
    now: i64,
    who: &Actor,
) -> Result<Option<Vec<Option<Applied>>>> {
    let at: OffsetDateTime = at_ms(now);
    let docs: Vec<String> = writes
        .iter()
        .map(|w| w.body.as_ref().map_or_else(String::new, |f| f(1, at)))
        .collect();
    let (types, ids): (Vec<&str>, Vec<&str>) =
        writes.iter().map(|w| (w.rtype, w.id.as_str())).unzip();
    let lim_p = bound(
        writes
            .iter()
            .map(|w| (i64::from(w.patient), w.limits.max_patients)),
    );
    let lim_b = bound(
        writes
            .iter()
            .zip(&docs)
            .map(|(w, d)| (d.len() as i64, w.limits.storage_bytes)),
    );
    let dp: i64 = writes.iter().map(|w| i64::from(w.patient)).sum();
    let db: i64 = docs.iter().map(|d| d.len() as i64).sum();

    let mut ix = IndexArrays::default();
    for w in writes {
        ix.push(w.rtype, &w.id, &w.index);
    }
    let usage = match dp {
        0 => "('bytes', $27::bigint, $28::bigint)",
        // In key order, as every other path takes them: no deadlock between paths.
        _ => "('bytes', $27::bigint, $28::bigint), ('patients', $25::bigint, $26::bigint)",
    };
    let sql = format!(
        "WITH r AS (INSERT INTO fhir_resources (type, id, version, last_updated, deleted, doc) \
           SELECT t, i, 1, $4, false, d FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, i, d)), \
         {}, \
         a AS (INSERT INTO audit_log (recorded_ms, category, action, code, outcome, agent, \
           entity, peer, request_id) \
           SELECT $4, 'clinical', 'create', 'C', 0, $29, t || '/' || i || '/_history/1', $30, $31 \
           FROM unnest($1::text[], $2::text[]) AS u(t, i)) \
         INSERT INTO fhir_usage (key, value, lim) VALUES {usage} \
         ON CONFLICT (tenant_id, key) DO UPDATE SET \
           value = fhir_usage.value + excluded.value, lim = excluded.lim",
        IndexArrays::ctes(5)
    );
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&types, Type::TEXT_ARRAY),
        (&ids, Type::TEXT_ARRAY),
        (&docs, Type::TEXT_ARRAY),
        (&now, Type::INT8),
    ];
    params.extend(ix.params());
    params.extend([
        (&dp as &(dyn ToSql + Sync), Type::INT8),
        (&lim_p, Type::INT8),
        (&db, Type::INT8),
        (&lim_b, Type::INT8),
        (&who.agent, Type::TEXT),
        (&who.peer, Type::TEXT),
        (&who.request_id, Type::TEXT),
    ]);
    // With `dp == 0` the patients row is left out of the statement: $25/$26 are referenced
    // nowhere, which PostgreSQL accepts since their types are declared.
    match p.query_text_once(&sql, &params).await {
        Ok(_) => Ok(Some(
            docs.into_iter()
                .map(|d| Some((Outcome::Written(1), now, Some(d))))
                .collect(),
        )),
        Err(DataError::Refused { constraint }) if constraint == WITHIN_PLAN => Ok(None),
        Err(e) => Err(RecordsError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::bound;

    #[test]
    fn the_bound_checks_every_write_in_order() {
        // No limit: no bound.
        assert_eq!(bound([(1, u64::MAX), (1, u64::MAX)].into_iter()), None);
        // Nothing added: no bound.
        assert_eq!(bound([(0, 5)].into_iter()), None);
        // One write of 1 under 10: the total may reach 10.
        assert_eq!(bound([(1, 10)].into_iter()), Some(10));
        // Two writes under 10: start + 2 <= 10.
        assert_eq!(bound([(1, 10), (1, 10)].into_iter()), Some(10));
        // A later, smaller limit binds: start + 2 <= 5 → total <= 5.
        assert_eq!(bound([(1, 10), (1, 5)].into_iter()), Some(5));
        // An earlier, smaller limit binds: start + 1 <= 3 → total = start + 2 <= 4.
        assert_eq!(bound([(1, 3), (1, 10)].into_iter()), Some(4));
        // A write larger than its limit: the total (at least 5) can never be within 2.
        assert_eq!(bound([(5, 2)].into_iter()), Some(2));
        // A limit beyond i64: no bound.
        assert_eq!(bound([(1, u64::MAX - 1)].into_iter()), None);
    }
}

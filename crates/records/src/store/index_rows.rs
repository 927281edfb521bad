//! A set of resources' index rows, column by column, for multi-row inserts on PostgreSQL
//! (`unnest` over one array per column): the creates' one statement and a resource's
//! reindex share it.

use tokio_postgres::types::{ToSql, Type};

use crate::index::Row;

/// Every index row of a set of resources, column by column.
#[derive(Default)]
pub(super) struct IndexArrays<'a> {
    token: Cols<'a, Option<&'a str>, &'a str>,
    string: Cols<'a, &'a str, &'a str>,
    date: Cols<'a, i64, i64>,
    refs: Cols<'a, &'a str, &'a str>,
}

/// (type, id, param, a, b).
type Cols<'a, A, B> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<A>, Vec<B>);

impl<'a> IndexArrays<'a> {
    /// The four inserts as data-modifying CTEs (`xt`, `xs`, `xd`, `xr`), their 20 arrays
    /// bound from `$first` on, in the order of [`params`](Self::params).
    pub(super) fn ctes(first: usize) -> String {
        let p = |k: usize| first + k;
        format!(
            "xt AS (INSERT INTO fhir_idx_token (type, id, param, system, code) \
               SELECT * FROM unnest(${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[])), \
             xs AS (INSERT INTO fhir_idx_string (type, id, param, norm, raw) \
               SELECT * FROM unnest(${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[])), \
             xd AS (INSERT INTO fhir_idx_date (type, id, param, lo, hi) \
               SELECT * FROM unnest(${}::text[], ${}::text[], ${}::text[], ${}::bigint[], ${}::bigint[])), \
             xr AS (INSERT INTO fhir_idx_ref (type, id, param, target_type, target_id) \
               SELECT * FROM unnest(${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[]))",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11),
            p(12),
            p(13),
            p(14),
            p(15),
            p(16),
            p(17),
            p(18),
            p(19)
        )
    }

    /// The 20 arrays, in the order [`ctes`](Self::ctes) binds them.
    pub(super) fn params(&self) -> [(&(dyn ToSql + Sync), Type); 20] {
        [
            (&self.token.0, Type::TEXT_ARRAY),
            (&self.token.1, Type::TEXT_ARRAY),
            (&self.token.2, Type::TEXT_ARRAY),
            (&self.token.3, Type::TEXT_ARRAY),
            (&self.token.4, Type::TEXT_ARRAY),
            (&self.string.0, Type::TEXT_ARRAY),
            (&self.string.1, Type::TEXT_ARRAY),
            (&self.string.2, Type::TEXT_ARRAY),
            (&self.string.3, Type::TEXT_ARRAY),
            (&self.string.4, Type::TEXT_ARRAY),
            (&self.date.0, Type::TEXT_ARRAY),
            (&self.date.1, Type::TEXT_ARRAY),
            (&self.date.2, Type::TEXT_ARRAY),
            (&self.date.3, Type::INT8_ARRAY),
            (&self.date.4, Type::INT8_ARRAY),
            (&self.refs.0, Type::TEXT_ARRAY),
            (&self.refs.1, Type::TEXT_ARRAY),
            (&self.refs.2, Type::TEXT_ARRAY),
            (&self.refs.3, Type::TEXT_ARRAY),
            (&self.refs.4, Type::TEXT_ARRAY),
        ]
    }

    pub(super) fn push(&mut self, rtype: &'a str, id: &'a str, rows: &'a [Row]) {
        for r in rows {
            match r {
                Row::Token {
                    param,
                    system,
                    code,
                } => push5(
                    &mut self.token,
                    rtype,
                    id,
                    param,
                    system.as_deref(),
                    code.as_str(),
                ),
                Row::Str { param, norm, raw } => {
                    push5(&mut self.string, rtype, id, param, norm, raw);
                }
                Row::Date { param, lo, hi } => push5(&mut self.date, rtype, id, param, *lo, *hi),
                Row::Ref {
                    param,
                    rtype: tt,
                    id: tid,
                } => push5(&mut self.refs, rtype, id, param, tt, tid),
            }
        }
    }
}

fn push5<'a, A, B>(c: &mut Cols<'a, A, B>, t: &'a str, i: &'a str, p: &'a str, a: A, b: B) {
    c.0.push(t);
    c.1.push(i);
    c.2.push(p);
    c.3.push(a);
    c.4.push(b);
}

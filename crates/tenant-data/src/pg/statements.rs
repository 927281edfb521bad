//! A tenant's statements on its server: a transaction with the tenant's context, and the
//! one-round-trip and one-message forms of a single statement.

use super::{CONTEXT_SQL, PgServer, TxFuture, db, quote_ident, set_context};
use crate::{DataError, Result, literal::Param};
use tenantplane_core::Tenant;

impl PgServer {
    /// Runs `f` in a transaction of the tenant, with its context set for this transaction
    /// only. Waits at most the configured time for a connection of the budget. The round
    /// trips: `BEGIN`, the context, `f`'s statements, `COMMIT`.
    pub async fn transaction<T, F>(&self, tenant: &Tenant, f: F) -> Result<T>
    where
        T: Send,
        F: for<'a> FnOnce(&'a tokio_postgres::Transaction<'a>) -> TxFuture<'a, T> + Send,
    {
        let (dbname, schema) = self.route(tenant)?;
        let (mut c, _share) = self.tenant_conn(tenant, &dbname).await?;
        let tx = c.transaction().await.map_err(db)?;
        set_context(&tx, &schema, tenant).await?;
        let out = f(&tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// Runs one statement in a transaction of the tenant in one round trip: `BEGIN`, the
    /// context, the statement and `COMMIT` are written together (pipelined, each with its own
    /// `Sync`) and their answers read in order. The context stays transaction-local, so a
    /// PgBouncer in transaction mode keeps one server connection for all four and hands over
    /// a clean one. A failing statement aborts the transaction, whose `COMMIT` then rolls it
    /// back; the connection goes back to the pool idle. For reads (and single-statement
    /// writes) on the hot path.
    pub async fn query_once(
        &self,
        tenant: &Tenant,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        use tokio_postgres::types::Type;
        let (dbname, schema) = self.route(tenant)?;
        let (c, _share) = self.tenant_conn(tenant, &dbname).await?;
        let (path, id) = (quote_ident(&schema), tenant.id.to_string());
        let context: [Param<'_>; 2] = [(&path, Type::TEXT), (&id, Type::TEXT)];
        // `join!` polls in order: each future writes its messages on its first poll, before
        // any answer is awaited, so all four go out together.
        let (begin, context, rows, commit) = tokio::join!(
            c.query_typed("BEGIN", &[]),
            c.query_typed(CONTEXT_SQL, &context),
            c.query_typed(sql, params),
            c.query_typed("COMMIT", &[]),
        );
        begin.map_err(db)?;
        context.map_err(db)?;
        let rows = rows.map_err(db)?;
        commit.map_err(db)?;
        Ok(rows)
    }

    /// Runs one statement in a transaction of the tenant as **one** `Query` message of the
    /// simple protocol: the context (`set_config(…, true)`) and the statement, parameters
    /// written in as typed literals ([`crate::literal`]). The server runs a multi-statement
    /// message as one implicit transaction — the context holds for the statement and ends
    /// with it (committed, or rolled back on an error), so PgBouncer in transaction mode
    /// stays safe — with one parse, no `BEGIN`/`COMMIT` and one reply: about half the
    /// server's work of the four pipelined statements of [`query_once`](Self::query_once).
    /// Answers come as text (the statement's rows only). Parameter types: text, bigint,
    /// integer, boolean, text[], bigint[].
    pub async fn query_text_once(
        &self,
        tenant: &Tenant,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<tokio_postgres::SimpleQueryRow>> {
        use tokio_postgres::SimpleQueryMessage as M;
        let (dbname, schema) = self.route(tenant)?;
        let lit = |e: crate::literal::LiteralError| DataError::Db(e.to_string());
        // One statement only: a second one (or a `BEGIN`/`COMMIT` of its own) could end the
        // context early or hand the connection back mid-transaction. Values are literals
        // written below, so a `;` here is in the statement's own text.
        if sql.contains(';') {
            return Err(DataError::Db("query_text_once takes one statement".into()));
        }
        let (path, id) = (quote_ident(&schema), tenant.id.to_string());
        let context = crate::literal::render(
            CONTEXT_SQL,
            &[
                (&path, tokio_postgres::types::Type::TEXT),
                (&id, tokio_postgres::types::Type::TEXT),
            ],
        )
        .map_err(lit)?;
        let statement = crate::literal::render(sql, params).map_err(lit)?;
        let message = format!("{context}; {statement}");
        let (c, _share) = self.tenant_conn(tenant, &dbname).await?;
        let answers = c.simple_query(&message).await.map_err(db)?;
        // The context's one row and its completion come first; then the statement's rows
        // and its completion — exactly two completions.
        let mut done = 0;
        let mut rows = Vec::new();
        for m in answers {
            match m {
                M::CommandComplete(_) => done += 1,
                M::Row(r) if done == 1 => rows.push(r),
                _ => {}
            }
        }
        if done != 2 {
            return Err(DataError::Db(format!(
                "one-message statement completed {done} commands, not 2"
            )));
        }
        Ok(rows)
    }

    /// Like [`transaction`](Self::transaction), but `f` decides: it returns the value and
    /// whether to commit (`false` rolls back).
    pub async fn transaction_deciding<T, F>(&self, tenant: &Tenant, f: F) -> Result<T>
    where
        T: Send,
        F: for<'a> FnOnce(&'a tokio_postgres::Transaction<'a>) -> TxFuture<'a, (T, bool)> + Send,
    {
        let (dbname, schema) = self.route(tenant)?;
        let (mut c, _share) = self.tenant_conn(tenant, &dbname).await?;
        let tx = c.transaction().await.map_err(db)?;
        set_context(&tx, &schema, tenant).await?;
        let (out, commit) = f(&tx).await.map_err(db)?;
        if commit {
            tx.commit().await.map_err(db)?;
        } else {
            tx.rollback().await.map_err(db)?;
        }
        Ok(out)
    }
}

//! Alert delivery: each alert with a webhook is POSTed as JSON, signed with HMAC-SHA256
//! (`Tenantplane-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`,
//! `Tenantplane-Event-Id: <alert id>` for the receiver to drop duplicates), retried with
//! exponential backoff until a 2xx or the last attempt; every attempt is logged.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenantplane_catalog::budgets::{AlertRow, Attempt};
use tenantplane_core::usage_api::{AlertQuery, AlertView, DeliveryView};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use crate::{Control, ControlError, ControlResult, budgets::secret_aad};

/// How alerts are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertSettings {
    /// The first retry waits this long; each next one twice as long (at most an hour).
    pub backoff_secs: u64,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            backoff_secs: 30,
            max_attempts: 8,
        }
    }
}

/// How long a claimed delivery is reserved for the replica that claimed it.
const LEASE_SECS: i64 = 60;

/// The signature header of `body` sent at `t` with `secret`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn rfc(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn alert_view(a: &AlertRow) -> AlertView {
    AlertView {
        id: a.id,
        budget: a.budget,
        tenant: a.tenant,
        kind: a.kind.clone(),
        threshold: a.threshold.max(0) as u32,
        created_at: rfc(a.created_at),
        payload: a.payload.clone(),
        delivery: match (a.delivered_at, a.next_attempt_at, a.attempts) {
            (Some(_), ..) => "delivered",
            (None, Some(_), _) => "pending",
            (None, None, 0) => "not_sent",
            (None, None, _) => "failed",
        }
        .to_owned(),
        attempts: a.attempts.max(0) as u32,
        last_error: a.last_error.clone(),
    }
}

impl Control {
    /// Alerts, newest first (at most 500).
    pub async fn alerts(&self, q: &AlertQuery) -> ControlResult<Vec<AlertView>> {
        let tenant = match &q.tenant {
            Some(t) => Some(self.get(t).await?.id),
            None => None,
        };
        Ok(self
            .catalog
            .alerts(tenant, q.budget, 500)
            .await?
            .iter()
            .map(alert_view)
            .collect())
    }

    /// An alert's delivery attempts.
    pub async fn deliveries(&self, alert: Uuid) -> ControlResult<Vec<DeliveryView>> {
        let log = self.catalog.deliveries(alert).await?;
        if log.is_empty()
            && !self
                .catalog
                .alerts(None, None, 10_000)
                .await?
                .iter()
                .any(|a| a.id == alert)
        {
            return Err(ControlError::NotFound("alert"));
        }
        Ok(log
            .into_iter()
            .map(|d| DeliveryView {
                attempt: d.attempt.max(0) as u32,
                at: rfc(d.at),
                status: d.status.and_then(|s| u16::try_from(s).ok()),
                error: d.error,
            })
            .collect())
    }

    /// Sends the alerts due now; returns how many attempts were made.
    pub async fn deliver_alerts(&self) -> ControlResult<usize> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let due = self.catalog.claim_due(now, LEASE_SECS, 20).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let budgets: std::collections::HashMap<Uuid, crate::budgets::Budget> =
            self.stored_budgets().await?.into_iter().collect();
        let settings = self.settings.alerting;
        for a in &due {
            let attempt = a.attempts + 1;
            let outcome = match budgets.get(&a.budget) {
                None => Err((None, "the budget was deleted".to_owned(), false)),
                Some(b) => self.send(a, b).await,
            };
            let at = OffsetDateTime::now_utc().unix_timestamp();
            let (status, error, delivered, retry) = match outcome {
                Ok(status) => (Some(status), None, true, false),
                Err((status, e, retry)) => (status, Some(e), false, retry),
            };
            let next = if delivered || !retry || attempt >= settings.max_attempts as i32 {
                None
            } else {
                let wait = settings
                    .backoff_secs
                    .max(1)
                    .saturating_mul(1 << (attempt - 1).clamp(0, 20))
                    .min(3_600);
                Some(at + wait as i64)
            };
            metrics::counter!("tenantplane_alert_deliveries_total",
                "outcome" => if delivered { "delivered" } else if next.is_some() { "retry" } else { "failed" })
            .increment(1);
            if !delivered {
                tracing::warn!(alert = %a.id, attempt, error = error.as_deref().unwrap_or(""), "alert not delivered");
            }
            self.catalog
                .record_attempt(
                    a.id,
                    &Attempt {
                        attempt,
                        at,
                        status: status.map(i32::from),
                        error,
                        delivered,
                        next_attempt_at: next,
                    },
                )
                .await?;
        }
        Ok(due.len())
    }

    /// One POST; `Err((status, why, worth retrying))`.
    async fn send(
        &self,
        a: &AlertRow,
        b: &crate::budgets::Budget,
    ) -> Result<u16, (Option<u16>, String, bool)> {
        let (Some(url), Some(sealed)) = (&b.webhook_url, &b.webhook_secret) else {
            return Err((None, "the budget has no webhook".into(), false));
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()
            .and_then(|s| {
                self.identity
                    .keyring()
                    .platform()
                    .open(&secret_aad(a.budget), &s)
                    .ok()
            })
            .ok_or((
                None,
                "the webhook secret cannot be opened".to_owned(),
                false,
            ))?;
        let body = serde_json::to_vec(&a.payload).map_err(|e| (None, e.to_string(), false))?;
        let t = OffsetDateTime::now_utc().unix_timestamp();
        let res = crate::http()
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "tenantplane-alerts")
            .header("tenantplane-event-id", a.id.to_string())
            .header("tenantplane-signature", signature(&secret, t, &body))
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => {
                let s = r.status().as_u16();
                // 4xx other than 408/429 will not get better by retrying.
                let retry = s >= 500 || s == 408 || s == 429;
                Err((Some(s), format!("the receiver answered HTTP {s}"), retry))
            }
            Err(e) => Err((
                None,
                if e.is_timeout() {
                    "the receiver did not answer within 10 s".to_owned()
                } else {
                    "the receiver could not be reached".to_owned()
                },
                true,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_stripe_style_hmac() {
        let s = signature(b"whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature(b"whsec_other", 1_700_000_000, b"{\"a\":1}"));
        assert_ne!(s, signature(b"whsec_test", 1_700_000_001, b"{\"a\":1}"));
    }
}

//! The hourly samples behind storage costs, in every isolation mode: store bytes that grow
//! with the tenant's records (and only with its own), users and patients.

use std::collections::BTreeMap;

use tenantplane_core::TenantId;

use super::*;

async fn samples(s: &TestServer) -> BTreeMap<(TenantId, String), i64> {
    let n = s.control.sample_stores().await.unwrap();
    assert!(n >= 2, "sampled {n}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    s.control
        .catalog()
        .gauges(now - 3_600, now + 3_600, None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| ((g.tenant, g.measure), g.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_sizes_users_and_patients_in_every_mode() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [
        IsolationMode::Sqlite,
        IsolationMode::PgDatabase,
        IsolationMode::PgSchema,
        IsolationMode::PgShared,
    ] {
        let slug = format!("sized-{}", mode.as_str());
        let quiet = format!("quiet-{}", mode.as_str());
        let (t, tokens) = hospital(&s, &slug, mode).await;
        let _ = hospital(&s, &quiet, mode).await;
        let id = s.client.get_tenant(&slug).await.unwrap().id;
        let other = s.client.get_tenant(&quiet).await.unwrap().id;
        let g = |m: &BTreeMap<(TenantId, String), i64>, t: TenantId, k: &str| {
            *m.get(&(t, k.to_owned()))
                .unwrap_or_else(|| panic!("{k} of {t} in {mode:?}"))
        };
        // The audit writer puts the sign-ins and user changes of both tenants' setup into
        // their logs shortly after: sample once the quiet tenant's store is still.
        let mut before = samples(&s).await;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            let again = samples(&s).await;
            let still = g(&again, other, "store_bytes") == g(&before, other, "store_bytes");
            before = again;
            if still {
                break;
            }
        }
        assert!(g(&before, id, "store_bytes") > 0, "{mode:?}");
        assert_eq!(g(&before, id, "users"), 5, "the admin and four staff");
        assert_eq!(g(&before, id, "patients"), 0);
        // 40 patients with some text each.
        let entries: Vec<Value> = (0..40)
            .map(|i| {
                json!({"resource": {"resourceType": "Patient",
                    "name": [{"family": format!("Sized{i}"), "given": ["A".repeat(400)]}]},
                 "request": {"method": "POST", "url": "Patient"}})
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let r = send(
            Method::POST,
            &t.url("/fhir"),
            Some(&tokens["clinician"]),
            Some(&bundle.to_string()),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let after = samples(&s).await;
        assert_eq!(g(&after, id, "patients"), 40, "{mode:?}");
        assert_eq!(g(&after, id, "resources"), 40, "{mode:?}");
        // Five active users in no department, each a whole user (2520/2520).
        assert_eq!(g(&after, id, "department:(none)"), 5 * 2_520, "{mode:?}");
        assert!(g(&after, id, "record_bytes") > 16_000, "{mode:?}");
        assert!(
            g(&after, id, "store_bytes") > g(&before, id, "store_bytes"),
            "{mode:?}: {} -> {}",
            g(&before, id, "store_bytes"),
            g(&after, id, "store_bytes")
        );
        // The other tenant's store did not grow with it (pg-shared: its share of the
        // shared tables follows its own rows).
        if mode != IsolationMode::PgShared {
            assert_eq!(
                g(&after, other, "store_bytes"),
                g(&before, other, "store_bytes"),
                "{mode:?}"
            );
        } else {
            assert!(g(&after, other, "store_bytes") < g(&after, id, "store_bytes"));
        }
        assert_eq!(g(&after, other, "patients"), 0);
    }
}

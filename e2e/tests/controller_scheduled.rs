//! Controller e2e, Scheduled mode (issue 5): a mapping on a cron schedule syncs at its
//! next fire time and not before, against the real controller and three real clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use controller_support::*;
use std::time::Duration;

use dr_syncer_crds::NamespaceMapping;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_mapping_syncs_at_the_next_fire_not_before() {
    let (_serial, c, ns, src, mappings) = scenario("cron").await.into_parts();
    let controller = start_controller(None).await;
    MappingFixture::scheduled("cron", "*/1 * * * *")
        .direct()
        .source_ns(&src)
        .resource_types(&["configmaps"])
        .apply(&c.controller, &ns)
        .await;
    let nm = wait_for(&mappings, "cron", |nm: Option<&NamespaceMapping>| {
        nm.and_then(|n| n.status.as_ref())
            .is_some_and(|s| s.next_sync_time.is_some())
    })
    .await;
    let next = nm.status.unwrap().next_sync_time.unwrap().0;
    let next_ms = next.as_millisecond();
    assert_eq!(next_ms % 60_000, 0, "next fire {next} is not on a minute");
    apply_configmap(&c.source, &src, "late", &[("k", "v")]).await;
    let target: Api<ConfigMap> = Api::namespaced(c.target.clone(), &src);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // Not before the fire time (checked until a second before it).
    while now_ms() < next_ms - 1_000 {
        let present = match Api::<k8s_openapi::api::core::v1::Namespace>::all(c.target.clone())
            .get_opt(&src)
            .await
            .unwrap()
        {
            Some(_) => target.get_opt("late").await.unwrap().is_some(),
            None => false,
        };
        assert!(!present, "synced before the scheduled time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // At the fire time.
    wait_for_within(
        &target,
        "late",
        |o: Option<&ConfigMap>| o.is_some(),
        Duration::from_secs(75),
    )
    .await;
    assert!(now_ms() >= next_ms, "synced before {next}");
    eprintln!(
        "scheduled sync landed {} ms after the fire time",
        now_ms() - next_ms
    );
    let nm = wait_for(&mappings, "cron", |nm: Option<&NamespaceMapping>| {
        nm.and_then(|n| n.status.as_ref())
            .and_then(|s| s.next_sync_time.as_ref())
            .is_some_and(|t| t.0 > next)
    })
    .await;
    assert!(nm.status.unwrap().last_sync_time.is_some());
    controller.kill().await;
}

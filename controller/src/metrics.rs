//! Prometheus metrics of the controller (served on `--metrics-addr` `/metrics`).
//!
//! One [`Metrics`] value lives in the [`crate::context::Context`]; reconcilers record what a
//! sync did, and the HTTP server renders the registry in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels naming one NamespaceMapping.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MappingLabels {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub mapping: String,
}

/// Labels of the per-object outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub mapping: String,
    /// Resource kind (`ConfigMap`).
    pub kind: String,
    /// created, updated, unchanged, deleted or failed.
    pub outcome: String,
}

/// Labels of the sync-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub mapping: String,
    /// `success` or `failure`.
    pub result: String,
}

/// Labels of the per-PVC data-sync series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DataLabels {
    /// Namespace of the NamespaceMapping.
    pub namespace: String,
    /// Name of the NamespaceMapping.
    pub mapping: String,
    /// PVC name (source namespace).
    pub pvc: String,
}

/// Every metric the controller exports, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// Wall time of full syncs.
    pub sync_duration: Family<SyncLabels, Histogram>,
    /// Objects handled, by kind and outcome.
    pub objects_synced: Family<ObjectLabels, Counter>,
    /// Unix time of the last successful sync.
    pub last_success: Family<MappingLabels, Gauge<f64, AtomicU64>>,
    /// 1 while the last sync of a mapping failed (destination may lag the source).
    pub out_of_sync: Family<MappingLabels, Gauge>,
    /// Scheduled runs missed (e.g. while the controller was down) and caught up once.
    pub missed_schedules: Family<MappingLabels, Counter>,
    /// Continuous-mode watch events applied.
    pub watch_events: Family<MappingLabels, Counter>,
    /// Mappings with Continuous-mode watchers running.
    pub watched_mappings: Gauge,
    /// File content bytes written at the destination by PVC copies (literal + matched).
    pub data_bytes_transferred: Family<DataLabels, Counter>,
    /// Bytes PVC copies sent over the network.
    pub data_wire_bytes: Family<DataLabels, Counter>,
    /// Wall time of PVC copies (with retries).
    pub data_sync_duration: Family<DataLabels, Histogram>,
    /// PVC copies that failed after their retries.
    pub data_sync_failures: Family<DataLabels, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

impl Metrics {
    /// Builds the metrics and registers them under the `dr_syncer` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dr_syncer");
        let sync_duration =
            Family::<SyncLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        let objects_synced = Family::<ObjectLabels, Counter>::default();
        let last_success = Family::<MappingLabels, Gauge<f64, AtomicU64>>::default();
        let out_of_sync = Family::<MappingLabels, Gauge>::default();
        let missed_schedules = Family::<MappingLabels, Counter>::default();
        let watch_events = Family::<MappingLabels, Counter>::default();
        let watched_mappings = Gauge::default();
        let data_bytes_transferred = Family::<DataLabels, Counter>::default();
        let data_wire_bytes = Family::<DataLabels, Counter>::default();
        let data_sync_duration =
            Family::<DataLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        let data_sync_failures = Family::<DataLabels, Counter>::default();
        registry.register(
            "data_bytes_transferred",
            "File content bytes written at the destination by PVC data copies",
            data_bytes_transferred.clone(),
        );
        registry.register(
            "data_wire_bytes",
            "Bytes PVC data copies sent over the network",
            data_wire_bytes.clone(),
        );
        registry.register(
            "data_sync_duration_seconds",
            "Wall time of a PVC data copy, retries included",
            data_sync_duration.clone(),
        );
        registry.register(
            "data_sync_failures",
            "PVC data copies that failed after their retries",
            data_sync_failures.clone(),
        );
        registry.register(
            "watched_mappings",
            "Mappings with Continuous-mode watchers running",
            watched_mappings.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Wall time of a full NamespaceMapping sync",
            sync_duration.clone(),
        );
        registry.register(
            "objects_synced",
            "Objects handled by syncs, by kind and outcome",
            objects_synced.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful sync of a mapping",
            last_success.clone(),
        );
        registry.register(
            "out_of_sync",
            "1 when the last sync of a mapping failed",
            out_of_sync.clone(),
        );
        registry.register(
            "missed_schedules",
            "Scheduled syncs that were missed and caught up",
            missed_schedules.clone(),
        );
        registry.register(
            "watch_events",
            "Continuous-mode source changes applied",
            watch_events.clone(),
        );
        Metrics {
            registry,
            sync_duration,
            objects_synced,
            last_success,
            out_of_sync,
            missed_schedules,
            watch_events,
            watched_mappings,
            data_bytes_transferred,
            data_wire_bytes,
            data_sync_duration,
            data_sync_failures,
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records the end of a full sync.
    pub fn record_sync(&self, mapping: &MappingLabels, seconds: f64, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.sync_duration
            .get_or_create(&SyncLabels {
                namespace: mapping.namespace.clone(),
                mapping: mapping.mapping.clone(),
                result: result.to_owned(),
            })
            .observe(seconds);
        self.out_of_sync
            .get_or_create(mapping)
            .set(if success { 0 } else { 1 });
        if success {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            self.last_success.get_or_create(mapping).set(now);
        }
    }

    /// Adds `count` objects of `kind` with `outcome` to the object counter.
    pub fn record_objects(&self, mapping: &MappingLabels, kind: &str, outcome: &str, count: u64) {
        if count == 0 {
            return;
        }
        self.objects_synced
            .get_or_create(&ObjectLabels {
                namespace: mapping.namespace.clone(),
                mapping: mapping.mapping.clone(),
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(count);
    }

    /// Records one PVC copy: its byte counts on success (`None`: it failed).
    pub fn record_data(
        &self,
        mapping: &MappingLabels,
        pvc: &str,
        summary: Option<&dr_syncer_worker_wire::SyncSummary>,
        seconds: f64,
    ) {
        let labels = DataLabels {
            namespace: mapping.namespace.clone(),
            mapping: mapping.mapping.clone(),
            pvc: pvc.to_owned(),
        };
        self.data_sync_duration
            .get_or_create(&labels)
            .observe(seconds);
        match summary {
            Some(s) => {
                self.data_bytes_transferred
                    .get_or_create(&labels)
                    .inc_by(s.literal_bytes.saturating_add(s.matched_bytes));
                self.data_wire_bytes
                    .get_or_create(&labels)
                    .inc_by(s.wire_bytes);
            }
            None => {
                self.data_sync_failures.get_or_create(&labels).inc();
            }
        }
    }

    /// Drops the per-PVC data series of a deleted mapping (its PVCs from its status).
    pub fn forget_data<'a>(&self, mapping: &MappingLabels, pvcs: impl Iterator<Item = &'a str>) {
        for pvc in pvcs {
            let labels = DataLabels {
                namespace: mapping.namespace.clone(),
                mapping: mapping.mapping.clone(),
                pvc: pvc.to_owned(),
            };
            self.data_bytes_transferred.remove(&labels);
            self.data_wire_bytes.remove(&labels);
            self.data_sync_duration.remove(&labels);
            self.data_sync_failures.remove(&labels);
        }
    }

    /// Drops the series of a deleted mapping so dashboards do not show ghosts.
    pub fn forget(&self, mapping: &MappingLabels) {
        self.last_success.remove(mapping);
        self.out_of_sync.remove(mapping);
        self.missed_schedules.remove(mapping);
        self.watch_events.remove(mapping);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_series() {
        let metrics = Metrics::new();
        let mapping = MappingLabels {
            namespace: "dr".into(),
            mapping: "web".into(),
        };
        metrics.record_sync(&mapping, 0.5, false);
        metrics.record_objects(&mapping, "ConfigMap", "created", 3);
        metrics.missed_schedules.get_or_create(&mapping).inc();
        let text = metrics.render();
        assert!(
            text.contains("dr_syncer_sync_duration_seconds_count{"),
            "{text}"
        );
        assert!(text.contains(r#"result="failure""#), "{text}");
        assert!(
            text.contains(
                r#"dr_syncer_objects_synced_total{namespace="dr",mapping="web",kind="ConfigMap",outcome="created"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dr_syncer_out_of_sync{namespace="dr",mapping="web"} 1"#),
            "{text}"
        );
        assert!(text.contains("dr_syncer_missed_schedules_total"), "{text}");
        let summary = dr_syncer_worker_wire::SyncSummary {
            literal_bytes: 10,
            matched_bytes: 90,
            wire_bytes: 25,
            ..Default::default()
        };
        metrics.record_data(&mapping, "data", Some(&summary), 1.0);
        metrics.record_data(&mapping, "logs", None, 2.0);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"dr_syncer_data_bytes_transferred_total{namespace="dr",mapping="web",pvc="data"} 100"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dr_syncer_data_wire_bytes_total{namespace="dr",mapping="web",pvc="data"} 25"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dr_syncer_data_sync_failures_total{namespace="dr",mapping="web",pvc="logs"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("dr_syncer_data_sync_duration_seconds_count{"),
            "{text}"
        );
        metrics.forget_data(&mapping, ["data", "logs"].into_iter());
        let text = metrics.render();
        assert!(!text.contains(r#"pvc="data""#), "{text}");
        assert!(!text.contains(r#"pvc="logs""#), "{text}");
        metrics.record_sync(&mapping, 0.1, true);
        assert!(
            metrics
                .render()
                .contains(r#"dr_syncer_out_of_sync{namespace="dr",mapping="web"} 0"#)
        );
    }
}

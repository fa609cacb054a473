use serde_json::{Value, json};

use super::fixtures::{annotation, kind, obj, server_metadata};
use crate::replicate::RulesError;
use crate::replicate::workloads::{scale_override, scale_workload, strip_job, target_replicas};

#[test]
fn target_replicas_table() {
    // (source, override, scaleToZero) -> target
    let table = [
        (3, None, true, 0),
        (3, None, false, 3),
        (3, Some(1), true, 1),
        (3, Some(1), false, 1),
        (3, Some(0), false, 0),
        (0, None, true, 0),
        (1, Some(5), true, 5),
    ];
    for (source, ov, stz, want) in table {
        assert_eq!(
            target_replicas(source, ov, stz),
            want,
            "{source} {ov:?} {stz}"
        );
    }
}

fn workload(kind_name: &str, replicas: Option<i64>, annotations: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}});
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    json!({"apiVersion": "apps/v1", "kind": kind_name,
        "metadata": server_metadata("web", json!({"annotations": annotations})), "spec": spec})
}

#[test]
fn deployments_and_statefulsets_scale_and_record_the_source_count() {
    // (kind, source replicas, annotations, scaleToZero) -> (target replicas, reported original)
    // (kind, replicas, annotations, scaleToZero, target replicas, reported original)
    type Case = (&'static str, Option<i64>, Value, bool, i64, Option<i32>);
    let table: Vec<Case> = vec![
        ("Deployment", Some(3), json!({}), true, 0, Some(3)),
        ("Deployment", Some(3), json!({}), false, 3, None),
        ("Deployment", None, json!({}), true, 0, Some(1)),
        (
            "Deployment",
            Some(3),
            json!({"dr-syncer.io/scale-override": "1"}),
            true,
            1,
            Some(3),
        ),
        (
            "Deployment",
            Some(3),
            json!({"dr-syncer.io/scale-override": "3"}),
            true,
            3,
            None,
        ),
        ("Deployment", Some(0), json!({}), true, 0, None),
        ("StatefulSet", Some(2), json!({}), true, 0, Some(2)),
        (
            "StatefulSet",
            Some(2),
            json!({"dr-syncer.io/scale-override": " 0 "}),
            false,
            0,
            Some(2),
        ),
    ];
    for (k, replicas, ann, stz, want, reported) in table {
        let kd = kind(if k == "Deployment" {
            "deployments.apps"
        } else {
            "statefulsets.apps"
        });
        let source = obj(workload(k, replicas, ann.clone()));
        let ov = scale_override(&source, &kd).unwrap_or_else(|e| panic!("{e}"));
        let mut target = source.clone();
        let got = scale_workload(&mut target, &kd, ov, stz).unwrap_or_else(|e| panic!("{e}"));
        let case = format!("{k} {replicas:?} {ann} {stz}");
        assert_eq!(got, reported, "{case}");
        assert_eq!(
            target.data.pointer("/spec/replicas"),
            Some(&json!(want)),
            "{case}"
        );
        let recorded = target
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("dr-syncer.io/original-replicas"))
            .cloned();
        assert_eq!(recorded, Some(replicas.unwrap_or(1).to_string()), "{case}");
        // The rest of the spec is untouched.
        assert_eq!(
            target.data.pointer("/spec/template"),
            source.data.pointer("/spec/template"),
            "{case}"
        );
    }
}

#[test]
fn scale_override_as_label_is_honoured_and_garbage_is_an_error() {
    let kd = kind("deployments.apps");
    let mut as_label = workload("Deployment", Some(4), json!({}));
    as_label["metadata"]["labels"] = json!({"dr-syncer.io/scale-override": "2"});
    assert_eq!(scale_override(&obj(as_label), &kd), Ok(Some(2)));
    for bad in ["two", "-1", "1.5", "99999999999"] {
        let source = obj(workload(
            "Deployment",
            Some(3),
            json!({"dr-syncer.io/scale-override": bad}),
        ));
        assert_eq!(
            scale_override(&source, &kd),
            Err(RulesError::InvalidScaleOverride {
                kind: "Deployment".into(),
                object: "shop/web".into(),
                value: bad.into()
            }),
            "{bad}"
        );
    }
}

#[test]
fn other_kinds_are_not_scaled() {
    for k in ["daemonsets.apps", "replicasets.apps", "configmaps"] {
        let mut o = obj(workload("DaemonSet", Some(3), json!({})));
        let before = o.clone();
        assert_eq!(
            scale_workload(&mut o, &kind(k), None, true),
            Ok(None),
            "{k}"
        );
        assert_eq!(o, before, "{k}");
    }
}

#[test]
fn malformed_replicas_is_an_error() {
    let mut o = obj(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": "three"}}),
    );
    assert!(matches!(
        scale_workload(&mut o, &kind("deployments.apps"), None, true),
        Err(RulesError::MalformedObject { .. })
    ));
}

#[test]
fn jobs_lose_their_generated_selector_and_labels() {
    let uid_labels = json!({"batch.kubernetes.io/controller-uid": "8f1", "controller-uid": "8f1",
        "batch.kubernetes.io/job-name": "migrate", "job-name": "migrate", "app": "shop"});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop", "labels": uid_labels},
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "8f1"}},
            "template": {"metadata": {"labels": uid_labels}, "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "migrate:1"}]}}}});
    let mut o = obj(job.clone());
    strip_job(&mut o, &kind("jobs.batch"));
    assert_eq!(o.data.pointer("/spec/selector"), None);
    assert_eq!(
        o.data.pointer("/spec/template/metadata/labels"),
        Some(&json!({"app": "shop"}))
    );
    assert_eq!(o.metadata.labels.as_ref().map(|l| l.len()), Some(1));

    let mut manual = job.clone();
    manual["spec"]["manualSelector"] = json!(true);
    let mut o = obj(manual.clone());
    strip_job(&mut o, &kind("jobs.batch"));
    assert_eq!(o, obj(manual), "a manual selector is the user's");
}

#[test]
fn cronjobs_and_jobs_are_suspended_at_the_dr_site() {
    use crate::replicate::workloads::suspend_batch;
    let cron = |suspend: Option<bool>| {
        let mut spec = json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "r", "image": "report:2"}]}}}}});
        if let Some(s) = suspend {
            spec["suspend"] = json!(s);
        }
        obj(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "report", "namespace": "shop"}, "spec": spec}),
        )
    };
    // (source suspend, override, scaleToZero) -> (target suspend, suspended by us, recorded)
    type Case = (
        Option<bool>,
        Option<i64>,
        bool,
        Option<bool>,
        bool,
        &'static str,
    );
    let table: [Case; 6] = [
        (None, None, true, Some(true), true, "false"),
        (Some(false), None, true, Some(true), true, "false"),
        (Some(true), None, true, Some(true), false, "true"),
        (None, None, false, None, false, "false"),
        (None, Some(1), true, None, false, "false"),
        (None, Some(0), true, Some(true), true, "false"),
    ];
    for (source, ov, stz, want, ours, recorded) in table {
        let mut o = cron(source);
        let got = suspend_batch(&mut o, &kind("cronjobs.batch"), ov, stz);
        let case = format!("{source:?} {ov:?} {stz}");
        assert_eq!(got, ours, "{case}");
        assert_eq!(
            o.data.pointer("/spec/suspend").and_then(Value::as_bool),
            want,
            "{case}"
        );
        assert_eq!(
            annotation(&o, "dr-syncer.io/original-suspend"),
            Some(recorded),
            "{case}"
        );
        assert!(o.data.pointer("/spec/jobTemplate").is_some());
    }
    let mut job = obj(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"}, "spec": {"template": {}}}),
    );
    assert!(suspend_batch(&mut job, &kind("jobs.batch"), None, true));
    assert_eq!(job.data.pointer("/spec/suspend"), Some(&json!(true)));
    let mut deploy = obj(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}),
    );
    assert!(!suspend_batch(
        &mut deploy,
        &kind("deployments.apps"),
        None,
        true
    ));
    assert_eq!(deploy.metadata.annotations, None);
}

//! Properties of the generated CRDs that `kubectl` users and the API server rely on: names,
//! printer columns, the status subresource, a description on every field, a structural
//! schema, CEL rules that compile within the cost budget, and every DR-Syncer field name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dr_syncer_crds::manifests::all_crds;
use dr_syncer_crds::schema_walk::{Field, fields, openapi_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn crd(kind: &str) -> CustomResourceDefinition {
    all_crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

#[test]
fn names_scope_and_status_subresource() {
    for (kind, plural, short) in [
        ("RemoteCluster", "remoteclusters", "rc"),
        ("ClusterMapping", "clustermappings", "cm"),
        ("NamespaceMapping", "namespacemappings", "nm"),
    ] {
        let crd = crd(kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(&*format!("{plural}.dr-syncer.io"))
        );
        assert_eq!(crd.spec.group, "dr-syncer.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["dr-syncer".to_owned()])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(
            subresources.status.is_some(),
            "{kind} has no status subresource"
        );
    }
}

#[test]
fn printer_columns() {
    for (kind, expected) in [
        (
            "RemoteCluster",
            vec!["Health", "PVC Sync", "Ready Agents", "Age"],
        ),
        ("ClusterMapping", vec!["Source", "Target", "Phase", "Age"]),
        (
            "NamespaceMapping",
            vec![
                "Source",
                "Destination",
                "Mode",
                "Phase",
                "Last Sync",
                "Next Sync",
            ],
        ),
    ] {
        let crd = crd(kind);
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, expected, "{kind} printer columns");
        let schema = openapi_schema(&crd);
        let paths: Vec<String> = fields(&schema)
            .iter()
            .map(|f| format!(".{}", f.path))
            .collect();
        for column in &columns {
            assert!(
                column.json_path.starts_with(".metadata.") || paths.contains(&column.json_path),
                "{kind} column {} points at {} which is not in the schema",
                column.name,
                column.json_path
            );
        }
    }
}

/// What `check` finds wrong with each property of every CRD, one line each:
/// `<Kind>: <path><what check said>`.
fn field_problems(check: impl Fn(&Field<'_>) -> Vec<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for crd in all_crds() {
        let schema = openapi_schema(&crd);
        for field in fields(&schema) {
            for problem in check(&field) {
                problems.push(format!("{}: {}{problem}", crd.spec.names.kind, field.path));
            }
        }
    }
    problems
}

#[test]
fn every_property_has_a_description() {
    let undocumented = field_problems(|field| {
        let described = field
            .schema
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|text| !text.trim().is_empty());
        if described {
            vec![]
        } else {
            vec![String::new()]
        }
    });
    assert!(
        undocumented.is_empty(),
        "undocumented fields:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn schemas_are_structural() {
    let problems = field_problems(|field| {
        let s = field.schema;
        let mut problems = Vec::new();
        let typed = s.get("type").is_some()
            || s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed {
            problems.push(" has no type".to_owned());
        }
        for keyword in ["anyOf", "oneOf", "allOf", "$ref", "not"] {
            if s.get(keyword).is_some() {
                problems.push(format!(" uses {keyword}"));
            }
        }
        problems
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Collects every node carrying CEL rules, with whether all lists above it are bounded.
fn cel_nodes<'a>(
    schema: &'a Value,
    path: String,
    bounded: bool,
    out: &mut Vec<(String, bool, &'a Value)>,
) {
    if schema.get("x-kubernetes-validations").is_some() {
        out.push((path.clone(), bounded, schema));
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            cel_nodes(child, format!("{path}.{name}"), bounded, out);
        }
    }
    if let Some(items) = schema.get("items") {
        let this_bounded = schema.get("maxItems").is_some();
        cel_nodes(items, format!("{path}[]"), bounded && this_bounded, out);
    }
}

/// Properties a rule reads the value of (`self.x`), as opposed to only testing presence
/// (`has(self.x)`), which costs nothing per byte.
fn strings_read_by(rule: &str) -> Vec<String> {
    let reads = regex::Regex::new(r"(has\()?self\.([A-Za-z0-9_]+)").unwrap();
    reads
        .captures_iter(rule)
        .filter(|c| c.get(1).is_none())
        .map(|c| c[2].to_owned())
        .collect()
}

/// Every property a rule refers to (`self.x`, read or tested with `has`).
fn fields_used_by(rule: &str) -> Vec<String> {
    let uses = regex::Regex::new(r"self\.([A-Za-z0-9_]+)").unwrap();
    uses.captures_iter(rule).map(|c| c[1].to_owned()).collect()
}

#[test]
fn cel_rules_compile_and_sit_under_bounded_lists() {
    let mut nodes_seen = 0;
    for crd in all_crds() {
        let schema = openapi_schema(&crd);
        let compiled = kube::core::cel::compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "{}: CEL rules do not compile: {:?}",
            crd.spec.names.kind,
            compiled.compilation_errors()
        );
        let mut nodes = Vec::new();
        cel_nodes(&schema, String::new(), true, &mut nodes);
        for (path, bounded, node) in nodes {
            nodes_seen += 1;
            assert!(
                bounded,
                "{}: CEL rules at {path} sit under a list without maxItems",
                crd.spec.names.kind
            );
            for rule in node["x-kubernetes-validations"].as_array().unwrap() {
                let message = rule["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("spec.")
                        || message.contains("retryConfig.")
                        || message.contains("[]."),
                    "{}: CEL message {message:?} does not name its field",
                    crd.spec.names.kind
                );
                let expression = rule["rule"].as_str().unwrap_or_default();
                for name in fields_used_by(expression) {
                    let property = &node["properties"][&name];
                    assert!(
                        property.get("type").is_some(),
                        "{}: CEL rule {expression:?} at {path} uses {name}, which is missing or \
                         untyped; untyped (preserve-unknown-fields) properties are invisible to \
                         CEL and the API server refuses the CRD",
                        crd.spec.names.kind
                    );
                }
                for name in strings_read_by(expression) {
                    let property = &node["properties"][&name];
                    let unbounded_string =
                        property["type"] == "string" && property.get("maxLength").is_none();
                    assert!(
                        !unbounded_string,
                        "{}: CEL rule {expression:?} at {path} reads string {name} without \
                         maxLength; the API server's cost estimate would reject it",
                        crd.spec.names.kind
                    );
                }
            }
        }
    }
    assert!(
        nodes_seen >= 4,
        "expected CEL rules on at least four schema nodes"
    );
}

/// Every field of the DR-Syncer (Go) API, as listed in the design brief, exists under the
/// same JSON name.
#[test]
fn drsyncer_field_names_are_all_present() {
    let expected: &[(&str, &[&str])] = &[
        (
            "RemoteCluster",
            &[
                "spec.kubeconfigSecretRef.name",
                "spec.kubeconfigSecretRef.namespace",
                "spec.kubeconfigSecretRef.key",
                "spec.defaultSchedule",
                "spec.defaultResourceTypes",
                "spec.pvcSync.enabled",
                "spec.pvcSync.image.repository",
                "spec.pvcSync.image.tag",
                "spec.pvcSync.image.pullPolicy",
                "spec.pvcSync.ssh.port",
                "spec.pvcSync.ssh.keySecretRef.name",
                "spec.pvcSync.ssh.keySecretRef.namespace",
                "spec.pvcSync.concurrency",
                "spec.pvcSync.globalConcurrencyLimit",
                "spec.pvcSync.retryConfig.maxRetries",
                "spec.pvcSync.retryConfig.initialDelay",
                "spec.pvcSync.retryConfig.maxDelay",
                "spec.pvcSync.deployment.hostNetwork",
                "spec.pvcSync.deployment.nodeSelector",
                "spec.pvcSync.deployment.tolerations",
                "spec.pvcSync.deployment.resources",
                "spec.pvcSync.deployment.annotations",
                "spec.pvcSync.deployment.labels",
                "spec.pvcSync.deployment.priorityClassName",
                "spec.pvcSync.deployment.privileged",
                "spec.pvcSync.deployment.extraEnv",
                "spec.pvcSync.healthCheck.interval",
                "spec.pvcSync.healthCheck.sshTimeout",
                "spec.pvcSync.healthCheck.retryAttempts",
                "spec.pvcSync.healthCheck.retryInterval",
                "spec.pvcSync.defaultVerificationMode",
                "spec.pvcSync.defaultSamplePercent",
                "status.health",
                "status.lastSyncTime",
                "status.conditions",
                "status.pvcSync.phase",
                "status.pvcSync.agentStatus.readyNodes",
                "status.pvcSync.agentStatus.totalNodes",
                "status.pvcSync.agentStatus.nodeStatuses{}.ready",
                "status.pvcSync.agentStatus.nodeStatuses{}.lastHeartbeat",
                "status.pvcSync.agentStatus.nodeStatuses{}.message",
                "status.pvcSync.lastSuccessfulSync",
                "status.pvcSync.failedSyncs",
                "status.pvcSync.message",
            ],
        ),
        (
            "ClusterMapping",
            &[
                "spec.paused",
                "spec.sourceCluster",
                "spec.targetCluster",
                "spec.sshKeySecretRef.name",
                "spec.sshKeySecretRef.namespace",
                "spec.sshKeySecretRef.publicKeyKey",
                "spec.sshKeySecretRef.privateKeyKey",
                "spec.verifyConnectivity",
                "spec.connectivityTimeoutSeconds",
                "status.phase",
                "status.message",
                "status.lastVerified",
                "status.connectionStatus.totalSourceAgents",
                "status.connectionStatus.totalTargetAgents",
                "status.connectionStatus.connectedAgents",
                "status.connectionStatus.connectionDetails",
                "status.conditions",
                "status.lastAttemptTime",
                "status.consecutiveFailures",
            ],
        ),
        (
            "NamespaceMapping",
            &[
                "spec.paused",
                "spec.replicationMode",
                "spec.clusterMappingRef.name",
                "spec.clusterMappingRef.namespace",
                "spec.sourceCluster",
                "spec.destinationCluster",
                "spec.sourceNamespace",
                "spec.destinationNamespace",
                "spec.schedule",
                "spec.resourceTypes",
                "spec.namespaceScopedResources",
                "spec.syncCRDs",
                "spec.scaleToZero",
                "spec.continuous.watchResources",
                "spec.continuous.backgroundSyncInterval",
                "spec.retryConfig.maxRetries",
                "spec.retryConfig.initialBackoff",
                "spec.retryConfig.maxBackoff",
                "spec.retryConfig.backoffMultiplier",
                "spec.namespaceConfig.createNamespace",
                "spec.namespaceConfig.preserveLabels",
                "spec.namespaceConfig.preserveAnnotations",
                "spec.ingressConfig.preserveAnnotations",
                "spec.ingressConfig.preserveTLS",
                "spec.ingressConfig.preserveBackends",
                "spec.immutableResourceConfig.defaultHandling",
                "spec.immutableResourceConfig.resourceOverrides",
                "spec.immutableResourceConfig.drainTimeout",
                "spec.immutableResourceConfig.forceDeleteTimeout",
                "spec.pvcConfig.syncPersistentVolumes",
                "spec.pvcConfig.storageClassMappings[].from",
                "spec.pvcConfig.storageClassMappings[].to",
                "spec.pvcConfig.accessModeMappings[].from",
                "spec.pvcConfig.accessModeMappings[].to",
                "spec.pvcConfig.preserveVolumeAttributes",
                "spec.pvcConfig.syncData",
                "spec.pvcConfig.dataSyncConfig.concurrentSyncs",
                "spec.pvcConfig.dataSyncConfig.excludePaths",
                "spec.pvcConfig.dataSyncConfig.rsyncOptions",
                "spec.pvcConfig.dataSyncConfig.bandwidthLimit",
                "spec.pvcConfig.dataSyncConfig.timeout",
                "spec.pvcConfig.dataSyncConfig.verificationMode",
                "spec.pvcConfig.dataSyncConfig.samplePercent",
                "spec.tempPodKeySecretRef.name",
                "spec.failureHandling.defaultMode",
                "status.phase",
                "status.lastSyncTime",
                "status.nextSyncTime",
                "status.lastWatchEvent",
                "status.syncStats.totalResources",
                "status.syncStats.successfulSyncs",
                "status.syncStats.failedSyncs",
                "status.syncStats.lastSyncDuration",
                "status.deploymentScales[].name",
                "status.deploymentScales[].originalReplicas",
                "status.deploymentScales[].lastSyncedAt",
                "status.resourceStatus",
                "status.retryStatus",
                "status.lastError.message",
                "status.lastError.time",
                "status.lastError.resource",
                "status.conditions",
                // Extensions.
                "spec.objectSelector.labelSelector",
                "spec.objectSelector.includeNames",
                "spec.objectSelector.excludeNames",
                "spec.transformations[].resource",
                "spec.transformations[].patch[].op",
                "spec.transformations[].patch[].value",
                "spec.prune",
                "spec.scheduleTimeZone",
                "status.observedGeneration",
                "status.lastSyncNowValue",
                "status.pvcSyncStatus[].pvc",
                "status.pvcSyncStatus[].lastSyncTime",
                "status.pvcSyncStatus[].result",
                "status.pvcSyncStatus[].duration",
                "status.pvcSyncStatus[].filesTransferred",
                "status.pvcSyncStatus[].bytesTransferred",
                "status.pvcSyncStatus[].wireBytes",
                "status.pvcSyncStatus[].lastError",
            ],
        ),
    ];
    let mut missing = Vec::new();
    for (kind, paths) in expected {
        let schema = openapi_schema(&crd(kind));
        let present: Vec<String> = fields(&schema).into_iter().map(|f| f.path).collect();
        for path in *paths {
            if !present.iter().any(|p| p == path) {
                missing.push(format!("{kind}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields missing from the schema:\n{}",
        missing.join("\n")
    );
}

#[test]
fn enums_and_defaults_match_drsyncer() {
    let nm = openapi_schema(&crd("NamespaceMapping"));
    let spec = &nm["properties"]["spec"]["properties"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        strings(&spec["replicationMode"]["enum"]),
        ["Scheduled", "Continuous", "Manual"]
    );
    assert_eq!(
        strings(&spec["immutableResourceConfig"]["properties"]["defaultHandling"]["enum"]),
        [
            "NoChange",
            "Recreate",
            "RecreateWithPodDrain",
            "PartialUpdate",
            "ForceUpdate"
        ]
    );
    assert_eq!(
        strings(
            &spec["pvcConfig"]["properties"]["dataSyncConfig"]["properties"]["verificationMode"]["enum"]
        ),
        ["none", "sample", "full"]
    );
    assert_eq!(spec["scaleToZero"]["default"], Value::Bool(true));
    assert_eq!(
        spec["continuous"]["properties"]["backgroundSyncInterval"]["default"],
        "1h"
    );
    let status = &nm["properties"]["status"]["properties"];
    assert_eq!(
        strings(&status["phase"]["enum"]),
        ["Pending", "Running", "Completed", "Failed"]
    );

    let rc = openapi_schema(&crd("RemoteCluster"));
    let pvc = &rc["properties"]["spec"]["properties"]["pvcSync"]["properties"];
    assert_eq!(pvc["ssh"]["properties"]["port"]["default"], 2222);
    assert_eq!(pvc["globalConcurrencyLimit"]["default"], 4);
    assert_eq!(pvc["defaultSamplePercent"]["default"], 10);
    assert_eq!(pvc["defaultVerificationMode"]["default"], "none");
    assert_eq!(
        strings(&rc["properties"]["status"]["properties"]["health"]["enum"]),
        ["Healthy", "Unhealthy", "Unknown"]
    );

    let cm = openapi_schema(&crd("ClusterMapping"));
    let cm_spec = &cm["properties"]["spec"]["properties"];
    assert_eq!(cm_spec["verifyConnectivity"]["default"], Value::Bool(true));
    assert_eq!(cm_spec["connectivityTimeoutSeconds"]["default"], 60);
    assert_eq!(
        strings(&cm["properties"]["status"]["properties"]["phase"]["enum"]),
        ["Pending", "Connecting", "Connected", "Failed"]
    );
}

/// Conditions merge per type under server-side apply, so the controller can own its
/// condition types without clobbering others'.
#[test]
fn conditions_are_a_map_list_keyed_by_type() {
    for crd in all_crds() {
        let schema = openapi_schema(&crd);
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{}",
            crd.spec.names.kind
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{}",
            crd.spec.names.kind
        );
        let required = conditions["items"]["required"].as_array().unwrap();
        assert!(
            required.iter().any(|k| k == "type"),
            "map key must be required"
        );
    }
}

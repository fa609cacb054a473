//! The fixtures for the test bed, checked here against the generated schemas: every valid
//! fixture deserializes into its type and passes the schema and CEL checks; every invalid
//! fixture says what the API server will answer (`# expect:`), and our local checks give
//! exactly that answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dr_syncer_crds::{ClusterMapping, NamespaceMapping, RemoteCluster};
use serde_json::Value;
use support::{Fixture, api_server_errors, fixtures};

/// Deserializes a fixture into the type of its `kind`.
fn deserialize(value: &Value) -> Result<(), String> {
    let result = match value["kind"].as_str() {
        Some("RemoteCluster") => serde_json::from_value::<RemoteCluster>(value.clone()).map(drop),
        Some("ClusterMapping") => serde_json::from_value::<ClusterMapping>(value.clone()).map(drop),
        Some("NamespaceMapping") => {
            serde_json::from_value::<NamespaceMapping>(value.clone()).map(drop)
        }
        other => return Err(format!("unknown kind {other:?}")),
    };
    result.map_err(|e| e.to_string())
}

fn expectation(fixture: &Fixture) -> Option<String> {
    fixture
        .text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# expect: "))
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

#[test]
fn there_are_fixtures_for_every_kind() {
    for sub in ["valid", "invalid"] {
        let kinds: Vec<String> = fixtures(sub)
            .iter()
            .map(|f| f.value["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        for kind in ["RemoteCluster", "ClusterMapping", "NamespaceMapping"] {
            assert!(
                kinds.iter().any(|k| k == kind),
                "no {sub} fixture of kind {kind}"
            );
        }
    }
}

#[test]
fn valid_fixtures_deserialize_and_pass_schema_and_cel_checks() {
    let mut failures = Vec::new();
    for fixture in fixtures("valid") {
        if let Err(error) = deserialize(&fixture.value) {
            failures.push(format!("{}: does not deserialize: {error}", fixture.name));
        }
        for error in api_server_errors(&fixture.value) {
            failures.push(format!("{}: {error}", fixture.name));
        }
    }
    assert!(
        failures.is_empty(),
        "valid fixtures rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn invalid_fixtures_are_rejected_with_the_expected_message() {
    let mut failures = Vec::new();
    let invalid = fixtures("invalid");
    assert!(invalid.len() >= 20, "expected at least 20 invalid fixtures");
    for fixture in invalid {
        let Some(expect) = expectation(&fixture) else {
            failures.push(format!(
                "{}: first line is not `# expect: <message>`",
                fixture.name
            ));
            continue;
        };
        let errors = api_server_errors(&fixture.value);
        if !errors.iter().any(|error| error.contains(&expect)) {
            failures.push(format!(
                "{}: expected an error containing {expect:?}, got {errors:#?}",
                fixture.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_cel_rule_is_exercised_by_an_invalid_fixture() {
    let expectations: Vec<String> = fixtures("invalid").iter().filter_map(expectation).collect();
    for crd in dr_syncer_crds::manifests::all_crds() {
        let schema = dr_syncer_crds::schema_walk::openapi_schema(&crd);
        let mut messages = Vec::new();
        collect_cel_messages(&schema, &mut messages);
        for message in messages {
            assert!(
                expectations.iter().any(|e| message.contains(e.as_str())),
                "no invalid fixture expects the CEL message {message:?}"
            );
        }
    }
}

fn collect_cel_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r["message"].as_str().map(str::to_owned)),
                );
            }
            map.values()
                .for_each(|child| collect_cel_messages(child, out));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|child| collect_cel_messages(child, out)),
        _ => {}
    }
}

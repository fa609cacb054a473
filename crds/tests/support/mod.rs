//! Shared helpers of the crds integration tests: fixture loading, and a local stand-in for
//! the API server's validation (OpenAPI checks here, CEL rules through kube's CEL
//! evaluator) so that fixtures are checked against the generated schemas, not by hand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use dr_syncer_crds::manifests::all_crds;
use dr_syncer_crds::schema_walk::openapi_schema;
use serde_json::Value;

/// Directory of the YAML fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture file: its name, raw text, and its content as JSON.
pub struct Fixture {
    pub name: String,
    pub text: String,
    pub value: Value,
}

/// Every `*.yaml` fixture in `tests/fixtures/<sub>`, sorted by name.
pub fn fixtures(sub: &str) -> Vec<Fixture> {
    let dir = fixtures_dir().join(sub);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_saphyr::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
            Fixture {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                text,
                value,
            }
        })
        .collect()
}

/// The openAPIV3Schema of the CRD serving `kind`.
pub fn schema_for_kind(kind: &str) -> Value {
    all_crds()
        .iter()
        .find(|crd| crd.spec.names.kind == kind)
        .map(openapi_schema)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"))
}

/// Everything the API server would reject `object` for, as messages in the API server's
/// wording (`<path>: Unsupported value: ...`, `<path> in body should match ...`, ...).
pub fn api_server_errors(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().expect("object has a kind");
    let schema = schema_for_kind(kind);
    let mut errors = Vec::new();
    openapi_errors(&schema, object, "", true, &mut errors);
    if let Err(cel) = kube::core::cel::Validator::new().validate(&schema, object, None) {
        for error in cel.as_slice() {
            errors.push(format!(
                "{}: Invalid value: {}",
                error.field_path, error.message
            ));
        }
    }
    errors
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The OpenAPI v3 checks the API server applies, for the keywords our schemas use.
fn openapi_errors(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            out.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must not be null"
            ));
        }
        return;
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !matches!(json_type(value), "integer" | "string") {
            out.push(format!(
                "{path}: Invalid value: {value}: must be an integer or a string"
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = json_type(value);
        let ok = actual == expected || (expected == "number" && actual == "integer");
        if !ok {
            out.push(format!(
                "{path}: Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
            ));
            return;
        }
    } else if preserve {
        return;
    }
    check_enum(schema, value, path, out);
    check_string(schema, value, path, out);
    check_number(schema, value, path, out);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    out.push(format!("{}: Required value", join(path, name)));
                }
            }
            for (name, child) in map {
                if root && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(name)) {
                    openapi_errors(child_schema, child, &join(path, name), false, out);
                } else if let Some(values) =
                    schema.get("additionalProperties").filter(|v| v.is_object())
                {
                    openapi_errors(values, child, &join(path, name), false, out);
                } else if !preserve && schema.get("additionalProperties").is_none() {
                    out.push(format!(
                        ".{}: field not declared in schema",
                        join(path, name)
                    ));
                }
            }
        }
        Value::Array(items) => {
            check_items(schema, items.len(), path, out);
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    openapi_errors(item_schema, item, &format!("{path}[{index}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

fn check_enum(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.contains(value) {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
}

fn check_string(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(text) = value.as_str() else {
        return;
    };
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let regex = regex::Regex::new(pattern).expect("schema pattern compiles");
        if !regex.is_match(text) {
            out.push(format!(
                "{path}: Invalid value: {value}: {path} in body should match '{pattern}'"
            ));
        }
    }
    let length = text.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        out.push(format!(
            "{path}: Too long: may not be more than {max} bytes"
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        out.push(format!(
            "{path}: Invalid value: {value}: {path} in body should be at least {min} chars long"
        ));
    }
}

fn check_number(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(number) = value.as_f64() else {
        return;
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && number < min
    {
        out.push(format!(
            "{path}: Invalid value: {value}: {path} in body should be greater than or equal to {min}"
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && number > max
    {
        out.push(format!(
            "{path}: Invalid value: {value}: {path} in body should be less than or equal to {max}"
        ));
    }
}

fn check_items(schema: &Value, count: usize, path: &str, out: &mut Vec<String>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && count as u64 > max
    {
        out.push(format!(
            "{path}: Too many: {count}: must have at most {max} items"
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (count as u64) < min
    {
        out.push(format!(
            "{path}: Invalid value: {count}: {path} in body should have at least {min} items"
        ));
    }
}

/// Is every field of `small` present in `big` with an equal value? (Objects compare key by
/// key, recursively; everything else must be equal.)
pub fn is_subset(small: &Value, big: &Value) -> bool {
    match (small, big) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|other| is_subset(v, other))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| is_subset(x, y))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => small == big,
    }
}

//! A walk over the generated OpenAPI schema, field by field.
//!
//! The API reference and the "every field is documented" test both need the list of fields
//! with their path; this is the one place that knows how arrays and maps nest.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// One property of the schema.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// Dotted path from the object root: `spec.pvcConfig.storageClassMappings[].from`.
    /// `[]` stands for "every item of the list", `{}` for "every value of the map".
    pub path: String,
    /// The property's own schema.
    pub schema: &'a Value,
    /// Listed in its parent's `required`.
    pub required: bool,
}

/// The OpenAPI schema of the first (only) version of a CRD, as JSON.
pub fn openapi_schema(crd: &CustomResourceDefinition) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|version| version.schema.as_ref())
        .and_then(|validation| validation.open_api_v3_schema.as_ref())
        .and_then(|schema| serde_json::to_value(schema).ok())
        .unwrap_or(Value::Null)
}

/// Every property under `root`, depth first, parents before children, in schema order.
pub fn fields(root: &Value) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    collect_properties(root, "", &mut out);
    out
}

fn collect_properties<'a>(schema: &'a Value, prefix: &str, out: &mut Vec<Field<'a>>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.push(Field {
            path: path.clone(),
            schema: property,
            required: required.contains(&name.as_str()),
        });
        descend(property, &path, out);
    }
}

fn descend<'a>(schema: &'a Value, path: &str, out: &mut Vec<Field<'a>>) {
    collect_properties(schema, path, out);
    if let Some(items) = schema.get("items") {
        descend(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema
        .get("additionalProperties")
        .filter(|values| values.is_object())
    {
        descend(values, &format!("{path}{{}}"), out);
    }
}

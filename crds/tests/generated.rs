//! The checked-in `deploy/crds/*.yaml` and `docs/api.md` are exactly what the types generate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use dr_syncer_crds::{manifests, reference};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = repo_root().join("deploy/crds");
    let rendered = manifests::rendered().expect("CRDs render");
    for file in &rendered {
        let path = dir.join(&file.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == file.content,
            "{} is missing or stale: run `make crds` and commit the result",
            path.display()
        );
    }
    let mut extra = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".dr-syncer.io.yaml") && !rendered.iter().any(|f| f.file_name == name) {
            extra.push(name);
        }
    }
    assert!(
        extra.is_empty(),
        "deploy/crds has CRDs no type generates: {extra:?}; run `make crds`"
    );
}

#[test]
fn checked_in_api_reference_is_up_to_date() {
    let path = repo_root().join(reference::DOCS_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == reference::render_all(),
        "{} is missing or stale: run `make crds` and commit the result",
        path.display()
    );
}

#[test]
fn manifests_parse_back_into_the_same_crds() {
    for (file, crd) in manifests::rendered()
        .unwrap()
        .iter()
        .zip(manifests::all_crds())
    {
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&file.content).expect("generated YAML parses");
        assert_eq!(
            parsed, crd,
            "{} does not parse back to its CRD",
            file.file_name
        );
    }
}

#[test]
fn reference_documents_every_field_and_rule() {
    let docs = reference::render_all();
    for crd in manifests::all_crds() {
        let schema = dr_syncer_crds::schema_walk::openapi_schema(&crd);
        for field in dr_syncer_crds::schema_walk::fields(&schema) {
            if field.path.starts_with("spec") || field.path.starts_with("status") {
                assert!(
                    docs.contains(&format!("| `{}` |", field.path)),
                    "docs miss {}",
                    field.path
                );
            }
        }
    }
    assert!(
        docs.contains("mutually exclusive"),
        "CEL messages are documented"
    );
    assert!(docs.contains("| Short names | `nm` |"));
}

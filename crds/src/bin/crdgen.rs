//! Writes the CRD manifests and the API reference generated from the API types
//! (`make crds`).
//!
//! Usage: `crdgen [CRD_DIR] [DOCS_FILE]`, defaults `deploy/crds` and `docs/api.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use dr_syncer_crds::{manifests, reference};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.len() > 2 {
        eprintln!("usage: crdgen [CRD_DIR] [DOCS_FILE]");
        return ExitCode::from(2);
    }
    let crd_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("deploy/crds"));
    let docs = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(reference::DOCS_PATH));
    match generate(&crd_dir, &docs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crdgen: {error}");
            ExitCode::FAILURE
        }
    }
}

fn generate(
    crd_dir: &std::path::Path,
    docs: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(crd_dir)?;
    for file in manifests::rendered()? {
        let path = crd_dir.join(&file.file_name);
        std::fs::write(&path, file.content)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(parent) = docs.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(docs, reference::render_all())?;
    eprintln!("wrote {}", docs.display());
    Ok(())
}

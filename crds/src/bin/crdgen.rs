//! Writes the CRD manifests generated from the API types (`make crds`).
fn main() {}

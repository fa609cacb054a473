//! Placeholder entry point, filled in by later issues.
fn main() {}

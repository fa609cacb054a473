//! `docs/troubleshooting.md` must list every condition type and reason the controller can
//! set. The constants are read from `src/status.rs` itself, so a reason added there without
//! documentation fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use regex::Regex;

/// `(NAME, "Value")` of every `pub const NAME: &str = "Value";` inside `pub mod <module> {`.
fn constants(source: &str, module: &str) -> Vec<(String, String)> {
    let start = source
        .find(&format!("pub mod {module} {{"))
        .unwrap_or_else(|| panic!("status.rs has no `pub mod {module}`"));
    let body = &source[start..];
    let end = body.find("\n}").expect("module end");
    let re = Regex::new(r#"pub const ([A-Z_]+): &str = "([^"]+)";"#).unwrap();
    re.captures_iter(&body[..end])
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect()
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names listed as the first cell of a table row: "| `Name` | ...".
fn documented(doc: &str) -> Vec<String> {
    let re = Regex::new(r"(?m)^\| `([A-Za-z]+)` \|").unwrap();
    re.captures_iter(doc).map(|c| c[1].to_owned()).collect()
}

fn missing(module: &str) -> (Vec<(String, String)>, Vec<String>) {
    let status = read("src/status.rs");
    let doc = documented(&read("../docs/troubleshooting.md"));
    let all = constants(&status, module);
    let missing = all
        .iter()
        .filter(|(_, value)| !doc.contains(value))
        .map(|(name, value)| format!("{name} = {value:?}"))
        .collect();
    (all, missing)
}

/// Asserts that at least `at_least` constants of `module` were parsed (a guard against the
/// parser silently matching nothing) and that every one is in the troubleshooting table;
/// returns them all.
fn assert_documented(module: &str, what: &str, at_least: usize) -> Vec<(String, String)> {
    let (all, missing) = missing(module);
    assert!(all.len() >= at_least, "only {} {module} parsed", all.len());
    assert!(
        missing.is_empty(),
        "{what} missing from docs/troubleshooting.md: {missing:?}"
    );
    all
}

#[test]
fn every_condition_reason_is_in_the_troubleshooting_table() {
    let all = assert_documented("reasons", "reasons", 30);
    assert!(all.iter().any(|(_, v)| v == "SecretNotFound"));
}

#[test]
fn every_condition_type_is_in_the_troubleshooting_table() {
    assert_documented("types", "condition types", 8);
}

#[test]
fn the_listed_constants_are_the_ones_the_code_uses() {
    // The parsed values are the real constants (not a stale copy of the file's text).
    let (all, _) = missing("reasons");
    let value = |name: &str| {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    use dr_syncer_controller::status::reasons;
    assert_eq!(value("SECRET_NOT_FOUND"), reasons::SECRET_NOT_FOUND);
    assert_eq!(value("PRUNE_REFUSED"), reasons::PRUNE_REFUSED);
    assert_eq!(value("AWAITING_TRIGGER"), reasons::AWAITING_TRIGGER);
}

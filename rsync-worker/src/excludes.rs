//! The exclude matcher both sides apply: rsync-style patterns compiled once, matched
//! against wire paths (the sender prunes its walk, the receiver drops excluded entries and
//! keeps excluded target files from deletion).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Why an exclude pattern could not be compiled (the caller names the option it came from).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid exclude pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What globset said.
    pub reason: String,
}

/// Compiled rsync-style exclude patterns.
#[derive(Debug, Clone)]
pub struct Excludes {
    any: GlobSet,
    dirs_only: GlobSet,
}

impl Excludes {
    /// Compiles patterns: no `/` = a name at any depth, leading `/` = anchored at the root,
    /// other `/` = a path from the root, trailing `/` = directories only; `*` does not
    /// cross `/`, `**` does.
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut any = GlobSetBuilder::new();
        let mut dirs_only = GlobSetBuilder::new();
        for p in patterns {
            let (body, dir_only) = match p.strip_suffix('/') {
                Some(b) => (b, true),
                None => (p.as_str(), false),
            };
            let glob = if let Some(anchored) = body.strip_prefix('/') {
                anchored.to_string()
            } else if body.contains('/') {
                body.to_string()
            } else {
                format!("**/{body}")
            };
            let g = GlobBuilder::new(&glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| PatternError {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })?;
            if dir_only {
                dirs_only.add(g);
            } else {
                any.add(g);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| PatternError {
                pattern: patterns.join(" "),
                reason: e.to_string(),
            })
        };
        Ok(Self {
            any: build(any)?,
            dirs_only: build(dirs_only)?,
        })
    }

    /// Whether the entry itself matches (its ancestors are checked by the walk).
    pub fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        let p = std::path::Path::new(OsStr::from_bytes(path));
        self.any.is_match(p) || (is_dir && self.dirs_only.is_match(p))
    }

    /// Whether the entry or any of its ancestor directories matches.
    pub fn excludes(&self, path: &[u8], is_dir: bool) -> bool {
        if self.matches(path, is_dir) {
            return true;
        }
        path.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.matches(&path[..i], true))
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.any.is_empty() && self.dirs_only.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_semantics() {
        let ex = Excludes::new(&[
            "*.tmp".to_string(),
            "/top".to_string(),
            "cache/".to_string(),
            "a/b/c".to_string(),
        ])
        .unwrap();
        assert!(ex.excludes(b"x.tmp", false));
        assert!(ex.excludes(b"d/e/x.tmp", false));
        assert!(ex.excludes(b"top", false));
        assert!(!ex.excludes(b"d/top", false));
        assert!(ex.excludes(b"d/cache", true));
        assert!(!ex.excludes(b"d/cache", false));
        assert!(ex.excludes(b"d/cache/inner/file", false));
        assert!(ex.excludes(b"a/b/c", false));
        assert!(!ex.excludes(b"z/a/b/c", false));
        assert!(!ex.excludes(b"keep.txt", false));
    }
}

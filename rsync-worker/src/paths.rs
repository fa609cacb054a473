//! Paths on the wire are raw bytes relative to a root (file names on Linux are bytes, not
//! UTF-8). A [`WirePath`] can only be built from bytes that cannot leave the root: no
//! absolute path, no `.`/`..` component, no empty component, no NUL, bounded length.
//! Both sides check every path they receive; the filesystem layer then opens each
//! component without following symlinks, so a valid path also cannot escape through a link.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Longest accepted path in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest accepted component in bytes (Linux NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Prefix of the receiver's temporary and basis files; the file list never contains them
/// and deletion never touches them.
pub const TEMP_PREFIX: &[u8] = b".dr-syncer.";
/// The receiver's lock file in the destination root: one pull writes into a destination at
/// a time. It holds the [`RunId`] of the pull that last held it, so the next pull finds the
/// partial files an interrupted one left. Its name is a temporary name, so the file list
/// never carries it and deletion never touches it.
pub const LOCK_NAME: &[u8] = b".dr-syncer.lock";

/// The identity of one pull into a destination: 16 lowercase hex digits, part of the names
/// of its temporary files, so two pulls (a lock that did not hold, a leftover of a dead
/// run) never share a temporary file. Only [`RunId::new`] and [`RunId::parse`] build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    /// A fresh id (BLAKE3 of the process id, the time and a counter: unique per pull).
    pub fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{}:{nanos}:{n}", std::process::id());
        RunId(blake3::hash(seed.as_bytes()).to_hex()[..16].to_string())
    }

    /// The id written in a lock file, if it is one (surrounding whitespace ignored).
    pub fn parse(text: &[u8]) -> Option<Self> {
        let t = std::str::from_utf8(text).ok()?.trim();
        let valid = t.len() == 16 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| RunId(t.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

/// The temporary name of file `name` in pull `run` with `suffix` (`part` for the data being
/// received, `basis` for a partial reused as basis, `link` for a link being placed):
/// `.dr-syncer.<24 hex of BLAKE3(name)>.<run>.<suffix>`, short whatever the name's length.
pub fn temp_name(name: &[u8], run: &RunId, suffix: &str) -> Vec<u8> {
    let h = blake3::hash(name).to_hex();
    [
        TEMP_PREFIX,
        &h.as_bytes()[..24],
        b".",
        run.0.as_bytes(),
        b".",
        suffix.as_bytes(),
    ]
    .concat()
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Empty path.
    #[error("empty path")]
    Empty,
    /// Starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// Contains `..`.
    #[error("parent directory component")]
    DotDot,
    /// Contains `.` or an empty component (`a//b`, trailing `/`).
    #[error("empty or '.' component")]
    BadComponent,
    /// Contains a NUL byte.
    #[error("NUL byte in path")]
    Nul,
    /// Longer than [`MAX_PATH`] or a component longer than [`MAX_NAME`].
    #[error("path too long")]
    TooLong,
}

/// A validated relative path (see module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WirePath(Vec<u8>);

impl WirePath {
    /// Validates `bytes` as a relative path that stays inside its root.
    pub fn new(bytes: Vec<u8>) -> Result<Self, PathError> {
        check(&bytes)?;
        Ok(WirePath(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As a filesystem path (relative).
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The components, each a non-empty file name.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/')
    }

    /// The parent path, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<WirePath> {
        let i = self.0.iter().rposition(|&b| b == b'/')?;
        Some(WirePath(self.0[..i].to_vec()))
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// `self/name`, validated.
    pub fn join(&self, name: &[u8]) -> Result<WirePath, PathError> {
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(name);
        WirePath::new(v)
    }

    /// Lossy UTF-8 form, for messages and logs.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Checks a relative path (see [`WirePath::new`]).
pub fn check(bytes: &[u8]) -> Result<(), PathError> {
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    if bytes[0] == b'/' {
        return Err(PathError::Absolute);
    }
    for comp in bytes.split(|&b| b == b'/') {
        check_name(comp)?;
    }
    Ok(())
}

/// Checks one file name (a single component).
pub fn check_name(name: &[u8]) -> Result<(), PathError> {
    match name {
        b"" | b"." => Err(PathError::BadComponent),
        b".." => Err(PathError::DotDot),
        n if n.len() > MAX_NAME => Err(PathError::TooLong),
        n if n.contains(&b'/') || n.contains(&0) => Err(PathError::BadComponent),
        _ => Ok(()),
    }
}

/// Whether a file name is one of the receiver's temporary files.
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_odd_but_safe_names() {
        for p in [
            &b"a"[..],
            b"a b/c\nd",
            b"\xff\xfe/x",
            b"...",
            b"a/..b",
            b".hidden",
        ] {
            assert!(WirePath::new(p.to_vec()).is_ok(), "{p:?}");
        }
    }

    #[test]
    fn refuses_escapes() {
        let cases: &[(&[u8], PathError)] = &[
            (b"", PathError::Empty),
            (b"/etc/passwd", PathError::Absolute),
            (b"..", PathError::DotDot),
            (b"a/../../b", PathError::DotDot),
            (b"a/..", PathError::DotDot),
            (b"./a", PathError::BadComponent),
            (b"a//b", PathError::BadComponent),
            (b"a/", PathError::BadComponent),
            (b"a\0b", PathError::Nul),
        ];
        for (p, e) in cases {
            assert_eq!(WirePath::new(p.to_vec()).unwrap_err(), *e, "{p:?}");
        }
        assert_eq!(check(&[b'a'; 256]).unwrap_err(), PathError::TooLong);
        assert_eq!(check(&[b'a'; 5000]).unwrap_err(), PathError::TooLong);
    }

    #[test]
    fn parent_and_name() {
        let p = WirePath::new(b"a/b/c".to_vec()).unwrap();
        assert_eq!(p.parent().unwrap().as_bytes(), b"a/b");
        assert_eq!(p.file_name(), b"c");
        assert!(WirePath::new(b"a".to_vec()).unwrap().parent().is_none());
    }
}

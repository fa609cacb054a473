//! Key material for both ends: host key, authorized client keys, the pinned host key.
//!
//! Everything is read from mounted files in OpenSSH formats so that operators can
//! produce them with `ssh-keygen` and Kubernetes Secrets. Key material is never logged:
//! only SHA-256 fingerprints leave this module.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::authorized_keys::AuthorizedKeys as AuthorizedKeysParser;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read (missing mount, permissions).
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file we tried to read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid OpenSSH key in the expected format.
    #[error("key file {path} is not a valid {expected}: {reason}")]
    Parse {
        /// The file we tried to parse.
        path: PathBuf,
        /// What kind of key we expected.
        expected: &'static str,
        /// The parser's message (never the key itself).
        reason: String,
    },
    /// Encrypted private keys would need a passphrase we never have in a pod.
    #[error("private key file {0} is encrypted; mount an unencrypted key")]
    Encrypted(PathBuf),
    /// An authorized keys file without any key would lock everyone out silently.
    #[error("authorized keys file {0} contains no key")]
    NoAuthorizedKeys(PathBuf),
}

/// The SHA-256 fingerprint OpenSSH prints (`SHA256:...`), the only form in which keys
/// appear in logs and error messages.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Whether two public keys are the same key, ignoring their comments: a pinned key
/// line and the key the server presents differ only in their comment.
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// Builds an ed25519 private key from a 32-byte seed. Tests and tooling use it to make
/// keys without an RNG version coupling to `ssh-key`.
pub fn ed25519_from_seed(seed: &[u8; 32]) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(seed))
}

/// Reads an unencrypted OpenSSH private key (the agent's host key or the worker's
/// client key) from a mounted file.
pub fn load_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let text = read(path)?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| parse_error(path, "OpenSSH private key", e))?;
    if key.is_encrypted() {
        return Err(KeyError::Encrypted(path.to_path_buf()));
    }
    if matches!(key.key_data(), KeypairData::Encrypted(_)) {
        return Err(KeyError::Encrypted(path.to_path_buf()));
    }
    Ok(key)
}

/// Reads the pinned host key of the agent: one OpenSSH public key line
/// (`ssh-ed25519 AAAA... comment`), or a known_hosts line (`host ssh-ed25519 AAAA...`).
pub fn load_pinned_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read(path)?;
    parse_pinned_key(&text).ok_or_else(|| KeyError::Parse {
        path: path.to_path_buf(),
        expected: "OpenSSH public key line",
        reason: "no line holds a public key".to_string(),
    })
}

/// Parses the first line of `text` that holds a public key, with or without a leading
/// known_hosts host field.
pub fn parse_pinned_key(text: &str) -> Option<PublicKey> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(parse_key_line)
}

fn parse_key_line(line: &str) -> Option<PublicKey> {
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Some(key);
    }
    let (_host, rest) = line.split_once(char::is_whitespace)?;
    PublicKey::from_openssh(rest.trim()).ok()
}

/// The client keys allowed to log in to the agent, from an OpenSSH `authorized_keys`
/// file. Options on a line (`restrict`, `command=`) are accepted but have no effect:
/// the agent never runs commands, whatever the key.
#[derive(Debug, Clone)]
pub struct AuthorizedKeys {
    keys: Vec<PublicKey>,
}

impl AuthorizedKeys {
    /// Reads and parses an authorized keys file; an empty file is an error.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        let keys = Self::parse(&text).map_err(|e| parse_error(path, "authorized_keys file", e))?;
        if keys.keys.is_empty() {
            return Err(KeyError::NoAuthorizedKeys(path.to_path_buf()));
        }
        Ok(keys)
    }

    /// Parses authorized keys text (one key per line, `#` comments).
    pub fn parse(text: &str) -> Result<Self, russh::keys::ssh_key::Error> {
        let keys = AuthorizedKeysParser::new(text)
            .map(|entry| entry.map(|e| e.public_key().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Builds the set from keys already in memory (tests, generated configurations).
    pub fn from_keys(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// Whether `key` may log in.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| same_key(k, key))
    }

    /// How many keys are authorized (logged at startup instead of the keys).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key at all is authorized.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, expected: &'static str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Parse {
        path: path.to_path_buf(),
        expected,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_key_accepts_plain_and_known_hosts_lines() {
        let key = ed25519_from_seed(&[7; 32]);
        let line = key.public_key().to_openssh().unwrap();
        let plain = parse_pinned_key(&format!("# pinned\n{line} agent@node\n")).unwrap();
        assert!(same_key(&plain, key.public_key()));
        let known = parse_pinned_key(&format!("[10.0.0.1]:2222 {line}\n")).unwrap();
        assert!(same_key(&known, key.public_key()));
        assert!(parse_pinned_key("not a key\n").is_none());
    }

    #[test]
    fn authorized_keys_match_by_key_not_comment() {
        let a = ed25519_from_seed(&[1; 32]);
        let b = ed25519_from_seed(&[2; 32]);
        let text = format!(
            "# comment\nrestrict {} someone\n",
            a.public_key().to_openssh().unwrap()
        );
        let keys = AuthorizedKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains(a.public_key()));
        assert!(!keys.contains(b.public_key()));
    }
}

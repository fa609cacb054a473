//! SSH keys between rsync workers (target cluster) and agents (source cluster).
//!
//! Two key pairs, both Ed25519, both kept in the controller cluster:
//! - the **host key** of a source cluster's agents: from `pvcSync.ssh.keySecretRef` when
//!   given, else a generated Secret `<rc>-agent-host-key` owned by the RemoteCluster;
//! - the **client key** of the workers of one scope (a ClusterMapping, or the implicit
//!   source/destination pair of a NamespaceMapping): from `sshKeySecretRef` when given,
//!   else a generated Secret `<cm>-worker-key` / `dr-syncer-<src>-<dst>-worker-key`.
//!
//! Only halves travel: the source cluster gets the host private key and the authorized
//! client public keys; the target cluster gets one client private key and the host public
//! key. Private keys never appear in logs, status, events or error messages (errors name
//! Secrets and keys, never contents). A `dr-syncer.io/rotate-keys` annotation with a new
//! value on the RemoteCluster (host key) or ClusterMapping (client key) regenerates the
//! generated key once per value.

use std::collections::BTreeMap;

use dr_syncer_crds::cluster_mapping::ClusterMapping;
use dr_syncer_crds::remote_cluster::RemoteCluster;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::public::Ed25519PublicKey;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

use crate::clusters::ClusterKey;
use crate::k8s::FIELD_MANAGER;

/// Annotation whose new value asks for a new generated key (on a RemoteCluster for the
/// host key, on a ClusterMapping for the client key).
pub const ROTATE_ANNOTATION: &str = "dr-syncer.io/rotate-keys";

/// Annotation on a generated key Secret: the rotate value it was generated for, so one
/// annotation value rotates exactly once.
pub const ROTATED_FOR_ANNOTATION: &str = "dr-syncer.io/rotated-for";

/// Label on generated client-key Secrets: the source RemoteCluster whose agents must accept
/// the key (how the source's `authorized_keys` is assembled).
pub const WORKER_KEY_SOURCE_LABEL: &str = "dr-syncer.io/worker-key-source";

/// Label on every object the data plane creates, so cleanup only touches ours.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "dr-syncer";

/// Key of the host private key, in a user-given `keySecretRef` Secret, in the generated
/// host-key Secret, and in the agent Secret of the source cluster.
pub const HOST_PRIVATE_KEY: &str = "ssh_host_ed25519_key";

/// Key of the host public key in the generated host-key Secret (informational; the public
/// key is always derived from the private one).
pub const HOST_PUBLIC_KEY: &str = "ssh_host_ed25519_key.pub";

/// Key of the client private key in generated client-key Secrets.
pub const CLIENT_PRIVATE_KEY: &str = "id_ed25519";

/// Key of the client public key in generated client-key Secrets.
pub const CLIENT_PUBLIC_KEY: &str = "id_ed25519.pub";

/// Why keys could not be provided. Messages name Secrets and keys, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A referenced Secret does not exist.
    #[error("key Secret {secret} not found; create it or fix {field}")]
    SecretMissing {
        /// `namespace/name`.
        secret: String,
        /// The spec field that names it.
        field: String,
    },
    /// The Secret exists but lacks a key.
    #[error("key Secret {secret} has no key {key:?} (keys present: {present}); {hint}")]
    KeyMissing {
        /// `namespace/name`.
        secret: String,
        /// The missing key.
        key: String,
        /// Keys the Secret has, comma-separated.
        present: String,
        /// What to put there.
        hint: String,
    },
    /// The key does not parse as an unencrypted OpenSSH Ed25519 key.
    #[error(
        "key {key:?} of Secret {secret} is not a usable key: {reason}; it must be an unencrypted OpenSSH Ed25519 key"
    )]
    Invalid {
        /// `namespace/name`.
        secret: String,
        /// The key in the Secret.
        key: String,
        /// The parser's complaint (never the key).
        reason: String,
    },
    /// Generating a key failed.
    #[error("cannot generate an SSH key: {0}")]
    Generate(String),
    /// A call to the controller cluster failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl KeyError {
    /// Whether the user must fix a Secret (as opposed to a transient API failure).
    pub fn is_missing_secret(&self) -> bool {
        matches!(
            self,
            Self::SecretMissing { .. } | Self::KeyMissing { .. } | Self::Invalid { .. }
        )
    }
}

/// Debug output of a key-bearing struct `name`: the public half `shown` as it is, the
/// private field `hidden` as `<redacted>`, so a logged value never leaks a key.
fn debug_redacted(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    shown: (&str, &str),
    hidden: &str,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field(shown.0, &shown.1)
        .field(hidden, &"<redacted>")
        .finish()
}

/// An Ed25519 key pair in OpenSSH text formats.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`). Never log it.
    pub private_openssh: String,
    /// One public key line, `ssh-ed25519 AAAA... comment`.
    pub public_openssh: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_redacted(
            f,
            "KeyPair",
            ("public_openssh", &self.public_openssh),
            "private_openssh",
        )
    }
}

/// Whose workers a client key belongs to: a ClusterMapping, or the implicit pair of a
/// NamespaceMapping that names its clusters directly.
#[derive(Clone, Debug)]
pub struct KeyScope {
    /// Namespace of the scope (ClusterMapping or NamespaceMapping namespace); generated
    /// client-key Secrets live here.
    pub namespace: String,
    /// Scope name: the ClusterMapping name, or `dr-syncer-<source>-<destination>`.
    pub name: String,
    /// The ClusterMapping, when the scope is one (its `sshKeySecretRef`, rotation
    /// annotation and ownership of the generated Secret).
    pub cluster_mapping: Option<ClusterMapping>,
    /// The source RemoteCluster whose agents must accept the key.
    pub source: ClusterKey,
}

impl KeyScope {
    /// The scope of a ClusterMapping (its source cluster is in its namespace).
    pub fn for_cluster_mapping(cm: &ClusterMapping) -> Self {
        let namespace = cm.namespace().unwrap_or_default();
        KeyScope {
            source: ClusterKey {
                namespace: namespace.clone(),
                name: cm.spec.source_cluster.clone(),
            },
            namespace,
            name: cm.name_any(),
            cluster_mapping: Some(cm.clone()),
        }
    }

    /// The implicit scope of a NamespaceMapping naming `sourceCluster` and
    /// `destinationCluster` directly (both RemoteClusters in `namespace`).
    pub fn for_pair(namespace: &str, source: &str, destination: &str) -> Self {
        KeyScope {
            namespace: namespace.to_owned(),
            name: format!("dr-syncer-{source}-{destination}"),
            cluster_mapping: None,
            source: ClusterKey {
                namespace: namespace.to_owned(),
                name: source.to_owned(),
            },
        }
    }

    /// Name of the generated client-key Secret of this scope.
    pub fn generated_secret_name(&self) -> String {
        format!("{}-worker-key", self.name)
    }
}

/// What a worker needs: its private key and the agents' public host key to pin.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerCredentials {
    /// The scope's client private key, OpenSSH format. Never log it.
    pub client_private_key: String,
    /// The agents' host public key, `ssh-ed25519 AAAA...`.
    pub agent_host_public_key: String,
}

impl std::fmt::Debug for WorkerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_redacted(
            f,
            "WorkerCredentials",
            ("agent_host_public_key", &self.agent_host_public_key),
            "client_private_key",
        )
    }
}

/// Generates a fresh Ed25519 key pair from the operating system's CSPRNG (through `rand`'s
/// thread RNG, seeded from the OS), so no RNG crate version has to match `ssh-key`'s.
pub fn generate(comment: &str) -> Result<KeyPair, KeyError> {
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    pair_of(&key)
}

fn pair_of(key: &PrivateKey) -> Result<KeyPair, KeyError> {
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(KeyPair {
        private_openssh: private.to_string(),
        public_openssh: public,
    })
}

/// Parses an OpenSSH private key and derives its public line; `Err` carries only the
/// parser's reason (never the text).
pub fn parse_private(text: &str) -> Result<KeyPair, String> {
    let key = PrivateKey::from_openssh(text.trim()).map_err(|e| e.to_string())?;
    if key.is_encrypted() {
        return Err("the key is encrypted".to_owned());
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!("the key is {}, not ssh-ed25519", key.algorithm()));
    }
    pair_of(&key).map_err(|e| e.to_string())
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
pub fn parse_public(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())
}

/// The `authorized_keys` file of a source cluster's agents: one line per distinct key
/// (comments ignored for distinctness), sorted, so the text (and the keys hash that rolls
/// the agents) changes only when the set of keys does.
pub fn render_authorized_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut by_data: BTreeMap<String, String> = BTreeMap::new();
    for line in keys {
        let line = line.trim();
        let Ok(key) = parse_public(line) else {
            continue;
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        by_data
            .entry(fingerprint)
            .or_insert_with(|| line.to_owned());
    }
    if by_data.is_empty() {
        // The agent refuses an empty file (it would lock everyone out silently); a key
        // nobody holds keeps it running until a mapping's key is authorized.
        return format!("{}\n", no_client_key());
    }
    let mut out = String::new();
    for line in by_data.values() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A public key line no one can authenticate with: its point is a SHA-256 output (a
/// nothing-up-my-sleeve value), so no private key is known for it. It stands in the
/// agents' `authorized_keys` while no ClusterMapping or NamespaceMapping reads from the
/// cluster yet.
pub fn no_client_key() -> String {
    let digest = HashAlg::Sha256.digest(b"dr-syncer: no client key is authorized yet");
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest[..32]);
    let mut key = PublicKey::from(Ed25519PublicKey(bytes));
    key.set_comment(NO_CLIENT_KEY_COMMENT);
    key.to_openssh()
        .unwrap_or_else(|_| format!("ssh-ed25519 invalid {NO_CLIENT_KEY_COMMENT}"))
}

/// Comment of the [`no_client_key`] line, so operators recognise it.
pub const NO_CLIENT_KEY_COMMENT: &str = "dr-syncer-no-client-key-yet";

/// SHA-256 (hex) over a Secret's data, keys and values in order: the value of the
/// `dr-syncer.io/keys-hash` pod annotation that rolls the agents when keys change.
pub fn data_hash(data: &BTreeMap<String, ByteString>) -> String {
    let mut bytes = Vec::new();
    for (key, value) in data {
        bytes.extend_from_slice(&(key.len() as u64).to_be_bytes());
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&(value.0.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&value.0);
    }
    HashAlg::Sha256
        .digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a Secret's key as text, with errors that name what to fix.
fn secret_key(
    secret: &Secret,
    secret_name: &str,
    key: &str,
    hint: &str,
) -> Result<String, KeyError> {
    let data = secret.data.clone().unwrap_or_default();
    match data.get(key) {
        Some(value) => String::from_utf8(value.0.clone()).map_err(|_| KeyError::Invalid {
            secret: secret_name.to_owned(),
            key: key.to_owned(),
            reason: "not UTF-8 text".to_owned(),
        }),
        None => Err(KeyError::KeyMissing {
            secret: secret_name.to_owned(),
            key: key.to_owned(),
            present: data.keys().cloned().collect::<Vec<_>>().join(", "),
            hint: hint.to_owned(),
        }),
    }
}

async fn get_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<Secret, KeyError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await?
        .ok_or_else(|| KeyError::SecretMissing {
            secret: format!("{namespace}/{name}"),
            field: field.to_owned(),
        })
}

/// Reads a private key out of a user-given Secret and checks it.
fn private_from_secret(secret: &Secret, secret_name: &str, key: &str) -> Result<KeyPair, KeyError> {
    let text = secret_key(
        secret,
        secret_name,
        key,
        "put an unencrypted OpenSSH Ed25519 private key there (ssh-keygen -t ed25519 -N '')",
    )?;
    parse_private(&text).map_err(|reason| KeyError::Invalid {
        secret: secret_name.to_owned(),
        key: key.to_owned(),
        reason,
    })
}

/// Owner reference for garbage collection only: no `blockOwnerDeletion`, which would need
/// `update` on the owner's finalizers (the controller's RBAC does not grant it).
fn owner_ref<K: Resource<DynamicType = ()>>(obj: &K) -> Option<OwnerReference> {
    obj.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = None;
        o
    })
}

/// What a generated-key Secret should look like.
struct Generated<'a> {
    namespace: &'a str,
    name: &'a str,
    owner: Option<OwnerReference>,
    labels: BTreeMap<String, String>,
    rotate: Option<String>,
    private_key: &'a str,
    public_key: &'a str,
    comment: String,
}

/// Returns the generated key of a Secret we manage, (re)generating it when absent,
/// unusable, or when the rotate annotation carries a value it was not generated for.
async fn ensure_generated(client: &Client, g: Generated<'_>) -> Result<KeyPair, KeyError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), g.namespace);
    let secret_name = format!("{}/{}", g.namespace, g.name);
    if let Some(existing) = api.get_opt(g.name).await? {
        let rotated_for = existing.annotations().get(ROTATED_FOR_ANNOTATION).cloned();
        let current = secret_key(&existing, &secret_name, g.private_key, "")
            .ok()
            .and_then(|text| parse_private(&text).ok());
        if let Some(pair) = current
            && (g.rotate.is_none() || rotated_for == g.rotate)
        {
            return Ok(pair);
        }
        tracing::info!(secret = %secret_name, "generating a new SSH key (absent, unusable or rotation asked)");
    }
    let pair = generate(&g.comment)?;
    let mut annotations = BTreeMap::new();
    if let Some(value) = &g.rotate {
        annotations.insert(ROTATED_FOR_ANNOTATION.to_owned(), value.clone());
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(g.name.to_owned()),
            namespace: Some(g.namespace.to_owned()),
            labels: Some(g.labels),
            annotations: Some(annotations),
            owner_references: g.owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                g.private_key.to_owned(),
                ByteString(pair.private_openssh.clone().into_bytes()),
            ),
            (
                g.public_key.to_owned(),
                ByteString(pair.public_openssh.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    };
    api.patch(
        g.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(pair)
}

fn base_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())])
}

/// The agents' host key of a source RemoteCluster: from `pvcSync.ssh.keySecretRef` (key
/// `ssh_host_ed25519_key`) when given, else the generated `<rc>-agent-host-key` Secret.
pub async fn host_key(client: &Client, rc: &RemoteCluster) -> Result<KeyPair, KeyError> {
    let reference = rc
        .spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.ssh.as_ref())
        .and_then(|s| s.key_secret_ref.as_ref());
    if let Some(r) = reference {
        let secret = get_secret(
            client,
            &r.namespace,
            &r.name,
            "spec.pvcSync.ssh.keySecretRef",
        )
        .await?;
        return private_from_secret(
            &secret,
            &format!("{}/{}", r.namespace, r.name),
            HOST_PRIVATE_KEY,
        );
    }
    let namespace = rc.namespace().unwrap_or_default();
    let name = format!("{}-agent-host-key", rc.name_any());
    ensure_generated(
        client,
        Generated {
            namespace: &namespace,
            name: &name,
            owner: owner_ref(rc),
            labels: base_labels(),
            rotate: rc.annotations().get(ROTATE_ANNOTATION).cloned(),
            private_key: HOST_PRIVATE_KEY,
            public_key: HOST_PUBLIC_KEY,
            comment: format!("dr-syncer-agent@{namespace}.{}", rc.name_any()),
        },
    )
    .await
}

/// The workers' client key of a scope: from the ClusterMapping's `sshKeySecretRef` when
/// given (public key derived from the private one), else the scope's generated Secret.
pub async fn client_key(client: &Client, scope: &KeyScope) -> Result<KeyPair, KeyError> {
    if let Some(cm) = &scope.cluster_mapping
        && let Some(r) = &cm.spec.ssh_key_secret_ref
    {
        let namespace = r
            .namespace
            .clone()
            .unwrap_or_else(|| scope.namespace.clone());
        let secret = get_secret(client, &namespace, &r.name, "spec.sshKeySecretRef").await?;
        return private_from_secret(
            &secret,
            &format!("{namespace}/{}", r.name),
            &r.private_key_key,
        );
    }
    let mut labels = base_labels();
    labels.insert(
        WORKER_KEY_SOURCE_LABEL.to_owned(),
        scope.source.name.clone(),
    );
    let name = scope.generated_secret_name();
    let cm = scope.cluster_mapping.as_ref();
    ensure_generated(
        client,
        Generated {
            namespace: &scope.namespace,
            name: &name,
            owner: cm.and_then(owner_ref),
            labels,
            rotate: cm.and_then(|c| c.annotations().get(ROTATE_ANNOTATION).cloned()),
            private_key: CLIENT_PRIVATE_KEY,
            public_key: CLIENT_PUBLIC_KEY,
            comment: format!("dr-syncer-worker@{}.{}", scope.namespace, scope.name),
        },
    )
    .await
}

/// Every client public key the agents of `source` must accept: the generated client-key
/// Secrets labelled for it, and the user-given `sshKeySecretRef` keys of the
/// ClusterMappings reading from it. Unusable user Secrets are skipped here (their own
/// ClusterMapping reports them).
pub async fn authorized_client_keys(
    client: &Client,
    source: &ClusterKey,
) -> Result<Vec<String>, KeyError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
    let selector = format!(
        "{WORKER_KEY_SOURCE_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
        source.name
    );
    let mut keys = Vec::new();
    for secret in secrets
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        let name = format!("{}/{}", source.namespace, secret.name_any());
        if let Ok(text) = secret_key(&secret, &name, CLIENT_PRIVATE_KEY, "")
            && let Ok(pair) = parse_private(&text)
        {
            keys.push(pair.public_openssh);
        }
    }
    let mappings: Api<ClusterMapping> = Api::namespaced(client.clone(), &source.namespace);
    for cm in mappings.list(&ListParams::default()).await? {
        if cm.spec.source_cluster != source.name || cm.spec.ssh_key_secret_ref.is_none() {
            continue;
        }
        match client_key(client, &KeyScope::for_cluster_mapping(&cm)).await {
            Ok(pair) => keys.push(pair.public_openssh),
            Err(KeyError::Kube(e)) => return Err(KeyError::Kube(e)),
            Err(error) => {
                tracing::debug!(mapping = %cm.name_any(), %error, "skipping unusable client key")
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_is_valid_and_public_matches_private() {
        let pair = generate("test@x").unwrap();
        assert!(
            pair.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert!(pair.public_openssh.starts_with("ssh-ed25519 AAAA"));
        let reparsed = parse_private(&pair.private_openssh).unwrap();
        let a = parse_public(&reparsed.public_openssh).unwrap();
        let b = parse_public(&pair.public_openssh).unwrap();
        assert_eq!(a.key_data(), b.key_data());
        // Two generations never give the same key.
        assert_ne!(generate("x").unwrap().public_openssh, pair.public_openssh);
    }

    #[test]
    fn debug_never_prints_private_keys() {
        let pair = generate("c").unwrap();
        let text = format!("{pair:?}");
        assert!(!text.contains("PRIVATE KEY"));
        let creds = WorkerCredentials {
            client_private_key: pair.private_openssh.clone(),
            agent_host_public_key: pair.public_openssh.clone(),
        };
        assert!(!format!("{creds:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn non_ed25519_or_garbage_is_refused_with_a_reason() {
        let err = parse_private("not a key").unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn authorized_keys_are_sorted_deduplicated_and_skip_garbage() {
        let a = generate("a").unwrap().public_openssh;
        let b = generate("b").unwrap().public_openssh;
        let a_other_comment = format!(
            "{} another-comment",
            a.rsplit_once(' ').map(|(k, _)| k).unwrap()
        );
        let one = render_authorized_keys([a.as_str(), b.as_str(), "garbage", &a_other_comment]);
        let two = render_authorized_keys([b.as_str(), a.as_str()]);
        // No key at all: one stable line nobody can use, never an empty file.
        let none = render_authorized_keys(["garbage"]);
        assert_eq!(none, render_authorized_keys([]));
        assert_eq!(none.lines().count(), 1);
        assert!(none.contains(NO_CLIENT_KEY_COMMENT));
        parse_public(none.trim()).unwrap();
        assert!(!one.contains(NO_CLIENT_KEY_COMMENT));
        assert_eq!(one.lines().count(), 2, "{one}");
        assert_eq!(one, two, "order of input must not matter");
        assert!(one.ends_with('\n'));
        for line in one.lines() {
            parse_public(line).unwrap();
        }
    }

    #[test]
    fn data_hash_changes_with_any_byte_and_is_stable() {
        let data = |v: &str| BTreeMap::from([("k".to_owned(), ByteString(v.as_bytes().to_vec()))]);
        assert_eq!(data_hash(&data("a")), data_hash(&data("a")));
        assert_ne!(data_hash(&data("a")), data_hash(&data("b")));
        assert_eq!(data_hash(&data("a")).len(), 64);
        // Moving a byte between key and value changes the hash (lengths are framed).
        let ab = BTreeMap::from([("ka".to_owned(), ByteString(b"b".to_vec()))]);
        let a_b = BTreeMap::from([("k".to_owned(), ByteString(b"ab".to_vec()))]);
        assert_ne!(data_hash(&ab), data_hash(&a_b));
    }

    #[test]
    fn scope_names_follow_the_contract() {
        let scope = KeyScope::for_pair("dr", "prod", "dr-site");
        assert_eq!(
            scope.generated_secret_name(),
            "dr-syncer-prod-dr-site-worker-key"
        );
        assert_eq!(scope.source.name, "prod");
        let cm: ClusterMapping = serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping",
            "metadata": {"name": "pair", "namespace": "dr"},
            "spec": {"sourceCluster": "prod", "targetCluster": "dr-site"}
        }))
        .unwrap();
        let scope = KeyScope::for_cluster_mapping(&cm);
        assert_eq!(scope.generated_secret_name(), "pair-worker-key");
        assert_eq!(scope.source.namespace, "dr");
    }

    #[test]
    fn missing_key_error_names_secret_and_key_not_contents() {
        let pair = generate("x").unwrap();
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "other".to_owned(),
                ByteString(pair.private_openssh.clone().into_bytes()),
            )])),
            ..Secret::default()
        };
        let err = private_from_secret(&secret, "dr/keys", "id_rsa").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("dr/keys") && text.contains("id_rsa") && text.contains("other"));
        assert!(!text.contains("PRIVATE KEY"));
        assert!(err.is_missing_secret());
    }
}

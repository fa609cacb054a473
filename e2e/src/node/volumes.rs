//! Pod volumes: materializing each volume as a host directory or file (hostPath under the
//! node root, PVC through its bound PV, secret/configMap/downwardAPI/projected files written
//! into the pod's scratch dir, emptyDir), then mapping each container's volumeMounts to
//! bind mounts (subPath, read-only).
//!
//! Path convention (shared with the storage provisioner and the DR-Syncer agent): every
//! hostPath, including a PV's `hostPath.path` or `local.path`, is a path AS SEEN ON THE NODE;
//! on the machine it lives under the node root (`/var/lib/x` -> `<root>/var/lib/x`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::env::{Sources, expand, field_value};
use super::sandbox::{BindMount, inside};

/// Default file mode of secret, configMap, downwardAPI and projected files.
const DEFAULT_MODE: i32 = 0o644;

/// A volume ready to be bind-mounted: its host path and whether the volume itself is
/// read-only (secrets, configMaps and the like always are, as with the kubelet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Host path of the volume.
    pub path: PathBuf,
    /// The volume forces read-only mounts.
    pub read_only: bool,
}

/// What volume preparation needs besides the pod.
pub struct VolumeContext<'a> {
    /// Client for PVCs, PVs, Secrets, ConfigMaps and TokenRequests.
    pub client: &'a kube::Client,
    /// The node root hostPaths are mapped under.
    pub node_root: &'a Path,
    /// The node IP (downward API).
    pub node_ip: Ipv4Addr,
    /// The pod's scratch dir for materialized volumes (`<pod state>/volumes`).
    pub scratch: &'a Path,
    /// Secrets and ConfigMaps the pod refers to, already fetched.
    pub sources: &'a Sources,
}

/// Maps a node path (as seen on the node) under the node root on the machine.
pub fn node_path(node_root: &Path, path: &str) -> Result<PathBuf, String> {
    inside(node_root, Path::new(path)).map_err(|e| e.to_string())
}

/// Prepares every volume of the pod, by name. Errors are user-facing messages for the
/// container status (`CreateContainerConfigError`).
pub async fn prepare_all(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
) -> Result<BTreeMap<String, Prepared>, String> {
    let mut out = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let prepared = prepare(ctx, pod, volume)
            .await
            .map_err(|e| format!("volume {:?}: {e}", volume.name))?;
        out.insert(volume.name.clone(), prepared);
    }
    Ok(out)
}

/// Prepares one volume.
async fn prepare(ctx: &VolumeContext<'_>, pod: &Pod, v: &Volume) -> Result<Prepared, String> {
    let scratch = ctx.scratch.join(&v.name);
    let rw = |path| Prepared {
        path,
        read_only: false,
    };
    let ro = |path| Prepared {
        path,
        read_only: true,
    };
    if let Some(hp) = &v.host_path {
        return host_path(ctx.node_root, &hp.path, hp.type_.as_deref().unwrap_or("")).map(rw);
    }
    if v.empty_dir.is_some() {
        return fresh_dir(&scratch).map(rw);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let path = claim_path(ctx, pod, &claim.claim_name).await?;
        return Ok(Prepared {
            path,
            read_only: claim.read_only == Some(true),
        });
    }
    if v.ephemeral.is_some() {
        let name = format!("{}-{}", pod.metadata.name.as_deref().unwrap_or(""), v.name);
        return claim_path(ctx, pod, &name).await.map(rw);
    }
    if is_file_backed(v) {
        fresh_dir(&scratch)?;
        if let Some((files, _)) = file_volume(ctx, pod, v, true).await? {
            return write_files(&scratch, &files).map(|()| ro(scratch));
        }
    }
    Err(
        "unsupported volume type in the test bed (supported: hostPath, emptyDir, \
         persistentVolumeClaim, ephemeral, secret, configMap, downwardAPI, projected)"
            .into(),
    )
}

/// A hostPath volume under the node root, created or checked per its `type`.
pub fn host_path(node_root: &Path, path: &str, kind: &str) -> Result<PathBuf, String> {
    let host = node_path(node_root, path)?;
    let exists_as = |ok: bool, what: &str| {
        if ok {
            Ok(host.clone())
        } else {
            Err(format!(
                "hostPath type check failed: {path} is not a {what}"
            ))
        }
    };
    match kind {
        "DirectoryOrCreate" | "" if !host.exists() => {
            std::fs::create_dir_all(&host)
                .map_err(|e| format!("create {}: {e}", host.display()))?;
            Ok(host)
        }
        "FileOrCreate" if !host.exists() => {
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("create {}: {e}", parent.display()))?;
            }
            std::fs::write(&host, b"").map_err(|e| format!("create {}: {e}", host.display()))?;
            Ok(host)
        }
        "" => Ok(host),
        "Directory" | "DirectoryOrCreate" => exists_as(host.is_dir(), "directory"),
        "File" | "FileOrCreate" => exists_as(host.is_file(), "file"),
        "Socket" | "CharDevice" | "BlockDevice" => exists_as(host.exists(), kind),
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// The host path of a bound PVC: its PV's hostPath/local path under the node root.
async fn claim_path(ctx: &VolumeContext<'_>, pod: &Pod, claim: &str) -> Result<PathBuf, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pvc = pvcs
        .get(claim)
        .await
        .map_err(|e| format!("persistentvolumeclaim {claim:?}: {e}"))?;
    let pv_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound yet"))?;
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = pvs
        .get(&pv_name)
        .await
        .map_err(|e| format!("persistentvolume {pv_name:?}: {e}"))?;
    let path = pv_node_path(&pv)
        .ok_or_else(|| format!("persistentvolume {pv_name:?} is neither hostPath nor local"))?;
    let host = node_path(ctx.node_root, &path)?;
    std::fs::create_dir_all(&host).map_err(|e| format!("create {}: {e}", host.display()))?;
    Ok(host)
}

/// A PV's path as seen on the node (hostPath or local).
pub fn pv_node_path(pv: &PersistentVolume) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    let host = spec.host_path.as_ref().map(|h| h.path.clone());
    host.or_else(|| spec.local.as_ref().map(|l| l.path.clone()))
}

/// A file to materialize in a volume: relative path, content, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    /// Path relative to the volume root.
    pub path: String,
    /// File content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Selects keys of a data map per `items` (all keys when absent), as volume files.
pub fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<Vec<VolumeFile>, String> {
    let mode = mode_bits(default_mode.unwrap_or(DEFAULT_MODE));
    let Some(items) = items else {
        return Ok(data
            .iter()
            .map(|(k, v)| VolumeFile {
                path: k.clone(),
                content: v.clone(),
                mode,
            })
            .collect());
    };
    items
        .iter()
        .map(|item| {
            let content = data
                .get(&item.key)
                .ok_or_else(|| format!("couldn't find key {} in {what}", item.key))?;
            Ok(VolumeFile {
                path: item.path.clone(),
                content: content.clone(),
                mode: item.mode.map(mode_bits).unwrap_or(mode),
            })
        })
        .collect()
}

/// Permission bits from an API mode (an int32, possibly given in decimal).
fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0o644) & 0o7777
}

/// Which of a Secret's or ConfigMap's keys a volume projects, and how.
struct KeySelection<'a> {
    /// The object's name.
    name: &'a str,
    /// The keys to project and their paths (all keys when absent).
    items: Option<&'a [KeyToPath]>,
    /// A missing object yields no files instead of an error.
    optional: Option<bool>,
    /// The mode of files without their own.
    default_mode: Option<i32>,
}

impl<'a> KeySelection<'a> {
    /// The selection of a secret or configMap volume, or of a projected one's source.
    fn new(
        name: &'a str,
        items: &'a Option<Vec<KeyToPath>>,
        optional: Option<bool>,
        default_mode: Option<i32>,
    ) -> Self {
        let items = items.as_deref();
        Self {
            name,
            items,
            optional,
            default_mode,
        }
    }
}

/// A Secret's data as files (nothing if optional and missing).
fn secret_files(sources: &Sources, sel: KeySelection<'_>) -> Result<Vec<VolumeFile>, String> {
    let data = sources.secrets.get(sel.name).map(|secret| {
        let text = secret.string_data.as_ref();
        merge_data(text, secret.data.as_ref())
    });
    keyed_files(data, "Secret", sel)
}

/// A ConfigMap's data and binaryData as files (nothing if optional and missing).
fn config_map_files(sources: &Sources, sel: KeySelection<'_>) -> Result<Vec<VolumeFile>, String> {
    let data = sources
        .config_maps
        .get(sel.name)
        .map(|cm| merge_data(cm.data.as_ref(), cm.binary_data.as_ref()));
    keyed_files(data, "ConfigMap", sel)
}

/// The files of a Secret or ConfigMap (`kind`) given its data by key, `None` when it was not
/// found: then nothing if optional, otherwise the kubelet's "not found" error.
fn keyed_files(
    data: Option<BTreeMap<String, Vec<u8>>>,
    kind: &str,
    sel: KeySelection<'_>,
) -> Result<Vec<VolumeFile>, String> {
    let name = sel.name;
    match data {
        Some(data) => key_files(
            &data,
            sel.items,
            sel.default_mode,
            &format!("{kind} {name}"),
        ),
        None if sel.optional == Some(true) => Ok(Vec::new()),
        None => Err(format!("{} {name:?} not found", kind.to_lowercase())),
    }
}

/// Text and binary values as bytes by key, a binary value winning over a text one of the
/// same key: a Secret's stringData then data, a ConfigMap's data then binaryData.
fn merge_data(
    text: Option<&BTreeMap<String, String>>,
    binary: Option<&BTreeMap<String, ByteString>>,
) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in text.into_iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in binary.into_iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

/// downwardAPI items as files.
fn downward_files(
    pod: &Pod,
    node_ip: Ipv4Addr,
    items: Option<&[k8s_openapi::api::core::v1::DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<Vec<VolumeFile>, String> {
    let mode = mode_bits(default_mode.unwrap_or(DEFAULT_MODE));
    items
        .into_iter()
        .flatten()
        .map(|item| {
            let value = match (&item.field_ref, &item.resource_field_ref) {
                (Some(f), _) => field_value(pod, node_ip, &f.field_path)?,
                (None, Some(_)) => "0".to_string(),
                (None, None) => {
                    return Err(format!("downwardAPI item {} has no source", item.path));
                }
            };
            Ok(VolumeFile {
                path: item.path.clone(),
                content: value.into_bytes(),
                mode: item.mode.map(mode_bits).unwrap_or(mode),
            })
        })
        .collect()
}

/// A projected volume: service-account tokens (TokenRequest bound to the pod), configMaps,
/// secrets and downwardAPI items, all in one directory.
/// With `tokens` false (a resync), token sources are skipped and their paths returned as
/// files to keep.
async fn projected_files(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    tokens: bool,
) -> Result<(Vec<VolumeFile>, Vec<String>), String> {
    let mut files = Vec::new();
    let mut keep = Vec::new();
    let default_mode = p.default_mode;
    for source in p.sources.iter().flatten() {
        if let Some(t) = source.service_account_token.as_ref().filter(|_| !tokens) {
            keep.push(t.path.clone());
        } else if let Some(t) = &source.service_account_token {
            let token =
                request_token(ctx.client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
            let mode = mode_bits(default_mode.unwrap_or(DEFAULT_MODE));
            files.push(VolumeFile {
                path: t.path.clone(),
                content: token.into_bytes(),
                mode,
            });
        } else if let Some(c) = &source.config_map {
            let sel = KeySelection::new(&c.name, &c.items, c.optional, default_mode);
            files.extend(config_map_files(ctx.sources, sel)?);
        } else if let Some(s) = &source.secret {
            let sel = KeySelection::new(&s.name, &s.items, s.optional, default_mode);
            files.extend(secret_files(ctx.sources, sel)?);
        } else if let Some(d) = &source.downward_api {
            files.extend(downward_files(
                pod,
                ctx.node_ip,
                d.items.as_deref(),
                default_mode,
            )?);
        } else {
            return Err("unsupported projected volume source in the test bed".into());
        }
    }
    Ok((files, keep))
}

/// A service-account token bound to the pod, as the kubelet requests it.
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience
                .filter(|a| !a.is_empty())
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let response = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("token request for serviceaccount {ns}/{sa}: {e}"))?;
    response
        .status
        .map(|s| s.token)
        .ok_or_else(|| "token request returned no token".into())
}

/// Whether a volume is one of the file-backed kinds [`file_volume`] writes.
fn is_file_backed(v: &Volume) -> bool {
    v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// The files a file-backed volume (secret, configMap, downwardAPI, projected) holds, and the
/// paths to keep as they are (unrefreshed tokens), for both preparing and refreshing it;
/// `None` for any other volume. `tokens`: request service-account tokens (else keep them).
async fn file_volume(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    v: &Volume,
    tokens: bool,
) -> Result<Option<(Vec<VolumeFile>, Vec<String>)>, String> {
    let files = if let Some(s) = &v.secret {
        let name = s.secret_name.as_deref().unwrap_or("");
        let sel = KeySelection::new(name, &s.items, s.optional, s.default_mode);
        secret_files(ctx.sources, sel)?
    } else if let Some(c) = &v.config_map {
        let sel = KeySelection::new(&c.name, &c.items, c.optional, c.default_mode);
        config_map_files(ctx.sources, sel)?
    } else if let Some(d) = &v.downward_api {
        downward_files(pod, ctx.node_ip, d.items.as_deref(), d.default_mode)?
    } else if let Some(p) = &v.projected {
        return projected_files(ctx, pod, p, tokens).await.map(Some);
    } else {
        return Ok(None);
    };
    Ok(Some((files, Vec::new())))
}

/// Brings the file-backed volumes (secret, configMap, downwardAPI, projected) of a running
/// pod up to date with the API, in place, as the kubelet's periodic sync does: changed files
/// are replaced atomically (rename), files no longer projected are removed, and the volume
/// directory itself stays (it is bind-mounted into running containers). Service-account
/// tokens are kept as issued (the API server extends their lifetime). Returns whether
/// anything changed.
pub async fn refresh_all(
    ctx: &VolumeContext<'_>,
    pod: &Pod,
    volumes: &BTreeMap<String, Prepared>,
) -> Result<bool, String> {
    let mut changed = false;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(prepared) = volumes.get(&v.name) else {
            continue;
        };
        let Some((files, keep)) = file_volume(ctx, pod, v, false).await? else {
            continue;
        };
        changed |= sync_files(&prepared.path, &files, &keep)?;
    }
    Ok(changed)
}

/// Makes `dir` hold exactly `files` (plus `keep`), replacing changed files atomically and
/// removing stale ones; the directory itself is never replaced. Returns whether anything
/// changed.
pub fn sync_files(dir: &Path, files: &[VolumeFile], keep: &[String]) -> Result<bool, String> {
    let mut changed = false;
    let mut wanted = std::collections::BTreeSet::new();
    for f in files {
        let path = inside(dir, &Path::new("/").join(&f.path)).map_err(|e| e.to_string())?;
        wanted.insert(path.clone());
        let same_content = std::fs::read(&path).is_ok_and(|c| c == f.content);
        let same_mode =
            std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode);
        if same_content && same_mode {
            continue;
        }
        replace_file(&path, f)?;
        changed = true;
    }
    for k in keep {
        wanted.insert(inside(dir, &Path::new("/").join(k)).map_err(|e| e.to_string())?);
    }
    for stale in files_under(dir).into_iter().filter(|p| !wanted.contains(p)) {
        std::fs::remove_file(&stale).map_err(|e| format!("remove {}: {e}", stale.display()))?;
        changed = true;
    }
    Ok(changed)
}

/// Writes a file next to its destination and renames it into place.
fn replace_file(path: &Path, f: &VolumeFile) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.testbed-tmp"));
    std::fs::write(&tmp, &f.content).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(f.mode))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

/// Every regular file below `dir` (recursively; symlinks are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out
}

/// An empty directory (recreated: secret and configMap contents are rewritten each start).
fn fresh_dir(dir: &Path) -> Result<PathBuf, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Writes volume files under `dir` with their modes (nested paths allowed, `..` refused).
pub fn write_files(dir: &Path, files: &[VolumeFile]) -> Result<(), String> {
    for f in files {
        let path = inside(dir, &Path::new("/").join(&f.path)).map_err(|e| e.to_string())?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.content).map_err(|e| format!("write {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A container's bind mounts: each volumeMount at its mountPath, with subPath or
/// subPathExpr (expanded with the container env; created inside the volume if missing),
/// read-only when the mount or the volume says so.
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, Prepared>,
    env: &[(String, String)],
) -> Result<Vec<BindMount>, String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let volume = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(expand(e, env)),
                _ => None,
            };
            let source = match sub {
                None => volume.path.clone(),
                Some(sub) => sub_path(&volume.path, &sub)?,
            };
            Ok(BindMount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true) || volume.read_only,
            })
        })
        .collect()
}

/// `volume/sub`, created as a directory when missing (the kubelet does the same).
fn sub_path(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    let path = inside(volume, &Path::new("/").join(sub))
        .map_err(|_| format!("subPath {sub:?} must be relative and must not contain '..'"))?;
    if !path.exists() {
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn node_paths_map_under_the_node_root() {
        let root = Path::new("/bed/nodes/n1");
        assert_eq!(
            node_path(root, "/var/lib/testbed-storage/pvc-1").unwrap(),
            PathBuf::from("/bed/nodes/n1/var/lib/testbed-storage/pvc-1")
        );
        assert_eq!(
            node_path(root, "/").unwrap(),
            PathBuf::from("/bed/nodes/n1")
        );
        assert!(node_path(root, "/var/../../etc").is_err());
        assert!(node_path(root, "relative").is_err());
    }

    #[test]
    fn host_path_types_create_or_check() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = host_path(root, "/a/b", "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        let f = host_path(root, "/c/file", "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(host_path(root, "/missing", "Directory").is_err());
        assert!(host_path(root, "/a/b", "File").is_err());
        assert!(host_path(root, "/plain", "").unwrap().is_dir());
    }

    #[test]
    fn key_files_select_items_with_modes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = key_files(&data, None, Some(0o400), "Secret s").unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|f| f.mode == 0o400));
        let items: Vec<KeyToPath> = serde_json::from_value(json!([
            {"key": "b", "path": "dir/bee", "mode": 0o600}
        ]))
        .unwrap();
        let some = key_files(&data, Some(&items), None, "Secret s").unwrap();
        assert_eq!(
            some,
            vec![VolumeFile {
                path: "dir/bee".into(),
                content: b"2".to_vec(),
                mode: 0o600
            }]
        );
        let bad: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "zz", "path": "z"}])).unwrap();
        assert!(
            key_files(&data, Some(&bad), None, "Secret s")
                .unwrap_err()
                .contains("zz")
        );
    }

    #[test]
    fn write_files_refuses_escapes_and_sets_modes() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![VolumeFile {
            path: "x/y".into(),
            content: b"hi".to_vec(),
            mode: 0o600,
        }];
        write_files(dir.path(), &files).unwrap();
        let meta = std::fs::metadata(dir.path().join("x/y")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let evil = vec![VolumeFile {
            path: "../out".into(),
            content: vec![],
            mode: 0o644,
        }];
        assert!(write_files(dir.path(), &evil).is_err());
    }

    #[test]
    fn sync_files_updates_in_place_and_removes_stale_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |path: &str, content: &str| VolumeFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
        };
        write_files(
            dir.path(),
            &[file("a", "1"), file("sub/b", "2"), file("token", "t")],
        )
        .unwrap();
        let dir_inode = std::fs::metadata(dir.path()).unwrap().ino();
        let same = [file("a", "1"), file("sub/b", "2")];
        assert!(
            !sync_files(dir.path(), &same, &["token".into()]).unwrap(),
            "nothing changed"
        );
        let changed = [file("a", "one"), file("c", "3")];
        assert!(sync_files(dir.path(), &changed, &["token".into()]).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "one"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("c")).unwrap(), "3");
        assert!(!dir.path().join("sub/b").exists(), "stale file removed");
        assert!(dir.path().join("token").exists(), "kept file stays");
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().ino(),
            dir_inode,
            "dir is not replaced"
        );
    }

    #[test]
    fn container_mounts_apply_sub_paths_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let volumes: BTreeMap<String, Prepared> = [
            (
                "data".to_string(),
                Prepared {
                    path: dir.path().to_path_buf(),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                Prepared {
                    path: "/cfg".into(),
                    read_only: true,
                },
            ),
        ]
        .into();
        let container: Container = serde_json::from_value(json!({
            "name": "c",
            "volumeMounts": [
                {"name": "data", "mountPath": "/data", "readOnly": true},
                {"name": "data", "mountPath": "/per-pod", "subPathExpr": "$(POD)"},
                {"name": "cfg", "mountPath": "/etc/cfg"},
            ],
        }))
        .unwrap();
        let env = vec![("POD".to_string(), "p1".to_string())];
        let mounts = container_mounts(&container, &volumes, &env).unwrap();
        assert!(mounts[0].read_only);
        assert_eq!(mounts[1].source, dir.path().join("p1"));
        assert!(dir.path().join("p1").is_dir());
        assert!(!mounts[1].read_only);
        assert!(
            mounts[2].read_only,
            "configMap-like volumes are always read-only"
        );
        let bad: Container = serde_json::from_value(json!({
            "name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
        }))
        .unwrap();
        assert!(container_mounts(&bad, &volumes, &env).is_err());
    }
}

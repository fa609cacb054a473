//! Kubeconfig files: the admin one handed to humans and tests, and one per control-plane
//! component. Certificates are referenced by absolute path, not embedded, so the files stay
//! short and readable.

use std::path::Path;

use crate::pki::CertFiles;

/// Writes a single-context kubeconfig for `user` (client certificate `client`) talking to
/// `server` (e.g. `https://127.0.0.1:34567`) and trusting `ca`.
pub fn write(
    path: &Path,
    cluster: &str,
    server: &str,
    ca: &Path,
    user: &str,
    client: &CertFiles,
) -> std::io::Result<()> {
    std::fs::write(path, render(cluster, server, ca, user, client))
}

/// The kubeconfig text (YAML).
pub fn render(cluster: &str, server: &str, ca: &Path, user: &str, client: &CertFiles) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {user}
current-context: {cluster}
",
        ca = ca.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

/// Why a kubeconfig could not be turned into a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The file is missing or invalid.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from the configuration.
    #[error("building kube client: {0}")]
    Client(#[from] kube::Error),
}

/// Loads a kube client from a kubeconfig file written by [`write`].
pub async fn client(path: &Path) -> Result<kube::Client, ClientError> {
    let err = |source| ClientError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(err)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(err)?;
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rendered_kubeconfig_parses_with_server_and_client_cert_paths() {
        let files = CertFiles {
            cert: "/d/admin.crt".into(),
            key: "/d/admin.key".into(),
        };
        let text = render(
            "source",
            "https://127.0.0.1:20000",
            Path::new("/d/ca.crt"),
            "kubernetes-admin",
            &files,
        );
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("source"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:20000"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/d/ca.crt"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate.as_deref(), Some("/d/admin.crt"));
        assert_eq!(user.client_key.as_deref(), Some("/d/admin.key"));
    }
}

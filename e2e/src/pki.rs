//! Per-cluster PKI, generated fresh at every start: nothing secret outlives a test bed.
//!
//! The layout mirrors what kubeadm creates, so the flags read like a real cluster's: a cluster
//! CA (client and serving certificates, also the KCM's cluster-signing CA), a front-proxy CA
//! for the aggregation layer, the API server's serving certificate, one client certificate per
//! control-plane identity and the service-account signing key pair.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why the PKI could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key or certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// Writing a PEM file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its private key, as files on disk (what the components' flags take).
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM (PKCS#8) private key.
    pub key: PathBuf,
}

/// A client identity: the user name (certificate CN) and groups (O) the API server will see.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// File stem and certificate CN source.
    pub file: &'a str,
    /// User name (CN).
    pub user: &'a str,
    /// Groups (O), e.g. `system:masters`.
    pub groups: &'a [&'a str],
}

/// The admin kubeconfig's identity: cluster-admin through the `system:masters` group.
pub const ADMIN: Identity<'static> = Identity {
    file: "admin",
    user: "kubernetes-admin",
    groups: &["system:masters"],
};
/// The controller manager's identity, bound by the default RBAC policy.
pub const CONTROLLER_MANAGER: Identity<'static> = Identity {
    file: "controller-manager",
    user: "system:kube-controller-manager",
    groups: &[],
};
/// The scheduler's identity, bound by the default RBAC policy.
pub const SCHEDULER: Identity<'static> = Identity {
    file: "scheduler",
    user: "system:kube-scheduler",
    groups: &[],
};

/// Every file the control plane's flags point at.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    /// Cluster CA: trusted for client certificates, signs serving certs and CSRs.
    pub ca: CertFiles,
    /// Front-proxy CA for the aggregation layer's request-header authentication.
    pub front_proxy_ca: CertFiles,
    /// Client certificate the API server presents to aggregated API servers.
    pub front_proxy_client: CertFiles,
    /// The API server's serving certificate.
    pub apiserver: CertFiles,
    /// Admin client certificate (kubeconfigs for humans, tests and simulated nodes).
    pub admin: CertFiles,
    /// Controller manager client certificate.
    pub controller_manager: CertFiles,
    /// Scheduler client certificate.
    pub scheduler: CertFiles,
    /// Service-account token signing key (private, PKCS#8 PEM).
    pub sa_key: PathBuf,
    /// Service-account token verification key (public PEM).
    pub sa_pub: PathBuf,
}

/// A generated CA: its files and the issuer used to sign leaves.
struct Ca {
    files: CertFiles,
    issuer: Issuer<'static, KeyPair>,
}

/// Generates the whole PKI for one cluster into `dir`. `api_ips` are the IP subject
/// alternative names of the API server's serving certificate (its loopback address and the
/// `kubernetes` Service IP), added to the fixed DNS names (`localhost`,
/// `kubernetes.default.svc...`) so in-cluster clients verify it whichever name they use.
pub fn generate(dir: &Path, api_ips: &[IpAddr]) -> Result<ClusterPki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = new_ca(dir, "ca", "kubernetes")?;
    let front = new_ca(dir, "front-proxy-ca", "front-proxy-ca")?;
    let mut sans: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sans.extend(api_ips.iter().map(IpAddr::to_string));
    let apiserver = leaf(
        dir,
        "apiserver",
        "kube-apiserver",
        &[],
        sans,
        Usage::Server,
        &ca,
    )?;
    let front_client = leaf(
        dir,
        "front-proxy-client",
        "front-proxy-client",
        &[],
        vec![],
        Usage::Client,
        &front,
    )?;
    let client =
        |id: Identity<'_>| leaf(dir, id.file, id.user, id.groups, vec![], Usage::Client, &ca);
    let (sa_key, sa_pub) = sa_keys(dir)?;
    Ok(ClusterPki {
        admin: client(ADMIN)?,
        controller_manager: client(CONTROLLER_MANAGER)?,
        scheduler: client(SCHEDULER)?,
        ca: ca.files,
        front_proxy_ca: front.files,
        front_proxy_client: front_client,
        apiserver,
        sa_key,
        sa_pub,
    })
}

/// What a leaf certificate is for (its extended key usage).
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn new_ca(dir: &Path, file: &str, cn: &str) -> Result<Ca, PkiError> {
    let key = KeyPair::generate().map_err(gen_err(file))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(gen_err(file))?;
    let files = write_pair(dir, file, &cert.pem(), &key.serialize_pem())?;
    Ok(Ca {
        files,
        issuer: Issuer::new(params, key),
    })
}

fn leaf(
    dir: &Path,
    file: &str,
    cn: &str,
    groups: &[&str],
    sans: Vec<String>,
    usage: Usage,
    ca: &Ca,
) -> Result<CertFiles, PkiError> {
    let key = KeyPair::generate().map_err(gen_err(file))?;
    let mut params = CertificateParams::new(sans).map_err(gen_err(file))?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for group in groups {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *group);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca.issuer).map_err(gen_err(file))?;
    write_pair(dir, file, &cert.pem(), &key.serialize_pem())
}

fn sa_keys(dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
    let key = KeyPair::generate().map_err(gen_err("sa"))?;
    let private = dir.join("sa.key");
    let public = dir.join("sa.pub");
    write(&private, &key.serialize_pem())?;
    write(&public, &key.public_key_pem())?;
    Ok((private, public))
}

fn write_pair(dir: &Path, file: &str, cert: &str, key: &str) -> Result<CertFiles, PkiError> {
    let files = CertFiles {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    write(&files.cert, cert)?;
    write(&files.key, key)?;
    Ok(files)
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_with_pem_contents() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path(), &["127.0.0.1".parse().unwrap()]).unwrap();
        for files in [&pki.ca, &pki.apiserver, &pki.admin, &pki.front_proxy_client] {
            let cert = std::fs::read_to_string(&files.cert).unwrap();
            let key = std::fs::read_to_string(&files.key).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        }
        let public = std::fs::read_to_string(&pki.sa_pub).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    }
}

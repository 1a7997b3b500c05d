//! The server's certificates and the admin kubeconfig. The first start creates a CA, a serving
//! certificate and an admin client certificate (`O=system:masters`) under the data dir; later starts
//! load them, and re-issue only the serving certificate when the listen address is not among its
//! names. Nothing here talks to the network.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why the certificates could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no usable PEM {what}; move the data dir's pki/ aside to start over")]
    BadPem { path: PathBuf, what: &'static str },
}

type Result<T, E = PkiError> = std::result::Result<T, E>;

/// PEM files the server needs.
#[derive(Debug, Clone)]
pub struct ServerPki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

const CA_NAME: &str = "coxswain-ca";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    params
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| PkiError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// The names the serving certificate must carry for `listen`.
fn serving_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    names
}

fn leaf_params(
    common_name: &str,
    organizations: &[&str],
    names: &[String],
    server: bool,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for organization in organizations {
        dn.push(DnType::OrganizationName, *organization);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => name.clone().try_into().map(SanType::DnsName),
        })
        .collect::<std::result::Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

/// Loads the PKI under `dir/pki`, creating whatever is missing.
pub fn ensure(dir: &Path, listen: SocketAddr) -> Result<ServerPki> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|source| PkiError::Io {
        action: "create",
        path: pki.clone(),
        source,
    })?;
    let paths = |name: &str| (pki.join(format!("{name}.crt")), pki.join(format!("{name}.key")));

    let (ca_crt, ca_key) = paths("ca");
    let ca_key_pair = match (read(&ca_crt)?, read(&ca_key)?) {
        (Some(_), Some(key)) => KeyPair::from_pem(&key).map_err(|_| PkiError::BadPem {
            path: ca_key.clone(),
            what: "private key",
        })?,
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write(&ca_key, &key.serialize_pem())?;
            write(&ca_crt, &cert.pem())?;
            key
        }
    };
    // The issuer is rebuilt from the same name and key: what clients verify against is ca.crt.
    let ca = ca_params().self_signed(&ca_key_pair)?;
    let ca_cert_pem = read(&ca_crt)?.unwrap_or_else(|| ca.pem());

    let names = serving_names(listen);
    let (serving_crt, serving_key) = paths("serving");
    let names_file = pki.join("serving.names");
    let wanted_names = names.join(",");
    let (serving_cert_pem, serving_key_pem) =
        match (read(&serving_crt)?, read(&serving_key)?, read(&names_file)?) {
            (Some(cert), Some(key), Some(have)) if have == wanted_names => (cert, key),
            _ => {
                let key = KeyPair::generate()?;
                let cert = leaf_params("coxswain-apiserver", &[], &names, true)?.signed_by(
                    &key,
                    &ca,
                    &ca_key_pair,
                )?;
                write(&serving_key, &key.serialize_pem())?;
                write(&serving_crt, &cert.pem())?;
                write(&names_file, &wanted_names)?;
                (cert.pem(), key.serialize_pem())
            }
        };

    let (admin_crt, admin_key) = paths("admin");
    let (admin_cert_pem, admin_key_pem) = match (read(&admin_crt)?, read(&admin_key)?) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let key = KeyPair::generate()?;
            let cert = leaf_params("coxswain-admin", &["system:masters"], &[], false)?.signed_by(
                &key,
                &ca,
                &ca_key_pair,
            )?;
            write(&admin_key, &key.serialize_pem())?;
            write(&admin_crt, &cert.pem())?;
            (cert.pem(), key.serialize_pem())
        }
    };
    Ok(ServerPki {
        ca_cert_pem,
        serving_cert_pem,
        serving_key_pem,
        admin_cert_pem,
        admin_key_pem,
    })
}

/// An admin kubeconfig for `server` (an `https://host:port` URL), optionally for a logical cluster
/// (then the server URL ends in `/clusters/<name>`).
pub fn admin_kubeconfig(pki: &ServerPki, server: &str, cluster: Option<&str>) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let (name, url) = match cluster {
        Some(cluster) => (cluster.to_string(), format!("{server}/clusters/{cluster}")),
        None => ("coxswain".to_string(), server.to_string()),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
         users:\n- name: {name}-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-admin\ncurrent-context: {name}\n",
        ca = b64(&pki.ca_cert_pem),
        cert = b64(&pki.admin_cert_pem),
        key = b64(&pki.admin_key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_start_reuses_the_certificates_and_reissues_serving_for_a_new_address() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), "127.0.0.1:6443".parse().unwrap()).unwrap();
        let again = ensure(dir.path(), "127.0.0.1:7000".parse().unwrap()).unwrap();
        assert_eq!(first.ca_cert_pem, again.ca_cert_pem);
        assert_eq!(first.admin_cert_pem, again.admin_cert_pem);
        assert_eq!(
            first.serving_cert_pem, again.serving_cert_pem,
            "same names, same cert"
        );
        let other = ensure(dir.path(), "10.1.2.3:6443".parse().unwrap()).unwrap();
        assert_ne!(first.serving_cert_pem, other.serving_cert_pem);
        let config = admin_kubeconfig(&other, "https://127.0.0.1:6443", Some("t1"));
        assert!(config.contains("server: https://127.0.0.1:6443/clusters/t1"));
    }
}

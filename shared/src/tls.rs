//! The process's one TLS configuration: the certificate authorities every HTTPS call trusts,
//! the AWS SDK's and the outbound reqwest client's alike. Mozilla's root program is compiled
//! in (`webpki-root-certs`), so init opens no certificate file; an operator adds private CAs
//! with EXTRA_CA_BUNDLE, a PEM file read once, when the configuration is loaded.
//!
//! One [`Tls`] value (in `Config`) serves every client, each in the form it takes: reqwest a
//! rustls `ClientConfig` over one root store, made on the first client built; the AWS SDK the
//! same certificates as PEM (its only way in), which its HTTPS client parses on its first
//! request (`crate::aws`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Cheap to clone: the clones share the roots and the rustls configuration made from them.
#[derive(Clone, Default)]
pub struct Tls(Arc<Roots>);

#[derive(Default)]
struct Roots {
    /// The operator's CAs, trusted besides Mozilla's.
    extra: Vec<CertificateDer<'static>>,
    /// The file `extra` was read from.
    source: Option<PathBuf>,
    client_config: OnceLock<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl Tls {
    /// Mozilla's roots and the CA certificates in the PEM file at `path`.
    pub fn with_ca_bundle(path: &Path) -> Result<Self, TlsError> {
        let pem = std::fs::read(path)
            .map_err(|error| TlsError(format!("reading {}: {error}", path.display())))?;
        let mut tls = Self::with_extra_pem(&pem)
            .map_err(|TlsError(reason)| TlsError(format!("{}: {reason}", path.display())))?;
        if let Some(roots) = Arc::get_mut(&mut tls.0) {
            roots.source = Some(path.to_owned());
        }
        Ok(tls)
    }

    /// Mozilla's roots and the CA certificates in `pem`: at least one, each usable as a
    /// trust anchor (a bundle the operator meant to trust is never partly ignored). Other
    /// PEM sections, such as comments or keys, are skipped.
    pub fn with_extra_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut extra = Vec::new();
        for (index, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|error| TlsError(format!("not valid PEM: {error}")))?;
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|error| {
                    TlsError(format!(
                        "certificate {} is not a usable CA: {error}",
                        index + 1
                    ))
                })?;
            extra.push(cert);
        }
        if extra.is_empty() {
            return Err(TlsError("no CERTIFICATE in it".into()));
        }
        Ok(Self(Arc::new(Roots {
            extra,
            ..Roots::default()
        })))
    }

    /// Every trusted certificate: Mozilla's, then the operator's.
    pub fn certificates(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .chain(&self.0.extra)
    }

    /// The rustls configuration of an HTTP/1.1 client trusting [`Self::certificates`]. The
    /// root store is built once; each call returns a copy sharing it.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        if let Some(config) = self.0.client_config.get() {
            return Ok(config.as_ref().clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(self.certificates().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError(format!("TLS configuration: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = self.0.client_config.get_or_init(|| Arc::new(config));
        Ok(config.as_ref().clone())
    }

    /// [`Self::certificates`] as one PEM bundle.
    pub fn pem(&self) -> Vec<u8> {
        to_pem(self.certificates())
    }
}

fn to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'static>>) -> Vec<u8> {
    let mut pem = String::with_capacity(256 * 1024);
    let mut base64 = String::new();
    for cert in certs {
        base64.clear();
        base64::engine::general_purpose::STANDARD.encode_string(cert.as_ref(), &mut base64);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in base64.as_bytes().chunks(64) {
            // Base64 is ASCII: each chunk is whole characters.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field(
                "compiled_in",
                &webpki_root_certs::TLS_SERVER_ROOT_CERTS.len(),
            )
            .field("extra", &self.0.extra.len())
            .field("source", &self.0.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mozilla() -> &'static [CertificateDer<'static>] {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
    }

    #[test]
    fn every_compiled_in_root_is_a_usable_trust_anchor() {
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(mozilla().iter().cloned());
        assert!(
            added > 100,
            "Mozilla's program has over 100 roots, got {added}"
        );
        assert_eq!(ignored, 0);
    }

    #[test]
    fn the_pem_bundle_holds_exactly_the_trusted_certificates() {
        let extra = to_pem(&mozilla()[..1]);
        let tls = Tls::with_extra_pem(&extra).unwrap();
        let parsed: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.pem())
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<CertificateDer<'static>> = tls.certificates().cloned().collect();
        assert_eq!(parsed.len(), mozilla().len() + 1);
        assert_eq!(parsed, expected);
    }

    #[test]
    fn a_bundle_must_hold_usable_ca_certificates() {
        let error = |pem: &str| Tls::with_extra_pem(pem.as_bytes()).unwrap_err().to_string();
        assert_eq!(error(""), "no CERTIFICATE in it");
        assert_eq!(
            error("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "no CERTIFICATE in it"
        );
        assert!(
            error("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .starts_with("certificate 1 is not a usable CA"),
        );
        assert!(error("-----BEGIN CERTIFICATE-----\nAAAA\n").starts_with("not valid PEM"));
    }

    #[test]
    fn a_bundle_file_is_read_once_and_named_in_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let missing = Tls::with_ca_bundle(&path).unwrap_err().to_string();
        assert!(missing.starts_with(&format!("reading {}", path.display())));

        std::fs::write(&path, "not a certificate").unwrap();
        let empty = Tls::with_ca_bundle(&path).unwrap_err().to_string();
        assert_eq!(empty, format!("{}: no CERTIFICATE in it", path.display()));

        std::fs::write(&path, to_pem(&mozilla()[..2])).unwrap();
        let tls = Tls::with_ca_bundle(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(tls.certificates().count(), mozilla().len() + 2);
        assert!(tls.pem().len() > Tls::default().pem().len());
    }

    #[test]
    fn clients_share_one_root_store() {
        let tls = Tls::default();
        let first = tls.client_config().unwrap();
        let second = tls.clone().client_config().unwrap();
        assert!(Arc::ptr_eq(
            &first.crypto_provider().clone(),
            second.crypto_provider()
        ));
        assert_eq!(first.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}

//! The process's TLS configuration (shared::tls) against a real TLS server on loopback whose
//! certificate a test CA signed: the outbound reqwest client and the AWS SDK's client reach
//! it when EXTRA_CA_BUNDLE names that CA, and refuse its certificate when nothing does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use shared::aws::error_chain;
use shared::config::{Config, ConfigError, Profile};
use shared::tls::Tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server answers to any request: an empty DynamoDB ListTables, which reqwest
/// reads as a plain 200.
const BODY: &str = r#"{"TableNames":[]}"#;

/// A test CA (its certificate as PEM) and a TLS server for 127.0.0.1 whose certificate it
/// signed, counting the requests it answered.
struct Server {
    ca_pem: String,
    url: String,
    answered: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "sellerhub test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let answered = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&answered);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    // A client that does not trust the certificate aborts the handshake.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if read_request(&mut tls).await {
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                            BODY.len()
                        );
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = tls.write_all(response.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self {
            ca_pem,
            url,
            answered,
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Reads one request's head and its body (by Content-Length); false if the client left.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        request.extend_from_slice(&buf[..n]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        if request.len() >= end + 4 + length {
            return true;
        }
    }
}

/// The TLS configuration `Config` makes of `vars`.
fn tls_of(vars: &[(&str, &str)]) -> Result<Tls, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).map(|config| config.tls)
}

async fn get(tls: &Tls, url: &str) -> Result<String, String> {
    let client = shared::outbound::http_client(tls, Duration::from_secs(5)).unwrap();
    let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    assert_eq!(response.status(), 200);
    response.text().await.map_err(|e| error_chain(&e))
}

/// A DynamoDB ListTables at `url`, through the SDK configuration the functions use.
async fn list_tables(tls: &Tls, url: &str) -> Result<Vec<String>, String> {
    let sdk = shared::aws::sdk_config(tls).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "secret", None, None, "tls test"))
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let tables = aws_sdk_dynamodb::Client::from_conf(config)
        .list_tables()
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(tables.table_names().to_vec())
}

#[tokio::test]
async fn https_calls_trust_the_ca_extra_ca_bundle_names_and_refuse_it_otherwise() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("test-ca.pem");
    std::fs::write(&bundle, &server.ca_pem).unwrap();
    let configured = tls_of(&[("EXTRA_CA_BUNDLE", bundle.to_str().unwrap())]).unwrap();
    let unconfigured = tls_of(&[]).unwrap();

    let refused = get(&unconfigured, &server.url).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let refused = list_tables(&unconfigured, &server.url).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert_eq!(server.answered(), 0, "no request got past a handshake");

    assert_eq!(get(&configured, &server.url).await.unwrap(), BODY);
    assert_eq!(
        list_tables(&configured, &server.url).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(server.answered(), 2);
}

#[test]
fn an_unusable_extra_ca_bundle_stops_the_configuration_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = tls_of(&[("EXTRA_CA_BUNDLE", missing.to_str().unwrap())]).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Invalid { name: "EXTRA_CA_BUNDLE", reason } if reason.contains("missing.pem")),
        "{error}"
    );

    let not_pem = dir.path().join("key.pem");
    std::fs::write(&not_pem, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let error = tls_of(&[("EXTRA_CA_BUNDLE", not_pem.to_str().unwrap())]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "EXTRA_CA_BUNDLE is invalid: {}: no CERTIFICATE in it",
            not_pem.display()
        )
    );
}

//! The AWS SDK's shared configuration: region, credentials and endpoint from the usual
//! sources (in Lambda, its environment; AWS_ENDPOINT_URL points every client at an
//! emulator such as moto), and one HTTPS client trusting the process's roots
//! ([`crate::tls`]) for every SDK client made from it.

use std::borrow::Cow;
use std::sync::OnceLock;

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::tls::Tls;

/// The SDK configuration every client of the process is made from (load it once).
pub async fn sdk_config(tls: &Tls) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(HttpsOnFirstRequest {
            tls: tls.clone(),
            client: OnceLock::new(),
        }))
        .load()
        .await
}

/// The SDK's own hyper/rustls client (aws-lc-rs, as `default-https-client` makes it), given
/// the process's roots instead of the system's certificate files, and made on the first
/// request: the default makes its connector, parsing every root, for each SDK client made
/// (so that the system's files are read at init) and again on the first request, keeping
/// only that one. Here the roots are encoded and parsed once, when a connection needs them.
/// Unlike the default, it reads no proxy variable (neither does the outbound reqwest client).
#[derive(Debug)]
struct HttpsOnFirstRequest {
    tls: Tls,
    client: OnceLock<SharedHttpClient>,
}

impl HttpClient for HttpsOnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.client
            .get_or_init(|| https_client(&self.tls))
            .http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some(Cow::Borrowed("1.x"))))
    }
}

fn https_client(tls: &Tls) -> SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(tls.pem());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        // Only a Result for providers that check it; rustls takes the certificates as given
        // (and `Tls` has checked each one).
        .expect("a TLS context is built from any trust store");
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// An error and its sources on one short line (`dispatch failure: io error: …: Connection
/// refused (os error 111)`), for SDK errors whose Display alone says too little.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

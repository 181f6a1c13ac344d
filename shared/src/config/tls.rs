//! EXTRA_CA_BUNDLE: a PEM file of certificate authorities every HTTPS call trusts besides
//! the compiled-in Mozilla roots (a private CA, a TLS-inspecting proxy's, or the system's
//! own bundle), read once here.

use std::path::Path;

use super::ConfigError;
use super::vars::Vars;
use crate::tls::Tls;

pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Tls, ConfigError> {
    let Some(path) = vars.text(EXTRA_CA_BUNDLE) else {
        return Ok(Tls::default());
    };
    Tls::with_ca_bundle(Path::new(&path)).map_err(|error| ConfigError::Invalid {
        name: EXTRA_CA_BUNDLE,
        reason: error.to_string(),
    })
}

const EXTRA_CA_BUNDLE: &str = "EXTRA_CA_BUNDLE";

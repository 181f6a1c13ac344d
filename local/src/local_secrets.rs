//! The secrets the local runner needs and nobody configured: generated on first start,
//! kept in DATA_DIR (owner-only) so sessions and sealed grants survive a restart. A
//! configured secret always wins; nothing generated here is ever used in AWS.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use shared::auth::GrantCipher;
use shared::config::Config;

pub const FILE: &str = "local-secrets.json";

/// The client secret the sandbox provider checks: generated for the sandbox, so never used
/// with a real Mercado Livre (MERCADOLIVRE_API_URL set), where it must be configured.
const SANDBOX_CLIENT_SECRET: &str = "MERCADOLIVRE_CLIENT_SECRET";

/// Adds the generated secrets `config` lacks, making and saving them on first use, and
/// answers the names of those it added.
pub fn fill_in(config: &mut Config) -> std::io::Result<Vec<&'static str>> {
    let path = config.data_dir.join(FILE);
    let mut saved = read(&path)?;
    let before = saved.len();
    let mut wanted = vec![
        (
            "SESSION_SIGNING_KEY",
            shared::auth::random_token as fn(usize) -> String,
        ),
        ("CURSOR_SIGNING_KEY", shared::auth::random_token),
        ("META_APP_SECRET", shared::auth::random_token),
        ("META_VERIFY_TOKEN", shared::auth::random_token),
    ];
    if config.auth.sandbox {
        // The sandbox provider checks the client secret like Mercado Livre does.
        wanted.push((SANDBOX_CLIENT_SECRET, shared::auth::random_token));
    }
    for (name, generate) in wanted {
        saved.entry(name.to_owned()).or_insert_with(|| generate(48));
    }
    saved
        .entry("GRANT_ENCRYPTION_KEY".to_owned())
        .or_insert_with(|| {
            GrantCipher::generate_key("local1")
                .expose_secret()
                .to_owned()
        });
    if saved.len() != before {
        write(&path, &saved)?;
    }
    let mut added = Vec::new();
    for (name, value) in saved {
        if name == SANDBOX_CLIENT_SECRET && !config.auth.sandbox {
            continue;
        }
        if let Some(known) = shared::config::SECRET_NAMES
            .iter()
            .find(|known| **known == name)
            && config.secrets.get(known).is_none()
        {
            config
                .secrets
                .insert_default(known, SecretString::from(value));
            added.push(*known);
        }
    }
    Ok(added)
}

fn read(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(error),
    }
}

fn write(path: &Path, secrets: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        shared::embedded_db::create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(&serde_json::to_vec_pretty(secrets)?)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Profile;

    fn config(dir: &Path, vars: &[(&str, &str)]) -> Config {
        let mut vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        vars.insert("DATA_DIR".into(), dir.display().to_string());
        Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn generated_secrets_are_kept_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = config(dir.path(), &[]);
        fill_in(&mut first).unwrap();
        let key = first.secrets.require("SESSION_SIGNING_KEY").unwrap();
        assert!(key.expose_secret().len() >= 32);
        assert!(first.secrets.get("MERCADOLIVRE_CLIENT_SECRET").is_some());
        GrantCipher::from_config(&first).unwrap();

        let mut second = config(dir.path(), &[]);
        fill_in(&mut second).unwrap();
        assert_eq!(
            second
                .secrets
                .require("SESSION_SIGNING_KEY")
                .unwrap()
                .expose_secret(),
            key.expose_secret()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_sandbox_client_secret_is_never_used_with_a_real_mercado_livre() {
        let dir = tempfile::tempdir().unwrap();
        let mut sandbox = config(dir.path(), &[]);
        let added = fill_in(&mut sandbox).unwrap();
        assert!(added.contains(&SANDBOX_CLIENT_SECRET), "{added:?}");

        let real = [("MERCADOLIVRE_API_URL", "https://api.mercadolibre.com")];
        let mut config = config(dir.path(), &real);
        let added = fill_in(&mut config).unwrap();
        assert!(config.secrets.get(SANDBOX_CLIENT_SECRET).is_none());
        assert!(!added.contains(&SANDBOX_CLIENT_SECRET), "{added:?}");
        assert!(added.contains(&"SESSION_SIGNING_KEY"), "{added:?}");
    }

    #[test]
    fn a_configured_secret_wins() {
        let dir = tempfile::tempdir().unwrap();
        let configured = "configured-signing-key-configured-signing-key";
        let mut config = config(dir.path(), &[("SESSION_SIGNING_KEY", configured)]);
        fill_in(&mut config).unwrap();
        assert_eq!(
            config
                .secrets
                .require("SESSION_SIGNING_KEY")
                .unwrap()
                .expose_secret(),
            configured
        );
    }
}

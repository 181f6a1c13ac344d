//! Secrets from one Secrets Manager secret (on moto), merged into the configuration.

use secrecy::ExposeSecret;
use sellerhub_tests::moto;
use shared::config::{Config, ConfigError, Profile};

fn local_config() -> Config {
    Config::from_vars(Profile::Local, |name| {
        (name == "META_APP_SECRET").then(|| "from-env".to_owned())
    })
    .unwrap()
}

#[tokio::test]
async fn the_secret_provides_and_overrides_secrets() {
    let sdk = moto::sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("sellerhub-{}", uuid::Uuid::new_v4());
    let created = client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"META_APP_SECRET": "from-secret", "SESSION_SIGNING_KEY": "k"}"#)
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap();

    let mut config = local_config();
    config.secrets.load(&sdk, arn).await.unwrap();
    assert_eq!(
        config
            .secrets
            .require("META_APP_SECRET")
            .unwrap()
            .expose_secret(),
        "from-secret"
    );
    assert_eq!(
        config
            .secrets
            .require("SESSION_SIGNING_KEY")
            .unwrap()
            .expose_secret(),
        "k"
    );
}

#[tokio::test]
async fn a_missing_secret_is_an_init_error_naming_secrets_arn() {
    let sdk = moto::sdk_config().await;
    let mut config = local_config();
    let error = config
        .secrets
        .load(
            &sdk,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf",
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ConfigError::Secret(_)), "{error:?}");
    assert!(error.to_string().starts_with("SECRETS_ARN"), "{error}");
}

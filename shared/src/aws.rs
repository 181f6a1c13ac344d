//! The AWS SDK's shared configuration: region, credentials and endpoint from the usual
//! sources (in Lambda, its environment; AWS_ENDPOINT_URL points every client at an
//! emulator such as moto).

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

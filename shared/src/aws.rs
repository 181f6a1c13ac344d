//! The AWS SDK's shared configuration: region, credentials and endpoint from the usual
//! sources (in Lambda, its environment; AWS_ENDPOINT_URL points every client at an
//! emulator such as moto).

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// An error and its sources on one short line (`dispatch failure: io error: …: Connection
/// refused (os error 111)`), for SDK errors whose Display alone says too little.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

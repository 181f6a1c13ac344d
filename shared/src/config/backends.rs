//! Which store and queue a process uses: a Lambda function always DynamoDB and SQS; the
//! local runner the embedded ones unless switched to the real service.

use super::vars::Vars;
use super::{ConfigError, Profile};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    Embedded,
    DynamoDb { table: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    Embedded {
        max_receive_count: u32,
    },
    Sqs {
        queue_url: String,
        dead_letter_url: Option<String>,
    },
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    profile: Profile,
) -> Result<(StoreBackend, QueueBackend), ConfigError> {
    let (store_backend, queue_backend) = match profile {
        Profile::Lambda => ("dynamodb", "sqs"),
        Profile::Local => (
            vars.choice("STORE_BACKEND", "embedded", &["embedded", "dynamodb"])?,
            vars.choice("QUEUE_BACKEND", "embedded", &["embedded", "sqs"])?,
        ),
    };
    let store = match store_backend {
        "dynamodb" => StoreBackend::DynamoDb {
            table: vars.required("TABLE_NAME")?,
        },
        _ => StoreBackend::Embedded,
    };
    let queue = match queue_backend {
        "sqs" => QueueBackend::Sqs {
            queue_url: vars.required("WEBHOOK_QUEUE_URL")?,
            dead_letter_url: vars.text("WEBHOOK_DLQ_URL"),
        },
        _ => QueueBackend::Embedded {
            max_receive_count: vars.count("QUEUE_MAX_RECEIVE_COUNT", 5)?,
        },
    };
    Ok((store, queue))
}

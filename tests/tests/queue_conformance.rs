//! The queue port's conformance suite against the SQS adapter, on moto: every check
//! gets its own queue and dead-letter queue.

use sellerhub_tests::moto;
use shared::queue::conformance;
use shared::queue::sqs::SqsQueue;
use shared::queue::{Queue, QueueError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_queue_passes_the_conformance_suite() {
    let client = moto::sqs().await;
    conformance::run_all(|max_receive_count| {
        let client = client.clone();
        async move {
            let (queue_url, dead_letter_url) = moto::create_queues(max_receive_count).await;
            SqsQueue::new(client, queue_url, Some(dead_letter_url))
        }
    })
    .await;
}

#[tokio::test]
async fn a_missing_queue_is_unavailable_not_a_panic() {
    let url = format!("{}/123456789012/no-such-queue", moto::endpoint());
    let queue = SqsQueue::new(moto::sqs().await, url, None);
    let result = queue.stats().await;
    assert!(
        matches!(result, Err(QueueError::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
}

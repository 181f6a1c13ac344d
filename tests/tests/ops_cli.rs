//! The ops CLI (`local <command>`), run as an operator runs it: the local runner's binary
//! in its own process, against each backend it can be configured with — the embedded
//! store and queue in a data directory, and DynamoDB and SQS on moto. The same scenario
//! on both: seed a seller, queues and expired items, run every command, and check what it
//! printed, its exit code, and what it changed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::function_binary;
use serde_json::json;
use serde_json::value::RawValue;
use shared::adapters::{dynamo_store, sqs_queue};
use shared::auth::grants::{GrantInfo, GrantStatus, GrantTokens};
use shared::auth::tenants::Tenants;
use shared::auth::{GrantCipher, Grants, SessionKeys, Sessions};
use shared::clock::{Clock, SystemClock};
use shared::embedded_db::EmbeddedDb;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::queue::{OutMessage, Queue};
use shared::store::embedded::EmbeddedStore;
use shared::store::{Condition, Item, Key, Store};
use shared::webhooks::deferral::dead_letter;
use shared::webhooks::{Envelope, Source};

const SELLER: u64 = 468_424_240;
/// In the dead letters' payloads: a provider's data, never printed.
const PAYLOAD_MARKER: &str = "payload-only-text";

enum Backend {
    Embedded,
    Moto {
        table: String,
        queue_url: String,
        dlq_url: String,
    },
}

/// A backend with its data directory (the CLI's local secrets, and the embedded
/// database when it is embedded).
struct Deployment {
    backend: Backend,
    data_dir: tempfile::TempDir,
}

/// The store and the webhook queue (with its dead-letter queue), as the test seeds and
/// checks them. An embedded database is one process's at a time: drop them before the
/// CLI runs.
struct Adapters {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
}

impl Adapters {
    fn dead(&self) -> &dyn Queue {
        self.queue.dead_letters().expect("a dead-letter queue")
    }

    fn sessions(&self) -> Sessions {
        let keys = SessionKeys::new(
            &SecretString::from("test-signing-key-0123456789abcdef0123"),
            "sellerhub",
        )
        .unwrap();
        Sessions::new(
            Arc::clone(&self.store),
            Arc::new(keys),
            Duration::from_secs(3600),
        )
    }

    async fn waiting(&self, queue: &dyn Queue) -> u64 {
        queue.stats().await.unwrap().visible
    }
}

impl Deployment {
    async fn new(backend: Backend) -> Self {
        Self {
            backend,
            data_dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn embedded() -> Self {
        Self::new(Backend::Embedded).await
    }

    async fn on_moto() -> Self {
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        let table = moto::create_table().await;
        Self::new(Backend::Moto {
            table,
            queue_url,
            dlq_url,
        })
        .await
    }

    async fn adapters(&self) -> Adapters {
        match &self.backend {
            Backend::Embedded => {
                let db = EmbeddedDb::open(self.data_dir.path()).unwrap();
                Adapters {
                    store: Arc::new(EmbeddedStore::open(db.clone()).unwrap()),
                    queue: Arc::new(
                        EmbeddedQueue::open_with_dead_letters(
                            db,
                            WEBHOOK_QUEUE,
                            WEBHOOK_DEAD_LETTER_QUEUE,
                            5,
                        )
                        .unwrap(),
                    ),
                }
            }
            Backend::Moto {
                table,
                queue_url,
                dlq_url,
            } => {
                let sdk = moto::sdk_config().await;
                Adapters {
                    store: Arc::new(dynamo_store(&sdk, table)),
                    queue: Arc::new(sqs_queue(&sdk, queue_url, Some(dlq_url.clone()))),
                }
            }
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "DATA_DIR".into(),
                self.data_dir.path().display().to_string(),
            ),
            ("LOG_LEVEL".into(), "info".into()),
        ];
        if let Backend::Moto {
            table,
            queue_url,
            dlq_url,
        } = &self.backend
        {
            for (name, value) in [
                ("STORE_BACKEND", "dynamodb"),
                ("TABLE_NAME", table),
                ("QUEUE_BACKEND", "sqs"),
                ("WEBHOOK_QUEUE_URL", queue_url),
                ("WEBHOOK_DLQ_URL", dlq_url),
                ("AWS_ENDPOINT_URL", &moto::endpoint()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
            ] {
                env.push((name.into(), value.into()));
            }
        }
        env
    }

    /// `local <args>` with this deployment's configuration, and nothing else from ours.
    fn run(&self, args: &[&str]) -> Ran {
        let output = Command::new(binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .output()
            .expect("run the local binary");
        Ran {
            args: args.join(" "),
            output,
        }
    }
}

fn binary() -> PathBuf {
    function_binary("local", false)
}

struct Ran {
    args: String,
    output: Output,
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Its stdout, after checking it succeeded.
    fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            Some(0),
            "local {} failed\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Its stderr, after checking it exited with `code`.
    fn failed(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            Some(code),
            "local {}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }
}

fn envelope_message(dedupe_key: &str, error: &str) -> OutMessage {
    let envelope = Envelope {
        source: Source::MercadoLivre,
        received_at_ms: 1_763_647_331_000,
        dedupe_key: dedupe_key.into(),
        correlation_id: format!("corr-{dedupe_key}"),
        payload: RawValue::from_string(
            json!({"resource": "/questions/1", "note": PAYLOAD_MARKER}).to_string(),
        )
        .unwrap(),
        deferrals: 0,
    };
    dead_letter(&envelope.to_message().unwrap().body, error, 3)
}

/// What the scenario seeded and checks afterwards.
struct Seeded {
    dead_ids: Vec<String>,
    session: shared::auth::Claims,
    expired: Vec<Key>,
    live: Item,
}

async fn seed(adapters: &Adapters) -> Seeded {
    let now = SystemClock.now_secs();
    // Two webhooks waiting, three dead letters (one not an envelope at all).
    adapters
        .queue
        .send_batch(vec![OutMessage::new("w1"), OutMessage::new("w2")])
        .await
        .unwrap();
    let dead_ids = adapters
        .dead()
        .send_batch(vec![
            envelope_message("ml:q1", "upstream: Mercado Livre answered 500"),
            envelope_message("ml:q2", "store unavailable"),
            dead_letter("not json at all", "not an envelope: expected value", 1),
        ])
        .await
        .unwrap();

    // A connected seller with a live session.
    let tenant = Tenants::new(Arc::clone(&adapters.store))
        .for_seller(SELLER, "LOJA", now)
        .await
        .unwrap();
    let cipher = GrantCipher::parse(&GrantCipher::generate_key("k1")).unwrap();
    Grants::new(Arc::clone(&adapters.store), Arc::new(cipher))
        .connect(
            GrantInfo {
                tenant: tenant.clone(),
                seller_id: SELLER,
                nickname: "LOJA".into(),
                scopes: vec!["offline_access".into(), "read".into()],
                status: GrantStatus::Ok,
                expires_at: now + 21_600,
                lease_until: None,
                version: 0,
            },
            &GrantTokens {
                access_token: "APP_USR-never-printed".into(),
                refresh_token: "TG-never-printed".into(),
            },
        )
        .await
        .unwrap();
    let session = adapters
        .sessions()
        .start(&format!("ml:{SELLER}"), &tenant, now)
        .await
        .unwrap()
        .claims;

    // Expired items DynamoDB's TTL has not deleted yet, and a live one.
    let mut expired = Vec::new();
    for n in 0..3 {
        let item = Item::new(Key::new(format!("LOGIN#ops-{n}"), "STATE"), json!({}));
        expired.push(item.key.clone());
        adapters
            .store
            .put(item.expiring_at(now - 5), Condition::Always)
            .await
            .unwrap();
    }
    let live =
        Item::new(Key::new("LOGIN#ops-live", "STATE"), json!({"n": 1})).expiring_at(now + 600);
    adapters
        .store
        .put(live.clone(), Condition::Absent)
        .await
        .unwrap();
    Seeded {
        dead_ids,
        session,
        expired,
        live,
    }
}

async fn exercise(deployment: Deployment) {
    let seeded = {
        let adapters = deployment.adapters().await;
        seed(&adapters).await
    };

    let queues = deployment.run(&["queues"]).ok();
    assert!(queues.contains("webhook queue: 2 waiting"), "{queues}");
    assert!(queues.contains("dead letters: 3"), "{queues}");
    assert!(queues.contains("verdict: healthy"), "{queues}");

    let listed = deployment.run(&["dlq", "list"]).ok();
    assert!(
        listed.contains("3 dead letters waiting, 3 listed"),
        "{listed}"
    );
    for id in &seeded.dead_ids {
        assert!(listed.contains(id.as_str()), "{id} listed: {listed}");
    }
    for expected in [
        "mercadolivre, dedupe key ml:q1",
        "correlation corr-ml:q2",
        "last error: upstream: Mercado Livre answered 500",
        "last error: store unavailable",
        "attempts:   3",
        "the body is not an envelope",
    ] {
        assert!(listed.contains(expected), "{expected:?} in {listed}");
    }
    assert!(!listed.contains(PAYLOAD_MARKER), "no payload: {listed}");
    let limited = deployment.run(&["dlq", "list", "--limit", "1"]).ok();
    assert!(
        limited.contains("3 dead letters waiting, 1 listed"),
        "{limited}"
    );

    // Listing left every dead letter where it was: one moves back by its id.
    let moved = deployment
        .run(&["redrive", "--id", &seeded.dead_ids[1]])
        .ok();
    assert!(
        moved.contains(&format!("moved {} back", seeded.dead_ids[1])),
        "{moved}"
    );
    let unknown = deployment.run(&["redrive", "--id", "no-such-message"]);
    assert!(unknown.failed(1).contains("no-such-message"));
    {
        let adapters = deployment.adapters().await;
        assert_eq!(adapters.waiting(adapters.queue.as_ref()).await, 3);
        assert_eq!(adapters.waiting(adapters.dead()).await, 2);
    }
    let all = deployment.run(&["redrive"]).ok();
    assert!(all.contains("2 dead letters to move back"), "{all}");
    assert!(all.contains("moved 2/2"), "{all}");
    {
        let adapters = deployment.adapters().await;
        assert_eq!(adapters.waiting(adapters.queue.as_ref()).await, 5);
        assert_eq!(adapters.waiting(adapters.dead()).await, 0);
        let back = adapters
            .queue
            .receive(10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .unwrap();
        let redriven = back
            .iter()
            .find(|message| message.body.contains("ml:q2"))
            .expect("the dead letter moved by id");
        assert_eq!(
            redriven.attributes["error"], "store unavailable",
            "attributes kept"
        );
    }

    let grant = deployment.run(&["grant", &SELLER.to_string()]).ok();
    for expected in [
        format!("tenant: {}", seeded.session.tenant),
        "grant: ok".to_owned(),
        "nickname: LOJA".to_owned(),
        "scopes: offline_access read".to_owned(),
        "live sessions: 1".to_owned(),
        seeded.session.sid.clone(),
    ] {
        assert!(grant.contains(&expected), "{expected:?} in {grant}");
    }
    assert!(!grant.contains("never-printed"), "no token: {grant}");
    let stranger = deployment.run(&["grant", "999"]);
    assert!(stranger.failed(1).contains("never signed in"));

    let revoked = deployment
        .run(&["revoke-sessions", &SELLER.to_string()])
        .ok();
    assert!(revoked.contains("ended 1 sessions"), "{revoked}");
    let after = deployment.run(&["grant", &SELLER.to_string()]).ok();
    assert!(after.contains("live sessions: 0"), "{after}");

    let purged = deployment.run(&["purge-expired"]).ok();
    assert!(purged.contains("done, 3 expired items purged"), "{purged}");
    {
        let adapters = deployment.adapters().await;
        let sessions = adapters.sessions();
        assert!(sessions.is_revoked(&seeded.session).await.unwrap());
        assert!(
            sessions
                .active(&seeded.session.sub)
                .await
                .unwrap()
                .is_empty()
        );
        let mut expired_left = Vec::new();
        let mut after = None;
        loop {
            let page = adapters.store.scan(after, 100).await.unwrap();
            expired_left.extend(page.expired);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        for key in &seeded.expired {
            assert!(!expired_left.contains(key), "{key:?} purged");
        }
        assert_eq!(
            adapters.store.get(&seeded.live.key).await.unwrap(),
            Some(seeded.live.clone())
        );
    }

    // Bad arguments: a usage error, exit code 2, nothing run.
    for args in [
        &["grant", "not-a-number"][..],
        &["dlq"],
        &["dlq", "list", "--limit", "0"],
        &["revoke-sessions"],
        &["frobnicate"],
    ] {
        let stderr = deployment.run(args).failed(2);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn every_command_works_on_the_embedded_store_and_queue() {
    exercise(Deployment::embedded().await).await;
}

#[tokio::test]
async fn every_command_works_on_dynamodb_and_sqs() {
    exercise(Deployment::on_moto().await).await;
}

//! The limiter on real Redis: the Upstash client and the Lua script, through the REST shim
//! in front of the redis-server at REDIS_URL (started by infra/test.sh).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sellerhub_tests::upstash_shim::{RedisProcess, UpstashShim, redis_url};
use shared::ratelimit::cached::CachedLimiter;
use shared::ratelimit::fallback::{FallbackLimiter, FallbackSettings, METRIC};
use shared::ratelimit::gcra::{self, CHECK_SCRIPT};
use shared::ratelimit::redis::{HEALTH_KEY, RedisLimiter};
use shared::ratelimit::upstash::{Script, Upstash, UpstashError};
use shared::ratelimit::{Check, Limiter, LimiterError, Rule, conformance};
use shared::tls::Tls;

const T0: i64 = 1_700_000_000_000;

fn limiter(shim: &UpstashShim) -> RedisLimiter {
    RedisLimiter::new(Upstash::new(shim.config()).expect("the Upstash client"))
}

/// A limiter on an HTTP client (and so a connection pool) of its own: another instance.
/// Its timeout is generous: hundreds of requests in flight at once on a debug build on
/// two cores are slow, and what is tested here is the count, not the latency.
fn separate_limiter(shim: &UpstashShim) -> RedisLimiter {
    let http = shared::outbound::http_client(&Tls::default(), Duration::from_secs(5))
        .expect("an HTTP client");
    let mut config = shim.config();
    config.request_timeout = Duration::from_secs(10);
    RedisLimiter::new(Upstash::with_http_client(config, http))
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to REDIS_URL")
}

fn unique(name: &str) -> String {
    format!("test:{name}:{}", uuid::Uuid::new_v4())
}

fn rule(limit: u32, period: Duration, burst: u32) -> Rule {
    Rule::new(limit, period, burst)
}

#[tokio::test]
async fn the_redis_limiter_passes_the_conformance_suite() {
    let shim = UpstashShim::start().await;
    conformance::run_all(&limiter(&shim)).await;
    conformance::run_all(&CachedLimiter::new(Arc::new(limiter(&shim)))).await;
}

#[tokio::test]
async fn the_script_is_known_by_the_sha1_redis_gives_it() {
    // Redis (and Upstash) name a script by the SHA-1 of its whole body, shebang included.
    let sha1: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1])")
        .arg(0)
        .arg(CHECK_SCRIPT)
        .query_async(&mut redis().await)
        .await
        .expect("redis.sha1hex");
    assert_eq!(Script::new(CHECK_SCRIPT).sha1(), sha1);
    let shim = UpstashShim::start().await;
    let loaded = Upstash::new(shim.config())
        .unwrap()
        .command(&["SCRIPT", "LOAD", CHECK_SCRIPT])
        .await
        .expect("SCRIPT LOAD through the shim");
    assert_eq!(loaded, sha1.as_str());
}

#[tokio::test]
async fn every_script_the_limiter_loads_asks_upstash_for_key_locking() {
    let shim = UpstashShim::start().await;
    let limiter = limiter(&shim);
    let key = unique("locking");
    let check = Check {
        key: key.clone(),
        rule: rule(10, Duration::from_secs(10), 5),
    };
    limiter.check(&[check], T0).await.unwrap();
    limiter.block_until(&key, T0 + 1_000, T0).await.unwrap();
    let scripts = shim.scripts();
    assert_eq!(scripts.len(), 2, "the check and the block: {scripts:?}");
    assert!(
        scripts.iter().all(|script| script.key_locking),
        "{scripts:?}"
    );
}

#[tokio::test]
async fn the_health_probe_writes_a_key_of_its_own_and_fails_on_a_read_only_token() {
    let shim = UpstashShim::start().await;
    let limiter = limiter(&shim);
    let mut redis = redis().await;
    // The real clock, as every probe of the one health key uses (health functions too).
    let now = || shared::clock::Clock::now_ms(&shared::clock::SystemClock);
    // The probe's key lives its emission interval past its TAT: on a key at rest, about a
    // millisecond. So PTTL may find it gone (-2) or in its last millisecond (0, PTTL
    // rounds down): then again.
    let mut ttl = -2;
    for _ in 0..5 {
        limiter
            .probe(now())
            .await
            .expect("the probe runs the script");
        ttl = redis::cmd("PTTL")
            .arg(gcra::tat_key(HEALTH_KEY))
            .query_async(&mut redis)
            .await
            .unwrap();
        if ttl != -2 && ttl != 0 {
            break;
        }
    }
    assert!((1..=1_000).contains(&ttl), "the probe's key has PTTL {ttl}");

    shim.set_read_only(true);
    let upstash = Upstash::new(shim.config()).unwrap();
    assert_eq!(upstash.command(&["PING"]).await.unwrap(), "PONG");
    let error = limiter.probe(now()).await.unwrap_err();
    assert!(
        matches!(&error, UpstashError::Rejected(text) if text.starts_with("NOPERM")),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_shim_takes_the_key_locking_line_redis_server_rejects() {
    let flagged = "#!lua flags=allow-key-locking\nreturn redis.call('GET', KEYS[1])";
    let error = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(flagged)
        .query_async::<String>(&mut redis().await)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("allow-key-locking"),
        "redis-server itself rejects the flag: {error}"
    );

    let shim = UpstashShim::start().await;
    let upstash = Upstash::new(shim.config()).unwrap();
    let key = unique("flagged");
    upstash.command(&["SET", key.as_str(), "v"]).await.unwrap();
    let script = Script::new(flagged);
    let plain = Script::new("return 2");
    assert_eq!(
        upstash
            .eval(&script, std::slice::from_ref(&key), &[])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(upstash.eval(&plain, &[], &[]).await.unwrap(), 2);
    let before = shim.requests();
    assert_eq!(upstash.eval(&script, &[key], &[]).await.unwrap(), "v");
    assert_eq!(
        shim.requests() - before,
        1,
        "EVALSHA by the flagged body's SHA-1"
    );

    let mut scripts = shim.scripts();
    scripts.sort_by_key(|loaded| loaded.key_locking);
    let seen: Vec<(&str, bool)> = scripts
        .iter()
        .map(|loaded| (loaded.sha1.as_str(), loaded.key_locking))
        .collect();
    assert_eq!(seen, [(plain.sha1(), false), (script.sha1(), true)]);
}

#[tokio::test]
async fn every_key_is_versioned_and_expires() {
    let shim = UpstashShim::start().await;
    let limiter = limiter(&shim);
    let key = unique("ttl");
    let check = Check {
        key: key.clone(),
        rule: rule(500, Duration::from_secs(3600), 20),
    };
    let now = T0;
    assert!(
        limiter
            .check(std::slice::from_ref(&check), now)
            .await
            .unwrap()
            .allowed
    );
    limiter.block_until(&key, now + 60_000, now).await.unwrap();
    let mut redis = redis().await;
    // A TAT key lives until its TAT (one interval after one request); a block until its end.
    let interval = check.rule.emission_interval_ms();
    for (stored, most) in [
        (gcra::tat_key(&key), interval),
        (gcra::block_key(&key), 60_000),
    ] {
        assert!(stored.starts_with("rl:v1:"), "{stored}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&stored)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= most,
            "{stored} has PTTL {ttl}, expected 1..={most}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_instances_never_admit_more_than_the_burst() {
    let shim = UpstashShim::start().await;
    const INSTANCES: usize = 8;
    const TASKS_PER_INSTANCE: usize = 25;
    const CHECKS_PER_TASK: usize = 4;
    // 1000 per hour, burst 37: interval 3600000/963 = 3738 ms.
    let limit = Check {
        key: unique("hammered"),
        rule: rule(1000, Duration::from_secs(3600), 37),
    };
    let interval = limit.rule.emission_interval_ms();
    let limiters: Vec<Arc<RedisLimiter>> = (0..INSTANCES)
        .map(|_| Arc::new(separate_limiter(&shim)))
        .collect();

    let hammer = |now: i64| {
        let admitted = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for limiter in &limiters {
            for _ in 0..TASKS_PER_INSTANCE {
                let limiter = limiter.clone();
                let limit = limit.clone();
                let admitted = admitted.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..CHECKS_PER_TASK {
                        let verdict = limiter
                            .check(std::slice::from_ref(&limit), now)
                            .await
                            .expect("a check through the shim");
                        if verdict.allowed {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }));
            }
        }
        async move {
            for task in tasks {
                task.await.expect("a hammering task");
            }
            admitted.load(Ordering::SeqCst)
        }
    };
    assert_eq!(
        hammer(T0).await,
        37,
        "800 concurrent checks at one instant: the burst"
    );
    assert_eq!(hammer(T0).await, 0, "and nothing more at that instant");
    assert_eq!(
        hammer(T0 + 5 * interval).await,
        5,
        "five intervals later: exactly five more"
    );
}

#[tokio::test]
async fn a_flushed_script_cache_is_survived_through_noscript() {
    let shim = UpstashShim::start().await;
    let limiter = limiter(&shim);
    let check = Check {
        key: unique("flush"),
        rule: rule(10, Duration::from_secs(10), 5),
    };
    let checks = std::slice::from_ref(&check);
    limiter.check(checks, T0).await.unwrap();
    let before = shim.requests();
    limiter.check(checks, T0).await.unwrap();
    assert_eq!(shim.requests() - before, 1, "EVALSHA: one round trip");

    // What a restart of Redis does to its script cache.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis().await)
        .await
        .unwrap();
    let before = shim.requests();
    let verdict = limiter
        .check(checks, T0)
        .await
        .expect("NOSCRIPT, then EVAL");
    assert!(verdict.allowed);
    assert_eq!(
        verdict.limits[0].remaining, 2,
        "the state survived, only the script went"
    );
    assert_eq!(
        shim.requests() - before,
        2,
        "EVALSHA answered NOSCRIPT, then EVAL"
    );
    let before = shim.requests();
    limiter.check(checks, T0).await.unwrap();
    assert_eq!(
        shim.requests() - before,
        1,
        "EVALSHA finds the script again"
    );
}

#[tokio::test]
async fn one_round_trip_per_check_and_none_for_a_cached_denial() {
    let shim = UpstashShim::start().await;
    let limiter = CachedLimiter::new(Arc::new(limiter(&shim)));
    let global = Check {
        key: unique("global"),
        rule: rule(2000, Duration::from_secs(3600), 100),
    };
    let account = Check {
        key: unique("account"),
        rule: rule(500, Duration::from_secs(3600), 2),
    };
    let checks = [global.clone(), account.clone()];
    // Warm the script cache (a fresh Redis costs one more round trip, once).
    limiter
        .check(std::slice::from_ref(&global), T0)
        .await
        .unwrap();

    let before = shim.requests();
    for _ in 0..2 {
        assert!(limiter.check(&checks, T0).await.unwrap().allowed);
    }
    assert!(!limiter.check(&checks, T0).await.unwrap().allowed);
    assert_eq!(
        shim.requests() - before,
        3,
        "one round trip per check, both limits in it"
    );

    let before = shim.requests();
    for step in 0..50 {
        let verdict = limiter.check(&checks, T0 + step).await.unwrap();
        assert!(!verdict.allowed);
    }
    assert_eq!(
        shim.requests() - before,
        0,
        "a known denial costs no round trip"
    );

    let blocked = unique("blocked");
    limiter
        .block_until(&blocked, T0 + 30_000, T0)
        .await
        .unwrap();
    let before = shim.requests();
    let verdict = limiter
        .check(
            &[Check {
                key: blocked,
                rule: account.rule,
            }],
            T0 + 1,
        )
        .await
        .unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.retry_after, Duration::from_millis(29_999));
    assert_eq!(
        shim.requests() - before,
        0,
        "a known block costs no round trip"
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_typed_error_that_never_shows_a_token() {
    let shim = UpstashShim::start().await;
    let wrong = "wrong-token-4f1d9c";
    let limiter =
        RedisLimiter::new(Upstash::new(shim.config_with_token(wrong)).expect("the Upstash client"));
    let check = Check {
        key: unique("unauthorized"),
        rule: rule(10, Duration::from_secs(10), 5),
    };
    let error = limiter
        .try_check(std::slice::from_ref(&check), T0)
        .await
        .unwrap_err();
    assert!(matches!(error, UpstashError::Unauthorized), "{error:?}");
    let port_error = limiter
        .check(std::slice::from_ref(&check), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(port_error, LimiterError::Rejected(_)),
        "{port_error:?}"
    );
    for text in [
        error.to_string(),
        format!("{error:?}"),
        port_error.to_string(),
        format!("{port_error:?}"),
        format!("{limiter:?}"),
    ] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(shim.token()), "{text}");
    }
}

#[tokio::test]
async fn the_shim_answers_as_upstash_does() {
    let shim = UpstashShim::start().await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: &str, body: &str| {
        http.post(format!("{}{path}", shim.url()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let key = unique("shim");
    let set = format!(r#"["SET", "{key}", "v", "PX", "60000"]"#);
    let response = post("/", shim.token(), &set).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"result": "OK"})
    );

    let response = post("/", "nope", &set).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": "Unauthorized"})
    );

    let response = post("/", shim.token(), r#"{"not": "a command"}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let response = post("/", shim.token(), r#"["EVALSHA", "0000", "0"]"#)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = response.json::<serde_json::Value>().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().starts_with("NOSCRIPT"),
        "{error}"
    );

    let pipeline = format!(r#"[["GET", "{key}"], ["INCR", "{key}"], ["PTTL", "{key}"]]"#);
    let response = post("/pipeline", shim.token(), &pipeline).await.unwrap();
    assert_eq!(response.status(), 200);
    let results = response.json::<serde_json::Value>().await.unwrap();
    assert_eq!(results[0], serde_json::json!({"result": "v"}));
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("not an integer"),
        "{results}"
    );
    assert!(results[2]["result"].as_i64().unwrap() > 0);

    // And the client reads the same through its own pipeline.
    let upstash = Upstash::new(shim.config()).unwrap();
    let results = upstash
        .pipeline(&[vec!["GET", key.as_str()], vec!["INCR", key.as_str()]])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap(), "v");
    assert!(
        matches!(&results[1], Err(UpstashError::Rejected(text)) if text.contains("not an integer"))
    );
}

/// Log lines written while the guard lives, through the project's JSON logger.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn killing_redis_switches_to_the_fallback_and_back() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(shared::telemetry::subscriber(
        "limiter-test",
        shared::telemetry::log_filter(Some("info"), None),
        move || writer.clone(),
    ));
    let metrics = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = metrics.clone();

    let mut redis = RedisProcess::start();
    let shim = UpstashShim::start_for(&redis.url()).await;
    let primary = Arc::new(limiter(&shim));
    let limiter = FallbackLimiter::new(
        primary,
        FallbackSettings {
            share: 0.1,
            timeout: Duration::from_secs(1),
            retry_primary_after: Duration::from_millis(200),
        },
    )
    .with_metric_sink(move |dimensions, metrics| {
        let line = shared::telemetry::emf::line(0, None, dimensions, metrics);
        sink.lock().unwrap().push(line);
    });
    // 500/h with a burst of 20: the fallback's share is 50/h with a burst of 2.
    let account = Check {
        key: unique("account"),
        rule: rule(500, Duration::from_secs(3600), 20),
    };
    let checks = std::slice::from_ref(&account);

    let verdict = limiter.check(checks, T0).await.unwrap();
    assert!(verdict.allowed);
    assert_eq!(verdict.limits[0].remaining, 19, "Redis decided");
    assert!(metrics.lock().unwrap().is_empty());

    redis.kill();
    let before = shim.requests();
    let mut admitted = 0;
    for _ in 0..10 {
        let verdict = limiter
            .check(checks, T0)
            .await
            .expect("the fallback answers");
        admitted += usize::from(verdict.allowed);
    }
    assert_eq!(
        admitted, 2,
        "the fallback's share: neither everything nor nothing"
    );
    assert_eq!(
        shim.requests() - before,
        1,
        "one failed try, then straight to the fallback"
    );
    let log = logs.text();
    let warning = log
        .lines()
        .find(|line| line.contains("per-instance fallback"))
        .unwrap_or_else(|| panic!("no fallback warning logged:\n{log}"));
    let warning: serde_json::Value = serde_json::from_str(warning).expect("a JSON log line");
    assert_eq!(warning["level"], "WARN", "{warning}");
    {
        let metrics = metrics.lock().unwrap();
        assert_eq!(metrics.len(), 10, "every fallback answer is counted");
        let metric: serde_json::Value = serde_json::from_str(&metrics[0]).unwrap();
        assert_eq!(metric[METRIC], 1.0);
        assert_eq!(
            metric["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            METRIC
        );
    }

    redis.restart();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = shim.requests();
    let verdict = limiter.check(checks, T0).await.unwrap();
    assert_eq!(
        shim.requests() - before,
        2,
        "back on Redis, whose restart emptied its script cache: NOSCRIPT, then EVAL"
    );
    assert!(verdict.allowed);
    assert_eq!(
        verdict.limits[0].remaining, 19,
        "Redis decides again (it restarted empty)"
    );
    assert_eq!(
        metrics.lock().unwrap().len(),
        10,
        "no fallback answer since"
    );
    assert!(logs.text().contains("available again"), "{}", logs.text());
}

#[tokio::test]
async fn the_script_and_the_embedded_adapter_decide_identically() {
    let shim = UpstashShim::start().await;
    let redis = limiter(&shim);
    let memory = shared::ratelimit::memory::MemoryLimiter::new();
    let run = uuid::Uuid::new_v4();
    let rules = [
        Rule::new(5, Duration::from_millis(1_000), 2),
        Rule::new(12, Duration::from_millis(3_000), 4),
        Rule::new(3, Duration::from_millis(700), 1),
    ];
    let keys: Vec<String> = (0..3).map(|i| format!("test:twin:{run}:{i}")).collect();
    // A fixed pseudo-random walk (an LCG): multi-limit checks, blocks and clock steps.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let mut now = T0;
    let (mut admitted, mut denied) = (0, 0);
    for step in 0..400 {
        now += next(4) as i64 * next(150) as i64;
        if next(25) == 0 {
            let key = &keys[next(3) as usize];
            let until = now + next(2_000) as i64;
            redis.block_until(key, until, now).await.unwrap();
            memory.block_until(key, until, now).await.unwrap();
            continue;
        }
        let first = next(3) as usize;
        let mut checks = vec![Check {
            key: keys[first].clone(),
            rule: rules[first],
        }];
        if next(2) == 0 {
            let second = (first + 1 + next(2) as usize) % 3;
            checks.push(Check {
                key: keys[second].clone(),
                rule: rules[second],
            });
        }
        let from_redis = redis.check(&checks, now).await.unwrap();
        let from_memory = memory.check(&checks, now).await.unwrap();
        if from_redis.allowed {
            admitted += 1;
        } else {
            denied += 1;
        }
        assert_eq!(
            from_redis,
            from_memory,
            "step {step} at +{} ms: {checks:?}",
            now - T0
        );
    }
    assert!(
        admitted > 50 && denied > 50,
        "the walk must exercise both outcomes: {admitted} admitted, {denied} denied"
    );
}

#[tokio::test]
async fn an_unreachable_upstash_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let limiter = RedisLimiter::new(
        Upstash::new(shared::ratelimit::upstash::UpstashConfig {
            url: format!("http://127.0.0.1:{port}"),
            token: secrecy::SecretString::from("t".to_owned()),
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(1),
            tls: Tls::default(),
        })
        .unwrap(),
    );
    let check = Check {
        key: unique("unreachable"),
        rule: rule(10, Duration::from_secs(10), 5),
    };
    let error = limiter.check(&[check], T0).await.unwrap_err();
    assert!(matches!(error, LimiterError::Unavailable(_)), "{error:?}");
}

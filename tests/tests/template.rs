//! template.yaml against the code and against itself: the routes equal `shared::routes`,
//! every reference resolves, and the settings the design depends on are there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sellerhub_tests::template::{
    self, RefKind, binary_name, dangling_references, function_events, function_policies,
    function_property, functions, get, get_path, own_role, policy_statements, resource,
    resource_type, statement_actions, statement_resources,
};
use serde_norway::Value;

/// The webhook worker's Lambda timeout, in seconds. The worker function arrives in a later
/// issue; until then this is the timeout it is specified with, and once it exists (a
/// function with an SQS event on WebhookQueue) its real Timeout is used instead.
const WORKER_TIMEOUT_SECS: u64 = 30;

fn as_u64(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `!GetAtt X.Arn` / `Fn::GetAtt: [X, Arn]` / `{Fn::GetAtt: X.Arn}` -> `X`.
fn get_att_target(value: &Value) -> Option<String> {
    let refs = template::references(value);
    match refs.as_slice() {
        [r] if r.kind == RefKind::GetAtt => Some(r.base().to_owned()),
        _ => None,
    }
}

#[test]
fn template_routes_equal_the_route_table() {
    let declared = template::api_routes();
    let table: BTreeSet<(String, String, String)> = shared::routes::ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_uppercase(),
                r.path.to_owned(),
                r.function.to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shared::routes::ROUTES.len(),
        table.len(),
        "shared::routes::ROUTES has duplicate routes"
    );
    assert_same_both_ways(&table, &declared, "shared::routes");
}

/// Fails naming what only `table` has and what only template.yaml (`declared`) has.
fn assert_same_both_ways<T: Ord + std::fmt::Debug>(
    table: &BTreeSet<T>,
    declared: &BTreeSet<T>,
    table_name: &str,
) {
    let missing: Vec<_> = table.difference(declared).collect();
    let extra: Vec<_> = declared.difference(table).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "template.yaml and {table_name} disagree\n  in {table_name} only: {missing:?}\n  in template.yaml only: {extra:?}"
    );
}

#[test]
fn template_workers_equal_the_worker_table() {
    let declared = template::workers_of(&template::load());
    let table: BTreeSet<(String, String)> = shared::routes::WORKERS
        .iter()
        .map(|worker| {
            let trigger = match worker.trigger {
                shared::routes::Trigger::Every { minutes } => format!("rate({minutes} minutes)"),
                shared::routes::Trigger::WebhookQueue => "sqs".to_owned(),
            };
            (worker.function.to_owned(), trigger)
        })
        .collect();
    assert_eq!(
        shared::routes::WORKERS.len(),
        table.len(),
        "shared::routes::WORKERS has duplicate workers"
    );
    assert_same_both_ways(&table, &declared, "shared::routes::WORKERS");
}

#[test]
fn worker_parser_reads_schedules_queues_and_untriggered_functions() {
    let doc = template::parse(
        r#"
Resources:
  Refresher:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: token-refresher } }
    Properties:
      Events:
        Every: { Type: Schedule, Properties: { Schedule: rate(5 minutes) } }
  Worker:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: webhook-worker } }
    Properties:
      Events:
        Queue: { Type: SQS, Properties: { Queue: !GetAtt Q.Arn } }
  Idle:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: idle } }
  Api:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: me } }
    Properties:
      Events:
        Get: { Type: Api, Properties: { Method: get, Path: /v1/me } }
"#,
    )
    .unwrap();
    let workers: Vec<(String, String)> = template::workers_of(&doc).into_iter().collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        workers,
        vec![
            pair("idle", "<no trigger>"),
            pair("token-refresher", "rate(5 minutes)"),
            pair("webhook-worker", "sqs"),
        ]
    );
}

#[test]
fn route_parser_reads_methods_paths_and_binaries() {
    let doc = template::parse(
        r#"
Resources:
  Api: { Type: AWS::Serverless::Api, Properties: { StageName: prod } }
  One:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: one } }
    Properties:
      Events:
        A: { Type: Api, Properties: { RestApiId: !Ref Api, Path: /a, Method: get } }
        B: { Type: Api, Properties: { RestApiId: !Ref Api, Path: "/b/{id}", Method: POST } }
        Q: { Type: SQS, Properties: { Queue: !GetAtt Q.Arn } }
  Two:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        C: { Type: Api, Properties: { Path: /c, Method: put } }
"#,
    )
    .expect("valid yaml");
    let routes = template::api_routes_of(&doc);
    let expected: BTreeSet<(String, String, String)> = [
        ("GET", "/a", "one"),
        ("POST", "/b/{id}", "one"),
        ("PUT", "/c", "<Two: no Binary>"),
    ]
    .iter()
    .map(|(m, p, f)| (m.to_string(), p.to_string(), f.to_string()))
    .collect();
    assert_eq!(routes, expected);
}

#[test]
fn every_reference_in_the_template_resolves() {
    let doc = template::load();
    let refs = template::references(&doc);
    // The walker must see the template's references at all (short and long forms).
    for (kind, target) in [
        (RefKind::Ref, "Table"),
        (RefKind::GetAtt, "WebhookDeadLetterQueue.Arn"),
        (RefKind::Condition, "HasSecretsArn"),
    ] {
        assert!(
            refs.iter().any(|r| r.kind == kind && r.target == target),
            "expected a {kind:?} {target} in template.yaml; found {refs:#?}"
        );
    }
    assert!(
        refs.iter().any(|r| r.kind == RefKind::Sub),
        "no ${{...}} found in any !Sub"
    );
    let dangling = dangling_references(&doc);
    assert!(
        dangling.is_empty(),
        "template.yaml refers to names it does not declare:\n{}",
        dangling
            .iter()
            .map(|r| format!("  {r}\n"))
            .collect::<String>()
    );
}

#[test]
fn the_resolver_reports_broken_references() {
    let doc = template::parse(
        r#"
Parameters:
  Stage: { Type: String }
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  Queue: { Type: AWS::SQS::Queue }
  Fn:
    Type: AWS::Serverless::Function
    DependsOn: [Queue, Ghost1]
    Condition: IsProd
    Properties:
      Environment:
        Variables:
          OK1: !Ref Queue
          OK2: !GetAtt Queue.Arn
          OK3: !Sub "${AWS::Region}-${Stage}-${Queue.QueueName}-${!Literal}"
          OK4: !Sub ["${Local}-${Queue}", { Local: !Ref AWS::StackName }]
          OK5: !GetAtt FnRole.Arn
          BAD1: !Ref Queu
          BAD2: !GetAtt Missing.Arn
          BAD3: !Sub "arn:${AWS::Partition}:sqs:${Nope}"
          BAD4: { "Fn::GetAtt": [Gone, Arn] }
          BAD5: { Ref: Vanished }
          BAD6: !If [NoSuchCondition, a, !Ref AlsoMissing]
          BAD7: !GetAtt Stage.Arn
      Policies:
        - Statement:
            - Effect: Allow
              Action: sqs:SendMessage
              Resource: !Join ["", [!GetAtt Queue.Arn, !Ref Lost]]
              Condition: { StringEquals: { "aws:SourceAccount": !Ref AWS::AccountId } }
"#,
    )
    .expect("valid yaml");
    let dangling: BTreeSet<(RefKind, String)> = dangling_references(&doc)
        .into_iter()
        .map(|r| (r.kind, r.target))
        .collect();
    let expected: BTreeSet<(RefKind, String)> = [
        (RefKind::DependsOn, "Ghost1"),
        (RefKind::Ref, "Queu"),
        (RefKind::GetAtt, "Missing.Arn"),
        (RefKind::Sub, "Nope"),
        (RefKind::GetAtt, "Gone"),
        (RefKind::Ref, "Vanished"),
        (RefKind::Condition, "NoSuchCondition"),
        (RefKind::Ref, "AlsoMissing"),
        // A parameter has no attributes.
        (RefKind::GetAtt, "Stage.Arn"),
        (RefKind::Ref, "Lost"),
    ]
    .into_iter()
    .map(|(k, t)| (k, t.to_owned()))
    .collect();
    assert_eq!(dangling, expected);
}

#[test]
fn webhook_queue_visibility_covers_six_worker_timeouts_and_redrives_to_a_dlq() {
    let doc = template::load();
    let queue = resource(&doc, "WebhookQueue").expect("a WebhookQueue resource");
    assert_eq!(resource_type(queue), Some("AWS::SQS::Queue"));

    // The worker's timeout: any function consuming WebhookQueue, else the specified one.
    let consumers: Vec<u64> = functions(&doc)
        .into_iter()
        .filter(|(_, f)| {
            function_events(f, "SQS").iter().any(|(_, props)| {
                get(props, "Queue").and_then(get_att_target).as_deref() == Some("WebhookQueue")
            })
        })
        .map(|(id, f)| {
            as_u64(function_property(&doc, f, "Timeout"))
                .unwrap_or_else(|| panic!("{id}: no numeric Timeout (own or Globals)"))
        })
        .collect();
    let worker_timeout = consumers.into_iter().max().unwrap_or(WORKER_TIMEOUT_SECS);

    let visibility = as_u64(get_path(queue, &["Properties", "VisibilityTimeout"]))
        .expect("WebhookQueue sets a numeric VisibilityTimeout");
    assert!(
        visibility >= 6 * worker_timeout,
        "WebhookQueue VisibilityTimeout {visibility}s < 6 x worker timeout {worker_timeout}s"
    );

    let redrive = get_path(queue, &["Properties", "RedrivePolicy"]).expect("a RedrivePolicy");
    let max_receive = as_u64(get(redrive, "maxReceiveCount")).expect("a numeric maxReceiveCount");
    assert!(max_receive >= 5, "maxReceiveCount {max_receive} < 5");
    let dlq_id = get(redrive, "deadLetterTargetArn")
        .and_then(get_att_target)
        .expect("deadLetterTargetArn is !GetAtt <Queue>.Arn");
    let dlq = resource(&doc, &dlq_id).unwrap_or_else(|| panic!("no DLQ resource {dlq_id}"));
    assert_eq!(resource_type(dlq), Some("AWS::SQS::Queue"));

    // A standard queue's DLQ keeps each message's original enqueue time, so its retention
    // must be longer than the source queue's, or redriven messages expire at once.
    let retention = |q: &Value| {
        as_u64(get_path(q, &["Properties", "MessageRetentionPeriod"])).unwrap_or(345_600)
    };
    assert!(
        retention(dlq) > retention(queue),
        "DLQ retention {}s must exceed the queue's {}s",
        retention(dlq),
        retention(queue)
    );
    for q in [queue, dlq] {
        assert_eq!(
            get_path(q, &["Properties", "SqsManagedSseEnabled"]).and_then(Value::as_bool),
            Some(true),
            "queues are encrypted at rest"
        );
    }
}

#[test]
fn table_has_ttl_on_expires_at_and_the_design_keys() {
    let doc = template::load();
    let table = resource(&doc, "Table").expect("a Table resource");
    assert_eq!(resource_type(table), Some("AWS::DynamoDB::Table"));
    let ttl =
        get_path(table, &["Properties", "TimeToLiveSpecification"]).expect("TTL specification");
    assert_eq!(
        get(ttl, "AttributeName").and_then(Value::as_str),
        Some("expires_at")
    );
    assert_eq!(get(ttl, "Enabled").and_then(Value::as_bool), Some(true));

    let key_names = |schema: Option<&Value>| -> Vec<String> {
        schema
            .and_then(Value::as_sequence)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| get(k, "AttributeName").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        key_names(get_path(table, &["Properties", "KeySchema"])),
        ["pk", "sk"]
    );
    let gsis = get_path(table, &["Properties", "GlobalSecondaryIndexes"])
        .and_then(Value::as_sequence)
        .expect("GlobalSecondaryIndexes");
    assert!(
        gsis.iter()
            .any(|g| key_names(get(g, "KeySchema")) == ["gsi1pk", "gsi1sk"]),
        "a GSI on gsi1pk/gsi1sk"
    );
}

#[test]
fn every_function_is_a_cargo_lambda_arm64_bootstrap_binary_of_this_workspace() {
    let doc = template::load();
    let functions = functions(&doc);
    assert!(!functions.is_empty(), "template.yaml declares no function");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (id, function) in functions {
        let prop = |key: &str| function_property(&doc, function, key);
        assert_eq!(
            prop("Runtime").and_then(Value::as_str),
            Some("provided.al2023"),
            "{id} Runtime"
        );
        assert_eq!(
            prop("Handler").and_then(Value::as_str),
            Some("bootstrap"),
            "{id} Handler"
        );
        let architectures: Vec<&str> = prop("Architectures")
            .and_then(Value::as_sequence)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(architectures, ["arm64"], "{id} Architectures");
        assert_eq!(
            prop("CodeUri").and_then(Value::as_str),
            Some("."),
            "{id} CodeUri is the workspace root"
        );
        assert_eq!(
            get_path(function, &["Metadata", "BuildMethod"]).and_then(Value::as_str),
            Some("rust-cargolambda"),
            "{id} Metadata.BuildMethod"
        );
        let binary = binary_name(function)
            .unwrap_or_else(|| panic!("{id}: no Metadata.BuildProperties.Binary"));
        assert!(
            workspace
                .join("functions")
                .join(binary)
                .join("Cargo.toml")
                .is_file(),
            "{id}: Binary {binary} has no crate at functions/{binary}"
        );
    }
}

#[test]
fn api_events_use_the_declared_rest_api_and_policies_name_actions() {
    let doc = template::load();
    for (id, function) in functions(&doc) {
        for (event, props) in function_events(function, "Api") {
            let api = get(props, "RestApiId")
                .map(template::references)
                .and_then(|refs| refs.first().map(|r| r.base().to_owned()))
                .unwrap_or_else(|| {
                    panic!("{id}.{event}: no RestApiId (would create an implicit API)")
                });
            let api_resource =
                resource(&doc, &api).unwrap_or_else(|| panic!("{id}.{event}: no resource {api}"));
            assert_eq!(
                resource_type(api_resource),
                Some(template::SERVERLESS_API),
                "{id}.{event}"
            );
        }
        // Least privilege: inline statements name their actions, never a wildcard; a
        // function that calls no AWS service has an empty list (SAM then gives its role
        // only the managed policies for its logs and traces).
        let policies = function_policies(&doc, function).expect("own Policies");
        let mut actions = Vec::new();
        collect_actions(policies, &mut actions);
        let binary = binary_name(function).unwrap_or_default();
        if NO_AWS_FUNCTIONS.contains(&binary) {
            assert_eq!(
                policies.as_sequence().map(Vec::len),
                Some(0),
                "{id}: calls no AWS service, so `Policies: []`"
            );
            continue;
        }
        assert!(!actions.is_empty(), "{id}: no inline policy actions");
        for action in actions {
            assert!(!action.contains('*'), "{id}: wildcard action {action}");
        }
    }
}

fn collect_actions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("Action") {
                    match v {
                        Value::String(a) => out.push(a.clone()),
                        Value::Sequence(items) => {
                            out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                        }
                        _ => {}
                    }
                } else {
                    collect_actions(v, out);
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_actions(v, out)),
        Value::Tagged(t) => collect_actions(&t.value, out),
        _ => {}
    }
}

/// The crates under functions/ (a folder with a Cargo.toml), by name.
fn function_crates() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_function_crate_is_deployed_and_every_deployed_binary_is_a_crate() {
    let doc = template::load();
    let mut binaries = BTreeSet::new();
    for (id, function) in functions(&doc) {
        if let Some(binary) = binary_name(function) {
            assert!(
                binaries.insert(binary.to_owned()),
                "{id}: Binary {binary} is built by two functions"
            );
        }
    }
    let crates = function_crates();
    let not_deployed: Vec<_> = crates.difference(&binaries).collect();
    let no_crate: Vec<_> = binaries.difference(&crates).collect();
    assert!(
        not_deployed.is_empty() && no_crate.is_empty(),
        "functions/ and template.yaml disagree\n  crates no function builds: {not_deployed:?}\n  Binaries without a crate: {no_crate:?}"
    );
}

/// The functions that call no AWS service at all (`shared::lambda::serve_http_standalone`:
/// no configuration, store, queue or secret): their policy list is empty.
const NO_AWS_FUNCTIONS: &[&str] = &["web"];

#[test]
fn the_functions_without_permissions_are_exactly_the_standalone_ones() {
    let standalone: BTreeSet<String> = function_crates()
        .into_iter()
        .filter(|name| template::is_standalone(name))
        .collect();
    let listed: BTreeSet<String> = NO_AWS_FUNCTIONS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(standalone, listed);
}

/// The DynamoDB actions the storage kernel (shared/src/store/dynamodb.rs) can need: get,
/// put, delete, query, scan, and a transaction's items (Put, Delete, ConditionCheck, and
/// Update for an add). IAM has no `dynamodb:TransactWriteItems` action: a transaction is
/// authorized by its items' actions.
const KERNEL_DYNAMODB_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:ConditionCheckItem",
    "dynamodb:UpdateItem",
];

/// Which part of the table a policy `Resource` names.
fn table_part(resource: &Value) -> Option<&'static str> {
    if get_att_target(resource).is_some_and(|target| target == "Table")
        && template::references(resource)
            .first()
            .is_some_and(|r| r.target == "Table.Arn")
    {
        return Some("table");
    }
    match resource {
        Value::Tagged(tagged) if tagged.tag == "Sub" => match &tagged.value {
            Value::String(text) if text == "${Table.Arn}/index/gsi1" => Some("gsi1"),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn no_function_policy_has_a_dynamodb_wildcard_or_a_table_it_does_not_own() {
    let doc = template::load();
    for (id, function) in functions(&doc) {
        for statement in policy_statements(&doc, function) {
            let actions = statement_actions(statement);
            let dynamodb: Vec<&str> = actions
                .iter()
                .copied()
                .filter(|a| a.to_ascii_lowercase().starts_with("dynamodb:"))
                .collect();
            for action in &dynamodb {
                assert!(!action.contains('*'), "{id}: wildcard action {action}");
                assert!(
                    KERNEL_DYNAMODB_ACTIONS.contains(action),
                    "{id}: {action} is not an action the storage kernel needs (or not an IAM action)"
                );
            }
            if dynamodb.is_empty() {
                continue;
            }
            for resource in statement_resources(statement) {
                assert!(
                    table_part(resource).is_some(),
                    "{id}: DynamoDB actions on {resource:?}, not the table or its gsi1 index"
                );
            }
        }
    }
}

/// What each function may do to the table, by the code path its handler runs (see the
/// comments in template.yaml): (table actions, gsi1 actions). Every function is listed.
const FUNCTION_DYNAMODB: &[(&str, &[&str], &[&str])] = &[
    // login::save: a conditional put of the one-time state.
    ("auth-login", &["dynamodb:PutItem"], &[]),
    // login::take (delete), tenant lookup/creation (get; transaction of puts), grant
    // connect (get + conditional put), session start (get head, query the user's
    // sessions, transaction of puts and deletes).
    (
        "auth-callback",
        &[
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
        ],
        &[],
    ),
    // Sessions::end: a transaction of a put (revocation) and a delete (the session).
    (
        "auth-logout",
        &["dynamodb:DeleteItem", "dynamodb:PutItem"],
        &[],
    ),
    // The revocation check and the grant's public part.
    ("me", &["dynamodb:GetItem"], &[]),
    // The revocation check, the tenant's links (query), a link (a transaction of puts),
    // the number's owner when it was taken (get).
    (
        "channels",
        &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
        &[],
    ),
    // The revocation check, the question and the grant (get), the answer's guard (put,
    // delete), the answered question, its event and the guard's release (a transaction);
    // the questions by status (query gsi1).
    (
        "questions",
        &[
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        ],
        &["dynamodb:Query"],
    ),
    // The revocation check and the conversation (get), marking it read (a transaction of
    // puts), the conversations and their messages (query gsi1).
    (
        "conversations",
        &["dynamodb:GetItem", "dynamodb:PutItem"],
        &["dynamodb:Query"],
    ),
    // The revocation check, the unread counter, a notification (get), a page of all of
    // them (query) or of the unread ones (query gsi1), marking one read (a transaction of
    // a conditional put and an add: update).
    (
        "notifications",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ],
        &["dynamodb:Query"],
    ),
    // The revocation check (get) and the tenant's event log (query).
    ("events", &["dynamodb:GetItem", "dynamodb:Query"], &[]),
    // Grants due on the expiry index (query gsi1), then per grant: get, conditional puts
    // (lease, tokens, status), and an event put.
    (
        "token-refresher",
        &["dynamodb:GetItem", "dynamodb:PutItem"],
        &["dynamodb:Query"],
    ),
    // The walk (scan), its position and last run (get, put), a user's sessions (query)
    // and ending one (a transaction of a put and a delete), purges (delete).
    (
        "cleanup",
        &[
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
        ],
        &[],
    ),
    // The store probe (put, get of its one item), the revocation check (get), the
    // caller's parked webhooks (query).
    (
        "health",
        &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
        &[],
    ),
    // Static files compiled into the binary: nothing read, not even the secret.
    ("web", &[], &[]),
    // Nothing is stored on the ingest path.
    ("webhook-mercadolivre", &[], &[]),
    ("webhook-meta", &[], &[]),
    // Receipts (conditional put, release), tenants, links and grants (get), inbox changes
    // (transactions of puts, adds to the unread counter), conversations (get).
    (
        "webhook-worker",
        &[
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ],
        &[],
    ),
    // Connected sellers on the expiry index (query gsi1), their grants and the receipts
    // of what was applied (get).
    ("reconciler", &["dynamodb:GetItem"], &["dynamodb:Query"]),
];

/// The queues each function may act on, as (action, queue resource), by the code path
/// its handler runs, and for a function with an SQS event, what its event source mapping
/// needs (in its own role: see `a_function_with_an_sqs_event_has_its_own_role`).
const FUNCTION_SQS: &[(&str, &[(&str, &str)])] = &[
    // The queue probe reads both depths.
    (
        "health",
        &[
            ("sqs:GetQueueAttributes", "WebhookQueue"),
            ("sqs:GetQueueAttributes", "WebhookDeadLetterQueue"),
        ],
    ),
    // Re-sends the seller's parked webhooks (SendMessageBatch is authorized as
    // SendMessage).
    ("auth-callback", &[("sqs:SendMessage", "WebhookQueue")]),
    // Ingest: each webhook's envelopes onto the queue.
    (
        "webhook-mercadolivre",
        &[("sqs:SendMessage", "WebhookQueue")],
    ),
    ("webhook-meta", &[("sqs:SendMessage", "WebhookQueue")]),
    // Its event source mapping receives and deletes; deferrals re-sent, a failed record
    // hidden for its backoff, and what fails 3 times sent to the dead-letter queue.
    (
        "webhook-worker",
        &[
            ("sqs:ReceiveMessage", "WebhookQueue"),
            ("sqs:DeleteMessage", "WebhookQueue"),
            ("sqs:GetQueueAttributes", "WebhookQueue"),
            ("sqs:ChangeMessageVisibility", "WebhookQueue"),
            ("sqs:SendMessage", "WebhookQueue"),
            ("sqs:SendMessage", "WebhookDeadLetterQueue"),
        ],
    ),
    // Missed notifications go back through the webhook queue.
    ("reconciler", &[("sqs:SendMessage", "WebhookQueue")]),
];

/// SAM gives a function with an SQS event, in the role it makes, the managed
/// AWSLambdaSQSQueueExecutionRole: receive and delete on every queue of the account. So
/// such a function has its own role (checked statement by statement above), which Lambda
/// can assume and which grants its logs and traces too.
#[test]
fn a_function_with_an_sqs_event_has_its_own_role() {
    let doc = template::load();
    let mut seen = 0;
    for (id, function) in functions(&doc) {
        if function_events(function, "SQS").is_empty() {
            continue;
        }
        seen += 1;
        let role = own_role(&doc, function)
            .unwrap_or_else(|| panic!("{id}: an SQS event without its own Role"));
        assert!(
            get_path(function, &["Properties", "Policies"]).is_none(),
            "{id}: Policies beside Role are ignored by SAM; they belong in the role"
        );
        let trust = get_path(
            role,
            &["Properties", "AssumeRolePolicyDocument", "Statement"],
        )
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{id}: its role has no trust policy"));
        assert!(
            trust.iter().any(|statement| {
                get_path(statement, &["Principal", "Service"]).and_then(Value::as_str)
                    == Some("lambda.amazonaws.com")
                    && statement_actions(statement) == ["sts:AssumeRole"]
            }),
            "{id}: Lambda cannot assume its role"
        );
        let actions: BTreeSet<&str> = policy_statements(&doc, function)
            .into_iter()
            .flat_map(statement_actions)
            .collect();
        for needed in [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
        ] {
            assert!(actions.contains(needed), "{id}: its role lacks {needed}");
        }
    }
    assert!(seen > 0, "the webhook worker has an SQS event");
}

/// The queue a policy `Resource` names: `!GetAtt <Queue>.Arn` of an SQS queue.
fn queue_of(doc: &Value, resource: &Value) -> Option<String> {
    let refs = template::references(resource);
    match refs.as_slice() {
        [r] if r.kind == RefKind::GetAtt
            && r.target.ends_with(".Arn")
            && template::resource(doc, r.base()).and_then(resource_type)
                == Some("AWS::SQS::Queue") =>
        {
            Some(r.base().to_owned())
        }
        _ => None,
    }
}

#[test]
fn every_function_gets_exactly_the_table_queue_and_secret_actions_its_handler_uses() {
    let doc = template::load();
    let by_binary: BTreeMap<&str, &Value> = functions(&doc)
        .into_iter()
        .filter_map(|(_, f)| binary_name(f).map(|b| (b, f)))
        .collect();
    let listed: BTreeSet<&str> = FUNCTION_DYNAMODB.iter().map(|(b, _, _)| *b).collect();
    let deployed: BTreeSet<&str> = by_binary.keys().copied().collect();
    assert_eq!(
        listed, deployed,
        "every function's table actions are listed in FUNCTION_DYNAMODB"
    );
    for (binary, table, gsi1) in FUNCTION_DYNAMODB {
        let function = by_binary
            .get(binary)
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let mut granted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut queues: BTreeSet<(String, String)> = BTreeSet::new();
        let mut secret_statements = 0;
        for statement in policy_statements(&doc, function) {
            assert_eq!(
                get(statement, "Effect").and_then(Value::as_str),
                Some("Allow"),
                "{binary}"
            );
            for action in statement_actions(statement) {
                let service = action.split(':').next().unwrap_or_default();
                match service {
                    "dynamodb" => {
                        for resource in statement_resources(statement) {
                            let part = table_part(resource).unwrap_or("other");
                            granted.entry(part).or_default().insert(action);
                        }
                    }
                    "sqs" => {
                        for resource in statement_resources(statement) {
                            let queue = queue_of(&doc, resource).unwrap_or_else(|| {
                                panic!("{binary}: {action} on {resource:?}, not a queue's Arn")
                            });
                            queues.insert((action.to_owned(), queue));
                        }
                    }
                    "secretsmanager" => {
                        assert_eq!(action, "secretsmanager:GetSecretValue", "{binary}");
                        let resources = statement_resources(statement);
                        let refs: Vec<_> = resources
                            .iter()
                            .flat_map(|r| template::references(r))
                            .map(|r| r.target)
                            .collect();
                        assert_eq!(refs, ["SecretsArn"], "{binary}: secret resource");
                        secret_statements += 1;
                    }
                    // Only in a function's own role, in place of SAM's managed policies.
                    "logs" => {
                        assert!(
                            ["logs:CreateLogStream", "logs:PutLogEvents"].contains(&action),
                            "{binary}: {action}"
                        );
                        let log_group =
                            get_path(function, &["Properties", "LoggingConfig", "LogGroup"])
                                .map(template::references)
                                .and_then(|refs| refs.first().map(|r| r.target.clone()))
                                .unwrap_or_else(|| panic!("{binary}: no LoggingConfig.LogGroup"));
                        let targets: Vec<String> = statement_resources(statement)
                            .iter()
                            .flat_map(|r| template::references(r))
                            .map(|r| r.target)
                            .collect();
                        assert_eq!(
                            targets,
                            [format!("{log_group}.Arn")],
                            "{binary}: {action} on its own log group only"
                        );
                    }
                    "xray" => assert!(
                        ["xray:PutTraceSegments", "xray:PutTelemetryRecords"].contains(&action),
                        "{binary}: {action}"
                    ),
                    other => panic!("{binary}: unexpected {other} action {action}"),
                }
            }
        }
        let expected =
            |actions: &[&'static str]| -> BTreeSet<&str> { actions.iter().copied().collect() };
        assert_eq!(
            granted.remove("table").unwrap_or_default(),
            expected(table),
            "{binary}: actions on the table"
        );
        assert_eq!(
            granted.remove("gsi1").unwrap_or_default(),
            expected(gsi1),
            "{binary}: actions on gsi1"
        );
        assert!(granted.is_empty(), "{binary}: other grants {granted:?}");
        let expected_queues: BTreeSet<(String, String)> = FUNCTION_SQS
            .iter()
            .filter(|(b, _)| b == binary)
            .flat_map(|(_, grants)| grants.iter())
            .map(|(action, queue)| ((*action).to_owned(), (*queue).to_owned()))
            .collect();
        assert_eq!(queues, expected_queues, "{binary}: actions on the queues");
        // Every function reads the one secret at init, and only when it is set; one that
        // calls no AWS service has no init to read it in.
        if NO_AWS_FUNCTIONS.contains(binary) {
            assert_eq!(secret_statements, 0, "{binary}: reads no secret");
            continue;
        }
        assert_eq!(
            secret_statements, 1,
            "{binary}: one statement for the secret"
        );
        assert_secret_grant_is_conditional(&doc, function, binary);
    }
}

/// The secret's statement sits in `!If [HasSecretsArn, <statement>, !Ref AWS::NoValue]`:
/// with no secret configured there is no secretsmanager permission at all.
fn assert_secret_grant_is_conditional(doc: &Value, function: &Value, binary: &str) {
    let statements = function_policies(doc, function)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|policy| {
            get(policy, "Statement")
                .or_else(|| get_path(policy, &["PolicyDocument", "Statement"]))
                .and_then(Value::as_sequence)
        })
        .flatten();
    let conditional = statements
        .filter_map(|statement| match statement {
            Value::Tagged(tagged) if tagged.tag == "If" => tagged.value.as_sequence(),
            _ => None,
        })
        .find(|parts| {
            parts.get(1).is_some_and(|then| {
                statement_actions(then).contains(&"secretsmanager:GetSecretValue")
            })
        })
        .unwrap_or_else(|| panic!("{binary}: the secret's statement is not under an !If"));
    assert_eq!(conditional[0].as_str(), Some("HasSecretsArn"), "{binary}");
    let otherwise = template::references(&conditional[2]);
    assert_eq!(
        otherwise.first().map(|r| r.target.as_str()),
        Some("AWS::NoValue"),
        "{binary}: without a secret, no statement"
    );
}

#[test]
fn no_function_refers_to_the_rest_api_that_invokes_it() {
    // SAM writes every Api event's function ARN into the REST API's body, so a function
    // referring to that API (say, to build its own callback URL) is a dependency cycle.
    // cfn-lint does not see it (it lints the API with a placeholder body); CloudFormation
    // refuses the stack. Hence MERCADOLIVRE_REDIRECT_URI is a parameter.
    let doc = template::load();
    let apis: BTreeSet<String> = template::resources_of_type(&doc, template::SERVERLESS_API)
        .into_iter()
        .map(|(id, _)| id)
        .chain(["ServerlessRestApi".to_owned()])
        .collect();
    let globals = get_path(&doc, &["Globals", "Function"])
        .map(template::references)
        .unwrap_or_default();
    for reference in &globals {
        assert!(
            !apis.contains(reference.base()),
            "Globals.Function refers to the API every function is invoked by: {reference}"
        );
    }
    for (id, function) in functions(&doc) {
        let own = get(function, "Properties")
            .map(template::references)
            .unwrap_or_default();
        for reference in own.iter().filter(|r| !r.at.contains("/Events/")) {
            assert!(
                !apis.contains(reference.base()),
                "{id} refers to a REST API: {reference}"
            );
        }
    }
}

#[test]
fn the_token_refresher_runs_every_5_minutes_unreserved_with_an_errors_alarm() {
    let doc = template::load();
    let (id, refresher) = functions(&doc)
        .into_iter()
        .find(|(_, f)| binary_name(f) == Some("token-refresher"))
        .expect("a token-refresher function");
    let schedules = function_events(refresher, "Schedule");
    assert_eq!(schedules.len(), 1, "{id}: one schedule");
    assert_eq!(
        get(schedules[0].1, "Schedule").and_then(Value::as_str),
        Some("rate(5 minutes)")
    );
    assert_eq!(
        as_u64(function_property(&doc, refresher, "Timeout")),
        Some(60)
    );
    // Two runs at once are safe (a lease per grant), so no concurrency is reserved.
    assert!(function_property(&doc, refresher, "ReservedConcurrentExecutions").is_none());
    assert!(function_events(refresher, "Api").is_empty());

    let alarmed = template::resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .any(|(_, alarm)| {
            let props = |key: &str| get_path(alarm, &["Properties", key]);
            let on_function = props("Dimensions")
                .and_then(Value::as_sequence)
                .is_some_and(|dims| {
                    dims.iter().any(|d| {
                        get(d, "Name").and_then(Value::as_str) == Some("FunctionName")
                            && get(d, "Value")
                                .map(template::references)
                                .is_some_and(|r| r.iter().any(|r| r.target == id))
                    })
                });
            let notifies = props("AlarmActions")
                .map(template::references)
                .is_some_and(|r| r.iter().any(|r| r.target == "AlarmTopic"));
            on_function
                && props("MetricName").and_then(Value::as_str) == Some("Errors")
                && props("Namespace").and_then(Value::as_str) == Some("AWS/Lambda")
                && notifies
        });
    assert!(
        alarmed,
        "an AWS/Lambda Errors alarm on {id} notifying AlarmTopic"
    );
}

#[test]
fn the_cleanup_runs_hourly_and_its_failures_metric_is_alarmed() {
    let doc = template::load();
    let (id, cleanup) = functions(&doc)
        .into_iter()
        .find(|(_, f)| binary_name(f) == Some("cleanup"))
        .expect("a cleanup function");
    let schedules = function_events(cleanup, "Schedule");
    assert_eq!(schedules.len(), 1, "{id}: one schedule");
    assert_eq!(
        get(schedules[0].1, "Schedule").and_then(Value::as_str),
        Some("rate(60 minutes)")
    );
    assert_eq!(
        as_u64(function_property(&doc, cleanup, "Timeout")),
        Some(120)
    );

    // An alarm on the EMF metric the run emits (namespace and Function dimension as EMF
    // lines carry them in Lambda), notifying the alarm topic.
    let metric_of_cleanup = |stat: &Value| {
        let metric = get_path(stat, &["MetricStat", "Metric"]);
        let text = |key: &str| metric.and_then(|m| get(m, key)).and_then(Value::as_str);
        let on_function = metric
            .and_then(|m| get(m, "Dimensions"))
            .and_then(Value::as_sequence)
            .is_some_and(|dims| {
                dims.len() == 1
                    && get(&dims[0], "Name").and_then(Value::as_str) == Some("Function")
                    && get(&dims[0], "Value")
                        .map(template::references)
                        .is_some_and(|r| r.iter().any(|r| r.target == id))
            });
        text("Namespace") == Some(shared::telemetry::emf::NAMESPACE)
            && text("MetricName") == Some(shared::handlers::cleanup::FAILURES_METRIC)
            && on_function
    };
    let alarmed = template::resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .any(|(_, alarm)| {
            let props = |key: &str| get_path(alarm, &["Properties", key]);
            let watches = props("Metrics")
                .and_then(Value::as_sequence)
                .is_some_and(|metrics| metrics.iter().any(metric_of_cleanup));
            let notifies = props("AlarmActions")
                .map(template::references)
                .is_some_and(|r| r.iter().any(|r| r.target == "AlarmTopic"));
            watches && notifies
        });
    assert!(
        alarmed,
        "an alarm on {} of {id} notifying AlarmTopic",
        shared::handlers::cleanup::FAILURES_METRIC
    );
}

/// The template's text, for what YAML drops: the comments.
fn template_text() -> String {
    std::fs::read_to_string(template::template_path()).unwrap()
}

/// The lines of resource `id`'s block in the template's text.
fn resource_lines<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    let header = format!("  {id}:");
    text.lines()
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with("   "))
        .collect()
}

#[test]
fn every_function_sizes_its_memory_and_timeout_with_a_reason_and_logs_json() {
    let doc = template::load();
    let text = template_text();
    for key in ["MemorySize", "Timeout"] {
        assert!(
            get_path(&doc, &["Globals", "Function", key]).is_none(),
            "Globals.Function.{key}: each function chooses its own"
        );
    }
    for (id, function) in functions(&doc) {
        let memory = as_u64(get_path(function, &["Properties", "MemorySize"]))
            .unwrap_or_else(|| panic!("{id}: no MemorySize of its own"));
        assert!(
            (128..=10_240).contains(&memory),
            "{id}: MemorySize {memory}"
        );
        let timeout = as_u64(get_path(function, &["Properties", "Timeout"]))
            .unwrap_or_else(|| panic!("{id}: no Timeout of its own"));
        assert!((1..=900).contains(&timeout), "{id}: Timeout {timeout}");
        // A function behind API Gateway answers within the integration's timeout (29 s
        // unless the event says otherwise): past it nobody reads the answer.
        for (event, props) in function_events(function, "Api") {
            let integration = as_u64(get(props, "TimeoutInMillis")).unwrap_or(29_000);
            assert!(
                timeout * 1000 <= integration,
                "{id}.{event}: Timeout {timeout} s outlasts the integration's {integration} ms"
            );
        }
        // The reason is written beside them: a comment right above the first of the two.
        let lines = resource_lines(&text, &id);
        let first = lines
            .iter()
            .position(|line| {
                let line = line.trim_start();
                line.starts_with("Timeout:") || line.starts_with("MemorySize:")
            })
            .unwrap_or_else(|| panic!("{id}: its block has no Timeout or MemorySize line"));
        assert!(
            first > 0 && lines[first - 1].trim_start().starts_with('#'),
            "{id}: say why its Timeout and MemorySize are what they are, in a comment above them"
        );

        // JSON logs at levels Lambda understands, into the function's own log group.
        let logging = |key: &str| {
            get_path(function, &["Properties", "LoggingConfig", key])
                .or_else(|| get_path(&doc, &["Globals", "Function", "LoggingConfig", key]))
        };
        assert_eq!(
            logging("LogFormat").and_then(Value::as_str),
            Some("JSON"),
            "{id}"
        );
        // TRACE: LOG_LEVEL filters in the process; Lambda's filter would drop the EMF
        // lines (no level: INFO) if it were above INFO.
        assert_eq!(
            logging("ApplicationLogLevel").and_then(Value::as_str),
            Some("TRACE"),
            "{id}"
        );
        assert!(
            matches!(
                logging("SystemLogLevel").and_then(Value::as_str),
                Some("DEBUG" | "INFO")
            ),
            "{id}: SystemLogLevel keeps the REPORT lines (INFO)"
        );
        let group = logging("LogGroup")
            .and_then(|group| {
                template::references(group)
                    .first()
                    .map(|r| r.target.clone())
            })
            .unwrap_or_else(|| panic!("{id}: no LogGroup"));
        let group = resource(&doc, &group).unwrap_or_else(|| panic!("{id}: no {group}"));
        assert_eq!(resource_type(group), Some("AWS::Logs::LogGroup"), "{id}");
        assert!(
            as_u64(get_path(group, &["Properties", "RetentionInDays"])).is_some(),
            "{id}: its logs expire"
        );
    }
}

/// The functions that answer with a streamed response (`shared::lambda::serve_http_streaming`).
const STREAMING_FUNCTIONS: &[&str] = &["events"];

#[test]
fn only_the_event_stream_is_streamed_and_its_function_outlasts_every_stream() {
    let doc = template::load();
    let config = shared::config::Config::from_vars(shared::config::Profile::Lambda, |name| {
        matches!(name, "TABLE_NAME" | "WEBHOOK_QUEUE_URL").then(|| "set".to_owned())
    })
    .unwrap();
    let mut streaming = BTreeSet::new();
    for (id, function) in functions(&doc) {
        let binary = binary_name(function).unwrap_or_default();
        let streams = STREAMING_FUNCTIONS.contains(&binary);
        for (event, props) in function_events(function, "Api") {
            // SAM then writes the integration's responseTransferMode STREAM and the
            // InvokeWithResponseStream URI.
            let mode = get(props, "ResponseTransferMode").and_then(Value::as_str);
            assert_eq!(mode, streams.then_some("RESPONSE_STREAM"), "{id}.{event}");
            if streams {
                assert_eq!(
                    as_u64(get(props, "TimeoutInMillis")),
                    Some(900_000),
                    "{id}.{event}: a stream may last API Gateway's 15 minutes"
                );
                streaming.insert(binary);
            }
        }
        if streams {
            let timeout = as_u64(function_property(&doc, function, "Timeout"))
                .unwrap_or_else(|| panic!("{id}: no Timeout"));
            assert!(
                config.events.stream_for < std::time::Duration::from_secs(timeout),
                "{id}: streams (EVENTS_STREAM_MS, {:?}) must end before the function's timeout ({timeout} s)",
                config.events.stream_for
            );
            assert!(
                config.events.heartbeat < std::time::Duration::from_secs(300),
                "{id}: heartbeats must beat API Gateway's 5-minute idle timeout"
            );
        }
    }
    let expected: BTreeSet<&str> = STREAMING_FUNCTIONS.iter().copied().collect();
    assert_eq!(
        streaming, expected,
        "every streaming function has a streamed route"
    );
}

#[test]
fn the_worker_timeout_is_the_local_runners_and_its_queue_batches_are_capped() {
    let doc = template::load();
    let (id, worker) = functions(&doc)
        .into_iter()
        .find(|(_, f)| binary_name(f) == Some("webhook-worker"))
        .expect("a webhook-worker function");
    let timeout = as_u64(function_property(&doc, worker, "Timeout")).unwrap();
    assert_eq!(
        std::time::Duration::from_secs(timeout),
        shared::config::WorkerSettings::default().timeout,
        "{id}: the local runner runs the worker with the same timeout"
    );
    let events = function_events(worker, "SQS");
    assert_eq!(events.len(), 1, "{id}: one queue");
    let props = events[0].1;
    // Two batches at a time at most (SQS's least): the Mercado Livre budget, about one
    // call every 2 s, would only defer more.
    assert_eq!(
        as_u64(get_path(props, &["ScalingConfig", "MaximumConcurrency"])),
        Some(2),
        "{id}"
    );
    assert_eq!(as_u64(get(props, "BatchSize")), Some(10), "{id}");
    let responses: Vec<&str> = get(props, "FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .map(|types| types.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(responses, ["ReportBatchItemFailures"], "{id}");
}

#[test]
fn scheduled_functions_end_before_their_next_run() {
    // So a run never overlaps the next one (no reserved concurrency needed: the Mercado
    // Livre budget is not spent twice by the reconciler or the refresher).
    let doc = template::load();
    for (id, function) in functions(&doc) {
        for (event, props) in function_events(function, "Schedule") {
            let schedule = get(props, "Schedule").and_then(Value::as_str).unwrap();
            let minutes: u64 = schedule
                .strip_prefix("rate(")
                .and_then(|rest| rest.strip_suffix(" minutes)"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{id}.{event}: {schedule} is not rate(N minutes)"));
            let timeout = as_u64(function_property(&doc, function, "Timeout")).unwrap();
            assert!(
                timeout < minutes * 60,
                "{id}: Timeout {timeout} s, every {minutes} minutes"
            );
        }
    }
}

#[test]
fn outputs_name_the_api_url_the_queue_urls_and_the_table() {
    let doc = template::load();
    let output = |name: &str| {
        let value = get_path(&doc, &["Outputs", name, "Value"])
            .unwrap_or_else(|| panic!("no output {name}"));
        template::references(value)
    };
    // !Ref of a queue is its URL, of a table its name.
    for (name, target) in [
        ("TableName", "Table"),
        ("WebhookQueueUrl", "WebhookQueue"),
        ("WebhookDeadLetterQueueUrl", "WebhookDeadLetterQueue"),
        ("AlarmTopicArn", "AlarmTopic"),
    ] {
        let refs = output(name);
        assert_eq!(refs.len(), 1, "{name}: {refs:?}");
        assert_eq!(
            (refs[0].kind, refs[0].target.as_str()),
            (RefKind::Ref, target)
        );
    }
    let api: BTreeSet<String> = output("ApiUrl").into_iter().map(|r| r.target).collect();
    for part in ["Api", "AWS::Region", "AWS::URLSuffix", "Stage"] {
        assert!(api.contains(part), "ApiUrl names {part}: {api:?}");
    }
}

/// The functions whose handler takes the rate limiter (`Services::limiter`, directly or
/// through the Mercado Livre client), so may answer from its per-instance fallback.
const LIMITER_FUNCTIONS: &[&str] = &[
    "auth-login",
    "auth-callback",
    "channels",
    "conversations",
    "notifications",
    "questions",
    "webhook-worker",
    "reconciler",
    "token-refresher",
];

#[test]
fn the_limiter_fallback_of_every_function_that_takes_the_limiter_is_alarmed() {
    let doc = template::load();
    let alarm = resource(&doc, "LimiterFallbackAlarm").expect("a LimiterFallbackAlarm");
    let props = |key: &str| get_path(alarm, &["Properties", key]);
    assert!(
        props("AlarmActions")
            .map(template::references)
            .is_some_and(|r| r.iter().any(|r| r.target == "AlarmTopic")),
        "it notifies the alarm topic"
    );
    let queries = props("Metrics").and_then(Value::as_sequence).unwrap();
    let expression = queries
        .iter()
        .find_map(|q| get(q, "Expression").and_then(Value::as_str))
        .expect("an expression");
    let mut watched = BTreeSet::new();
    for query in queries {
        let Some(metric) = get_path(query, &["MetricStat", "Metric"]) else {
            continue;
        };
        let text = |key: &str| get(metric, key).and_then(Value::as_str);
        assert_eq!(text("Namespace"), Some(shared::telemetry::emf::NAMESPACE));
        assert_eq!(
            text("MetricName"),
            Some(shared::ratelimit::fallback::METRIC)
        );
        let dims = get(metric, "Dimensions")
            .and_then(Value::as_sequence)
            .unwrap();
        assert_eq!(dims.len(), 1);
        assert_eq!(
            get(&dims[0], "Name").and_then(Value::as_str),
            Some("Function")
        );
        let function = template::references(get(&dims[0], "Value").unwrap())[0]
            .target
            .clone();
        let binary = resource(&doc, &function).and_then(binary_name).unwrap();
        let id = get(query, "Id").and_then(Value::as_str).unwrap();
        assert!(
            expression.contains(&format!("FILL({id}, 0)")),
            "{expression} adds up {id}"
        );
        watched.insert(binary);
    }
    let expected: BTreeSet<&str> = LIMITER_FUNCTIONS.iter().copied().collect();
    assert_eq!(watched, expected);
}

#[test]
fn the_worker_has_an_errors_alarm() {
    let doc = template::load();
    let alarm = resource(&doc, "WebhookWorkerErrorsAlarm").expect("WebhookWorkerErrorsAlarm");
    let props = |key: &str| get_path(alarm, &["Properties", key]);
    assert_eq!(
        props("Namespace").and_then(Value::as_str),
        Some("AWS/Lambda")
    );
    assert_eq!(props("MetricName").and_then(Value::as_str), Some("Errors"));
    let dims = props("Dimensions").and_then(Value::as_sequence).unwrap();
    let function = template::references(get(&dims[0], "Value").unwrap())[0]
        .target
        .clone();
    assert_eq!(
        resource(&doc, &function).and_then(binary_name),
        Some("webhook-worker")
    );
}

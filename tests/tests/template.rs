//! template.yaml against the code and against itself: the routes equal `shared::routes`,
//! every reference resolves, and the settings the design depends on are there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sellerhub_tests::template::{
    self, RefKind, binary_name, dangling_references, function_events, function_property, functions,
    get, get_path, policy_statements, resource, resource_type, statement_actions,
    statement_resources,
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
        // Least privilege: inline statements name their actions, never a wildcard.
        let policies = get_path(function, &["Properties", "Policies"]).expect("own Policies");
        let mut actions = Vec::new();
        collect_actions(policies, &mut actions);
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
        for statement in policy_statements(function) {
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
/// comments in template.yaml): (table actions, gsi1 actions).
const AUTH_FUNCTION_DYNAMODB: &[(&str, &[&str], &[&str])] = &[
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
];

#[test]
fn auth_functions_get_exactly_the_actions_their_handlers_use() {
    let doc = template::load();
    let by_binary: BTreeMap<&str, &Value> = functions(&doc)
        .into_iter()
        .filter_map(|(_, f)| binary_name(f).map(|b| (b, f)))
        .collect();
    for (binary, table, gsi1) in AUTH_FUNCTION_DYNAMODB {
        let function = by_binary
            .get(binary)
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let mut granted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for statement in policy_statements(function) {
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
                    "sqs" if *binary == "auth-callback" => {
                        // It re-sends the seller's parked webhooks, and nothing else.
                        assert_eq!(action, "sqs:SendMessage", "{binary}");
                        let targets: Vec<_> = statement_resources(statement)
                            .iter()
                            .flat_map(|r| template::references(r))
                            .map(|r| r.target)
                            .collect();
                        assert_eq!(targets, ["WebhookQueue.Arn"], "{binary}: queue resource");
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
                    }
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
    }
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

#[test]
fn ingest_functions_may_only_send_to_the_webhook_queue() {
    let doc = template::load();
    for binary in ["webhook-mercadolivre", "webhook-meta"] {
        let (_, function) = functions(&doc)
            .into_iter()
            .find(|(_, f)| binary_name(f) == Some(binary))
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let mut granted = BTreeSet::new();
        for statement in policy_statements(function) {
            for action in statement_actions(statement) {
                let resources: Vec<String> = statement_resources(statement)
                    .iter()
                    .flat_map(|r| template::references(r))
                    .map(|r| r.target)
                    .collect();
                granted.insert(format!("{action} on {}", resources.join(",")));
            }
        }
        assert_eq!(
            granted,
            BTreeSet::from([
                "secretsmanager:GetSecretValue on SecretsArn".to_owned(),
                "sqs:SendMessage on WebhookQueue.Arn".to_owned(),
            ]),
            "{binary}: nothing stored on the ingest path"
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

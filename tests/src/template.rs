//! template.yaml, parsed: the routes it declares, per-function effective properties, and a
//! resolver for every reference in it.
//!
//! CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`, `!If`, ...) arrive from
//! `serde_norway` as [`Value::Tagged`]; the long forms (`Ref:`, `Fn::GetAtt:`, ...) as
//! one-key mappings. Both are understood everywhere below.
//!
//! cfn-lint does not catch a dangling `!Ref`/`!GetAtt` inside `AWS::Serverless::Function`
//! properties (they only fail at deploy time), which is why [`dangling_references`] exists.

use serde_norway::{Mapping, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
pub const SERVERLESS_API: &str = "AWS::Serverless::Api";

/// Pseudo parameters CloudFormation defines in every stack.
pub const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

/// The repository's template.yaml.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

/// Parses a template (YAML or JSON) keeping CloudFormation tags.
/// Whether function crate `name` calls no AWS service at all: its main serves with
/// `shared::lambda::serve_http_standalone` (no configuration, store, queue or secret).
pub fn is_standalone(name: &str) -> bool {
    let main = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../functions")
        .join(name)
        .join("src/main.rs");
    std::fs::read_to_string(&main)
        .unwrap_or_else(|e| panic!("{}: {e}", main.display()))
        .contains("serve_http_standalone")
}

pub fn parse(text: &str) -> Result<Value, serde_norway::Error> {
    serde_norway::from_str(text)
}

/// The repository's template.yaml, parsed. Panics with the reason when it cannot be read.
pub fn load() -> Value {
    let path = template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// `map[key]` for a mapping with string keys.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|m| m.get(key))
}

/// Follows a path of mapping keys.
pub fn get_path<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(value, |v, key| get(v, key))
}

fn mapping_entries(value: Option<&Value>) -> Vec<(String, &Value)> {
    value
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
                .collect()
        })
        .unwrap_or_default()
}

fn section_names(doc: &Value, section: &str) -> BTreeSet<String> {
    mapping_entries(get(doc, section))
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Every resource as (logical id, definition).
pub fn resources(doc: &Value) -> Vec<(String, &Value)> {
    mapping_entries(get(doc, "Resources"))
}

/// The resource with this logical id.
pub fn resource<'a>(doc: &'a Value, logical_id: &str) -> Option<&'a Value> {
    get_path(doc, &["Resources", logical_id])
}

/// A resource's `Type`.
pub fn resource_type(resource: &Value) -> Option<&str> {
    get(resource, "Type").and_then(Value::as_str)
}

/// Resources of one type, as (logical id, definition).
pub fn resources_of_type<'a>(doc: &'a Value, type_name: &str) -> Vec<(String, &'a Value)> {
    resources(doc)
        .into_iter()
        .filter(|(_, r)| resource_type(r) == Some(type_name))
        .collect()
}

/// Every `AWS::Serverless::Function`, as (logical id, definition).
pub fn functions(doc: &Value) -> Vec<(String, &Value)> {
    resources_of_type(doc, SERVERLESS_FUNCTION)
}

/// A function's property as SAM sees it: its own, else the one in `Globals.Function`.
pub fn function_property<'a>(doc: &'a Value, function: &'a Value, key: &str) -> Option<&'a Value> {
    get_path(function, &["Properties", key])
        .or_else(|| get_path(doc, &["Globals", "Function", key]))
}

/// The cargo-lambda binary a function is built from (`Metadata.BuildProperties.Binary`).
pub fn binary_name(function: &Value) -> Option<&str> {
    get_path(function, &["Metadata", "BuildProperties", "Binary"]).and_then(Value::as_str)
}

/// The events of a function with the given `Type` (`Api`, `SQS`, `Schedule`, ...), as
/// (event name, event `Properties`).
pub fn function_events<'a>(function: &'a Value, event_type: &str) -> Vec<(String, &'a Value)> {
    mapping_entries(get_path(function, &["Properties", "Events"]))
        .into_iter()
        .filter(|(_, e)| get(e, "Type").and_then(Value::as_str) == Some(event_type))
        .map(|(name, e)| (name, get(e, "Properties").unwrap_or(&Value::Null)))
        .collect()
}

/// (method, path, binary) for every `Type: Api` event of every serverless function in
/// `doc`. Methods are upper-cased (SAM accepts either case). A function without
/// `Metadata.BuildProperties.Binary` shows as `<LogicalId: no Binary>`, so the route
/// comparison fails on it instead of skipping it.
pub fn api_routes_of(doc: &Value) -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for (logical_id, function) in functions(doc) {
        let binary = binary_name(function)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("<{logical_id}: no Binary>"));
        for (event, props) in function_events(function, "Api") {
            let text = |key: &str| {
                get(props, key)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("<{logical_id}.{event}: no {key}>"))
            };
            routes.insert((text("Method").to_uppercase(), text("Path"), binary.clone()));
        }
    }
    routes
}

/// (method, path, binary) for every API route template.yaml declares.
pub fn api_routes() -> BTreeSet<(String, String, String)> {
    api_routes_of(&load())
}

/// (binary, trigger) for every serverless function in `doc` that has no `Type: Api`
/// event: each `Schedule` event as its expression (`rate(5 minutes)`), each `SQS` event
/// as `sqs`. A worker with no trigger at all shows as `<no trigger>`, so the comparison
/// with the worker table fails on it instead of skipping it.
pub fn workers_of(doc: &Value) -> BTreeSet<(String, String)> {
    let mut workers = BTreeSet::new();
    for (logical_id, function) in functions(doc) {
        if !function_events(function, "Api").is_empty() {
            continue;
        }
        let binary = binary_name(function)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("<{logical_id}: no Binary>"));
        let mut triggers: Vec<String> = function_events(function, "Schedule")
            .into_iter()
            .map(|(event, props)| {
                get(props, "Schedule")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("<{logical_id}.{event}: no Schedule>"))
            })
            .collect();
        triggers.extend(
            function_events(function, "SQS")
                .into_iter()
                .map(|_| "sqs".to_owned()),
        );
        if triggers.is_empty() {
            triggers.push("<no trigger>".to_owned());
        }
        for trigger in triggers {
            workers.insert((binary.clone(), trigger));
        }
    }
    workers
}

/// Every parameter as (name, its `Default` when it has one, its `AllowedPattern`).
pub fn parameters(doc: &Value) -> Vec<(String, Option<String>, Option<String>)> {
    mapping_entries(get(doc, "Parameters"))
        .into_iter()
        .map(|(name, parameter)| {
            let text = |key: &str| get(parameter, key).and_then(scalar_text);
            (name, text("Default"), text("AllowedPattern"))
        })
        .collect()
}

/// The environment a function runs with: `Globals.Function.Environment.Variables` and its
/// own, its own winning (SAM merges the two maps), each value evaluated: a literal as
/// is, `!Ref X` as `resolve(X)`. Any other intrinsic, or a name `resolve` does not know,
/// is an error naming the variable, so a template change this cannot evaluate fails the
/// test using it instead of passing over a variable.
pub fn function_environment(
    doc: &Value,
    function: &Value,
    resolve: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut merged: Vec<(String, &Value)> = mapping_entries(get_path(
        doc,
        &["Globals", "Function", "Environment", "Variables"],
    ));
    for (name, value) in mapping_entries(get_path(
        function,
        &["Properties", "Environment", "Variables"],
    )) {
        merged.retain(|(known, _)| *known != name);
        merged.push((name, value));
    }
    merged
        .into_iter()
        .map(|(name, value)| {
            let evaluated = match intrinsic(value) {
                None => scalar_text(value),
                Some((function, arg)) if function == "Ref" => arg.as_str().and_then(&resolve),
                Some(_) => None,
            };
            evaluated
                .map(|text| (name.clone(), text))
                .ok_or_else(|| format!("{name}: cannot evaluate {value:?}"))
        })
        .collect()
}

/// A scalar as CloudFormation passes it on: strings as they are, numbers and booleans
/// as their text.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

// ------------------------------------------------------------------ references

/// What a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    /// `!Ref X` / `Ref: X`: a resource, parameter or pseudo parameter.
    Ref,
    /// `!GetAtt X.Attr` / `Fn::GetAtt: [X, Attr]`: a resource.
    GetAtt,
    /// `${X}` / `${X.Attr}` in a `!Sub` string: a resource, parameter or pseudo parameter.
    Sub,
    /// `!If [X, ...]`, `Condition: X`: a condition.
    Condition,
    /// `DependsOn: X`: a resource.
    DependsOn,
    /// `!FindInMap [X, ...]`: a mapping.
    FindInMap,
}

/// One reference found in a template.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub kind: RefKind,
    /// The name referred to, as written (`WebhookQueue.Arn`, `AWS::Region`, ...).
    pub target: String,
    /// Where: the mapping keys and sequence indices leading to it.
    pub at: String,
}

impl Reference {
    /// The logical name the reference needs: `X` of `X.Attr` (pseudo parameters keep
    /// their `::`).
    pub fn base(&self) -> &str {
        self.target.split('.').next().unwrap_or(&self.target)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} at {}", self.kind, self.target, self.at)
    }
}

/// Every reference in the template: intrinsic functions in both their short (`!Ref`) and
/// long (`Ref:`) forms, `${...}` inside `Fn::Sub`, `Condition:` and `DependsOn:`.
pub fn references(doc: &Value) -> Vec<Reference> {
    let mut found = Vec::new();
    walk(doc, "", &mut found);
    found
}

/// The references that name nothing the stack will contain: not a declared resource,
/// parameter, condition or mapping, not a pseudo parameter, and not a resource the SAM
/// transform generates ([`sam_generated_names`]).
pub fn dangling_references(doc: &Value) -> Vec<Reference> {
    let resources = section_names(doc, "Resources");
    let parameters = section_names(doc, "Parameters");
    let conditions = section_names(doc, "Conditions");
    let mappings = section_names(doc, "Mappings");
    let generated = sam_generated_names(doc);
    let is_resource = |name: &str| resources.contains(name) || generated.contains(name);
    let is_value = |name: &str| {
        is_resource(name) || parameters.contains(name) || PSEUDO_PARAMETERS.contains(&name)
    };
    references(doc)
        .into_iter()
        .filter(|r| {
            let base = r.base();
            let ok = match r.kind {
                RefKind::Ref | RefKind::Sub => is_value(base),
                RefKind::GetAtt | RefKind::DependsOn => is_resource(base),
                RefKind::Condition => conditions.contains(base),
                RefKind::FindInMap => mappings.contains(base),
            };
            !ok
        })
        .collect()
}

/// Logical ids the SAM transform adds that a template may refer to: `<Function>Role` for
/// a function without its own `Role`, `<Api>Stage` (or `<Api><StageName>Stage` for a
/// literal stage name) for each `AWS::Serverless::Api`, and `ServerlessRestApi` /
/// `ServerlessRestApiProdStage` when an `Api` event has no `RestApiId` (the implicit API).
pub fn sam_generated_names(doc: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (logical_id, function) in functions(doc) {
        if function_property(doc, function, "Role").is_none() {
            names.insert(format!("{logical_id}Role"));
        }
        if function_events(function, "Api")
            .iter()
            .any(|(_, props)| get(props, "RestApiId").is_none())
        {
            names.insert("ServerlessRestApi".to_owned());
            names.insert("ServerlessRestApiProdStage".to_owned());
        }
    }
    for (logical_id, api) in resources_of_type(doc, SERVERLESS_API) {
        names.insert(format!("{logical_id}Stage"));
        if let Some(stage) = get_path(api, &["Properties", "StageName"]).and_then(Value::as_str) {
            let stage: String = stage.chars().filter(char::is_ascii_alphanumeric).collect();
            names.insert(format!("{logical_id}{stage}Stage"));
        }
    }
    names
}

fn push(found: &mut Vec<Reference>, kind: RefKind, target: &str, at: &str) {
    found.push(Reference {
        kind,
        target: target.to_owned(),
        at: if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        },
    });
}

/// The `${...}` variables of a `Fn::Sub` string, without `${!Literal}` escapes.
pub fn sub_variables(text: &str) -> Vec<String> {
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].trim();
        if !name.starts_with('!') && !name.is_empty() {
            vars.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    vars
}

/// The intrinsic `name` (without `Fn::` or `!`) applied to `arg`, in one of its
/// spellings: `!Name arg` or a one-key mapping `{Fn::Name: arg}` / `{Ref: arg}` /
/// `{Condition: arg}`.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &tagged.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            let name = k
                .strip_prefix("Fn::")
                .or(if k == "Ref" { Some(k) } else { None })?;
            Some((name.to_owned(), v))
        }
        _ => None,
    }
}

fn walk(value: &Value, at: &str, found: &mut Vec<Reference>) {
    if let Some((name, arg)) = intrinsic(value) {
        walk_intrinsic(&name, arg, at, found);
        return;
    }
    match value {
        Value::Mapping(m) => walk_mapping(m, at, found),
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{at}/{i}"), found);
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, at, found),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn walk_mapping(m: &Mapping, at: &str, found: &mut Vec<Reference>) {
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?");
        let here = format!("{at}/{key}");
        match (key, v) {
            // Resource/output `Condition: Name` and the `{Condition: Name}` intrinsic. An
            // IAM statement's `Condition:` is a mapping, not a name.
            ("Condition", Value::String(name)) => push(found, RefKind::Condition, name, &here),
            ("DependsOn", Value::String(name)) => push(found, RefKind::DependsOn, name, &here),
            ("DependsOn", Value::Sequence(names)) => {
                for (i, name) in names.iter().enumerate() {
                    if let Some(name) = name.as_str() {
                        push(found, RefKind::DependsOn, name, &format!("{here}/{i}"));
                    }
                }
            }
            _ => walk(v, &here, found),
        }
    }
}

fn walk_intrinsic(name: &str, arg: &Value, at: &str, found: &mut Vec<Reference>) {
    let here = format!("{at}/{name}");
    match (name, arg) {
        ("Ref", Value::String(target)) => push(found, RefKind::Ref, target, &here),
        ("GetAtt", Value::String(target)) => push(found, RefKind::GetAtt, target, &here),
        ("GetAtt", Value::Sequence(parts)) => match parts.first() {
            Some(Value::String(target)) => push(found, RefKind::GetAtt, target, &here),
            _ => walk(arg, &here, found),
        },
        ("Sub", Value::String(text)) => {
            for var in sub_variables(text) {
                push(found, RefKind::Sub, &var, &here);
            }
        }
        ("Sub", Value::Sequence(parts)) => {
            // [template, {Var: value, ...}]: the local variables shadow stack names.
            let locals: BTreeSet<String> = parts
                .get(1)
                .map(|vars| {
                    mapping_entries(Some(vars))
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::String(text)) = parts.first() {
                for var in sub_variables(text) {
                    if !locals.contains(&var) {
                        push(found, RefKind::Sub, &var, &here);
                    }
                }
            }
            if let Some(vars) = parts.get(1) {
                walk(vars, &format!("{here}/1"), found);
            }
        }
        ("If", Value::Sequence(parts)) => {
            if let Some(Value::String(condition)) = parts.first() {
                push(found, RefKind::Condition, condition, &format!("{here}/0"));
            }
            for (i, branch) in parts.iter().enumerate().skip(1) {
                walk(branch, &format!("{here}/{i}"), found);
            }
        }
        ("Condition", Value::String(condition)) => {
            push(found, RefKind::Condition, condition, &here)
        }
        ("FindInMap", Value::Sequence(parts)) => {
            if let Some(Value::String(map)) = parts.first() {
                push(found, RefKind::FindInMap, map, &format!("{here}/0"));
            }
            for (i, part) in parts.iter().enumerate().skip(1) {
                walk(part, &format!("{here}/{i}"), found);
            }
        }
        // Equals, Not, And, Or, Join, Select, Split, Base64, Cidr, GetAZs, ImportValue,
        // ToJsonString, Length, and anything newer: their arguments may hold references.
        _ => walk(arg, &here, found),
    }
}

// ------------------------------------------------------------------ policies

/// A function's inline policies: its own `Policies`, or, when it names its own role
/// (`Role: !GetAtt <Role>.Arn`), that role's `Policies`.
pub fn function_policies<'a>(doc: &'a Value, function: &'a Value) -> Option<&'a Value> {
    match own_role(doc, function) {
        Some(role) => get_path(role, &["Properties", "Policies"]),
        None => get_path(function, &["Properties", "Policies"]),
    }
}

/// The `AWS::IAM::Role` a function names in `Role: !GetAtt <Role>.Arn`, if any.
pub fn own_role<'a>(doc: &'a Value, function: &Value) -> Option<&'a Value> {
    let role = get_path(function, &["Properties", "Role"])?;
    match references(role).as_slice() {
        [r] if r.kind == RefKind::GetAtt && r.target.ends_with(".Arn") => {
            resource(doc, r.base()).filter(|role| resource_type(role) == Some("AWS::IAM::Role"))
        }
        _ => panic!("Role {role:?} is not !GetAtt <an AWS::IAM::Role>.Arn"),
    }
}

/// The IAM statements of a function's inline policies, each `!If` branch included (a
/// statement that only exists under a condition still grants what it says).
pub fn policy_statements<'a>(doc: &'a Value, function: &'a Value) -> Vec<&'a Value> {
    let mut statements = Vec::new();
    if let Some(policies) = function_policies(doc, function) {
        collect_statements(policies, &mut statements);
    }
    statements
}

fn collect_statements<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    if get(value, "Effect").is_some() {
        out.push(value);
        return;
    }
    match value {
        Value::Mapping(m) => m.values().for_each(|v| collect_statements(v, out)),
        Value::Sequence(items) => items.iter().for_each(|v| collect_statements(v, out)),
        Value::Tagged(tagged) => collect_statements(&tagged.value, out),
        _ => {}
    }
}

/// A statement's `Action` as a list (a single string or a sequence).
pub fn statement_actions(statement: &Value) -> Vec<&str> {
    match get(statement, "Action") {
        Some(Value::String(action)) => vec![action.as_str()],
        Some(Value::Sequence(actions)) => actions.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A statement's `Resource` entries (a single value or a sequence), as written.
pub fn statement_resources(statement: &Value) -> Vec<&Value> {
    match get(statement, "Resource") {
        Some(Value::Sequence(resources)) => resources.iter().collect(),
        Some(resource) => vec![resource],
        None => Vec::new(),
    }
}

//! The contract between the daemon's execution input (`src/execution.rs`) and the state machine
//! in `deploy/cloudformation/orchestrator.yaml`: the two cannot drift apart.
//!
//! How the template's machine is read: it is a flat JSONPath machine in which `$` is, in every
//! state, the execution input plus what the machine itself adds. Task and Pass states put their
//! results under new top-level members through `ResultPath` (`$.Backup`, `$.Run.…`) and never
//! replace `$`; the only exceptions are the defaults merge (`States.JsonMerge($.Defaults, $,
//! false)`, which yields the input with gaps filled) and the final state. This test enforces that
//! shape, so a `$.Name` read anywhere is either a member the machine wrote or an input member,
//! and checks the input members against `ExecutionInput` as the daemon serialises it.

use std::collections::{BTreeMap, BTreeSet};

use backup_orchestrator::execution::{ExecutionInput, Trigger};
use backup_orchestrator::hooks::{DocumentInput, OnPreHookFailure, PostHookWhen};
use serde_json::Value;

const TEMPLATE: &str = include_str!("../deploy/cloudformation/orchestrator.yaml");
const START_BACKUP_JOB: &str = "arn:aws:states:::aws-sdk:backup:startBackupJob";

/// Input members the machine deliberately does not read, with the reason. Every other member
/// must be read, so a member added to `ExecutionInput` fails here until someone decides.
/// (Empty today: even `Target` is read, as a recovery point tag.)
const NOT_READ_BY_THE_MACHINE: &[(&str, &str)] = &[];

/// Members the machine must read for the backup itself.
const NEEDED: &[&str] = &[
    "ResourceArn",
    "StartWindowMinutes",
    "CompleteWindowMinutes",
    "DeleteAfterDays",
    "PreCommand",
    "PostCommand",
    "PreDocument",
    "PostDocument",
    "PostHookWhen",
    "HookMaxDowntimeSeconds",
    "OnPreHookFailure",
    "BackupOptions",
];

/// Optional members the machine gives a default (ReadDefaults) instead of an IsPresent check:
/// the daemon sends them only when they matter, so the input of a target without hooks or VSS
/// stays what it was (a slot in flight during an upgrade is found, not refused).
const OPTIONAL_WITH_DEFAULT: &[&str] = &[
    "PostHookWhen",
    "HookMaxDowntimeSeconds",
    "OnPreHookFailure",
    "BackupOptions",
];

fn input(pre: Option<&str>, post: Option<&str>) -> ExecutionInput {
    let document = |action: &str| DocumentInput {
        name: "orchestrator-systemd-unit".into(),
        version: "$DEFAULT".into(),
        parameters: BTreeMap::from([("action".to_string(), vec![action.to_string()])]),
    };
    let all = pre.is_some();
    ExecutionInput {
        resource_arn: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into(),
        target: "web-1".into(),
        scheduled_for: "2026-11-29T10:00:00Z".into(),
        trigger: Trigger::Schedule,
        start_window_minutes: 60,
        complete_window_minutes: 10080,
        delete_after_days: 35,
        pre_command: pre.map(Into::into),
        post_command: post.map(Into::into),
        pre_document: all.then(|| document("stop")),
        post_document: all.then(|| document("start")),
        post_hook_when: all.then_some(PostHookWhen::Started),
        hook_max_downtime_seconds: all.then_some(900),
        on_pre_hook_failure: all.then_some(OnPreHookFailure::Backup),
        backup_options: all
            .then(|| BTreeMap::from([("WindowsVSS".to_string(), "enabled".to_string())])),
        copy_to: backup_orchestrator::copies::input(
            "web-1-20261129T100000Z",
            &if all {
                vec![backup_orchestrator::copies::Destination {
                    vault: backup_orchestrator::arn::BackupVaultArn::parse(
                        "arn:aws:backup:us-west-2:123456789012:backup-vault:dr",
                    )
                    .unwrap(),
                    delete_after_days: 90,
                }]
            } else {
                Vec::new()
            },
        ),
    }
}

fn members(input: &ExecutionInput) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&input.to_json()).expect("to_json is JSON");
    v.as_object().expect("an object").keys().cloned().collect()
}

/// All input members (every optional one set) and the always-present ones.
fn input_members() -> (BTreeSet<String>, BTreeSet<String>) {
    let all = members(&input(
        Some("systemctl stop app"),
        Some("systemctl start app"),
    ));
    let always = members(&input(None, None));
    (all, always)
}

struct Machine {
    definition: Value,
    substitutions: BTreeSet<String>,
}

fn yaml_to_json(v: &serde_yaml::Value, at: &str) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).expect("a number"),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{at}[{i}]")))
                .collect(),
        ),
        Y::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let k = k
                        .as_str()
                        .unwrap_or_else(|| panic!("non-string key at {at}"));
                    (k.to_string(), yaml_to_json(v, &format!("{at}.{k}")))
                })
                .collect(),
        ),
        Y::Tagged(t) => panic!(
            "{at}: the definition must be plain data (found {}); put stack values in \
             DefinitionSubstitutions and write ${{Name}}",
            t.tag
        ),
    }
}

fn machine() -> Machine {
    let template: serde_yaml::Value =
        serde_yaml::from_str(TEMPLATE).expect("orchestrator.yaml is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let machines: Vec<_> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::StepFunctions::StateMachine"))
        .collect();
    assert_eq!(
        machines.len(),
        1,
        "exactly one state machine in the template"
    );
    let props = &machines[0].1["Properties"];
    assert!(
        props.get("DefinitionString").is_none(),
        "write the machine as a YAML `Definition` map (this test reads that)"
    );
    let definition = yaml_to_json(&props["Definition"], "Definition");
    let substitutions = props["DefinitionSubstitutions"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    Machine {
        definition,
        substitutions,
    }
}

/// The `$.Name` (state input) and `$$.Execution.Input.Name` (execution input) members an
/// expression reads: a plain path, or any path inside an intrinsic function.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reads {
    state: BTreeSet<String>,
    execution_input: BTreeSet<String>,
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn reads_in(expr: &str) -> Reads {
    let mut reads = Reads::default();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &expr[i..];
        if let Some(ctx) = rest.strip_prefix("$$.") {
            if let Some(member) = ctx.strip_prefix("Execution.Input.") {
                reads.execution_input.insert(ident(member));
            }
            i += 3;
        } else if let Some(path) = rest.strip_prefix("$.") {
            let name = ident(path);
            assert!(!name.is_empty(), "unsupported path syntax in {expr:?}");
            reads.state.insert(name);
            i += 2;
        } else {
            assert!(
                !rest.starts_with("$["),
                "use dot notation ($.Name), not brackets, in {expr:?}"
            );
            i += 1;
        }
    }
    reads
}

/// The top-level member a `ResultPath` writes (`$.Run.PreCommand` -> `Run`).
fn written_member(result_path: &Value, at: &str) -> String {
    let path = result_path.as_str().unwrap_or_else(|| {
        panic!("{at}: needs a ResultPath `$.Name…` (absent replaces the input)")
    });
    let member = path.strip_prefix("$.").map(ident).unwrap_or_default();
    assert!(
        !member.is_empty(),
        "{at}: ResultPath {path:?} would replace the whole input; write under a new member"
    );
    member
}

#[derive(Default)]
struct Analysis {
    /// member -> states that read it
    reads: BTreeMap<String, BTreeSet<String>>,
    execution_input_reads: BTreeSet<String>,
    /// member -> states that write it
    writes: BTreeMap<String, BTreeSet<String>>,
    defaults: BTreeSet<String>,
    present_checks: BTreeSet<String>,
}

impl Analysis {
    fn read(&mut self, state: &str, expr: &str) {
        let r = reads_in(expr);
        for m in r.state {
            self.reads.entry(m).or_default().insert(state.to_string());
        }
        self.execution_input_reads.extend(r.execution_input);
    }

    fn write(&mut self, state: &str, result_path: &Value) {
        let m = written_member(result_path, state);
        self.writes.entry(m).or_default().insert(state.to_string());
    }

    /// `.$` fields of a Parameters / Arguments template (not ResultSelector: that reads the
    /// task's result, not `$`).
    fn template(&mut self, state: &str, v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.ends_with(".$"), v) {
                        (true, Value::String(expr)) => self.read(state, expr),
                        _ => self.template(state, v),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.template(state, v)),
            _ => {}
        }
    }

    fn choice_rule(&mut self, state: &str, rule: &Value) {
        let rule = rule.as_object().expect("a choice rule is an object");
        for (k, v) in rule {
            match k.as_str() {
                "And" | "Or" => v
                    .as_array()
                    .expect("And/Or take a list")
                    .iter()
                    .for_each(|r| self.choice_rule(state, r)),
                "Not" => self.choice_rule(state, v),
                "Variable" => {
                    let var = v.as_str().expect("Variable is a path");
                    self.read(state, var);
                    if rule.get("IsPresent") == Some(&Value::Bool(true)) {
                        self.present_checks.extend(reads_in(var).state);
                    }
                }
                k if k.ends_with("Path") => self.read(state, v.as_str().expect("a path")),
                _ => {}
            }
        }
    }
}

fn states(def: &Value) -> &serde_json::Map<String, Value> {
    def["States"].as_object().expect("States")
}

#[allow(clippy::too_many_lines)] // one contract, member by member, read top to bottom
fn analyse(def: &Value, inputs: &BTreeSet<String>) -> Analysis {
    let mut a = Analysis::default();
    for (name, s) in states(def) {
        let ty = s["Type"].as_str().expect("Type");
        assert!(
            matches!(
                ty,
                "Pass" | "Task" | "Choice" | "Wait" | "Fail" | "Succeed" | "Map"
            ),
            "{name}: {ty} states are not analysed here (their `$` is not the input)"
        );
        if ty == "Map" {
            // Outside, a Map reads ItemsPath and its ItemSelector from `$` and writes its
            // ResultPath; inside, `$` is one item (checked by `map_items`).
            a.read(name, s["ItemsPath"].as_str().expect("a Map's ItemsPath"));
            a.template(name, &s["ItemSelector"]);
            assert!(s.get("Parameters").is_none(), "{name}: use ItemSelector");
            a.write(name, s.get("ResultPath").unwrap_or(&Value::Null));
            for c in s
                .get("Catch")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                a.write(&format!("{name} (Catch)"), &c["ResultPath"]);
            }
            continue;
        }
        assert!(
            s.get("QueryLanguage").is_none() && def.get("QueryLanguage").is_none(),
            "the analysis is for JSONPath machines"
        );
        assert!(
            s.get("InputPath").is_none_or(|p| p == "$"),
            "{name}: InputPath would hide the input"
        );
        if let Some(p) = s.get("Parameters") {
            a.template(name, p);
        }
        for c in s
            .get("Choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            a.choice_rule(name, c);
        }
        for key in ["SecondsPath", "TimestampPath", "ErrorPath", "CausePath"] {
            if let Some(expr) = s.get(key).and_then(Value::as_str) {
                a.read(name, expr);
            }
        }
        for c in s
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            a.write(
                &format!("{name} (Catch)"),
                c.get("ResultPath").unwrap_or(&Value::Null),
            );
        }

        // What the state does to `$`.
        if !matches!(ty, "Pass" | "Task") {
            assert!(
                s.get("OutputPath").is_none_or(|p| p == "$"),
                "{name}: OutputPath would replace the input"
            );
            continue;
        }
        let merge = s["Parameters"]
            .as_object()
            .filter(|p| p.len() == 1)
            .and_then(|p| p.iter().next())
            .and_then(|(k, v)| Some((k.strip_suffix(".$")?, v.as_str()?)))
            .and_then(|(k, v)| {
                let src = v
                    .strip_prefix("States.JsonMerge($.")?
                    .strip_suffix(", $, false)")?;
                Some((k.to_string(), src.to_string()))
            });
        if let Some((key, src)) = merge {
            // The defaults merge: `$` becomes `{...$.src, ...$}` (the input wins).
            assert_eq!(
                s["OutputPath"],
                format!("$.{key}"),
                "{name}: the merge's OutputPath"
            );
            let (_, src_state) = states(def)
                .iter()
                .find(|(_, d)| {
                    d.get("ResultPath").and_then(Value::as_str) == Some(&format!("$.{src}"))
                })
                .unwrap_or_else(|| panic!("{name}: nothing writes $.{src}"));
            assert_eq!(
                src_state["Type"], "Pass",
                "the defaults come from a Pass state"
            );
            for k in src_state["Parameters"]
                .as_object()
                .expect("defaults")
                .keys()
            {
                let member = k.strip_suffix(".$").unwrap_or(k);
                assert!(
                    inputs.contains(member),
                    "the defaults state fills {member:?}, which is not an input member"
                );
                a.defaults.insert(member.to_string());
            }
        } else if s.get("End") == Some(&Value::Bool(true)) {
            // The final state may shape the output; nothing runs after it.
        } else {
            assert!(
                s.get("OutputPath").is_none_or(|p| p == "$"),
                "{name}: OutputPath would replace the input"
            );
            a.write(name, s.get("ResultPath").unwrap_or(&Value::Null));
        }
    }
    a
}

/// The Map states of the machine: (name, its ItemSelector's members, its item processor).
fn maps(def: &Value) -> Vec<(String, BTreeSet<String>, Value)> {
    states(def)
        .iter()
        .filter(|(_, s)| s["Type"] == "Map")
        .map(|(name, s)| {
            let members = s["ItemSelector"]
                .as_object()
                .expect("an ItemSelector")
                .keys()
                .map(|k| k.strip_suffix(".$").unwrap_or(k).to_string())
                .collect();
            (name.clone(), members, s["ItemProcessor"].clone())
        })
        .collect()
}

/// Inside a Map, `$` is the item: every member read is one the ItemSelector makes or a state
/// inside writes, and `$.Destination.X` (a `CopyTo` element) names a member the daemon sends.
#[test]
fn the_copy_map_reads_only_its_item_and_copy_to_members() {
    let m = machine();
    let found = maps(&m.definition);
    assert_eq!(found.len(), 1, "one Map: StartCopies");
    let (name, members, processor) = &found[0];
    let inner = analyse(processor, members);
    for (member, by) in &inner.reads {
        assert!(
            members.contains(member) || inner.writes.contains_key(member),
            "{name}: {by:?} read $.{member}, which the item does not have"
        );
    }
    let mut sent = input(Some("x"), Some("y"));
    sent.copy_to.get_or_insert_with(Vec::new);
    let element: BTreeSet<String> = serde_json::to_value(&sent.copy_to.as_ref().unwrap()[0])
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let text = processor.to_string();
    let mut destination_reads = 0;
    for (i, _) in text.match_indices("$.Destination.") {
        let member = ident(&text[i + "$.Destination.".len()..]);
        assert!(
            element.contains(&member),
            "{name} reads $.Destination.{member}; a CopyTo element has {element:?}"
        );
        destination_reads += 1;
    }
    assert!(destination_reads >= 3, "{text}");
    for member in &element {
        assert!(
            text.contains(&format!("$.Destination.{member}")),
            "{name} ignores the CopyTo member {member}"
        );
    }
    let task = &processor["States"]["StartCopyJob"];
    assert_eq!(
        task["Resource"],
        "arn:aws:states:::aws-sdk:backup:startCopyJob"
    );
    assert_eq!(
        task["Parameters"]["IdempotencyToken.$"], "$.Destination.IdempotencyToken",
        "the daemon's token, never one made in the machine"
    );
}

/// A target without copies (or hooks, or VSS) sends exactly what it sent before copies existed:
/// an execution of it in flight during an upgrade is found by name and input, not refused.
#[test]
fn the_input_of_a_target_without_copies_is_unchanged() {
    assert_eq!(
        input(None, None).to_json(),
        r#"{"ResourceArn":"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0","Target":"web-1","ScheduledFor":"2026-11-29T10:00:00Z","Trigger":"schedule","StartWindowMinutes":60,"CompleteWindowMinutes":10080,"DeleteAfterDays":35}"#
    );
}

#[test]
fn path_scanner_reads_plain_paths_intrinsics_and_the_context_object() {
    let r = reads_in(
        "States.Format('{} {}', $.A.B, States.ArrayGetItem(States.StringSplit($.C_1, '/'), 1), \
         $$.Execution.Name, $$.Execution.Input.D, '${Sub}')",
    );
    assert_eq!(
        r.state,
        ["A", "C_1"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(r.execution_input, BTreeSet::from(["D".to_string()]));
    assert_eq!(reads_in("$").state.len(), 0);
}

#[test]
fn every_path_the_machine_reads_from_the_input_is_an_execution_input_member() {
    let (inputs, always) = input_members();
    assert!(always.is_subset(&inputs));
    let m = machine();
    let a = analyse(&m.definition, &inputs);

    let overwritten: Vec<_> = a.writes.keys().filter(|w| inputs.contains(*w)).collect();
    assert!(
        overwritten.is_empty(),
        "the machine writes over input members {overwritten:?}: {:?}",
        a.writes
    );

    let mut input_reads: BTreeSet<String> = a.execution_input_reads.clone();
    let mut unknown = BTreeMap::new();
    for (member, by) in &a.reads {
        if a.writes.contains_key(member) {
            continue;
        }
        if inputs.contains(member) {
            input_reads.insert(member.clone());
        } else {
            unknown.insert(member.clone(), by.clone());
        }
    }
    for m in &a.execution_input_reads {
        if !inputs.contains(m) {
            unknown.insert(
                m.clone(),
                BTreeSet::from(["$$.Execution.Input".to_string()]),
            );
        }
    }
    assert!(
        unknown.is_empty(),
        "the machine reads members the daemon never sends (member -> states): {unknown:?}\n\
         ExecutionInput serialises as {inputs:?}"
    );

    for name in NEEDED {
        assert!(
            inputs.contains(*name),
            "ExecutionInput has no member {name:?} any more: {inputs:?}"
        );
        assert!(
            input_reads.contains(*name),
            "the machine does not read {name:?}"
        );
    }
    let not_read: BTreeSet<String> = NOT_READ_BY_THE_MACHINE
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for member in &inputs {
        assert!(
            input_reads.contains(member) ^ not_read.contains(member),
            "{member:?}: every input member is either read by the machine or listed in \
             NOT_READ_BY_THE_MACHINE (and then not read); reads: {input_reads:?}"
        );
    }
    assert!(
        not_read.is_subset(&inputs),
        "NOT_READ_BY_THE_MACHINE is stale"
    );

    // Optional members are only used behind an `IsPresent` check, or get a default.
    for optional in inputs.difference(&always) {
        let defaulted = OPTIONAL_WITH_DEFAULT.contains(&optional.as_str());
        assert!(
            a.present_checks.contains(optional) ^ defaulted,
            "the machine reads optional member {optional:?} without an IsPresent check \
             (or it is in OPTIONAL_WITH_DEFAULT and checked anyway)"
        );
        assert_eq!(
            a.defaults.contains(optional),
            defaulted,
            "{optional:?}: OPTIONAL_WITH_DEFAULT vs the ReadDefaults state"
        );
    }
    // Defaults exist only for members a hand-started execution may leave out.
    let with_default: BTreeSet<String> = OPTIONAL_WITH_DEFAULT
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert!(
        a.defaults
            .is_subset(&always.union(&with_default).cloned().collect())
    );
}

#[test]
fn start_backup_job_is_idempotent_by_execution_name_and_its_response_is_the_output() {
    let m = machine();
    let st = states(&m.definition);
    let tasks: Vec<_> = st
        .iter()
        .filter(|(_, s)| s["Resource"] == START_BACKUP_JOB)
        .collect();
    assert_eq!(
        tasks.len(),
        1,
        "exactly one startBackupJob task: the daemon reads BackupJobId from its TaskSucceeded event"
    );
    let (name, task) = tasks[0];
    let p = &task["Parameters"];
    assert_eq!(p["IdempotencyToken.$"], "$$.Execution.Name", "{name}");
    assert_eq!(p["ResourceArn.$"], "$.ResourceArn", "{name}");
    assert_eq!(p["StartWindowMinutes.$"], "$.StartWindowMinutes", "{name}");
    assert_eq!(
        p["CompleteWindowMinutes.$"], "$.CompleteWindowMinutes",
        "{name}"
    );
    assert_eq!(
        p["Lifecycle"]["DeleteAfterDays.$"], "$.DeleteAfterDays",
        "{name}"
    );
    assert!(
        task.get("ResultSelector").is_none(),
        "{name}: keep the whole response"
    );
    let result = written_member(&task["ResultPath"], name);

    // Every way to succeed ends in a state whose output is that response plus extras,
    // so BackupJobId stays at the top level of the execution output.
    let ends: Vec<_> = st
        .iter()
        .filter(|(_, s)| s.get("End") == Some(&Value::Bool(true)) || s["Type"] == "Succeed")
        .collect();
    assert!(!ends.is_empty());
    for (end, s) in ends {
        assert_eq!(
            s["Type"], "Pass",
            "{end}: the success state shapes the output"
        );
        let params = s["Parameters"].as_object().expect("Parameters");
        let (key, expr) = params.iter().next().expect("one output field");
        let expr = expr.as_str().expect("an expression");
        assert!(
            expr.starts_with(&format!("States.JsonMerge($.{result}, "))
                && expr.ends_with(", false)"),
            "{end}: output must start from the StartBackupJob response ($.{result}), got {expr}"
        );
        assert_eq!(s["OutputPath"], format!("$.{}", key.trim_end_matches(".$")));
    }
}

#[test]
fn hook_failures_use_the_error_names_the_daemon_reports() {
    let m = machine();
    let errors: BTreeSet<&str> = states(&m.definition)
        .values()
        .filter(|s| s["Type"] == "Fail")
        .filter_map(|s| s["Error"].as_str())
        .collect();
    for e in ["PreCommandFailed", "PostCommandFailed"] {
        assert!(
            errors.contains(e),
            "no Fail state with Error {e}: {errors:?}"
        );
    }
}

#[test]
fn the_state_graph_is_closed_and_substitutions_match() {
    let m = machine();
    let st = states(&m.definition);
    let start = m.definition["StartAt"].as_str().expect("StartAt");
    let targets = |s: &Value| -> Vec<String> {
        let mut t = Vec::new();
        for key in ["Next", "Default"] {
            if let Some(n) = s.get(key).and_then(Value::as_str) {
                t.push(n.to_string());
            }
        }
        for list in ["Choices", "Catch"] {
            for c in s.get(list).and_then(Value::as_array).into_iter().flatten() {
                t.push(c["Next"].as_str().expect("Next").to_string());
            }
        }
        t
    };
    let mut seen = BTreeSet::from([start.to_string()]);
    let mut todo = vec![start.to_string()];
    while let Some(n) = todo.pop() {
        let s = st.get(&n).unwrap_or_else(|| panic!("no state named {n:?}"));
        for t in targets(s) {
            if seen.insert(t.clone()) {
                todo.push(t);
            }
        }
    }
    let all: BTreeSet<String> = st.keys().cloned().collect();
    assert_eq!(seen, all, "unreachable states");

    let text = m.definition.to_string();
    let used: BTreeSet<String> = text
        .split("${")
        .skip(1)
        .map(|s| s.split('}').next().unwrap().to_string())
        .collect();
    assert_eq!(
        used, m.substitutions,
        "placeholders vs DefinitionSubstitutions"
    );
}

/// The template as JSON, `!Ref`/`!Sub`/`!If`... turned into `{"Fn::Name": ...}` maps.
fn template_json() -> Value {
    fn conv(v: &serde_yaml::Value) -> Value {
        use serde_yaml::Value as Y;
        match v {
            Y::Tagged(t) => {
                let tag = t.tag.to_string();
                let tag = tag.trim_start_matches('!');
                let name = if tag == "Ref" {
                    "Ref".to_string()
                } else {
                    format!("Fn::{tag}")
                };
                serde_json::json!({ name: conv(&t.value) })
            }
            Y::Sequence(items) => Value::Array(items.iter().map(conv).collect()),
            Y::Mapping(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.as_str().expect("string keys").to_string(), conv(v)))
                    .collect(),
            ),
            other => yaml_to_json(other, "template"),
        }
    }
    conv(&serde_yaml::from_str(TEMPLATE).expect("orchestrator.yaml is YAML"))
}

/// Every policy statement of the state machine role, with the condition (if any) under which
/// the statement or its policy exists: `(condition, statement)`.
fn state_machine_statements(t: &Value) -> Vec<(Option<String>, Value)> {
    let resources = t["Resources"].as_object().expect("Resources");
    let mut out = Vec::new();
    let mut push = |cond: Option<String>, doc: &Value| {
        for st in doc["Statement"].as_array().expect("Statement list") {
            match st.get("Fn::If").and_then(Value::as_array) {
                Some(branches) => {
                    let c = branches[0].as_str().expect("condition").to_string();
                    out.push((Some(c.clone()), branches[1].clone()));
                    out.push((Some(format!("!{c}")), branches[2].clone()));
                }
                None => out.push((cond.clone(), st.clone())),
            }
        }
    };
    for (name, r) in resources {
        let props = &r["Properties"];
        let cond = r
            .get("Condition")
            .and_then(Value::as_str)
            .map(str::to_string);
        if r["Type"] == "AWS::IAM::RolePolicy" {
            assert_eq!(
                props["RoleName"],
                serde_json::json!({"Ref": "StateMachineRole"}),
                "{name}"
            );
            push(cond, &props["PolicyDocument"]);
        } else if name == "StateMachineRole" {
            for p in props["Policies"].as_array().into_iter().flatten() {
                push(None, &p["PolicyDocument"]);
            }
        }
    }
    out
}

fn actions(st: &Value) -> Vec<String> {
    match &st["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `Fn::Sub` text of a resource (the first element when it has variables).
fn sub_text(resource: &Value) -> String {
    let sub = &resource["Fn::Sub"];
    sub.as_str()
        .or_else(|| sub[0].as_str())
        .unwrap_or_else(|| panic!("a SendCommand resource is a !Sub: {resource}"))
        .to_string()
}

#[test]
fn send_command_reaches_only_prefixed_documents_and_tagged_instances() {
    let t = template_json();
    let params = &t["Parameters"];
    assert_eq!(
        params["RequireHookTag"]["Default"], "true",
        "the tag is required by default"
    );
    assert_eq!(
        params["AllowRawCommands"]["Default"], "false",
        "no raw shell by default"
    );
    assert_eq!(params["HookDocumentPrefix"]["Default"], "");
    let prefix_pattern = params["HookDocumentPrefix"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(
        !prefix_pattern.contains('*'),
        "a prefix must not widen the document ARN"
    );
    assert_eq!(
        t["Conditions"]["RawCommandsAllowed"],
        serde_json::json!({"Fn::Equals": [{"Ref": "AllowRawCommands"}, "true"]})
    );

    let statements = state_machine_statements(&t);
    let sends: Vec<&(Option<String>, Value)> = statements
        .iter()
        .filter(|(_, st)| {
            actions(st)
                .iter()
                .any(|a| a == "ssm:SendCommand" || a == "ssm:*" || a == "*")
        })
        .collect();
    assert!(!sends.is_empty());
    let (mut documents, mut instances) = (0, 0);
    for (cond, st) in &sends {
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(
            actions(st),
            ["ssm:SendCommand"],
            "SendCommand statements grant nothing else"
        );
        let text = sub_text(&st["Resource"]);
        if text.contains(":document/") {
            if text.ends_with("document/AWS-RunShellScript") {
                assert_eq!(
                    cond.as_deref(),
                    Some("RawCommandsAllowed"),
                    "raw shell only when opted in: {st}"
                );
            } else {
                assert_eq!(
                    text,
                    "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${Prefix}*",
                    "documents: the prefixed ones of this account and region only"
                );
                let prefix = &st["Resource"]["Fn::Sub"][1]["Prefix"]["Fn::If"];
                assert_eq!(prefix[0], "StackNamePrefix");
                assert_eq!(
                    prefix[1],
                    serde_json::json!({"Fn::Sub": "${AWS::StackName}-"})
                );
                assert_eq!(prefix[2], serde_json::json!({"Ref": "HookDocumentPrefix"}));
                assert!(cond.is_none(), "document hooks need no opt-in");
                documents += 1;
            }
        } else {
            assert_eq!(
                text, "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*",
                "instances of this account and region only: {st}"
            );
            match cond.as_deref() {
                Some("HookTagRequired") => assert_eq!(
                    st["Condition"]["StringEquals"]["ssm:resourceTag/OrchestratorHooks"], "enabled",
                    "the default branch requires the tag: {st}"
                ),
                Some("!HookTagRequired") => assert!(st.get("Condition").is_none()),
                other => panic!(
                    "an instance statement outside the RequireHookTag switch ({other:?}): {st}"
                ),
            }
            instances += 1;
        }
    }
    assert_eq!((documents, instances), (1, 2), "{sends:#?}");
    // AWS-RunShellScript only in the opt-in policy and in the machine's raw-command states,
    // which the machine reaches only when the stack says AllowRawCommands = "true".
    fn find(v: &Value, at: String, hits: &mut Vec<String>) {
        match v {
            Value::String(s) if s.contains("AWS-RunShellScript") => hits.push(at),
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    find(x, format!("{at}[{i}]"), hits);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    find(x, format!("{at}.{k}"), hits);
                }
            }
            _ => {}
        }
    }
    let mut hits = Vec::new();
    find(&t, String::new(), &mut hits);
    let states_at = ".Resources.BackupStateMachine.Properties.Definition.States.";
    for h in &hits {
        assert!(
            h.ends_with(".Description")
                || h.starts_with(".Resources.RawCommandPolicy.")
                || h.starts_with(&format!("{states_at}PrepareCommandBefore."))
                || h.starts_with(&format!("{states_at}PrepareCommandAfter.")),
            "AWS-RunShellScript outside the opt-in: {h}"
        );
    }
    assert_eq!(
        t["Resources"]["RawCommandPolicy"]["Condition"], "RawCommandsAllowed",
        "{hits:?}"
    );
    let m = machine();
    let st = states(&m.definition);
    assert_eq!(
        st["InitRun"]["Parameters"]["RawCommands"],
        "${AllowRawCommands}"
    );
    assert_eq!(
        st["RawCommandsAllowed"]["Choices"][0],
        serde_json::json!({"Variable": "$.Run.RawCommands", "StringEquals": "true", "Next": "CheckPreDocument"})
    );
    assert_eq!(st["RawCommandsAllowed"]["Default"], "RawCommandsRefused");
    assert_eq!(st["RawCommandsRefused"]["Error"], "PreCommandFailed");
    assert!(
        st["RawCommandsRefused"]["Cause"]
            .as_str()
            .unwrap()
            .contains("AllowRawCommands")
    );

    // The daemon's role never sends commands; it reads tags with exactly tag:GetResources.
    let daemon = &t["Resources"]["OrchestratorPolicy"]["Properties"]["PolicyDocument"];
    for st in daemon["Statement"].as_array().unwrap() {
        assert!(
            actions(st).iter().all(|a| a.starts_with("states:")
                || a.starts_with("backup:")
                || a == "tag:GetResources"),
            "the daemon's own policy: {st}"
        );
    }

    // The example document exists and is named with the prefix.
    let doc = &t["Resources"]["SystemdUnitDocument"];
    assert_eq!(doc["Type"], "AWS::SSM::Document");
    assert_eq!(
        doc["Properties"]["Name"]["Fn::Sub"][0],
        "${Prefix}systemd-unit"
    );
    let p = &doc["Properties"]["Content"]["parameters"];
    assert_eq!(
        p["action"]["allowedValues"],
        serde_json::json!(["stop", "start"])
    );
    assert!(
        p["unit"]["allowedPattern"]
            .as_str()
            .unwrap()
            .starts_with("^[A-Za-z0-9")
    );
}

/// Tag selections: the daemon's policy gains exactly `tag:GetResources` (on `*`: the action has no
/// resource-level permission), and no other `tag:` or `ec2:` action.
#[test]
fn the_daemon_may_find_instances_by_tag_and_nothing_more() {
    let t = template_json();
    let daemon = &t["Resources"]["OrchestratorPolicy"]["Properties"]["PolicyDocument"];
    let tagging: Vec<&Value> = daemon["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| {
            actions(st)
                .iter()
                .any(|a| a.starts_with("tag:") || a.starts_with("ec2:"))
        })
        .collect();
    assert_eq!(tagging.len(), 1, "{tagging:?}");
    assert_eq!(actions(tagging[0]), vec!["tag:GetResources".to_string()]);
    assert_eq!(tagging[0]["Effect"], "Allow");
    assert_eq!(tagging[0]["Resource"], "*");
}

#[test]
fn numbers_in_the_definition_are_numbers() {
    // DefinitionSubstitutions are text: `Seconds: ${X}` would become the string "10", which
    // Step Functions refuses. Numbers from stack parameters go through States.StringToJson.
    let m = machine();
    for (name, s) in states(&m.definition) {
        for key in ["Seconds", "IntervalSeconds", "MaxAttempts", "BackoffRate"] {
            if let Some(v) = s.get(key) {
                assert!(v.is_number(), "{name}.{key} = {v}");
            }
        }
        for r in s
            .get("Retry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for key in ["IntervalSeconds", "MaxAttempts", "BackoffRate"] {
                assert!(r[key].is_number(), "{name}.Retry.{key} = {}", r[key]);
            }
        }
    }
}

#[test]
fn the_machine_refuses_documents_outside_the_prefix_before_sending() {
    let m = machine();
    let st = states(&m.definition);
    for member in ["PreDocument", "PostDocument"] {
        let check = &st[&format!("Check{member}Name")];
        let rule = &check["Choices"][0]["And"];
        assert_eq!(rule[1]["Variable"], format!("$.{member}.Name"));
        assert_eq!(rule[1]["StringMatches"], "${HookDocumentPrefix}*");
        assert_eq!(st[check["Default"].as_str().unwrap()]["Type"], "Fail");
    }
    // Every SendCommand task sends a request the checks above have passed.
    for (name, s) in st
        .iter()
        .filter(|(_, s)| s["Resource"] == "arn:aws:states:::aws-sdk:ssm:sendCommand")
    {
        let doc = s["Parameters"]["DocumentName.$"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            doc.starts_with("$.Run.P") && doc.ends_with("Request.DocumentName"),
            "{name}: {doc}"
        );
    }
}

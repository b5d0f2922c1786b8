//! `sonde schema` is a JSON Schema that every shipped scenario file satisfies (so an editor
//! pointed at it flags nothing in them) and that rejects broken files: unknown keys, wrong
//! types, unknown words — validated with the `jsonschema` crate.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn schema() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .arg("schema")
        .output()
        .expect("run sonde schema");
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_slice(&out.stdout).expect("sonde schema prints JSON")
}

/// A YAML file as the JSON value a schema validator sees (merge keys applied, as the loader does).
fn yaml_as_json(text: &str) -> Value {
    let mut v: serde_norway::Value = serde_norway::from_str(text).expect("YAML");
    v.apply_merge().expect("merge keys");
    serde_json::to_value(v).expect("YAML as JSON")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Every scenario file the project ships: scenarios/, examples/sonde.yaml, the valid test
/// fixtures. (Agent settings and blackbox configurations are other formats.)
fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("scenarios"), &mut files);
    yaml_files(&root.join("tests/fixtures/valid"), &mut files);
    files.push(root.join("examples/sonde.yaml"));
    files.retain(|f| {
        let text = std::fs::read_to_string(f).unwrap();
        !text.starts_with("agent:")
            && !text.contains("\nagent:")
            && !text.contains("\nmodules:")
            && !text.starts_with("modules:")
    });
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_file_validates() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let files = shipped();
    assert!(files.len() >= 8, "found only {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let v = yaml_as_json(&std::fs::read_to_string(f).unwrap());
        for e in validator.iter_errors(&v) {
            failures.push(format!("{}: {} at {}", f.display(), e, e.instance_path));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn broken_files_are_rejected() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let ok = "scenario: a\ninterval: 30s\nhttp: {url: \"http://127.0.0.1:1/\"}\nexpect: {status: [200, \"3xx\"]}\n";
    assert!(
        validator.is_valid(&yaml_as_json(ok)),
        "the control must pass"
    );
    for (what, text) in [
        (
            "unknown scenario key",
            "scenario: a\nintervall: 30s\nhttp: {url: \"http://127.0.0.1:1/\"}\n",
        ),
        (
            "unknown http key",
            "scenario: a\nsteps:\n  - http: {url: \"http://127.0.0.1:1/\", methd: GET}\n",
        ),
        (
            "duration as a number",
            "scenario: a\ninterval: 30\nhttp: {url: \"http://127.0.0.1:1/\"}\n",
        ),
        ("unknown word", "scenario: a\nsession: forever\nsteps: []\n"),
        (
            "status out of range",
            "scenario: a\nhttp: {url: \"http://127.0.0.1:1/\"}\nexpect: {status: 700}\n",
        ),
        ("a url missing", "scenario: a\nhttp: {method: GET}\n"),
        ("scenarios not a list", "scenarios: {a: 1}\n"),
    ] {
        assert!(
            !validator.is_valid(&yaml_as_json(text)),
            "{what}: accepted by the schema:\n{text}"
        );
    }
}

/// Step groups in every place they may be written: in a scenario, beside `scenarios:`, and
/// alone in a library file; a use with an unknown key is refused.
#[test]
fn step_groups_validate_where_they_may_be_written() {
    let schema = schema();
    let v = jsonschema::validator_for(&schema).expect("a valid schema");
    let ok = [
        "scenario: a\ngroups:\n  g:\n    params: [x]\n    steps: [{sleep: 1ms}]\nsteps:\n  - use: g\n    with: {x: 1}\n",
        "include: [lib.yaml]\ngroups:\n  g:\n    params: {x: null, y: 2}\n    steps: [{sleep: 1ms}, {use: h}]\nscenarios:\n  - scenario: a\n    steps: [{use: g, with: {x: 1}, name: first}]\n",
        "groups:\n  g:\n    steps: [{sleep: 1ms}]\n",
    ];
    for text in ok {
        let doc = yaml_as_json(text);
        let errs: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{text}\n{errs:?}");
    }
    let bad = yaml_as_json("scenario: a\nsteps:\n  - use: g\n    whith: {x: 1}\n");
    assert!(!v.is_valid(&bad));
}

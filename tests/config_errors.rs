//! Every invalid-input fixture in `tests/fixtures/invalid/` is loaded and its errors compared,
//! exactly and in order, with the lines of its sibling `.expected` file. A fixture is a
//! `NAME.yaml` file or a `NAME/` folder (for problems that span files); the expected file is
//! `NAME.expected`. Locations are part of the message, so every expected line pins the
//! `file:line:column` as well as the wording.

use std::path::{Path, PathBuf};

use sonde::config::{load_paths, load_str, LoadOptions};

const DIR: &str = "tests/fixtures/invalid";

fn fixtures() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("fixture folder")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let is_fixture = p.is_dir() || p.extension().is_some_and(|e| e == "yaml");
        if is_fixture {
            let expected = p.with_extension("expected");
            out.push((p, expected));
        }
    }
    out
}

fn actual(path: &Path) -> String {
    match load_paths(&[path.to_path_buf()], &LoadOptions::default()) {
        Ok(c) => format!("(loaded {} scenario(s) without error)\n", c.scenarios.len()),
        Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_errors() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 30,
        "expected at least 30 invalid fixtures, found {}",
        fixtures.len()
    );
    let mut failures = Vec::new();
    for (fixture, expected_file) in &fixtures {
        let got = actual(fixture);
        // `SONDE_BLESS=1` rewrites the expected files from what the loader says now; review the
        // diff before committing it.
        if std::env::var_os("SONDE_BLESS").is_some() {
            std::fs::write(expected_file, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(expected_file)
            .unwrap_or_else(|_| format!("(missing {})\n", expected_file.display()));
        if got != expected {
            failures.push(format!(
                "== {}\n-- expected:\n{expected}-- got:\n{got}",
                fixture.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
}

/// Problems with no position in a file display as `path: message` (line and column 0).
#[test]
fn file_level_problems_name_the_path_without_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-folder");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("README.txt"), "no yaml here").unwrap();
    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let missing = dir.path().join("missing.yaml");
    let errors = load_paths(
        &[missing.clone(), empty.clone(), binary.clone()],
        &LoadOptions::default(),
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            format!(
                "{}: cannot read: No such file or directory — expected a scenario file or a folder of them",
                missing.display()
            ),
            format!(
                "{}: no *.yaml or *.yml file in this folder — expected scenario files",
                empty.display()
            ),
            format!(
                "{}: cannot read: stream did not contain valid UTF-8 — expected a readable UTF-8 YAML file",
                binary.display()
            ),
        ]
    );
    assert!(errors.iter().all(|e| e.line == 0 && e.column == 0));
}

/// Errors of several files are all reported, file by file, in load order; a scenario name seen
/// in an earlier file (even one with errors) is a duplicate in a later one.
#[test]
fn every_file_reports_its_errors() {
    let errors = load_paths(
        &[
            PathBuf::from(DIR).join("bad-duration.yaml"),
            PathBuf::from(DIR).join("three-unknown-keys.yaml"),
        ],
        &LoadOptions::default(),
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "tests/fixtures/invalid/bad-duration.yaml:2:11: invalid duration \"5 parsecs\" — expected a duration like 30s, 1m30s or 500ms",
            "tests/fixtures/invalid/three-unknown-keys.yaml:1:11: duplicate scenario name `api` — already defined at tests/fixtures/invalid/bad-duration.yaml:1:11",
            "tests/fixtures/invalid/three-unknown-keys.yaml:2:1: unknown key `tmeout` — did you mean `timeout`?",
            "tests/fixtures/invalid/three-unknown-keys.yaml:5:3: unknown key `methd` — did you mean `method`?",
            "tests/fixtures/invalid/three-unknown-keys.yaml:6:3: unknown key `hedaers` — did you mean `headers`?",
        ]
    );
}

/// `load_str` (the built-in configuration) names its origin in errors.
#[test]
fn load_str_errors_name_the_origin() {
    let errors = load_str(
        "<built-in>",
        "scenario: x\nhttp: {url: 5}\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        ["<built-in>:2:13: `url` is the number 5 — expected a string"]
    );
}

/// A blackbox_exporter configuration is read among configuration files (which tell it apart);
/// given as text where only scenarios are read (`load_str`), it is refused saying so — not as
/// "not supported", which it is.
#[test]
fn a_blackbox_document_where_scenarios_are_read_says_where_it_goes() {
    let errors = load_str(
        "<built-in>",
        "modules:\n  web:\n    prober: http\n",
        &LoadOptions::default(),
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        ["<built-in>:1:1: `modules:` makes this a blackbox_exporter configuration, which is read only from configuration files — expected `scenario:` or `scenarios:` here"]
    );
    // Loaded as a file, the same text is a blackbox configuration.
    let dir = std::env::temp_dir().join(format!("sonde-bb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("blackbox.yml");
    std::fs::write(&file, "modules:\n  web:\n    prober: http\n").unwrap();
    let loaded = sonde::config::load_all(&[file], &LoadOptions::default());
    std::fs::remove_dir_all(&dir).ok();
    let loaded = loaded.map_err(|e| format!("{e:?}")).unwrap();
    assert!(loaded.modules.is_some_and(|m| !m.is_empty()));
}

/// Hostile documents get an error, not a crash or a hang: deep nesting and an alias bomb.
#[test]
fn hostile_documents_are_refused_cleanly() {
    let deep = format!(
        "scenario: x\nvars: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let errors = load_str("<deep>", &deep, &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .starts_with("brackets nested more than 64 levels deep"),
        "{}",
        errors[0]
    );

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("scenario: x\n");
    let errors = load_str("<bomb>", &bomb, &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "<bomb>:1:1: the document is too deeply nested or expands too far (repetition limit exceeded) — expected an ordinary scenario file"
    );
}

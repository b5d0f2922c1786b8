//! Every invalid-input fixture in `tests/fixtures/invalid/` is loaded and its errors compared,
//! exactly and in order, with the lines of its sibling `.expected` file. A fixture is a
//! `NAME.yaml` file or a `NAME/` folder (for problems that span files); the expected file is
//! `NAME.expected`. Locations are part of the message, so every expected line pins the
//! `file:line:column` as well as the wording.

use std::path::{Path, PathBuf};

use sonde::config::{load_paths, LoadOptions};

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

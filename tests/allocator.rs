//! `src/main.rs` sets mimalloc's `purge_delay` by the option's index in `mi_option_t`, which
//! libmimalloc-sys does not export as a constant for mimalloc 3. That index is right for the
//! version in Cargo.lock; this tripwire fails when the lock moves to another version, so the
//! index is checked against that version's `mimalloc.h` before the update lands.

#[test]
fn mimalloc_option_index_is_rechecked_when_libmimalloc_sys_changes() {
    let lock = include_str!("../Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"libmimalloc-sys\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"'))
        .expect("libmimalloc-sys in Cargo.lock");
    assert_eq!(
        version, "0.1.49",
        "libmimalloc-sys changed: check MI_OPTION_PURGE_DELAY in src/main.rs against \
         c_src/mimalloc/v3/include/mimalloc.h (mi_option_purge_delay), then update this version"
    );
}

/// `src/main.rs` turns transparent huge pages off for the process: mimalloc's arenas asked for
/// them, and a 2 MiB page faulted in around a few live objects cost persistent sessions ~3.6 KB
/// of RSS each. The kernel shows the flag as `THP_enabled: 0` in the process's status.
#[cfg(target_os = "linux")]
#[test]
fn the_sonde_process_runs_without_transparent_huge_pages() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage.path", ""])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sonde starts");
    let status = format!("/proc/{}/status", child.id());
    let mut seen = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        seen = text
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .map(str::to_string);
        // Read once the binary's `main` ran (the flag starts at 1).
        if seen.as_deref() == Some("THP_enabled:\t0") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    match seen {
        None => eprintln!("SKIPPED: this kernel does not show THP_enabled (before Linux 5.0)"),
        Some(line) => assert_eq!(line, "THP_enabled:\t0"),
    }
}

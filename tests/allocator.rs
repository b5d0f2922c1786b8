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

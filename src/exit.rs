//! Exit codes, the same for every subcommand.

/// A check or scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad usage or an invalid configuration: nothing ran.
pub const EXIT_USAGE: u8 = 2;

/// A tokio runtime from `builder`, or — said on stderr — the exit code of a process that cannot
/// start one.
pub fn runtime(
    builder: &mut tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    // Before any probe: the kernel stamps packets from the first one on (see kts::keep_on).
    sonde_probes::kts::warm_up();
    builder.enable_all().build().map_err(|e| {
        eprintln!("sonde: cannot start the async runtime: {e}");
        std::process::ExitCode::FAILURE
    })
}

//! The `sonde` binary: everything lives in the library; see `sonde::cli`.

fn main() -> std::process::ExitCode {
    sonde::cli::main()
}

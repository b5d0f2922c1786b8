//! Exit codes, the same for every subcommand.

/// A check or scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad usage or an invalid configuration: nothing ran.
pub const EXIT_USAGE: u8 = 2;

//! The command-line flags that bound and confine configuration loading, shared by `serve`,
//! `check` and `run` (see [`crate::config::trust`] and [`crate::config::limits`]).

use std::path::PathBuf;

use clap::Args;

use crate::config::limits::{DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_SCENARIOS};
use crate::config::LoadOptions;

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigFlags {
    /// The folder templates' file() may read below. Default: each scenario file's own folder.
    /// Never outside it: `..`, absolute paths and symlinks that lead out are refused.
    #[arg(long = "config.file-root", value_name = "DIR")]
    pub file_root: Option<PathBuf>,

    /// An environment variable the templates of configurations loaded from a URL (-c http://…)
    /// may read as env.NAME; repeatable. Default: none (and such documents never get file()).
    #[arg(long = "config.remote-env", value_name = "NAME")]
    pub remote_env: Vec<String>,

    /// Largest configuration file or URL document (bytes, or a size like 512KiB or 16MiB).
    #[arg(long = "config.max-file-size", value_name = "SIZE", value_parser = parse_size)]
    pub max_file_size: Option<u64>,

    /// Most scenarios one configuration may hold (each costs memory, about 4 KB).
    #[arg(long = "config.max-scenarios", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_scenarios: Option<u64>,
}

impl ConfigFlags {
    /// `opts` with these flags applied.
    pub fn apply(&self, mut opts: LoadOptions) -> LoadOptions {
        opts.file_root = self.file_root.clone();
        opts.remote_env = self.remote_env.clone();
        opts.limits.max_file_bytes = self.max_file_bytes();
        opts.limits.max_scenarios = self
            .max_scenarios
            .map_or(DEFAULT_MAX_SCENARIOS, |n| n as usize);
        opts
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_size.unwrap_or(DEFAULT_MAX_FILE_BYTES)
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::config::units::parse_bytes(s)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} — expected a size above zero like 1048576, 512KiB or 16MiB"))
}

//! `sonde completions SHELL` and `sonde man`: shell completions and man pages generated from the
//! command-line definition itself, so packages (the `.deb`, the container) ship help that cannot
//! drift from the binary they ship.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::{Cli, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write sonde.1 and one page per subcommand (sonde-serve.1, …) into this folder instead of
    /// printing sonde.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Print the completion script, e.g. `sonde completions bash > /etc/bash_completion.d/sonde`.
pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "sonde", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Print sonde(1), or write every page into `--dir`.
pub fn man(args: ManArgs) -> ExitCode {
    let cmd = Cli::command();
    let written = match &args.dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => clap_mangen::generate_to(cmd, dir),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let to = args
                .dir
                .as_ref()
                .map_or("stdout".to_string(), |d| d.display().to_string());
            eprintln!("sonde man: cannot write the manual pages to {to}: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_man_page() {
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        for want in [
            "sonde.1",
            "sonde-serve.1",
            "sonde-run.1",
            "sonde-completions.1",
        ] {
            assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
        }
        let serve = std::fs::read_to_string(dir.path().join("sonde-serve.1")).unwrap();
        assert!(serve.contains("\\-\\-listen"), "{serve}");
    }

    #[test]
    fn bash_completion_knows_the_subcommands_and_flags() {
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), "sonde", &mut out);
        let script = String::from_utf8(out).unwrap();
        for word in ["serve", "check", "completions", "--listen", "--shard"] {
            assert!(
                script.contains(word),
                "{word} missing from the bash completion"
            );
        }
    }
}

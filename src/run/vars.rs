//! `--var K=V` and `--env-file F`.
//!
//! `--env-file` loads dotenv files into the process environment before the scenario files load,
//! so `{{ env.NAME }}` reads them exactly like real environment variables — including being a
//! secret, redacted from every report — and a variable neither gives is the loader's usual
//! error (exit 2, before anything runs). The real environment wins over the file, as dotenv
//! tools do: CI secrets set on the job are not shadowed by a checked-in defaults file.
//!
//! `--var` replaces the value of the scenario var of that name (templates of later vars and of
//! steps see the new value), or defines it when the scenario has none.

use std::path::PathBuf;

/// Clap's parser of `--var`: `NAME=VALUE`, NAME an identifier templates can use.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("{s:?} has no `=` — expected NAME=VALUE"));
    };
    let ident = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if !ident {
        return Err(format!(
            "{k:?} is not a var name — expected letters, digits and _ (not first a digit)"
        ));
    }
    if matches!(k, "env" | "scenario" | "region") {
        return Err(format!(
            "`{k}` is reserved in templates — expected a scenario var name"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Load every dotenv file into the environment (real variables win). Called before any thread
/// is started (setting the environment is only sound then).
pub fn load_env_files(files: &[PathBuf]) -> Result<(), String> {
    for f in files {
        dotenvy::from_path(f).map_err(|e| {
            format!(
                "--env-file {}: {} — expected a readable dotenv file (NAME=value lines)",
                f.display(),
                match &e {
                    dotenvy::Error::Io(io) => io.to_string(),
                    other => other.to_string(),
                }
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_var;

    #[test]
    fn var_needs_a_name_and_an_equals_sign() {
        assert_eq!(
            parse_var("base=http://127.0.0.1:1/a=b").unwrap(),
            ("base".to_string(), "http://127.0.0.1:1/a=b".to_string())
        );
        assert_eq!(parse_var("x=").unwrap(), ("x".to_string(), String::new()));
        assert!(parse_var("novalue").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_var("=v").is_err());
        assert!(parse_var("1a=v").is_err());
        assert!(parse_var("a-b=v").is_err());
        assert!(parse_var("env=v").unwrap_err().contains("reserved"));
    }
}

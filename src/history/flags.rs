//! `sonde serve`'s `--storage.*` flags: where the history lives, how long and how big it may get.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::StoreOptions;

#[derive(Args, Clone, Debug)]
pub struct StorageFlags {
    /// Folder of the history store (history.db, SQLite in WAL mode). Default:
    /// $XDG_DATA_HOME/sonde, else ~/.local/share/sonde, else ./data. An empty value
    /// (--storage.path='') turns history off.
    #[arg(long = "storage.path", value_name = "DIR", value_parser = parse_path)]
    pub path: Option<PathBuf>,

    /// Keep runs (and per-minute rollups) this long; hourly rollups are kept at least 31 days,
    /// so 30-day uptime stays answerable.
    #[arg(long = "storage.retention", default_value = "14d", value_name = "DURATION", value_parser = parse_retention)]
    pub retention: Duration,

    /// Largest size of the store's data; beyond it the oldest runs go first (rollups stay).
    /// Units: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB; 0 = no limit.
    #[arg(long = "storage.max-size", default_value = "2GiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_size: u64,
}

impl StorageFlags {
    /// The folder to use; `None` when history is turned off.
    pub fn folder(&self) -> Option<PathBuf> {
        match &self.path {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(default_folder(
                std::env::var_os("XDG_DATA_HOME"),
                std::env::var_os("HOME"),
            )),
        }
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            retention: self.retention,
            max_size: self.max_size,
            ..StoreOptions::default()
        }
    }
}

/// The XDG base directory rule: `$XDG_DATA_HOME/sonde` when set and absolute, else
/// `$HOME/.local/share/sonde`, else `./data`.
pub fn default_folder(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = abs(xdg) {
        return x.join("sonde");
    }
    if let Some(h) = abs(home) {
        return h.join(".local/share/sonde");
    }
    PathBuf::from("data")
}

/// Any path, the empty one included (history off).
fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 14d or 36h: {e}"))?;
    if d < Duration::from_secs(60) {
        return Err(format!("{s:?}: keep history at least one minute"));
    }
    Ok(d)
}

/// `512MB`, `2GiB`, `0`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512MB or 2GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let v = n * mult;
    if !v.is_finite() || v > u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 kb"), Ok(1500));
        assert!(parse_size("lots").is_err() && parse_size("1XB").is_err());
    }

    #[test]
    fn default_folder_follows_xdg() {
        assert_eq!(
            default_folder(Some("/x".into()), Some("/h".into())),
            PathBuf::from("/x/sonde")
        );
        assert_eq!(
            default_folder(Some("rel".into()), Some("/h".into())),
            PathBuf::from("/h/.local/share/sonde")
        );
        assert_eq!(default_folder(None, None), PathBuf::from("data"));
    }

    #[test]
    fn retention() {
        assert_eq!(parse_retention("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_retention("1s").is_err() && parse_retention("x").is_err());
    }
}

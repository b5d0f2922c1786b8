//! blackbox_exporter's flags (as of its latest release) that are not sonde's own already, each
//! honoured or refused by name with the reason; the table is in docs/blackbox.md.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ExporterFlags {
    /// exporter-toolkit's web configuration: TLS (certificates, client certificates, versions,
    /// cipher suites, curves), HTTP/2, security headers, rate limit and basic auth (bcrypt) on
    /// every endpoint. Re-read when it or a file it names changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Prefix of every endpoint (e.g. /sonde/ behind a reverse proxy). Default: the path of
    /// --web.external-url, else none.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,

    /// The URL sonde is reachable at from outside (a reverse proxy): the default route prefix,
    /// where / redirects with a prefix, and the generatorURL of sonde's alerts.
    #[arg(long = "web.external-url", value_name = "URL", value_parser = parse_external_url)]
    pub external_url: Option<url::Url>,

    /// Recent /probe results kept for the status page and /logs?id= (as many failures again).
    /// 0 keeps none.
    #[arg(long = "history.limit", default_value_t = crate::blackbox::DEFAULT_HISTORY_LIMIT, value_name = "N")]
    pub history_limit: usize,

    /// Level at which each /probe's log lines go to sonde's log: debug, info, warn, error.
    /// Default debug (blackbox's is info; sonde logs at info only what changes state).
    #[arg(long = "log.prober", default_value = "debug", value_name = "LEVEL", value_parser = parse_prober_level)]
    pub log_prober: tracing::Level,

    /// Accepted for blackbox_exporter's unit files: sonde always reloads when a configuration
    /// file changes (inotify), not only with this flag.
    #[arg(long = "config.enable-auto-reload")]
    pub enable_auto_reload: bool,

    /// Accepted and unused: changes are seen when they happen, not polled.
    #[arg(
        long = "config.auto-reload-interval",
        value_name = "SECONDS",
        hide = true
    )]
    pub auto_reload_interval: Option<String>,

    /// Serve on the sockets systemd passed (socket activation, a .socket unit's ListenStream=)
    /// instead of binding --web.listen-address (Linux).
    #[arg(long = "web.systemd-socket")]
    pub systemd_socket: bool,
}

fn parse_external_url(s: &str) -> Result<url::Url, String> {
    if s.starts_with(['"', '\'']) || s.ends_with(['"', '\'']) {
        return Err("URL must not begin or end with quotes".into());
    }
    let u = url::Url::parse(s)
        .map_err(|e| format!("{e} — expected a URL like https://mon.example.com/sonde/"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} — expected http or https", u.scheme()));
    }
    Ok(u)
}

fn parse_prober_level(s: &str) -> Result<tracing::Level, String> {
    match s {
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        "error" => Ok(tracing::Level::ERROR),
        _ => Err(format!("{s:?} — expected one of debug, info, warn, error")),
    }
}

impl ExporterFlags {
    /// `/` or `/x/`: --web.route-prefix, else the path of --web.external-url.
    pub fn route_prefix(&self) -> String {
        let p = match (&self.route_prefix, &self.external_url) {
            (Some(p), _) => p.clone(),
            (None, Some(u)) => u.path().to_string(),
            (None, None) => String::new(),
        };
        crate::web_server::front::normalise_prefix(&p)
    }

    /// The external URL (without a trailing slash), else `scheme://listen`.
    pub fn external_url(&self, listen: std::net::SocketAddr, tls: bool) -> String {
        match &self.external_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("{}://{listen}", if tls { "https" } else { "http" }),
        }
    }

    /// `--web.config.file`, loaded.
    pub fn web_security(
        &self,
    ) -> Result<
        Option<std::sync::Arc<crate::web_server::secure::WebSecurity>>,
        Vec<crate::config::ConfigError>,
    > {
        self.web_config_file
            .clone()
            .map(crate::web_server::secure::WebSecurity::load)
            .transpose()
    }
}

/// `web.config.file` for a command that only checks files (`sonde check`).
pub fn check_web_config(path: &std::path::Path) -> Result<(), Vec<crate::config::ConfigError>> {
    crate::config::web::load(path).map(|_| ())
}

//! `sonde serve`'s flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::runtime::scheduler::DEFAULT_MAX_CONCURRENT_RUNS;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Scenario file or folder (every *.yaml/*.yml below it), or a blackbox_exporter
    /// configuration (`modules:`) for /probe; repeatable. Default: ./sonde.yaml if present, else
    /// a built-in configuration that probes sonde itself.
    #[arg(
        short = 'c',
        long = "config",
        visible_alias = "config.file",
        value_name = "PATH"
    )]
    pub config: Vec<PathBuf>,

    /// Address for the web endpoints (/metrics, /probe, /-/healthy, /api/v1/scenarios…);
    /// repeatable, as blackbox_exporter's: every address serves every endpoint.
    /// blackbox_exporter's `:9115` (every interface) is accepted too.
    #[arg(
        long,
        visible_alias = "web.listen-address",
        default_value = "127.0.0.1:9115",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub listen: Vec<SocketAddr>,

    /// Seconds subtracted from Prometheus' scrape timeout (X-Prometheus-Scrape-Timeout-Seconds)
    /// to give a /probe its deadline, as blackbox_exporter's flag.
    #[arg(long = "timeout-offset", default_value_t = 0.5, value_name = "SECONDS")]
    pub timeout_offset: f64,

    /// Validate the configuration and exit: 0 when valid, 2 otherwise (blackbox_exporter's
    /// --config.check).
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Only probe targets whose host matches: a CIDR (10.0.0.0/8, ::1/128) or a host glob
    /// (*.example.com); repeatable. Others get 403. Default: any target (as blackbox_exporter).
    #[arg(long = "probe.allow-target", value_name = "CIDR|GLOB", value_parser = parse_allow)]
    pub allow_target: Vec<crate::blackbox::safety::Allow>,

    /// At most this many /probe requests at once; beyond, 503. Default: no limit (as
    /// blackbox_exporter).
    #[arg(long = "probe.max-concurrent", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_max_concurrent: Option<u32>,

    /// This agent's region: the `region` label of every series, and the selector for scenarios'
    /// `regions:` lists.
    #[arg(long, value_name = "NAME", value_parser = crate::names::parse_region)]
    pub region: Option<String>,

    /// This agent's name among agents of one region that run the same scenarios (an HA pair):
    /// the `replica` label of every series. Alerts never carry it, so Alertmanager keeps one
    /// alert however many replicas send it. Also `agent: replica:` in agent settings.
    #[arg(long, value_name = "NAME", value_parser = crate::names::parse_replica)]
    pub replica: Option<String>,

    /// At most this many scenario runs at once; further due runs wait (and show as scheduler
    /// lag).
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_RUNS, value_name = "N")]
    pub max_concurrent_runs: usize,

    #[command(flatten)]
    pub agent: crate::agent::AgentFlags,

    #[command(flatten)]
    pub config_flags: crate::config_flags::ConfigFlags,

    #[command(flatten)]
    pub web: crate::web_server::WebFlags,

    #[command(flatten)]
    pub exporter: super::exporter_flags::ExporterFlags,

    #[command(flatten)]
    pub storage: crate::history::flags::StorageFlags,

    #[command(flatten)]
    pub status: crate::status::StatusFlags,
}

impl ServeArgs {
    /// The first listen address: the one the built-in configuration probes and links name.
    pub fn primary_listen(&self) -> SocketAddr {
        self.listen
            .first()
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9115)))
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    // Go's ":9115" means every interface.
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse().map_err(|_| {
        format!("{s:?} is not an address — expected host:port like 127.0.0.1:9115 or :9115")
    })
}

fn parse_allow(s: &str) -> Result<crate::blackbox::safety::Allow, String> {
    s.parse()
}

//! What makes one `sonde serve` process one agent among many: its region and shard (flags win
//! over the agent settings document, [`crate::config::agent`]), the configuration URLs it polls
//! and the files it watches ([`crate::source`]), and the metrics it pushes
//! ([`crate::remote_write`]). `cli` calls [`effective`] once the first configuration is loaded
//! and [`start`] once the app exists.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::config::agent::AgentSettings;
use crate::config::scenario::Config;
use crate::serve::{App, ConfigSource};
use crate::shard::Shard;
use crate::shard_auto::statefulset::StatefulSetApi;
use crate::shard_auto::ShardSpec;

/// `serve` flags for running as one of many agents.
#[derive(Args, Debug, Clone)]
pub struct AgentFlags {
    /// Run only shard I of N of this region's scenarios (consistent hashing of the name): N
    /// agents with 1/N … N/N together run each scenario exactly once. Also `agent: {shard:}`.
    /// `auto` (or `auto/N`) in a StatefulSet: shard = pod ordinal + 1 (from the hostname or
    /// SONDE_SHARD_ORDINAL) of N, SONDE_SHARD_COUNT, or else the StatefulSet's replicas read from
    /// the Kubernetes API and followed, so scaling it reshards.
    #[arg(long, value_name = "I/N|auto", value_parser = crate::shard_auto::parse)]
    pub shard: Option<ShardSpec>,

    /// How often -c URLs are fetched again (with If-None-Match / If-Modified-Since).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_interval)]
    pub config_poll_interval: Duration,

    /// How often `--shard auto` re-reads its StatefulSet's replicas from the Kubernetes API (only
    /// when the count is not given).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_interval)]
    pub shard_refresh_interval: Duration,

    /// A file holding the bearer token sent when fetching -c URLs.
    #[arg(long, value_name = "FILE")]
    pub config_bearer_token_file: Option<std::path::PathBuf>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .ok()
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| format!("{s:?} — expected a duration of at least 1s, such as 30s or 5m"))
}

/// The `ConfigSource` for `-c` arguments that include a URL; `None` when all are paths.
pub fn url_source(
    args: &[std::path::PathBuf],
    flags: &AgentFlags,
    max_bytes: u64,
) -> Option<Result<ConfigSource, String>> {
    if !args.iter().any(|a| crate::source::is_url(a)) {
        return None;
    }
    let bearer = match &flags.config_bearer_token_file {
        None => None,
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                return Some(Err(format!(
                    "--config-bearer-token-file {}: {e}",
                    f.display()
                )))
            }
        },
    };
    Some(
        crate::source::Sources::new(args, bearer, flags.config_poll_interval)
            .map(|s| ConfigSource::Remote(Arc::new(s.with_max_bytes(max_bytes)))),
    )
}

/// This agent's region and shard: the flag, else the agent settings document.
pub fn effective(
    region_flag: Option<String>,
    flags: &AgentFlags,
    initial: &Config,
) -> (Option<String>, Option<ShardSpec>) {
    (
        region_flag.or_else(|| initial.agent.region.clone()),
        flags.shard.clone().or_else(|| initial.agent.shard.clone()),
    )
}

/// The shard to start with, and — for `--shard auto` counted by the StatefulSet — what to follow.
pub struct StartShard {
    pub shard: Option<Shard>,
    pub follow: Option<ShardFollow>,
}

/// A StatefulSet whose `replicas` this pod follows (see [`crate::shard_auto::statefulset`]).
pub struct ShardFollow {
    api: StatefulSetApi,
    ordinal: u32,
    every: Duration,
}

/// Turn the `--shard` spec into a shard: a StatefulSet's count is read once now, so the first
/// runs are already this pod's share; a pod that cannot read it refuses to start and says why.
pub async fn start_shard(
    spec: Option<ShardSpec>,
    flags: &AgentFlags,
) -> Result<StartShard, String> {
    let Some(ShardSpec::StatefulSet { ordinal, name }) = spec else {
        return Ok(StartShard {
            shard: spec.and_then(|s| s.fixed()),
            follow: None,
        });
    };
    let fail = |e: String| format!("--shard auto: {e}");
    let api = StatefulSetApi::in_cluster(&name).map_err(fail)?;
    let count = api.replicas().await.map_err(fail)?;
    let shard = shard_of(ordinal, count)
        .map_err(|e| fail(format!("StatefulSet {}: {e}", api.describe())))?;
    tracing::info!(statefulset = api.describe(), %shard, "shard from the StatefulSet's replicas");
    Ok(StartShard {
        shard: Some(shard),
        follow: Some(ShardFollow {
            api,
            ordinal,
            every: flags.shard_refresh_interval,
        }),
    })
}

/// Ordinal `k` of `count` replicas is shard `k+1/count`; a pod beyond the count has no share.
fn shard_of(ordinal: u32, count: u32) -> Result<Shard, String> {
    if ordinal >= count {
        return Err(format!(
            "this pod's ordinal is {ordinal} but the StatefulSet has {count} replicas"
        ));
    }
    format!("{}/{count}", ordinal + 1).parse()
}

/// Re-read the StatefulSet's replicas every `every` and reshard when they change. Logs only the
/// changes: a new count, the API failing (once) and answering again. A pod whose ordinal falls
/// outside a smaller count keeps its share until Kubernetes stops it, so no scenario goes unrun
/// in between.
async fn follow_statefulset(
    app: Arc<App>,
    f: ShardFollow,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut failing = false;
    let mut beyond = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(f.every) => {}
        }
        let count = match f.api.replicas().await {
            Ok(n) => n,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        statefulset = f.api.describe(),
                        "shard: cannot read the StatefulSet's replicas, keeping shard {}: {e}",
                        display_shard_of(app.scheduler.shard())
                    );
                }
                failing = true;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!(
                statefulset = f.api.describe(),
                "shard: the StatefulSet's replicas are readable again"
            );
        }
        let current = app.scheduler.shard();
        if current.map(|s| s.count) == Some(count) {
            continue;
        }
        match shard_of(f.ordinal, count) {
            Ok(next) => {
                beyond = None;
                app.reshard(next).await;
                tracing::info!(statefulset = f.api.describe(), from = %display_shard_of(current), to = %next, "shard: the StatefulSet was scaled; resharded");
            }
            Err(why) if beyond != Some(count) => {
                beyond = Some(count);
                tracing::info!(
                    statefulset = f.api.describe(),
                    "shard: {why}; keeping shard {} until Kubernetes stops this pod",
                    display_shard_of(current)
                );
            }
            Err(_) => {}
        }
    }
}

fn display_shard_of(s: Option<Shard>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "none".into())
}

/// Start the watchers, pollers and the remote_write pusher; they stop with `stop`. Await
/// [`Running::finish`] before exiting: it pushes what is still queued (briefly).
pub fn start(
    app: Arc<App>,
    stop: tokio_util::sync::CancellationToken,
    follow: Option<ShardFollow>,
) -> Running {
    if let Some(f) = follow {
        tokio::spawn(follow_statefulset(app.clone(), f, stop.clone()));
    }
    let paths = match &app.source {
        ConfigSource::Paths(p) => p.clone(),
        ConfigSource::Remote(s) => {
            tokio::spawn(crate::source::poll(app.clone(), s.clone(), stop.clone()));
            s.paths()
        }
        ConfigSource::BuiltIn(_) => Vec::new(),
    };
    crate::source::watch::watch(app.clone(), paths, stop.clone());
    let cfg = app.config();
    if let Some(rw) = cfg.agent.remote_write.clone() {
        let mut rw = rw;
        // Pushed series carry the region even where the series itself has none (sonde's own).
        if let Some(region) = app.scheduler.region() {
            if !rw.external_labels.iter().any(|(k, _)| k == "region") {
                rw.external_labels
                    .push(("region".into(), region.to_string()));
            }
        }
        if let Some(replica) = app.scheduler.replica() {
            if !rw.external_labels.iter().any(|(k, _)| k == "replica") {
                rw.external_labels
                    .push(("replica".into(), replica.to_string()));
            }
        }
        return Running {
            push: crate::remote_write::start(app.metrics.clone(), rw, stop),
        };
    }
    Running { push: None }
}

/// The agent's background work that must end before the process does.
pub struct Running {
    push: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Wait for the remote_write queue to be flushed (bounded by its grace period).
    pub async fn finish(self) {
        if let Some(h) = self.push {
            let _ = h.await;
        }
    }
}

/// Region, shard and remote_write are read at start: a reload that changes them says so instead
/// of half-applying (the series already carry the old region). `alerting:` is reloaded.
pub fn warn_on_agent_change(old: &Config, new: &Config) {
    let (a, b): (&AgentSettings, &AgentSettings) = (&old.agent, &new.agent);
    if a.region != b.region || a.shard != b.shard || a.remote_write != b.remote_write {
        tracing::warn!(
            "the agent settings (region, shard, remote_write) changed; they apply at the next restart"
        );
    }
}

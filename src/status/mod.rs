//! The status page: server-rendered HTML and CSS with a small script of our own (nothing from a
//! CDN, so it works offline). `/` is the overview, `/scenario/{name}` one scenario's page,
//! `/regions` the region × scenario grid read from a Prometheus-compatible query API.
//!
//! The same pages, read-only and limited to scenarios marked `public: true`, are the public
//! status page ([`public_router`]): no trace, no error message, no configuration, no `/probe`
//! and no `/api` — served on its own listener (`--web.public-listen-address`) so it can face the
//! internet while the admin endpoints do not.
//!
//! Every value from outside is escaped where it is written ([`html::esc`]): scenario names,
//! groups, reasons and traces are hostile input.

mod assets;
pub mod charts;
pub mod html;
pub mod model;
pub mod overview;
pub mod regions;
mod scenario;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;

use crate::history::HistoryRead;
use crate::serve::App;

/// The status page's flags on `serve`.
#[derive(Args, Debug, Clone)]
pub struct StatusFlags {
    /// Serve the public status page (scenarios with `public: true`, read-only, no traces, no
    /// configuration, no /probe, no /api) on this address. Default: no public page.
    #[arg(long = "web.public-listen-address", value_name = "ADDR")]
    pub public_listen: Option<SocketAddr>,

    /// The public listener's own web configuration (exporter-toolkit's format, as
    /// --web.config.file): TLS, headers, users if it should not be open to all. Default: plain
    /// HTTP, open — the admin listeners' --web.config.file does not apply to it.
    #[arg(
        long = "web.public-config.file",
        value_name = "FILE",
        requires = "public_listen"
    )]
    pub public_config_file: Option<std::path::PathBuf>,

    /// The status page's title (and the public page's).
    #[arg(long = "status.title", default_value = "sonde", value_name = "TEXT")]
    pub title: String,

    /// Without the history store, keep this many last runs per scenario in memory for the
    /// status page's strips and charts (about 60 bytes a run); 0 keeps none.
    #[arg(long = "status.recent-runs", default_value_t = 90, value_name = "N")]
    pub recent_runs: usize,

    /// A Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics) the
    /// status page reads its region × scenario grid from, e.g. http://prometheus:9090.
    /// (Kept as text, checked when parsed: a `Url` would make `serve`'s arguments the one large
    /// variant of the command enum.)
    #[arg(long = "status.prometheus-url", value_name = "URL", value_parser = parse_query_api)]
    pub prometheus_url: Option<String>,
}

fn parse_query_api(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() {
        return Err(format!(
            "{s:?}: expected an http(s) URL like http://prometheus:9090"
        ));
    }
    Ok(s.to_string())
}

impl Default for StatusFlags {
    fn default() -> Self {
        StatusFlags {
            public_listen: None,
            public_config_file: None,
            title: "sonde".into(),
            recent_runs: 90,
            prometheus_url: None,
        }
    }
}

/// What the pages of one listener share.
pub struct Status {
    pub app: Arc<App>,
    pub site: String,
    pub public: bool,
    /// The path prefix the pages are served under ("" at the root).
    pub base: String,
    pub prometheus: Option<regions::Prometheus>,
}

impl Status {
    pub fn history(&self) -> Option<Arc<dyn HistoryRead>> {
        self.app.page_history()
    }

    /// A note after the summary on where the history comes from.
    pub fn history_note(&self) -> &'static str {
        match self.app.page_history().as_deref() {
            None => " · history off",
            Some(h) if h.memory_only() => " · history: last runs in memory",
            Some(_) => "",
        }
    }

    /// `body` in the page layout.
    pub fn page(&self, title: &str, body: &str) -> String {
        let mut nav: Vec<(&str, &str)> = vec![("/", "Overview")];
        if !self.public {
            if self.prometheus.is_some() {
                nav.push(("/regions", "Regions"));
            }
            nav.extend([
                ("/metrics", "Metrics"),
                ("/config", "Configuration"),
                ("/api/v1/scenarios", "API"),
            ]);
        }
        html::Page {
            title,
            site: &self.site,
            base: &self.base,
            nav: &nav,
        }
        .render(body)
    }
}

/// The admin status page, merged into the main router.
pub fn router(app: Arc<App>, flags: &StatusFlags) -> Router {
    router_under(app, flags, "/")
}

/// The admin status page served under `--web.route-prefix` (`/sonde/`): its links carry it.
pub fn router_under(app: Arc<App>, flags: &StatusFlags, prefix: &str) -> Router {
    let status = Arc::new(Status {
        app,
        site: flags.title.clone(),
        public: false,
        base: prefix.trim_end_matches('/').to_string(),
        prometheus: flags
            .prometheus_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(regions::Prometheus::new),
    });
    pages(status, true)
}

/// The public status page: the only routes of the public listener.
pub fn public_router(app: Arc<App>, flags: &StatusFlags) -> Router {
    let status = Arc::new(Status {
        app,
        site: flags.title.clone(),
        public: true,
        base: String::new(),
        prometheus: None,
    });
    pages(status, false)
}

fn pages(status: Arc<Status>, admin: bool) -> Router {
    let mut r = Router::new()
        .route("/", get(overview_page))
        .route("/status/list", get(overview_list))
        .route("/scenario/{*name}", get(scenario_page))
        .route("/assets/{file}", get(assets::serve));
    if admin {
        r = r.route("/regions", get(regions_page));
    }
    r.with_state(status)
}

/// Pages are HTML that must not be framed by another site or sniffed as something else.
fn html(code: StatusCode, body: String) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "same-origin"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn overview_page(State(status): State<Arc<Status>>, RawQuery(q): RawQuery) -> Response {
    html(StatusCode::OK, overview::page(&status, q.as_deref()).await)
}

async fn overview_list(State(status): State<Arc<Status>>, RawQuery(q): RawQuery) -> Response {
    html(StatusCode::OK, overview::list(&status, q.as_deref()).await)
}

async fn scenario_page(
    State(status): State<Arc<Status>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match scenario::page(&status, &name, q.as_deref()).await {
        Some(body) => html(StatusCode::OK, body),
        None => {
            let body = format!(
                "<p class=\"empty\">No scenario named <code>{}</code>{}.</p><p><a href=\"{}/\">Back to the overview</a></p>",
                html::esc(&name),
                if status.public { " on this page" } else { "" },
                html::esc(&status.base)
            );
            html(StatusCode::NOT_FOUND, status.page("not found", &body))
        }
    }
}

async fn regions_page(State(status): State<Arc<Status>>, RawQuery(q): RawQuery) -> Response {
    let body = regions::page(&status, q.as_deref()).await;
    html(StatusCode::OK, status.page("Regions", &body))
}

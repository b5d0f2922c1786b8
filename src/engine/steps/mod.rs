//! The step executors, one file per step kind, and the one place that picks the executor of a
//! built step's [`Action`]. Adding a kind adds its file and one arm here.

pub mod dns;
pub mod http;
pub mod icmp;
pub mod sleep;
pub mod tcp;
pub mod tcp_conn;
pub mod tls;
pub mod ws;

use tokio::time::Instant;

use crate::config::scenario::{Action, Step};
use crate::engine::report::{Stage, StepReport};
use crate::engine::{RunCtx, Share};

/// What an executor gets: the step (for its name and kind), where it runs, and its deadline.
pub struct StepCx<'a> {
    pub step: &'a Step,
    pub stage: Stage,
    pub deadline: Instant,
    pub share: Share,
}

/// Run the probe or action of a built step (the engine's checks and captures come after).
pub async fn exec(action: &Action, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    match action {
        Action::Http(r) => http::exec(r, cx, ctx).await,
        Action::Tcp(r) => tcp::exec(r, cx).await,
        Action::Dns(r) => dns::exec(r, cx).await,
        Action::Icmp(r) => icmp::exec(r, cx).await,
        Action::Tls(r) => tls::exec(r, cx).await,
        Action::Sleep(d) => sleep::exec(*d, cx).await,
        Action::Ws(w) => ws::exec(w, cx, ctx).await,
        Action::TcpConn(t) => tcp_conn::exec(t, cx, ctx).await,
    }
}

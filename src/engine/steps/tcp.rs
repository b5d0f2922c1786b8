//! `tcp` steps: the probe of `sonde_probes::tcp`, its outcome as the step's report.

use sonde_probes::tcp::{probe, TcpRequest};

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};

pub async fn exec(r: &TcpRequest, cx: &StepCx<'_>) -> StepReport {
    let o = probe(r, cx.deadline).await;
    StepReport::from_outcome(cx.step, cx.stage, o, |f| StepFacts::Tcp(Box::new(f)))
}

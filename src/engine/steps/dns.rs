//! `dns` steps: the probe of `sonde_probes::dns`, its outcome as the step's report.

use sonde_probes::dns::{probe, DnsRequest};

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};

pub async fn exec(r: &DnsRequest, cx: &StepCx<'_>) -> StepReport {
    let o = probe(r, cx.deadline).await;
    StepReport::from_outcome(cx.step, cx.stage, o, |f| StepFacts::Dns(Box::new(f)))
}

//! `icmp` steps: the probe of `sonde_probes::icmp`, its outcome as the step's report.

use sonde_probes::icmp::{probe, IcmpRequest};

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};

pub async fn exec(r: &IcmpRequest, cx: &StepCx<'_>) -> StepReport {
    let o = probe(r, cx.deadline).await;
    StepReport::from_outcome(cx.step, cx.stage, o, |f| StepFacts::Icmp(Box::new(f)))
}

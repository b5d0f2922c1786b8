//! `tls` steps: the probe of `sonde_probes::tls`, its outcome as the step's report.

use sonde_probes::tls::{probe, TlsRequest};

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};

pub async fn exec(r: &TlsRequest, cx: &StepCx<'_>) -> StepReport {
    let o = probe(r, cx.deadline).await;
    StepReport::from_outcome(cx.step, cx.stage, o, |f| StepFacts::Tls(Box::new(f)))
}

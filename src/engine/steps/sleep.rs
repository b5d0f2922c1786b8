//! `sleep` steps: wait, unless the wait would outlast the deadline.

use std::time::Duration;

use sonde_probes::{fmt_duration, Failure, FailureReason};
use tokio::time::Instant;

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};

pub async fn exec(d: Duration, cx: &StepCx<'_>) -> StepReport {
    let start = Instant::now();
    let until = start + d;
    tokio::time::sleep_until(until.min(cx.deadline)).await;
    let mut r = StepReport::passed(
        cx.step.name.clone(),
        cx.step.kind,
        cx.stage,
        start.elapsed(),
        StepFacts::None {},
    );
    if until > cx.deadline {
        r.fail(Failure::new(
            FailureReason::Timeout,
            format!(
                "sleep {} would end after the deadline (timed out after {})",
                fmt_duration(d),
                fmt_duration(r.duration)
            ),
        ));
    } else {
        r.event(format!("slept {}", fmt_duration(d)));
    }
    r
}

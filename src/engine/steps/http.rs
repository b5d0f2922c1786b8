//! `http` steps: the probe of `sonde_probes::http`, with the run's cookie jar and kept-alive
//! connections when the scenario shares them.

use sonde_probes::http::{probe, probe_pooled, HttpRequest};

use super::StepCx;
use crate::engine::report::{StepFacts, StepReport};
use crate::engine::RunCtx;

pub async fn exec(r: &HttpRequest, cx: &StepCx<'_>, ctx: &mut RunCtx) -> StepReport {
    let jar = if cx.share.cookies {
        ctx.cookie_header(&r.url)
    } else {
        None
    };
    let with_jar;
    let req: &HttpRequest = match jar {
        // A Cookie header written in the step wins over the jar.
        Some(c) if !r.headers.contains_key(::http::header::COOKIE) => {
            let mut q = r.clone();
            if let Ok(v) = ::http::HeaderValue::from_str(&c) {
                q.headers.insert(::http::header::COOKIE, v);
            }
            with_jar = q;
            &with_jar
        }
        _ => r,
    };
    let o = if cx.share.connections {
        probe_pooled(req, cx.deadline, ctx.http_pool()).await
    } else {
        probe(req, cx.deadline).await
    };
    if cx.share.cookies {
        ctx.store_cookies(&r.url, &o.facts);
    }
    StepReport::from_outcome(cx.step, cx.stage, o, |f| StepFacts::Http(Box::new(f)))
}

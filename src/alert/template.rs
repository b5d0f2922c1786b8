//! Rendering alert texts (`summary`, `description`, `runbook_url`) when an alert fires or
//! resolves. Templates were checked at load (syntax, variables); a template that still fails
//! here (e.g. a filter given the wrong type) renders as itself with the error appended, so a
//! notification is never lost to a typo.

use std::collections::BTreeMap;

/// What a template sees (see `config::alert::TEMPLATE_VARIABLES`).
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub scenario: String,
    /// Empty when the agent has no region.
    pub region: String,
    /// The failing step; empty when the run failed before any step (sonde's own error).
    pub step: String,
    /// The bounded failure reason (`connect`, `status`, …).
    pub reason: String,
    /// The failure message, secrets redacted.
    pub error: String,
    /// The failing run's duration, e.g. `1.2s`.
    pub latency: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
}

/// Render `src` with `ctx`.
pub fn render(src: &str, ctx: &Context) -> String {
    let env = minijinja::Environment::new();
    use minijinja::Value as J;
    let labels: Vec<(String, J)> = ctx
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), J::from(v.as_str())))
        .collect();
    let vars = J::from_pairs(vec![
        ("scenario", J::from(ctx.scenario.as_str())),
        ("region", J::from(ctx.region.as_str())),
        ("step", J::from(ctx.step.as_str())),
        ("reason", J::from(ctx.reason.as_str())),
        ("error", J::from(ctx.error.as_str())),
        ("latency", J::from(ctx.latency.as_str())),
        ("severity", J::from(ctx.severity.as_str())),
        ("status", J::from(ctx.status.as_str())),
        ("labels", J::from_pairs(labels)),
    ]);
    match env.render_str(src, vars) {
        Ok(s) => s,
        Err(e) => format!("{src} (template error: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alert::{DEFAULT_DESCRIPTION, DEFAULT_SUMMARY};

    #[test]
    fn defaults_read_well_with_and_without_a_region_and_step() {
        let mut c = Context {
            scenario: "checkout".into(),
            region: "eu-west".into(),
            step: "login".into(),
            reason: "connect".into(),
            error: "connection refused".into(),
            latency: "3ms".into(),
            ..Default::default()
        };
        assert_eq!(render(DEFAULT_SUMMARY, &c), "checkout fails in eu-west");
        assert_eq!(
            render(DEFAULT_DESCRIPTION, &c),
            "Step login failed (connect) after 3ms: connection refused"
        );
        c.region.clear();
        c.step.clear();
        assert_eq!(render(DEFAULT_SUMMARY, &c), "checkout fails");
        assert_eq!(render(DEFAULT_DESCRIPTION, &c), "The scenario's runs fail.");
    }

    #[test]
    fn a_template_that_fails_at_run_time_still_gives_text() {
        let c = Context::default();
        let out = render("{{ scenario | nosuchfilter }}", &c);
        assert!(out.contains("template error"), "{out}");
    }
}

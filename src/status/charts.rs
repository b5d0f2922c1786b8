//! The pictures of the status page, as inline HTML and SVG (no script needed to see them): the
//! uptime strip, the latency sparkline, the p50/p95 chart of a step and the waterfall of a run.

use std::fmt::Write;

use crate::history::{LatencyPoint, Slot};

use super::html::{esc, secs, time};

/// A slot's colour class: `n` no run, `u` all passed, `p` some failed, `d` all failed.
pub fn slot_class(s: &Slot) -> &'static str {
    match (s.runs, s.failures) {
        (0, _) => "n",
        (_, 0) => "u",
        (r, f) if f >= r => "d",
        _ => "p",
    }
}

/// A slot's tooltip data, compact (`runs,failures,mean seconds,reason`): the script writes the
/// words and the times (from the strip's `data-t0` and `data-w`), so 50 strips of 90 slots stay
/// small. The public page leaves the reason out.
pub fn slot_data(s: &Slot, public: bool) -> String {
    let mean = s
        .mean_duration_s
        .map(|d| format!("{d:.4}"))
        .unwrap_or_default();
    let reason = if public {
        ""
    } else {
        s.last_reason.as_deref().unwrap_or("")
    };
    format!("{},{},{mean},{}", s.runs, s.failures, reason)
}

/// The strip: one `<i>` per slot, oldest left, coloured by class; the script shows each slot's
/// tooltip on hover and on the arrow keys, and the strip's label says it in short.
pub fn strip(slots: &[Slot], public: bool) -> String {
    let mut out = String::with_capacity(slots.len() * 32 + 200);
    let down = slots.iter().filter(|s| s.failures > 0).count();
    let (t0, w) = match (slots.first(), slots.last()) {
        (Some(a), Some(_)) => (a.start_ms, a.end_ms - a.start_ms),
        _ => (0, 0),
    };
    let _ = write!(
        out,
        "<div class=\"strip\" tabindex=\"0\" role=\"img\" data-t0=\"{t0}\" data-w=\"{w}\" aria-label=\"{} slots from {} to now: {} with failures\">",
        slots.len(),
        esc(&time(t0)),
        down
    );
    for s in slots {
        if s.runs == 0 {
            out.push_str("<i class=\"n\"></i>");
            continue;
        }
        let _ = write!(
            out,
            "<i class=\"{}\" data-s=\"{}\"></i>",
            slot_class(s),
            esc(&slot_data(s, public))
        );
    }
    out.push_str("</div>");
    out
}

/// A small line of p50 latencies (no axes), `w`×`h` pixels.
pub fn sparkline(points: &[LatencyPoint], w: f64, h: f64) -> String {
    if points.is_empty() {
        return format!(
            "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" aria-hidden=\"true\"></svg>"
        );
    }
    let max = points.iter().map(|p| p.p50_s).fold(0.0, f64::max).max(1e-6);
    let (t0, t1) = (
        points[0].t_ms,
        points[points.len() - 1].t_ms.max(points[0].t_ms + 1),
    );
    let mut path = String::new();
    for p in points {
        let x = (p.t_ms - t0) as f64 / (t1 - t0) as f64 * (w - 2.0) + 1.0;
        let y = h - 1.0 - p.p50_s / max * (h - 2.0);
        let _ = write!(path, "{x:.1},{y:.1} ");
    }
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"median latency, up to {}\"><polyline points=\"{}\"/></svg>",
        secs(max),
        path.trim_end()
    )
}

/// A p50/p95 chart of `[from_ms, to_ms]` with axes: one `circle` per point (with its own
/// tooltip), placed on the whole period so a gap shows as a gap.
pub fn latency_chart(points: &[LatencyPoint], title: &str, from_ms: i64, to_ms: i64) -> String {
    let (w, h, left, bottom) = (480.0, 200.0, 58.0, 22.0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption>",
        esc(title)
    );
    if points.is_empty() {
        out.push_str("<p class=\"muted\">No runs in this period.</p></figure>");
        return out;
    }
    let max = points.iter().map(|p| p.p95_s).fold(0.0, f64::max).max(1e-6) * 1.1;
    let t0 = from_ms.min(points[0].t_ms);
    let t1 = to_ms.max(points[points.len() - 1].t_ms).max(t0 + 1);
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (w - left - 8.0);
    let y = |v: f64| 6.0 + (1.0 - v / max) * (h - bottom - 6.0);
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{} points, p95 up to {}\">",
        points.len(),
        secs(max / 1.1)
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = max * frac;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - 8.0,
            left - 4.0,
            y(v) + 4.0,
            secs(v),
            y = y(v)
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis\" x=\"{left}\" y=\"{}\">{}</text><text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        h - 4.0,
        esc(&time(t0)),
        w - 8.0,
        h - 4.0,
        esc(&time(t1))
    );
    for (class, get) in [
        (
            "p95",
            (|p: &LatencyPoint| p.p95_s) as fn(&LatencyPoint) -> f64,
        ),
        ("p50", |p: &LatencyPoint| p.p50_s),
    ] {
        let pts: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t_ms), y(get(p))))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"{class}\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    for p in points {
        let _ = write!(
            out,
            "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" data-tip=\"{}\"/>",
            x(p.t_ms),
            y(p.p50_s),
            esc(&format!(
                "{} · {} runs · p50 {} · p95 {}",
                time(p.t_ms),
                p.count,
                secs(p.p50_s),
                secs(p.p95_s)
            ))
        );
    }
    out.push_str("</svg><p class=\"legend\"><span class=\"k p50\"></span>p50 <span class=\"k p95\"></span>p95</p></figure>");
    out
}

/// One bar of a waterfall: a label, where it starts and how long it lasts (seconds), its class.
pub struct Bar {
    pub label: String,
    pub start_s: f64,
    pub len_s: f64,
    pub class: &'static str,
}

/// The waterfall of a run: bars placed on one time axis, as rows of a table so it reads on a
/// narrow screen and to a screen reader.
pub fn waterfall(bars: &[Bar]) -> String {
    let total = bars
        .iter()
        .map(|b| b.start_s + b.len_s)
        .fold(0.0, f64::max)
        .max(1e-6);
    let mut out = String::from(
        "<table class=\"waterfall\"><thead><tr><th scope=\"col\">part</th><th scope=\"col\">time</th><th scope=\"col\" class=\"wf-col\">timeline</th></tr></thead><tbody>",
    );
    for b in bars {
        let left = b.start_s / total * 100.0;
        let width = (b.len_s / total * 100.0).max(0.4);
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"wf-col\"><div class=\"wf\"><span class=\"bar {}\" style=\"margin-left:{left:.2}%;width:{width:.2}%\"></span></div></td></tr>",
            b.class,
            esc(&b.label),
            secs(b.len_s),
            b.class
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(runs: u64, failures: u64) -> Slot {
        Slot {
            runs,
            failures,
            last_reason: (failures > 0).then(|| "<b>timeout</b>".into()),
            ..Slot::default()
        }
    }

    #[test]
    fn a_slot_is_coloured_by_its_results() {
        assert_eq!(slot_class(&slot(0, 0)), "n");
        assert_eq!(slot_class(&slot(3, 0)), "u");
        assert_eq!(slot_class(&slot(3, 1)), "p");
        assert_eq!(slot_class(&slot(3, 3)), "d");
    }

    #[test]
    fn the_strip_escapes_reasons_and_the_public_one_shows_none() {
        let s = strip(&[slot(2, 1)], false);
        assert!(
            s.contains("data-s=\"2,1,,&lt;b&gt;timeout&lt;/b&gt;\""),
            "{s}"
        );
        let p = strip(&[slot(2, 1)], true);
        assert!(!p.contains("timeout"), "{p}");
    }

    #[test]
    fn the_chart_has_a_point_per_bucket() {
        let pts: Vec<LatencyPoint> = (0..5)
            .map(|i| LatencyPoint {
                t_ms: i * 1000,
                count: 1,
                p50_s: 0.1,
                p95_s: 0.2,
            })
            .collect();
        let c = latency_chart(&pts, "step <x>", 0, 5000);
        assert_eq!(c.matches("<circle").count(), 5);
        assert!(c.contains("step &lt;x&gt;"));
    }
}

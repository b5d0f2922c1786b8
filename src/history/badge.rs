//! README badges: a flat two-part SVG (label | value) in the shields.io look, drawn here so a
//! badge needs no third-party service. Text is XML-escaped; widths come from a rough table of
//! Verdana 11 px advances (what shields uses), so labels fit without a font at hand.

/// Badge colours.
pub const GREEN: &str = "#4c1";
pub const YELLOW: &str = "#dfb317";
pub const ORANGE: &str = "#fe7d37";
pub const RED: &str = "#e05d44";
pub const GREY: &str = "#9f9f9f";

/// Approximate advance of `c` in Verdana 11 px.
fn advance(c: char) -> f64 {
    match c {
        'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' => 3.5,
        'f' | 't' | 'r' | ' ' | '(' | ')' | '[' | ']' | '/' | '-' => 4.6,
        'm' | 'w' | 'M' | 'W' | '%' => 10.5,
        'A'..='Z' => 7.6,
        _ => 6.8,
    }
}

fn text_width(s: &str) -> u32 {
    s.chars().map(advance).sum::<f64>().ceil() as u32
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The SVG of a badge `label | value` with `color` behind the value.
pub fn svg(label: &str, value: &str, color: &str) -> String {
    // Long labels are cut: a badge is a glance, and its width must stay bounded.
    let cut = |s: &str| -> String {
        if s.chars().count() > 64 {
            s.chars().take(63).chain(['…']).collect()
        } else {
            s.to_string()
        }
    };
    let (label, value) = (cut(label), cut(value));
    let lw = text_width(&label) + 10;
    let vw = text_width(&value) + 10;
    let w = lw + vw;
    let (l, v) = (escape(&label), escape(&value));
    let color = escape(color);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{l}: {v}"><title>{l}: {v}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="15" fill="#010101" fill-opacity=".3">{l}</text><text x="{lx}" y="14">{l}</text><text x="{vx}" y="15" fill="#010101" fill-opacity=".3">{v}</text><text x="{vx}" y="14">{v}</text></g></svg>"##,
        lx = f64::from(lw) / 2.0,
        vx = f64::from(lw) + f64::from(vw) / 2.0,
    )
}

/// An uptime ratio's colour: green from 99.9 %, yellow from 99 %, orange from 95 %, else red.
pub fn uptime_color(ratio: Option<f64>) -> &'static str {
    match ratio {
        None => GREY,
        Some(r) if r >= 0.999 => GREEN,
        Some(r) if r >= 0.99 => YELLOW,
        Some(r) if r >= 0.95 => ORANGE,
        Some(_) => RED,
    }
}

/// `99.95%`: two decimals, trailing zeros kept short (`100%`).
pub fn percent(ratio: f64) -> String {
    let p = (ratio * 100.0 * 100.0).floor() / 100.0;
    let s = format!("{p:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A latency in words: `850ms`, `1.2s`.
pub fn latency(secs: f64) -> String {
    if secs < 1.0 {
        format!("{}ms", (secs * 1000.0).round() as u64)
    } else {
        format!("{:.1}s", secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_widths_grow() {
        let s = svg("<script>", "a&b\"", GREEN);
        assert!(s.contains("&lt;script&gt;") && s.contains("a&amp;b&quot;"));
        assert!(!s.contains("<script>"));
        assert!(text_width("mmmm") > text_width("iiii"));
        assert!(svg(&"x".repeat(500), "v", RED).len() < 3000);
    }

    #[test]
    fn numbers() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.99951), "99.95%");
        assert_eq!(percent(0.5), "50%");
        // Never rounds up to a better figure than the truth.
        assert_eq!(percent(0.99999), "99.99%");
        assert_eq!(latency(0.0123), "12ms");
        assert_eq!(latency(1.24), "1.2s");
        assert_eq!(uptime_color(Some(0.9995)), GREEN);
        assert_eq!(uptime_color(Some(0.9)), RED);
        assert_eq!(uptime_color(None), GREY);
    }
}

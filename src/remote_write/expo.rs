//! Samples from sonde's own text exposition: remote_write pushes exactly what `/metrics` shows,
//! so the two can never disagree about names or labels.

/// One series' labels, `__name__` first, then as exposed.
pub type Labels = Vec<(String, String)>;

/// Parse the Prometheus text format (0.0.4) as sonde writes it: `name{k="v",…} value` lines,
/// comments skipped. A line that does not parse is skipped (it cannot happen with sonde's own
/// encoder; a panic or an error would cost every other sample).
pub fn parse(text: &str) -> Vec<(Labels, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// `name{labels} value` → (labels with `__name__`, value); the series part is the text before
/// the value, used as the series' identity.
pub fn parse_line(line: &str) -> Option<(Labels, f64)> {
    let (series, value) = split_value(line)?;
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((parse_series(series)?, value))
}

/// The series part and the value of a sample line.
pub fn split_value(line: &str) -> Option<(&str, &str)> {
    // The value follows the last space outside the braces; label values may hold spaces.
    let end = match line.rfind('}') {
        Some(i) => i + 1,
        None => line.find(' ')?,
    };
    let (series, rest) = line.split_at(end);
    let value = rest.split_whitespace().next()?;
    Some((series, value))
}

fn parse_series(s: &str) -> Option<Labels> {
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let Some(rest) = rest else {
        return Some(labels);
    };
    let mut chars = rest.chars().peekable();
    loop {
        match chars.peek()? {
            '}' => return Some(labels),
            ',' | ' ' => {
                chars.next();
                continue;
            }
            _ => {}
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonde_lines_parse_with_escapes() {
        let text = "# HELP x y\n# TYPE x counter\nsonde_build_info{version=\"0.1.0\"} 1\n\
                    sonde_scenario_runs_total{scenario=\"s\",team=\"t\\\"1 a\\\\b\\n\",result=\"success\"} 3\n\
                    sonde_scheduler_scenarios 2\nx_bucket{le=\"+Inf\"} NaN\n# EOF\n";
        let got = parse(text);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0[1], ("version".to_string(), "0.1.0".to_string()));
        assert_eq!(
            got[1].0,
            vec![
                ("__name__".into(), "sonde_scenario_runs_total".into()),
                ("scenario".into(), "s".into()),
                ("team".into(), "t\"1 a\\b\n".into()),
                ("result".into(), "success".into()),
            ]
        );
        assert_eq!(got[1].1, 3.0);
        assert_eq!(got[2].0.len(), 1);
        assert!(got[3].1.is_nan());
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        for bad in ["x{a=\"b\" 1", "x{a=b} 1", "x", "x{a=\"b\"} abc", "{"] {
            assert!(parse_line(bad).is_none(), "{bad}");
        }
    }
}

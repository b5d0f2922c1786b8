//! Taking values out of a step's outcome: captures for later templates, and the documents that
//! JSONPath expectations look into. A capture that finds nothing is an error that says what was
//! searched, never an empty string.

use serde_json::Value as J;
use serde_json_path::JsonPath;
use sonde_probes::ws::Payload;

use crate::config::scenario::{Capture, Group, Source};
use crate::engine::report::{StepFacts, StepReport};

/// How much of a searched text a "found nothing" message shows.
const SHOWN: usize = 200;

/// A value as a template or header sees it: strings bare, the rest as JSON.
pub fn text(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= SHOWN {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(SHOWN).collect();
        format!("{cut:?}… ({} bytes)", s.len())
    }
}

/// The text a step offers to regexes and JSON: the response body (http) or the frame (ws).
fn subject(report: &StepReport) -> Result<(String, &'static str), String> {
    match &report.facts {
        StepFacts::Http(f) => Ok((String::from_utf8_lossy(&f.body).into_owned(), "body")),
        StepFacts::Ws(w) => match &w.payload {
            Some(Payload::Text(t)) => Ok((t.clone(), "frame")),
            Some(Payload::Binary(b)) => Ok((String::from_utf8_lossy(b).into_owned(), "frame")),
            None => Err("the step has no frame".into()),
        },
        StepFacts::Mqtt(m) => match &m.payload {
            Some(Payload::Text(t)) => Ok((t.clone(), "message")),
            Some(Payload::Binary(b)) => Ok((String::from_utf8_lossy(b).into_owned(), "message")),
            None => Err("the step has no message".into()),
        },
        _ => Err(format!("a {} step has no body or frame", report.kind)),
    }
}

/// The body or frame parsed as JSON, and what it was ("body", "frame").
pub fn document(report: &StepReport) -> Result<(J, &'static str), String> {
    let (t, whence) = subject(report)?;
    serde_json::from_str(&t)
        .map(|d| (d, whence))
        .map_err(|e| format!("the {whence} is not JSON ({e}): {}", clip(&t)))
}

/// One node: the value itself; several: a list of them; none: `None`.
pub fn query(path: &JsonPath, doc: &J) -> Option<J> {
    let nodes = path.query(doc).all();
    match nodes.len() {
        0 => None,
        1 => Some(nodes[0].clone()),
        _ => Some(J::Array(nodes.into_iter().cloned().collect())),
    }
}

/// The value of capture `c` from `report`, or why there is none.
pub fn take(c: &Capture, report: &StepReport) -> Result<J, String> {
    let name = &c.name;
    match &c.source {
        Source::Json(text, path) => {
            let (doc, whence) = document(report).map_err(|m| format!("capture `{name}`: {m}"))?;
            query(path, &doc).ok_or_else(|| {
                format!(
                    "capture `{name}`: {text} found nothing in the {whence}: {}",
                    clip(&doc.to_string())
                )
            })
        }
        Source::Regex(re, group) => {
            let (t, whence) = subject(report).map_err(|m| format!("capture `{name}`: {m}"))?;
            let caps = re.captures(&t).ok_or_else(|| {
                format!(
                    "capture `{name}`: /{}/ does not match the {whence}: {}",
                    re.as_str(),
                    clip(&t)
                )
            })?;
            let m = match group {
                Group::Index(i) => caps.get(*i),
                Group::Name(n) => caps.name(n),
            };
            m.map(|m| J::String(m.as_str().to_string())).ok_or_else(|| {
                format!(
                    "capture `{name}`: /{}/ matched the {whence} but its group {} took part in no match",
                    re.as_str(),
                    match group {
                        Group::Index(i) => i.to_string(),
                        Group::Name(n) => n.clone(),
                    }
                )
            })
        }
        Source::Status => match &report.facts {
            StepFacts::Http(f) => f.status.map(J::from),
            StepFacts::Ws(w) => w.handshake.as_ref().and_then(|h| h.status).map(J::from),
            _ => None,
        }
        .ok_or_else(|| format!("capture `{name}`: the step has no status")),
        Source::Header(h) => {
            type Pairs<'a> = Vec<(&'a str, &'a str)>;
            let (shown, secret): (Pairs, Pairs) = match &report.facts {
                StepFacts::Http(f) => (
                    f.headers.iter().collect(),
                    f.secret_headers.iter().collect(),
                ),
                StepFacts::Ws(w) => match &w.handshake {
                    Some(hs) => (
                        hs.response_headers
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_str()))
                            .collect(),
                        Vec::new(),
                    ),
                    None => Default::default(),
                },
                _ => Default::default(),
            };
            secret
                .iter()
                .chain(&shown)
                .find(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| J::String(v.to_string()))
                .ok_or_else(|| {
                    let names: Vec<&str> = shown.iter().map(|(n, _)| *n).collect();
                    format!(
                        "capture `{name}`: no header `{h}` in the response (it has: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                })
        }
        Source::Cookie(cname) => {
            let StepFacts::Http(f) = &report.facts else {
                return Err(format!("capture `{name}`: only http steps set cookies"));
            };
            f.secret_headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
                .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
                .find(|(n, _)| n.trim() == cname)
                .map(|(_, v)| J::String(v.trim().to_string()))
                .ok_or_else(|| format!("capture `{name}`: the response sets no cookie `{cname}`"))
        }
        Source::Body | Source::Frame => subject(report)
            .map(|(t, _)| J::String(t))
            .map_err(|m| format!("capture `{name}`: {m}")),
    }
}

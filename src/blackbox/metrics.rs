//! blackbox_exporter's metric families for one probe, rendered in Prometheus text format 0.0.4
//! exactly as client_golang writes them: families sorted by name, `# HELP` and `# TYPE` lines,
//! series sorted by label values, numbers in Go's shortest `%g` form (`1.7356e+09`).
//!
//! Which families appear, and when, follows each blackbox prober: some are registered at the
//! start of a probe (and read 0 when the probe failed early), some only once a stage is reached
//! (TLS, a `Last-Modified` header, an SOA answer).

use std::fmt::Write as _;
use std::net::IpAddr;

use sonde_probes::dns::DnsOutcome;
use sonde_probes::grpc::GrpcOutcome;
use sonde_probes::http::HttpOutcome;
use sonde_probes::icmp::IcmpOutcome;
use sonde_probes::tcp::TcpOutcome;
use sonde_probes::tls::TlsFacts;
use sonde_probes::{Outcome, Phase, Timings};

/// The families of one probe. Every `/probe` builds one of ~15 families: their series sit in one
/// list beside the families (not a list per family), and a label whose value is fixed text
/// (a phase) is kept without a string of its own.
#[derive(Default, Debug)]
pub struct Registry {
    families: Vec<Family>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
}

#[derive(Debug)]
struct Sample {
    /// Index in [`Registry::families`].
    family: usize,
    labels: Labels,
    value: f64,
}

#[derive(Debug)]
enum Labels {
    /// One label with a fixed value (`phase="connect"`).
    Fixed(&'static str, &'static str),
    Owned(Vec<(&'static str, String)>),
}

impl Labels {
    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        let (fixed, owned) = match self {
            Labels::Fixed(k, v) => (Some((*k, *v)), &[][..]),
            Labels::Owned(l) => (None, &l[..]),
        };
        fixed
            .into_iter()
            .chain(owned.iter().map(|(k, v)| (*k, v.as_str())))
    }
}

impl Registry {
    /// A gauge without labels.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.set(name, help, Labels::Owned(Vec::new()), value);
    }

    /// One series of a gauge with labels (the family is created on first use).
    pub fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.set(name, help, Labels::Owned(labels), value);
    }

    /// One series of a gauge with a single label of fixed text, e.g. `phase="connect"`.
    pub fn fixed(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: (&'static str, &'static str),
        value: f64,
    ) {
        self.set(name, help, Labels::Fixed(label.0, label.1), value);
    }

    fn set(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        let family = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                if self.families.capacity() == 0 {
                    self.families.reserve(24);
                    self.samples.reserve(32);
                }
                self.families.push(Family { name, help });
                self.families.len() - 1
            }
        };
        let same = |s: &&mut Sample| s.family == family && s.labels.pairs().eq(labels.pairs());
        match self.samples.iter_mut().find(same) {
            Some(s) => s.value = value,
            None => self.samples.push(Sample {
                family,
                labels,
                value,
            }),
        }
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        let family = self.families.iter().position(|f| f.name == name)?;
        self.samples
            .iter()
            .find(|s| s.family == family)
            .map(|s| s.value)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut n: Vec<_> = self.families.iter().map(|f| f.name).collect();
        n.sort_unstable();
        n
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut fams: Vec<(usize, &Family)> = self.families.iter().enumerate().collect();
        fams.sort_by_key(|(_, f)| f.name);
        // Every /probe renders one: written in place (escaping and numbers included) into a
        // buffer the size an http probe's answer needs, not built from a string per part.
        let mut out = String::with_capacity(4096);
        let mut samples: Vec<&Sample> = Vec::with_capacity(self.samples.len());
        for (i, f) in fams {
            out.push_str("# HELP ");
            out.push_str(f.name);
            out.push(' ');
            push_escaped(&mut out, f.help, false);
            out.push_str("\n# TYPE ");
            out.push_str(f.name);
            out.push_str(" gauge\n");
            samples.clear();
            samples.extend(self.samples.iter().filter(|s| s.family == i));
            samples.sort_by(|a, b| {
                a.labels
                    .pairs()
                    .map(|(_, v)| v)
                    .cmp(b.labels.pairs().map(|(_, v)| v))
            });
            for s in &samples {
                out.push_str(f.name);
                for (i, (k, val)) in s.labels.pairs().enumerate() {
                    out.push(if i == 0 { '{' } else { ',' });
                    out.push_str(k);
                    out.push_str("=\"");
                    push_escaped(&mut out, val, true);
                    out.push('"');
                }
                if s.labels.pairs().next().is_some() {
                    out.push('}');
                }
                out.push(' ');
                push_go_float(&mut out, s.value);
                out.push('\n');
            }
        }
        out
    }
}

/// The text format's escapes: backslash and newline, and in label values the double quote.
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    // Bytes, not chars: every help text and label value of every probe is scanned.
    if !s.bytes().any(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// [`go_float`] appended to `out`; whole numbers below 10^6 (success, status codes, versions,
/// counts: most of a probe's samples) are written without the general path's formatting.
fn push_go_float(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e6 && v != 0.0 {
        let _ = write!(out, "{}", v as i64);
    } else {
        write_go_float(out, v);
    }
}

/// A float as client_golang writes it in the text format: `strconv.FormatFloat(f, 'g', -1, 64)`
/// — shortest round-trip digits, exponent form when the decimal exponent is below -4 or at
/// least 6 (Go's rule for the shortest `%g`), exponent with at least two digits.
pub fn go_float(v: f64) -> String {
    let mut out = String::new();
    write_go_float(&mut out, v);
    out
}

/// [`go_float`] into `out`. Every duration of every probe passes here, so the digits are taken
/// from Rust's shortest `{:e}` in a stack buffer and placed directly, with no string between.
fn write_go_float(out: &mut String, v: f64) {
    if v.is_nan() {
        return out.push_str("NaN");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    }
    if v == 0.0 {
        return out.push('0');
    }
    // Shortest round-trip digits and decimal exponent: `{:e}` of a finite f64 is at most
    // 17 digits, a point, a sign and `e-324`.
    let mut sci = sonde_probes::text::StackText::<40>::default();
    let _ = write!(sci, "{:e}", v.abs());
    let (mant, exp) = sci.as_str().split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for b in mant.bytes().filter(u8::is_ascii_digit) {
        digits[nd] = b;
        nd += 1;
    }
    let digits = std::str::from_utf8(&digits[..nd]).unwrap_or("0");
    if v < 0.0 {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let es = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{es}{:02}", exp.abs());
        return;
    }
    // Plain decimal; `dp` digits before the point.
    let (dp, nd) = (exp + 1, nd as i32);
    if dp <= 0 {
        out.push_str("0.");
        (0..-dp).for_each(|_| out.push('0'));
        out.push_str(digits);
    } else if dp >= nd {
        out.push_str(digits);
        (0..dp - nd).for_each(|_| out.push('0'));
    } else {
        let (a, b) = digits.split_at(dp as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
}

const HELP_SUCCESS: &str = "Displays whether or not the probe was a success";
const HELP_DURATION: &str = "Returns how long the probe took to complete in seconds";

/// `probe_success` and `probe_duration_seconds`, which every probe has.
pub fn common(r: &mut Registry, success: bool, duration_secs: f64) {
    r.gauge(
        "probe_success",
        HELP_SUCCESS,
        if success { 1.0 } else { 0.0 },
    );
    r.gauge("probe_duration_seconds", HELP_DURATION, duration_secs);
}

/// FNV-1a 32 over the address's bytes, as blackbox's `ipHash`: 4 bytes for IPv4 (the form
/// Go's resolver hands blackbox), 16 for IPv6.
pub fn ip_hash(ip: IpAddr) -> f64 {
    let bytes: Vec<u8> = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h as f64
}

/// blackbox's `chooseProtocol` families, present once the probe got to resolving its target.
fn resolve_families<F>(r: &mut Registry, o: &Outcome<F>) {
    r.gauge(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        secs(&o.timings, Phase::Resolve),
    );
    let ip = o.remote_addr.map(|a| a.ip());
    r.gauge(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        match ip {
            Some(IpAddr::V4(_)) => 4.0,
            Some(IpAddr::V6(_)) => 6.0,
            None => 0.0,
        },
    );
    r.gauge(
        "probe_ip_addr_hash",
        "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
        ip.map(ip_hash).unwrap_or(0.0),
    );
}

fn secs(t: &Timings, p: Phase) -> f64 {
    t.get(p).as_secs_f64()
}

/// Unix seconds of Go's zero `time.Time`: what blackbox reports for a chain expiry it could not
/// compute (no verified chain, with `insecure_skip_verify`).
const GO_ZERO_TIME: f64 = -62_135_596_800.0;

/// The TLS families of a session, shared by the http, tcp and grpc probers (their help texts
/// are blackbox's shared ones).
fn tls_families(r: &mut Registry, t: &TlsFacts) {
    let help_expiry = "Returns last SSL chain expiry in unixtime";
    let help_version = "Returns the TLS version used or NaN when unknown";
    r.gauge(
        "probe_ssl_earliest_cert_expiry",
        help_expiry,
        t.earliest_not_after().unwrap_or(0) as f64,
    );
    r.labelled(
        "probe_tls_version_info",
        help_version,
        vec![("version", t.version.clone())],
        1.0,
    );
    let last_chain = if t.verified {
        t.earliest_not_after()
            .map(|v| v as f64)
            .unwrap_or(GO_ZERO_TIME)
    } else {
        GO_ZERO_TIME
    };
    r.gauge(
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Returns last SSL chain expiry in timestamp",
        last_chain,
    );
    if let Some(leaf) = t.chain.first() {
        r.labelled(
            "probe_ssl_last_chain_info",
            "Contains SSL leaf certificate information",
            vec![
                ("fingerprint_sha256", leaf.fingerprint_sha256.clone()),
                ("issuer", go_name(&leaf.issuer)),
                ("serialnumber", leaf.serial.clone()),
                ("subject", go_name(&leaf.subject)),
                (
                    "subjectalternative",
                    leaf.subject_alt_names
                        .iter()
                        .filter(|n| n.parse::<IpAddr>().is_err())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
            1.0,
        );
    }
}

/// A distinguished name as Go's `pkix.Name.String()` writes it (blackbox's `subject` and
/// `issuer` labels), from x509-parser's text (`C=US, O=Org, CN=name`, in certificate order):
/// Go emits the attributes it knows in the fixed order SERIALNUMBER, CN, OU, O, POSTALCODE,
/// STREET, L, ST, C — values of one type joined with `+` — then any others, all joined with
/// `,` and no space, special characters escaped with a backslash.
pub fn go_name(x509_text: &str) -> String {
    const ORDER: [&str; 9] = [
        "SERIALNUMBER",
        "CN",
        "OU",
        "O",
        "POSTALCODE",
        "STREET",
        "L",
        "ST",
        "C",
    ];
    // x509-parser joins attributes with ", " (" + " inside one RDN) without escaping, so a
    // piece that does not start with `TYPE=` continues the previous value ("O=Example, Inc.").
    let mut attrs: Vec<(String, String)> = Vec::new();
    for piece in x509_text.split(", ") {
        for (n, part) in piece.split(" + ").enumerate() {
            let attr = part.split_once('=').filter(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
            });
            match (attr, attrs.last_mut()) {
                (Some((k, v)), _) => attrs.push((k.to_string(), v.to_string())),
                (None, Some(last)) => {
                    last.1.push_str(if n == 0 { ", " } else { " + " });
                    last.1.push_str(part);
                }
                (None, None) => {}
            }
        }
    }
    let mut known: Vec<(usize, Vec<String>)> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for (k, v) in attrs {
        let key = match k.as_str() {
            "serialNumber" | "SERIALNUMBER" => "SERIALNUMBER",
            "street" | "STREET" => "STREET",
            "postalCode" | "POSTALCODE" => "POSTALCODE",
            other => other,
        };
        let value = go_escape(&v);
        match ORDER.iter().position(|o| *o == key) {
            Some(i) => match known.iter_mut().find(|(j, _)| *j == i) {
                Some((_, vals)) => vals.push(value),
                None => known.push((i, vec![value])),
            },
            None => other.push(format!("{key}={value}")),
        }
    }
    known.sort_by_key(|(i, _)| *i);
    let mut parts: Vec<String> = known
        .into_iter()
        .map(|(i, vals)| {
            vals.iter()
                .map(|v| format!("{}={v}", ORDER[i]))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    parts.extend(other);
    parts.join(",")
}

/// RFC 4514 escaping as Go's `RDNSequence.String()` does it.
fn go_escape(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        let edge_space = *c == ' ' && (i == 0 || i == chars.len() - 1);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || edge_space
            || (i == 0 && *c == '#')
        {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

/// A cipher suite as Go's `tls.CipherSuiteName` names it: rustls calls the TLS 1.3 suites
/// `TLS13_…` where Go (and the RFC) say `TLS_…`; TLS 1.2 names are the same.
fn go_cipher_name(rustls_name: &str) -> String {
    match rustls_name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => rustls_name.to_string(),
    }
}

/// How far an http probe got, for deciding which families blackbox would have registered.
pub enum HttpStage {
    /// The target URL could not be parsed: only the http families.
    BadTarget,
    Probed,
}

pub fn http(r: &mut Registry, stage: HttpStage, o: Option<&HttpOutcome>) {
    http_phases(r, matches!(stage, HttpStage::Probed), o);
    let f = o.map(|o| &o.facts);
    let resolved = o.is_some_and(|o| o.remote_addr.is_some());
    let status = f.and_then(|f| f.status);
    let got_response = status.is_some();
    r.gauge(
        "probe_http_content_length",
        "Length of http content response",
        match (resolved, got_response) {
            // Go's `Response.ContentLength`: the header's value; 0 for statuses that have no
            // body (1xx, 204, 304); -1 when unknown (chunked, HTTP/2 without the header).
            (true, true) => match (f.and_then(|f| f.content_length), status) {
                (Some(n), _) => n as f64,
                (None, Some(100..=199 | 204 | 304)) => 0.0,
                (None, _) => -1.0,
            },
            _ => 0.0,
        },
    );
    r.gauge(
        "probe_http_uncompressed_body_length",
        "Length of uncompressed response body",
        f.map(|f| f.decoded_bytes.unwrap_or(f.body_bytes) as f64)
            .unwrap_or(0.0),
    );
    r.gauge(
        "probe_http_redirects",
        "The number of redirects",
        f.map(|f| f.redirects as f64).unwrap_or(0.0),
    );
    let tls = f.and_then(|f| if f.is_tls { f.tls.as_ref() } else { None });
    r.gauge(
        "probe_http_ssl",
        "Indicates if SSL was used for the final redirect",
        if tls.is_some() && got_response {
            1.0
        } else {
            0.0
        },
    );
    r.gauge(
        "probe_http_status_code",
        "Response HTTP status code",
        status.map(|s| s as f64).unwrap_or(0.0),
    );
    r.gauge(
        "probe_http_version",
        "Returns the version of HTTP of the probe response",
        f.and_then(|f| f.version.as_deref())
            .and_then(|v| v.strip_prefix("HTTP/"))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0),
    );
    r.gauge(
        "probe_failed_due_to_regex",
        "Indicates if probe failed due to regex",
        if f.is_some_and(|f| f.failed_due_to_regex) {
            1.0
        } else {
            0.0
        },
    );
    let (HttpStage::Probed, Some(o)) = (stage, o) else {
        return;
    };
    resolve_families(r, o);
    http_response_families(r, o, tls, got_response);
}

/// What only a response tells: `Last-Modified`, and the TLS families (the cipher for HTTP only,
/// as in blackbox).
fn http_response_families(
    r: &mut Registry,
    o: &HttpOutcome,
    tls: Option<&sonde_probes::tls::TlsFacts>,
    got_response: bool,
) {
    if let Some(lm) = o
        .facts
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("last-modified"))
        .and_then(|(_, v)| httpdate::parse_http_date(v).ok())
    {
        let secs = lm
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as f64)
            .unwrap_or(0.0);
        r.gauge(
            "probe_http_last_modified_timestamp_seconds",
            "Returns the Last-Modified HTTP response header in unixtime",
            secs,
        );
    }
    if let (Some(t), true) = (tls, got_response) {
        tls_families(r, t);
        // HTTP only, as in blackbox; absent when the suite is unknown.
        if t.cipher.is_empty() {
            return;
        }
        r.labelled(
            "probe_tls_cipher_info",
            "Returns the TLS cipher negotiated during handshake",
            vec![("cipher", go_cipher_name(&t.cipher))],
            1.0,
        );
    }
}

/// `probe_http_duration_seconds` by phase, as far as blackbox would have created them.
fn http_phases(r: &mut Registry, parsed: bool, o: Option<&HttpOutcome>) {
    const PHASE_HELP: &str = "Duration of http request by phase, summed over all redirects";
    let t = o.map(|o| &o.timings);
    let get = |p: Phase| t.map(|t| secs(t, p)).unwrap_or(0.0);
    // The handshake alone (tlsStart → tlsDone in blackbox's trace).
    let tls_phase = get(Phase::Tls);
    // blackbox 0.23 creates the phase series once the URL parsed: an unparsable target has no
    // `probe_http_duration_seconds` at all.
    let phases = [
        ("connect", get(Phase::Connect)),
        ("processing", get(Phase::Processing)),
        ("resolve", get(Phase::Resolve)),
        ("tls", tls_phase),
        ("transfer", get(Phase::Transfer)),
    ];
    // …and the phases after `resolve` only once the name resolved.
    let resolved_ok = !o.is_some_and(|o| {
        o.remote_addr.is_none()
            && o.failure
                .as_ref()
                .is_some_and(|f| f.reason == sonde_probes::FailureReason::Dns)
    });
    let phases = phases
        .into_iter()
        .filter(|(p, _)| parsed && (resolved_ok || *p == "resolve"));
    for (phase, v) in phases {
        r.fixed(
            "probe_http_duration_seconds",
            PHASE_HELP,
            ("phase", phase),
            v,
        );
    }
}

/// How far a tcp/icmp/dns/grpc probe got: `false` when the target could not be parsed, in which
/// case blackbox never resolved it and has no resolve families.
pub fn tcp(r: &mut Registry, parsed: bool, o: Option<&TcpOutcome>) {
    r.gauge(
        "probe_failed_due_to_regex",
        "Indicates if probe failed due to regex",
        if o.is_some_and(|o| o.facts.failed_due_to_regex) {
            1.0
        } else {
            0.0
        },
    );
    let (true, Some(o)) = (parsed, o) else { return };
    resolve_families(r, o);
    if let Some(t) = &o.facts.tls {
        tls_families(r, t);
    }
}

/// blackbox's `probe_expect_info`: one series per `query_response` item with `labels` whose
/// `expect` matched, the label values expanded from the match.
pub fn expect_info(
    r: &mut Registry,
    specs: &[crate::config::blackbox::module::ExpectLabels],
    o: &TcpOutcome,
) {
    for spec in specs {
        let Some((_, line)) = o.facts.matched_lines.iter().find(|(i, _)| *i == spec.step) else {
            continue;
        };
        let Some(caps) = spec.regex.captures(line) else {
            continue;
        };
        let labels = spec
            .labels
            .iter()
            .map(|(name, template)| {
                let mut out = Vec::new();
                caps.expand(template.as_bytes(), &mut out);
                (leak_label(name), String::from_utf8_lossy(&out).into_owned())
            })
            .collect();
        r.labelled("probe_expect_info", "Explicit content matched", labels, 1.0);
    }
}

/// Label names of `probe_expect_info` come from the configuration; the registry keys labels
/// by `&'static str`, so each distinct name is interned once for the life of the process.
fn leak_label(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = set.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

pub fn icmp(r: &mut Registry, o: Option<&IcmpOutcome>) {
    const HELP: &str = "Duration of icmp request by phase";
    let get = |p: Phase| o.map(|o| secs(&o.timings, p)).unwrap_or(0.0);
    for (phase, v) in [
        ("resolve", get(Phase::Resolve)),
        ("rtt", get(Phase::Rtt)),
        ("setup", get(Phase::Setup)),
    ] {
        r.fixed("probe_icmp_duration_seconds", HELP, ("phase", phase), v);
    }
    let Some(o) = o else { return };
    resolve_families(r, o);
    if let Some(h) = o.facts.reply_hop_limit {
        r.gauge(
            "probe_icmp_reply_hop_limit",
            "Replied packet hop limit (TTL for ipv4)",
            h as f64,
        );
    }
}

pub fn dns(r: &mut Registry, soa_query: bool, o: Option<&DnsOutcome>) {
    const HELP: &str = "Duration of DNS request by phase";
    let get = |p: Phase| o.map(|o| secs(&o.timings, p)).unwrap_or(0.0);
    for (phase, v) in [
        ("connect", get(Phase::Connect)),
        ("request", get(Phase::Request)),
        ("resolve", get(Phase::Resolve)),
    ] {
        r.fixed("probe_dns_duration_seconds", HELP, ("phase", phase), v);
    }
    let f = o.map(|o| &o.facts);
    let n = |s: Option<&Vec<String>>| s.map(|v| v.len() as f64).unwrap_or(0.0);
    r.gauge(
        "probe_dns_answer_rrs",
        "Returns number of entries in the answer resource record list",
        n(f.map(|f| &f.answer)),
    );
    r.gauge(
        "probe_dns_authority_rrs",
        "Returns number of entries in the authority resource record list",
        n(f.map(|f| &f.authority)),
    );
    r.gauge(
        "probe_dns_additional_rrs",
        "Returns number of entries in the additional resource record list",
        n(f.map(|f| &f.additional)),
    );
    r.gauge(
        "probe_dns_query_succeeded",
        "Displays whether or not the query was executed successfully",
        if f.is_some_and(|f| f.query_succeeded) {
            1.0
        } else {
            0.0
        },
    );
    let Some(o) = o else { return };
    resolve_families(r, o);
    if soa_query && o.facts.query_succeeded {
        r.gauge(
            "probe_dns_serial",
            "Returns the serial number of the zone",
            o.facts.serial.map(|s| s as f64).unwrap_or(0.0),
        );
    }
}

/// The serving statuses of `grpc.health.v1.HealthCheckResponse`, by number.
pub const SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

pub fn grpc(r: &mut Registry, o: Option<&GrpcOutcome>) {
    const HELP: &str = "Duration of gRPC request by phase";
    let get = |p: Phase| o.map(|o| secs(&o.timings, p)).unwrap_or(0.0);
    r.fixed(
        "probe_grpc_duration_seconds",
        HELP,
        ("phase", "resolve"),
        get(Phase::Resolve),
    );
    if let Some(o) = o.filter(|o| o.facts.grpc_status.is_some()) {
        let check: f64 = o
            .timings
            .iter()
            .filter(|(p, _)| *p != Phase::Resolve)
            .map(|(_, d)| d.as_secs_f64())
            .sum();
        r.fixed(
            "probe_grpc_duration_seconds",
            HELP,
            ("phase", "check"),
            check,
        );
    }
    let f = o.map(|o| &o.facts);
    r.gauge(
        "probe_grpc_ssl",
        "Indicates if SSL was used for the connection",
        if f.is_some_and(|f| f.tls.is_some()) {
            1.0
        } else {
            0.0
        },
    );
    r.gauge(
        "probe_grpc_status_code",
        "Response gRPC status code",
        f.and_then(|f| f.grpc_status)
            .map(|c| c as f64)
            .unwrap_or(0.0),
    );
    let serving = f.and_then(|f| f.serving_status);
    // blackbox sets these once the health check was attempted; before that (the target did not
    // resolve) the family has no series and does not appear.
    let attempted = f.is_some_and(|f| f.grpc_status.is_some());
    for (i, name) in SERVING_STATUSES.iter().enumerate().filter(|_| attempted) {
        r.labelled(
            "probe_grpc_healthcheck_response",
            "Response HealthCheck response",
            vec![("serving_status", name.to_string())],
            if serving == Some(i as i32) { 1.0 } else { 0.0 },
        );
    }
    // blackbox's grpc prober registers this one up front: 0 without TLS.
    r.gauge(
        "probe_ssl_earliest_cert_expiry",
        "Returns last SSL chain expiry in unixtime",
        0.0,
    );
    let Some(o) = o else { return };
    resolve_families(r, o);
    if let Some(t) = &o.facts.tls {
        tls_families(r, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_go_writes_them() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(200.0), "200");
        assert_eq!(go_float(1.1), "1.1");
        assert_eq!(go_float(2.0), "2");
        assert_eq!(go_float(-1.0), "-1");
        assert_eq!(go_float(0.001234), "0.001234");
        assert_eq!(go_float(0.00001234), "1.234e-05");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1_735_600_000.0), "1.7356e+09");
        assert_eq!(go_float(1_735_600_123.0), "1.735600123e+09");
        assert_eq!(go_float(3_456_789_012.0), "3.456789012e+09");
        assert_eq!(go_float(-62_135_596_800.0), "-6.21355968e+10");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(5e-324), "5e-324");
        assert_eq!(go_float(-0.0000123), "-1.23e-05");
        assert_eq!(go_float(-0.25), "-0.25");
        assert_eq!(go_float(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(go_float(0.1 + 0.2), "0.30000000000000004");
    }

    /// The in-place writer agrees with `go_float` around every boundary of its fast path.
    #[test]
    fn floats_written_in_place_read_as_go_float() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            200.0,
            1.1,
            0.5,
            999_999.0,
            1e6,
            -1e6,
            123_456.0,
            1_000_001.0,
            0.001234,
            1e-7,
            4.2e9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut out = String::new();
            push_go_float(&mut out, v);
            assert_eq!(out, go_float(v), "{v}");
        }
    }

    #[test]
    fn help_and_label_values_are_escaped_as_the_text_format_says() {
        let mut r = Registry::default();
        r.gauge("probe_x", "a \\ help\nline with \"quotes\"", 1.0);
        r.labelled("probe_y", "y", vec![("k", "a\"b\\c\nd".to_string())], 2.5);
        let out = r.render();
        assert!(
            out.contains("# HELP probe_x a \\\\ help\\nline with \"quotes\"\n"),
            "{out}"
        );
        assert!(out.contains("\nprobe_x 1\n"), "{out}");
        assert!(
            out.contains("\nprobe_y{k=\"a\\\"b\\\\c\\nd\"} 2.5\n"),
            "{out}"
        );
    }

    #[test]
    fn ip_hash_matches_go() {
        // What blackbox 0.23 reports for 127.0.0.1 (seen by the interop suite).
        assert_eq!(ip_hash("127.0.0.1".parse().unwrap()), 3_668_918_509.0);
        assert_ne!(ip_hash("::1".parse().unwrap()), 0.0);
    }

    #[test]
    fn names_read_as_go_writes_them() {
        assert_eq!(
            go_name("O=sonde tests, CN=sonde interop CA"),
            "CN=sonde interop CA,O=sonde tests"
        );
        assert_eq!(
            go_name("C=US, ST=CA, O=Example, Inc., OU=a, OU=b, CN=x"),
            "CN=x,OU=a+OU=b,O=Example\\, Inc.,ST=CA,C=US"
        );
    }

    #[test]
    fn families_sort_by_name_and_series_by_labels() {
        let mut r = Registry::default();
        r.gauge("probe_success", "s", 1.0);
        r.labelled("probe_x", "x", vec![("phase", "tls".into())], 0.5);
        r.labelled("probe_x", "x", vec![("phase", "connect".into())], 0.25);
        r.gauge("probe_a", "a \\ b", 2.0);
        let text = r.render();
        assert_eq!(
            text,
            "# HELP probe_a a \\\\ b\n# TYPE probe_a gauge\nprobe_a 2\n\
             # HELP probe_success s\n# TYPE probe_success gauge\nprobe_success 1\n\
             # HELP probe_x x\n# TYPE probe_x gauge\nprobe_x{phase=\"connect\"} 0.25\nprobe_x{phase=\"tls\"} 0.5\n"
        );
    }
}

//! The fuzz targets: each takes bytes, runs one parser we own, and panics when its property
//! fails. Every target: never panics, ends within its bound (the driver's watchdog); where
//! there is an oracle, a round trip or an invariant is asserted too.

use std::time::Duration;

use super::driver::Target;
use sonde::config::blackbox::module::{
    http_url, parse_port, split_host_port, target_host, Modules, Prober,
};

/// The value of an environment variable the scenarios read: it must never be shown.
pub const SECRET_ENV: &str = "SONDE_FUZZ_SECRET";
pub const SECRET: &str = "fz-Secr3t-9e1c7a55b0";

const SEC: Duration = Duration::from_secs(10);

pub const ALL: &[Target] = &[
    Target {
        name: "scenario",
        run: scenario,
        dict: YAML_DICT,
        hang: SEC,
    },
    Target {
        name: "blackbox",
        run: blackbox,
        dict: YAML_DICT,
        hang: SEC,
    },
    Target {
        name: "template",
        run: template,
        dict: TEMPLATE_DICT,
        hang: SEC,
    },
    Target {
        name: "probe_query",
        run: probe_query,
        dict: QUERY_DICT,
        hang: SEC,
    },
    Target {
        name: "tcp_framing",
        run: tcp_framing,
        dict: &["\n", "\r\n", "\r", "=", "^", "$", ".*", "(.+)", "\0"],
        hang: SEC,
    },
    Target {
        name: "dns_answer",
        run: dns_answer,
        dict: &["\0", "\u{1}", "\u{c0}\u{c}", "\u{10}", "\u{ff}"],
        hang: SEC,
    },
    Target {
        name: "mqtt_packet",
        run: mqtt_packet,
        dict: &[
            "\u{30}", "\u{32}", "\u{34}", "\u{20}", "\u{90}", "\u{e0}", "\u{ff}", "\u{7f}", "\0",
        ],
        hang: SEC,
    },
    Target {
        name: "ws_match",
        run: ws_match,
        dict: &["\n", "{", "}", "\"", "é", "\u{fffd}", ".*", "\\", "(", "[^"],
        hang: SEC,
    },
    Target {
        name: "frame_codec",
        run: frame_codec,
        dict: &[
            "\n",
            "\r\n",
            "\0",
            "\u{ff}\u{ff}\u{ff}\u{ff}",
            "\0\0\0\u{4}",
            "\u{a}\u{2}",
        ],
        hang: SEC,
    },
    Target {
        name: "kts_cmsg",
        run: kts_cmsg,
        dict: &["\0\0\0\0", "\u{1}", "#", "%", "\u{ff}\u{ff}\u{ff}\u{ff}"],
        hang: SEC,
    },
    Target {
        name: "web_config",
        run: web_config,
        dict: WEB_DICT,
        hang: SEC,
    },
    Target {
        name: "expo",
        run: expo,
        dict: &[
            "{", "}", "=\"", "\"", "\\", "\\n", " NaN", " +Inf", " -Inf", "\n", "# ", ",",
        ],
        hang: SEC,
    },
];

const YAML_DICT: &[&str] = &[
    "\n  ",
    "\n- ",
    ": ",
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "\"",
    "'",
    "|\n  ",
    "é",
    "{hex: \"aé\"}",
    "{base64: \"@@\"}",
    "env.SONDE_FUZZ_SECRET",
    "{{ env.SONDE_FUZZ_SECRET }}",
    "scenarios:\n",
    "modules:\n",
    "steps:\n",
    "http:\n",
    "tcp:\n",
    "dns:\n",
    "ws.send:\n",
    "ws.expect:\n",
    "expect:\n",
    "prober: ",
    "timeout: ",
    "1e9",
    "-1",
    "0",
    "99999999999999999999",
    "1ns",
    "~",
];

const TEMPLATE_DICT: &[&str] = &[
    "{{ ",
    " }}",
    "{% for i in range(1000) %}",
    "{% endfor %}",
    "{% set s = 'a' * 1000 %}",
    "{% if x %}",
    "{% endif %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "env.SONDE_FUZZ_SECRET",
    " | urlencode",
    " | upper",
    " | lower",
    " | reverse",
    " | tojson",
    " ~ ",
    "file('x')",
    "range(1e9)",
    "(",
    ")",
    "[",
    "]",
    "'",
    "\"",
    "scenario",
    "region",
    "vars",
];

const QUERY_DICT: &[&str] = &[
    "&",
    "=",
    "%",
    "%00",
    "%5B",
    "%5D",
    "%3A",
    "+",
    "module=",
    "target=",
    "debug=true",
    "hostname=",
    "timeout=",
    "[::1]",
    ":",
    "http://",
    "https://",
    "localhost",
    "127.0.0.1",
    ":9115",
    ":65536",
    "@",
    "#",
];

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

fn init_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Set before any thread of the target reads the environment.
    ONCE.call_once(|| std::env::set_var(SECRET_ENV, SECRET));
}

/// A load's outputs that reach users must not show the secret.
fn assert_no_secret(
    origin: &str,
    res: &Result<sonde::config::Config, Vec<sonde::config::ConfigError>>,
) {
    match res {
        Ok(cfg) => {
            for s in &cfg.scenarios {
                let text = s.redacted_json.text();
                assert!(
                    !text.contains(SECRET),
                    "the redacted JSON of scenario {:?} shows the env secret: {}",
                    s.name,
                    text
                );
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "Err without errors");
            for e in errors {
                let shown = e.to_string();
                assert!(
                    !shown.contains(SECRET),
                    "an error shows the env secret: {shown}"
                );
                assert_eq!(e.file, origin, "an error names another file: {shown}");
            }
        }
    }
}

/// `config::load_str` on arbitrary text.
fn scenario(input: &[u8]) {
    init_env();
    let opts = sonde::config::LoadOptions::default();
    let res = sonde::config::load_str("fuzz.yaml", &text(input), &opts);
    assert_no_secret("fuzz.yaml", &res);
}

/// `config::load_blackbox_str`: no panic, errors name the file, modules are named.
fn blackbox(input: &[u8]) {
    let mut modules = Modules::new();
    let errors = sonde::config::load_blackbox_str("fuzz.yml", &text(input), &mut modules);
    for e in &errors {
        assert_eq!(e.file, "fuzz.yml", "an error names another file: {e}");
    }
    for (name, m) in &modules {
        assert!(!name.is_empty(), "a module without a name");
        let _ = serde_json::to_string(&m.shown).expect("a module's JSON");
    }
}

/// A password hash that must never be quoted in an error, whatever surrounds it.
const WEB_SECRET: &str = "FzWebHashSecret0123456789";

const WEB_DICT: &[&str] = &[
    "tls_server_config:\n",
    "http_server_config:\n",
    "basic_auth_users:\n",
    "rate_limit:\n",
    "  cert_file: ",
    "  key_file: ",
    "  cert: |\n    -----BEGIN CERTIFICATE-----\n",
    "  key: ",
    "  client_ca_file: ",
    "  client_auth_type: RequireAndVerifyClientCert\n",
    "  client_allowed_sans: [a]\n",
    "  min_version: TLS13\n",
    "  max_version: TLS10\n",
    "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
    "  curve_preferences: [X25519]\n",
    "  headers: {X-Frame-Options: deny}\n",
    "  http2: false\n",
    "  interval: 1s\n  burst: 0\n",
    "  alice: $2y$04$FzWebHashSecret0123456789\n",
    "  alice: [$2y$04$FzWebHashSecret0123456789]\n",
    ": ",
    "\n  ",
    "&a ",
    "*a",
    "~",
];

/// A web configuration (`--web.config.file`): errors name the file and never quote a password
/// hash or an inline key. Relative file names point into a folder that does not exist.
fn web_config(input: &[u8]) {
    let t = text(input);
    let res =
        sonde::config::web::load_str("web.yml", std::path::Path::new("/nonexistent-fuzz"), &t);
    if let Err(errors) = res {
        let secret_is_a_value = t.contains(&format!("$2y$04${WEB_SECRET}"));
        for e in &errors {
            assert_eq!(e.file, "web.yml", "an error names another file: {e}");
            if secret_is_a_value {
                assert!(!e.to_string().contains(WEB_SECRET), "a hash is quoted: {e}");
            }
        }
    }
}

/// A scenario whose templates are the input: a load-time var and a per-run header, both checked
/// (and the var rendered) at load, within the template fuel.
fn template(input: &[u8]) {
    init_env();
    let tpl = text(input);
    let indented: String = tpl
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>();
    let doc = format!(
        "scenario: fuzz-template\nvars:\n  v: |2-\n{indented}http:\n  url: \"http://127.0.0.1:1/\"\n  headers:\n    X-Fuzz: |2-\n  {}\n",
        indented.replace('\n', "\n  ")
    );
    let opts = sonde::config::LoadOptions::default();
    let res = sonde::config::load_str("fuzz.yaml", &doc, &opts);
    assert_no_secret("fuzz.yaml", &res);
}

const PROBERS: [Prober; 5] = [
    Prober::Http,
    Prober::Tcp,
    Prober::Dns,
    Prober::Icmp,
    Prober::Grpc,
];

/// `/probe`'s query: form-decoding, the target parsers of every prober, the timeout header,
/// the self-probe check, and the marker chain.
fn probe_query(input: &[u8]) {
    use sonde::blackbox::handler::{duration_from_secs, timeout_seconds};
    let params: Vec<(String, String)> = url::form_urlencoded::parse(input).into_owned().collect();
    let safety = sonde::blackbox::safety::Safety::off()
        .listening_on("127.0.0.1:9115".parse().unwrap())
        .listening_on("[::]:9116".parse().unwrap());
    for (k, v) in &params {
        if let Ok((host, port)) = split_host_port(v) {
            // Round trip: what Go's SplitHostPort splits, JoinHostPort joins back.
            let joined = if v.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            assert_eq!(&joined, v, "split_host_port({v:?}) = ({host:?}, {port:?})");
            if let Ok(p) = parse_port(&port, v) {
                assert_eq!(p.to_string().parse::<u16>(), Ok(p));
            }
        }
        if let Ok(url) = http_url(v) {
            assert!(url.host_str().is_some_and(|h| !h.is_empty()));
        }
        for p in PROBERS {
            let _ = target_host(p, v);
            if let Some(msg) = safety.self_target(p, v) {
                assert!(msg.contains("own listen address"), "{msg}");
            }
        }
        let t = timeout_seconds(Some(k), Some(Duration::from_secs(5)), 0.5);
        if let Ok(secs) = t {
            assert!(duration_from_secs(secs) <= Duration::from_secs(86_400));
        }
        let mut headers = http::HeaderMap::new();
        if let Ok(h) = http::HeaderValue::from_str(v) {
            headers.append(sonde::blackbox::guard::MARKER, h);
            let _ = safety.guard.admit(&headers);
        }
    }
    // Seconds from any header value: a deadline of 0 to 1 day.
    if let Ok(s) = std::str::from_utf8(input) {
        if let Ok(secs) = timeout_seconds(Some(s), None, 0.0) {
            assert!(duration_from_secs(secs) <= Duration::from_secs(86_400));
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The lines `bufio.ScanLines` yields from `data` (what the tcp dialogue reads).
fn scan_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    // A trailing newline does not start another line.
    if data.last() == Some(&b'\n') || data.is_empty() {
        out.pop();
    }
    out
}

/// The tcp dialogue's framing against a loopback peer that sends the input (after its first
/// line) in uneven chunks and closes. The first line is the expectation: `=bytes` for
/// `ExpectBytes`, else a regex for `Expect`. Oracle: the probe passes exactly when a line
/// (bytes) would match.
fn tcp_framing(input: &[u8]) {
    use sonde_probes::tcp::{probe, TcpRequest, TcpStep, MAX_TRANSCRIPT, MAX_TRANSCRIPT_LINE};
    use sonde_probes::tls::{TlsClient, TlsOptions};
    use tokio::io::AsyncWriteExt;
    let (head, data) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], input[i + 1..].to_vec()),
        None => (&b"^"[..], input.to_vec()),
    };
    let (step, expected) = if let Some(want) = head.strip_prefix(b"=") {
        let want = want.to_vec();
        let ok = !want.is_empty() && data.starts_with(&want);
        if want.is_empty() {
            return;
        }
        (TcpStep::ExpectBytes(want), ok)
    } else {
        let Ok(re) = regex::bytes::RegexBuilder::new(&String::from_utf8_lossy(head))
            .size_limit(1 << 20)
            .build()
        else {
            return;
        };
        let ok = scan_lines(&data).iter().any(|l| re.is_match(l));
        (TcpStep::Expect(re), ok)
    };
    let o = runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let chunk = 1 + data.len() % 7;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for c in data.chunks(chunk) {
                if s.write_all(c).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            let _ = s.shutdown().await;
        });
        let req = TcpRequest {
            host: "127.0.0.1".into(),
            port,
            resolver: sonde_probes::Resolver::with_servers(&[([127, 0, 0, 1], 1).into()]).unwrap(),
            ip: Default::default(),
            tls: false,
            tls_client: TlsClient::new(&TlsOptions::default(), &[]).unwrap(),
            dialogue: vec![step],
            policy: None,
            unix: None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let o = probe(&req, deadline).await;
        server.abort();
        o
    });
    assert_eq!(
        o.success(),
        expected,
        "tcp dialogue outcome {:?} differs from the line oracle",
        o.failure
    );
    let t = &o.facts.transcript;
    assert!(
        t.len() <= MAX_TRANSCRIPT + 1,
        "transcript of {} entries",
        t.len()
    );
    for line in t {
        // Escapes (\u{..}) may lengthen a kept character to at most 8.
        assert!(line.chars().count() <= 3 + 8 * MAX_TRANSCRIPT_LINE + 1);
    }
}

/// DNS answers as Go's miekg prints them, from any message hickory decodes: one line each,
/// no panic. Also: query names and rcode names.
fn dns_answer(input: &[u8]) {
    use hickory_proto::op::{Message, ResponseCode};
    use sonde_probes::dns::{parse_query_name, rcode_from_name, rcode_name, rr_to_string};
    if let Ok(m) = Message::from_vec(input) {
        for r in m
            .answers
            .iter()
            .chain(m.authorities.iter())
            .chain(m.additionals.iter())
        {
            let s = rr_to_string(r);
            assert!(
                !s.contains('\n'),
                "a record printed on several lines: {s:?}"
            );
            assert!(
                s.split('\t').count() >= 5,
                "a record without its five fields: {s:?}"
            );
        }
    }
    let _ = parse_query_name(&String::from_utf8_lossy(input));
    if input.len() >= 2 {
        let code =
            <ResponseCode as From<u16>>::from(u16::from_be_bytes([input[0], input[1]]) & 0x0fff);
        let name = rcode_name(code);
        if let Some(back) = rcode_from_name(&name) {
            assert_eq!(back, code, "rcode {name:?} does not read back");
        }
    }
}

/// ws frame matching: equals/contains/regex agree with their definitions; summaries are short.
/// The MQTT packets a broker sends, through the codec the mqtt steps use (rumqttc's, behind
/// `sonde_probes::mqtt::codec`), fed in chunks as a socket would deliver them. The first byte
/// picks the version (odd: 5) and the chunk size.
fn mqtt_packet(input: &[u8]) {
    use sonde_probes::mqtt::codec::{decode, encode, In, Out, Version};
    let Some((&first, stream)) = input.split_first() else {
        return;
    };
    let v = if first & 1 == 1 {
        Version::V5
    } else {
        Version::V311
    };
    let chunk = usize::from(first >> 1).max(1);
    const MAX: usize = 4096;
    let mut buf = bytes::BytesMut::new();
    for part in stream.chunks(chunk) {
        buf.extend_from_slice(part);
        loop {
            let before = buf.len();
            match decode(v, &mut buf, MAX) {
                Ok(None) => break,
                // The connection ends on a bad packet: so does the stream.
                Err(e) => {
                    assert!(!e.0.is_empty());
                    return;
                }
                Ok(Some(p)) => {
                    assert!(buf.len() < before, "a packet consumed no bytes");
                    assert!(before - buf.len() <= MAX + 5, "a packet over the maximum");
                    if let In::Publish(p) = p {
                        // What we decode, we can send back, and it reads the same.
                        let mut out = bytes::BytesMut::new();
                        if encode(v, &Out::Publish(&p), &mut out, MAX).is_ok() {
                            let again = decode(v, &mut out, MAX);
                            assert!(
                                matches!(&again, Ok(Some(In::Publish(q))) if *q == p),
                                "{p:?} read back as {again:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

fn ws_match(input: &[u8]) {
    use sonde::config::scenario::FrameMatch;
    use sonde::engine::steps::ws::{describe, matches, summary};
    use sonde_probes::ws::Payload;
    let (pattern, frame) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (text(&input[..i]), &input[i + 1..]),
        None => (String::new(), input),
    };
    let binary = Payload::Binary(bytes::Bytes::copy_from_slice(frame));
    let frame_text = text(frame);
    let textual = Payload::Text(frame_text.clone());
    let none = FrameMatch {
        json: vec![],
        regex: None,
        equals: None,
        contains: None,
    };
    assert!(matches(&none, &textual) && matches(&none, &binary));
    let eq = FrameMatch {
        equals: Some(frame_text.clone()),
        ..none.clone()
    };
    assert!(matches(&eq, &textual) && matches(&eq, &binary));
    let mid = frame_text
        .char_indices()
        .nth(frame_text.chars().count() / 2);
    let part = mid.map(|(i, _)| &frame_text[i..]).unwrap_or("");
    let has = FrameMatch {
        contains: Some(part.to_string()),
        ..none.clone()
    };
    assert!(matches(&has, &textual));
    let other = FrameMatch {
        contains: Some(pattern.clone()),
        ..none.clone()
    };
    assert_eq!(matches(&other, &textual), frame_text.contains(&pattern));
    if let Ok(re) = regex::RegexBuilder::new(&pattern)
        .size_limit(1 << 20)
        .build()
    {
        let expect = re.is_match(&frame_text);
        let m = FrameMatch {
            regex: Some(re),
            ..none.clone()
        };
        assert_eq!(matches(&m, &textual), expect);
        let _ = describe(&m);
    }
    for p in [&textual, &binary] {
        let s = summary(p);
        assert!(
            s.chars().count() <= 160 + 32,
            "a summary of {} chars",
            s.chars().count()
        );
    }
    let _ = sonde_probes::ws::describe_close_code(u16::from_le_bytes([
        *input.first().unwrap_or(&0),
        *input.get(1).unwrap_or(&0),
    ]));
}

/// The kernel-timestamp control-message parsers on raw bytes and on well-formed control
/// messages built from the input. Oracle: a lone `SCM_TIMESTAMPNS` reads back its timespec.
fn kts_cmsg(input: &[u8]) {
    use sonde_probes::kts::{rx_timestamp, stream::tx_stamp, RealTime};
    let _ = rx_timestamp(input);
    let _ = tx_stamp(input);
    // Records: [kind selector][data length][data…].
    let mut buf: Vec<u8> = Vec::new();
    let mut first: Option<(i32, i32, Vec<u8>)> = None;
    let mut rest = input;
    while rest.len() >= 2 && buf.len() < 4096 {
        let (sel, len) = (rest[0], rest[1] as usize);
        let data = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let (level, kind) = match sel % 5 {
            0 => (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS),
            1 => (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING),
            2 => (libc::SOL_IP, libc::IP_RECVERR),
            3 => (libc::SOL_IPV6, libc::IPV6_RECVERR),
            _ => (libc::SOL_SOCKET, sel as i32),
        };
        if first.is_none() {
            first = Some((level, kind, data.to_vec()));
        }
        push_cmsg(&mut buf, level, kind, data);
    }
    let got = rx_timestamp(&buf);
    let _ = tx_stamp(&buf);
    if let Some((libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, data)) = first {
        if data.len() >= 16 {
            let sec = i64::from_ne_bytes(data[0..8].try_into().unwrap());
            let nsec = i64::from_ne_bytes(data[8..16].try_into().unwrap());
            if let Some(t) = RealTime::from_timespec(sec, nsec) {
                assert_eq!(got, Some(t), "the first timestamp was not read");
            }
        }
    }
}

/// Append one control message as the kernel lays it out (`CMSG_LEN`, padded to `CMSG_SPACE`).
fn push_cmsg(buf: &mut Vec<u8>, level: i32, kind: i32, data: &[u8]) {
    let len = unsafe { libc::CMSG_LEN(data.len() as u32) } as usize;
    let space = unsafe { libc::CMSG_SPACE(data.len() as u32) } as usize;
    let hdr = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: level,
        cmsg_type: kind,
    };
    let start = buf.len();
    buf.resize(start + space, 0);
    let hdr_bytes = unsafe {
        std::slice::from_raw_parts(
            &hdr as *const libc::cmsghdr as *const u8,
            std::mem::size_of::<libc::cmsghdr>(),
        )
    };
    buf[start..start + hdr_bytes.len()].copy_from_slice(hdr_bytes);
    let data_at = start + (len - data.len());
    buf[data_at..data_at + data.len()].copy_from_slice(data);
}

/// The remote_write exposition parser: any text parses without panic; a series written as
/// sonde's encoder writes it (names, escaped label values, any float) reads back exactly.
fn expo(input: &[u8]) {
    use sonde::remote_write::expo::{parse, parse_line};
    let t = text(input);
    for (labels, _) in parse(&t) {
        assert_eq!(labels[0].0, "__name__");
    }
    // Build a series from the input.
    let mut chunks = t.split('\u{1}');
    let name = ident(chunks.next().unwrap_or(""), "m");
    let mut labels = vec![("__name__".to_string(), name.clone())];
    let mut line = name;
    let pairs: Vec<&str> = chunks.collect();
    if !pairs.is_empty() {
        line.push('{');
        for (i, p) in pairs.iter().enumerate() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = ident(k, &format!("l{i}"));
            if i > 0 {
                line.push(',');
            }
            line.push_str(&format!("{k}=\"{}\"", escape(v)));
            labels.push((k, v.to_string()));
        }
        line.push('}');
    }
    let value = f64::from_bits(input.iter().fold(0u64, |h, &b| h.rotate_left(8) ^ b as u64));
    let shown = if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    };
    line.push_str(&format!(" {shown}"));
    let (got, v) = parse_line(&line).unwrap_or_else(|| panic!("{line:?} does not parse"));
    assert_eq!(got, labels, "{line:?}");
    assert!(
        v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()),
        "{line:?}: {v} != {value}"
    );
}

/// A Prometheus name from any text: `[a-zA-Z_][a-zA-Z0-9_]*` (or `fallback`).
fn ident(s: &str, fallback: &str) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match out.chars().next() {
        Some(c) if !c.is_ascii_digit() => out,
        _ => format!("{fallback}{out}"),
    }
}

/// A label value as the text format escapes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The tcp.* framings on hostile bytes, and decoded frames as protobuf: the first byte picks a
/// framing and a limit. Whatever arrives, in whatever chunks: no frame is longer than the
/// limit, the buffer stays bounded, bytes are only ever consumed; a body the codec encodes
/// decodes back to itself; any frame decodes as a protobuf message or fails cleanly.
fn frame_codec(input: &[u8]) {
    use sonde_probes::framing::{Codec, Endian, Framing, LengthPrefix};
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let max = 1 + (sel as usize >> 4) * 64;
    let framing = match sel % 8 {
        0 => Framing::Lines { crlf: false },
        1 => Framing::Lines { crlf: true },
        2 => Framing::Delimiter(b"\0\0".to_vec()),
        3 => Framing::Fixed(1 + (sel as usize >> 3) % 16),
        n => Framing::LengthPrefix(LengthPrefix {
            width: [1, 2, 4, 8][(n - 4) as usize],
            endian: if sel & 0x10 == 0 {
                Endian::Big
            } else {
                Endian::Little
            },
            includes_header: sel & 0x20 != 0,
            header: vec![0xca; (sel as usize >> 6) % 3],
        }),
    };
    // As the loader does: a fixed size is within the limit.
    let max = match framing {
        Framing::Fixed(n) => max.max(n),
        _ => max,
    };
    let mut codec = Codec::new(framing.clone(), max);
    let mut buf = bytes::BytesMut::new();
    let chunk = 1 + data.len() % 5;
    'feed: for c in data.chunks(chunk) {
        buf.extend_from_slice(c);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= max,
                        "{framing}: a {}-byte frame over {max}",
                        frame.len()
                    );
                    assert!(
                        buf.len() < before,
                        "{framing}: a frame without consuming bytes"
                    );
                    let _ = sonde::config::protobuf::decode(chat_frame(), &frame);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(
            buf.len() <= max + 64,
            "{framing}: {} bytes buffered over {max}",
            buf.len()
        );
    }
    // Round trip: what the codec encodes, it decodes to the same body.
    let body: Vec<u8> = data.iter().take(max).copied().collect();
    if let Ok(wire) = codec.encode(&body) {
        let mut fresh = Codec::new(framing.clone(), max.max(body.len() + 16));
        let mut b = bytes::BytesMut::from(&wire[..]);
        let back = fresh
            .decode(&mut b)
            .expect("decodes")
            .expect("a whole frame");
        let want: &[u8] = match &framing {
            // A received line loses one trailing \r.
            Framing::Lines { crlf: false } if body.last() == Some(&b'\r') => {
                &body[..body.len() - 1]
            }
            _ => &body,
        };
        assert_eq!(&back[..], want, "{framing}");
    }
}

/// The message type of a small chat protocol, compiled once.
fn chat_frame() -> &'static prost_reflect::MessageDescriptor {
    static DESC: std::sync::OnceLock<prost_reflect::MessageDescriptor> = std::sync::OnceLock::new();
    DESC.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("f.proto"),
            "syntax = \"proto3\";\npackage f;\nmessage Frame { oneof k { string text = 1; Frame inner = 2; } repeated uint64 n = 3; map<string, int32> m = 4; }\n",
        )
        .unwrap();
        let mut cache = Default::default();
        let pool = sonde::config::protobuf::compile(
            &mut cache,
            dir.path(),
            dir.path(),
            "f.proto",
        )
        .unwrap();
        sonde::config::protobuf::message(&pool, "f.Frame").unwrap()
    })
}

//! One step: its typed model checked and built into a [`Step`] (through its kind's builder in
//! [`super::kinds`]), the names of a scenario's steps, and the per-run builder of steps whose
//! templates use captures or per-run functions.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_norway::Value;

use super::build::{Cx, LoadShared, Shared};
use super::deser::deserialize_recovering;
use super::error::{FileErrors, Pos};
use super::expect;
use super::flow;
use super::funcs::SecretSink;
use super::kinds::{At, KINDS};
use super::locate::{key_path, PosIndex};
use super::model::StepModel;
use super::packed::Packer;
use super::redact::Fnv;
use super::template::{Scope, Templates};
use crate::config::scenario::{
    BuildFn, Built, Captured, Dynamic, OnDemand, OnDemandFn, Retry, Step, StepBody,
};

/// Which part of the scenario a step belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Setup,
    Main,
    Teardown,
}

/// What a step's build depends on beyond the step itself.
#[derive(Copy, Clone, Debug)]
pub struct StepOpts {
    pub scenario_timeout: Duration,
    pub heartbeat: Option<Duration>,
}

/// How much of a step [`step`] checks and builds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Check and build everything.
    Full,
    /// Built per run: check the kind and the flow keys (timeout, retry) now, the rest per run.
    FlowOnly,
    /// The step already had structural or template errors: take only its name and kind, so its
    /// problems are not reported twice.
    NameOnly,
}

/// A step as far as it was checked and built, before it is named.
pub struct StepOut {
    pub name: Option<String>,
    pub kind: &'static str,
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub built: Option<Built>,
    /// The raw tree of a step built per run.
    pub dynamic: Option<Value>,
    /// The rendered tree, as JSON, of a step built each time it runs ([`OnDemand`]).
    pub rendered: Option<String>,
    /// Where the step sits, and in which part of the scenario.
    pub base: String,
    pub stage: Stage,
}

/// Every name a step captures into (step-level and inside its kind's mapping).
pub fn capture_names(m: &StepModel) -> Vec<String> {
    let inner = m.inner_captures().into_iter().map(|(_, c)| c);
    m.capture
        .iter()
        .chain(inner)
        .flat_map(|l| l.0.iter().map(|(k, _)| k.clone()))
        .collect()
}

/// Check and build one typed step at `base`, as far as `mode` says.
pub fn step(m: &StepModel, base: &str, opts: &StepOpts, mode: Mode, cx: &mut Cx) -> StepOut {
    let kinds = m.kinds();
    let mut out = StepOut {
        name: m.name.as_ref().map(|t| t.0.clone()),
        kind: kinds.first().copied().unwrap_or("step"),
        timeout: m.timeout.map(|d| d.0),
        retry: None,
        built: None,
        dynamic: None,
        rendered: None,
        base: base.to_string(),
        stage: Stage::Main,
    };
    if mode == Mode::NameOnly {
        return out;
    }
    let before = cx.errors.len();
    out.retry = flow::retry(m.retry.as_ref(), &key_path(base, "retry"), cx);
    check_flow(out.timeout, &kinds, base, opts, cx);
    if mode == Mode::FlowOnly && cx.errors.len() == before {
        m.check_unrendered(base, cx);
    }
    if mode != Mode::Full || cx.errors.len() > before {
        return out;
    }
    if let Some(built) = build(m, &kinds, base, opts, cx) {
        if cx.errors.len() == before {
            out.built = Some(built);
        }
    }
    out
}

/// The step's deadline, and exactly one kind.
fn check_flow(timeout: Option<Duration>, kinds: &[&str], base: &str, opts: &StepOpts, cx: &mut Cx) {
    let p = |k: &str| key_path(base, k);
    let human = crate::time::fmt_long;
    if let Some(t) = timeout {
        if t.is_zero() {
            cx.err_value(
                &p("timeout"),
                "step timeout 0s — expected a deadline above zero",
            );
        } else if t > opts.scenario_timeout {
            cx.err_value(
                &p("timeout"),
                format!(
                    "step timeout {} is longer than the scenario's timeout {} — expected at most {}",
                    human(t),
                    human(opts.scenario_timeout),
                    human(opts.scenario_timeout)
                ),
            );
        }
    }
    match kinds {
        [] => cx.err_value(
            base,
            format!(
                "a step without a kind — expected exactly one of: {}",
                KINDS.join(", ")
            ),
        ),
        [_] => {}
        [first, second, ..] => cx.err_key(
            &p(second),
            format!(
                "a step with both `{first}` and `{second}` — expected exactly one step kind per step"
            ),
        ),
    }
}

/// The step's expectations, captures and action. Even when one part has a problem the others
/// are checked: every problem is reported.
fn build(
    m: &StepModel,
    kinds: &[&'static str],
    base: &str,
    opts: &StepOpts,
    cx: &mut Cx,
) -> Option<Built> {
    let p = |k: &str| key_path(base, k);
    let servers = m
        .resolver
        .as_ref()
        .and_then(|r| cx.resolver_override(&r.0, &p("resolver")));
    if m.resolver.is_some() && servers.is_none() {
        return None;
    }
    let ep = p("expect");
    if let (Some(e), [kind]) = (&m.expect, kinds) {
        expect::check_keys(e, &ep, kind, cx);
    }
    let post = expect::post_checks(m.expect.as_ref(), &ep, cx);
    let [kind] = kinds else {
        return None;
    };
    let mut captures = flow::captures(m.capture.as_ref(), &p("capture"), kind, cx);
    for (k, list) in m.inner_captures() {
        let at = key_path(&p(k), "capture");
        captures.extend(flow::captures(Some(list), &at, k, cx));
    }
    let at = At {
        path: "",
        expect: m.expect.as_ref(),
        expect_path: &ep,
        servers: servers.as_deref(),
        heartbeat: opts.heartbeat,
        reads_body: !captures.is_empty() || !post.json().is_empty(),
    };
    let action = m.build_kind(base, at, cx)?;
    Some(Built {
        action,
        expect: post,
        captures: captures.into_boxed_slice(),
    })
}

/// What a per-run build needs that every scenario of a file shares: one per file, not one
/// copy per scenario.
pub struct FileRt {
    pub templates: Arc<Templates>,
    pub dir: PathBuf,
    pub file: String,
    /// The load's resolvers, TLS clients and `.proto` pools, looked up before building anew.
    pub load: Arc<LoadShared>,
}

/// What a per-run build needs, shared by the dynamic steps of a scenario.
pub struct RtBase {
    pub file: Arc<FileRt>,
    pub scope: Scope,
    pub opts: StepOpts,
    /// What this scenario's per-run builds built that the load had not: none in the common case
    /// (so boxed, and only kept when something is in it). The scenario's own, so runs of
    /// different scenarios never wait on one another's builds.
    pub own: Mutex<Option<Box<Shared>>>,
}

impl RtBase {
    /// Build with this scenario's shared state (held for the whole build, as runs of the same
    /// scenario may build at once), over the load's.
    fn with_shared<T>(&self, build: impl FnOnce(&mut Shared) -> T) -> T {
        let mut guard = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared = match guard.take() {
            Some(own) => *own,
            None => Shared::over(&self.file.load),
        };
        let out = build(&mut shared);
        if !shared.is_empty() {
            *guard = Some(Box::new(shared));
        }
        out
    }
}

/// The raw texts of a load's per-run steps, each kept once however many scenarios have it
/// (10,000 sessions of one shape repeat the same step text 10,000 times). Lives as long as the
/// load; the texts as long as a step uses them.
#[derive(Default)]
pub struct RawTexts(HashSet<Arc<str>>);

impl RawTexts {
    /// `raw` as compact JSON text (a YAML value tree is several times larger), shared with
    /// every equal text of the load.
    fn intern(&mut self, raw: &Value) -> Arc<str> {
        let text = serde_json::to_string(raw).unwrap_or_default();
        if let Some(known) = self.0.get(text.as_str()) {
            return known.clone();
        }
        let text: Arc<str> = text.into();
        self.0.insert(text.clone());
        text
    }
}

/// Name the steps (explicit names must be unique; the others are named after their kind) and
/// make them: built now, or per run through `rt`, their texts kept in `texts`, or each time they
/// run, their rendered texts packed by `packer`.
pub fn name_steps(
    outs: Vec<StepOut>,
    rt: &Arc<RtBase>,
    texts: &mut RawTexts,
    packer: &mut Packer,
    index: &PosIndex,
    errors: &mut FileErrors,
) -> [Vec<Step>; 3] {
    let mut taken: HashMap<String, Pos> = HashMap::new();
    for o in &outs {
        let Some(n) = &o.name else { continue };
        let at = index.value(&key_path(&o.base, "name"));
        if n.is_empty() {
            errors.push(at, "empty step name — expected a name");
        } else if let Some(first) = taken.get(n) {
            errors.push(
                at,
                format!(
                    "duplicate step name `{n}` — already used at {}",
                    errors.at(*first)
                ),
            );
        } else {
            taken.insert(n.clone(), at);
        }
    }
    let mut lists: [Vec<Step>; 3] = Default::default();
    let mut on_demand: Option<Arc<OnDemandFn>> = None;
    for o in outs {
        let name = match o.name {
            Some(n) => n,
            None => free_name(o.kind, &mut taken),
        };
        let body = match (o.dynamic, o.built, o.rendered) {
            (Some(raw), _, _) => StepBody::PerRun(Dynamic {
                build: dynamic_builder(rt.clone(), texts.intern(&raw), o.base),
            }),
            (None, Some(_), Some(text)) => StepBody::OnDemand(OnDemand {
                text: packer.pack(&format!("[{},{text}]", serde_json::Value::String(o.base))),
                build: on_demand
                    .get_or_insert_with(|| on_demand_builder(rt.clone()))
                    .clone(),
            }),
            (None, Some(b), None) => StepBody::Built(b),
            (None, None, _) => continue,
        };
        lists[o.stage as usize].push(Step {
            name,
            kind: o.kind,
            timeout: o.timeout,
            retry: o.retry.map(Box::new),
            body,
        });
    }
    lists
}

/// `kind`, or `kind-2`, `kind-3`… when taken.
fn free_name(kind: &str, taken: &mut HashMap<String, Pos>) -> String {
    let mut n = kind.to_string();
    let mut i = 2;
    while taken.contains_key(&n) {
        n = format!("{kind}-{i}");
        i += 1;
    }
    taken.insert(n.clone(), Pos::START);
    n
}

/// The per-run builder of a dynamic step: render the raw tree with the run's captures, type it,
/// and build it with the same [`step`] builder as at load.
fn dynamic_builder(rt: Arc<RtBase>, raw: Arc<str>, base: String) -> Box<BuildFn> {
    Box::new(move |captured: &[Captured]| {
        let (sink, sink_value) = SecretSink::value();
        let mut scope = rt.scope.clone();
        scope.set(crate::config::funcs::SINK_KEY, sink_value);
        for (k, v) in captured {
            scope.set(k, minijinja::Value::from(minijinja::value::Serde(v)));
        }
        let mut v: Value = serde_json::from_str(&raw)
            .map_err(|e| format!("{base}: cannot read the step back: {e}"))?;
        rt.file.templates.render_tree_rt(&mut v, &base, &scope)?;
        let built = build_rendered(&rt, v, &base, RENDERED)?;
        Ok((built, sink.take()))
    })
}

/// The builder of a scenario's [`OnDemand`] steps: their texts were rendered at load, so they
/// are typed and built as they are, never rendered again (a value that reads like a template
/// stays a value).
fn on_demand_builder(rt: Arc<RtBase>) -> Arc<OnDemandFn> {
    Arc::new(move |text| {
        let (base, v): (String, Value) = serde_json::from_str(&text.text())
            .map_err(|e| format!("cannot read the step back: {e}"))?;
        build_rendered(&rt, v, &base, BUILT_AGAIN)
    })
}

/// Type and build a rendered step tree with the same [`step`] builder as at load.
fn build_rendered(rt: &RtBase, v: Value, base: &str, how: &str) -> Result<Built, String> {
    let index = PosIndex::build("");
    let mut errors = FileErrors::new(&rt.file.file);
    let rec = deserialize_recovering::<StepModel>(v, base, "a step", &index, &mut errors);
    let mut hash = Fnv::default();
    let out = rec.value.and_then(|sm| {
        rt.with_shared(|shared| {
            let mut cx = Cx {
                index: &index,
                errors: &mut errors,
                shared,
                dir: &rt.file.dir,
                hash: &mut hash,
            };
            step(&sm, base, &rt.opts, Mode::Full, &mut cx).built
        })
    });
    match out {
        Some(b) if errors.is_empty() => Ok(b),
        _ => Err(rendered_error(base, errors, how)),
    }
}

/// How a build after the load names the step in its errors: a per-run build rendered it for
/// the run, an on-demand build builds what the load rendered.
const RENDERED: &str = "as rendered for this run";
const BUILT_AGAIN: &str = "as built again for this connection";

fn rendered_error(base: &str, errors: FileErrors, how: &str) -> String {
    let msgs: Vec<String> = errors
        .into_errors()
        .into_iter()
        .map(|e| e.message)
        .collect();
    if msgs.is_empty() {
        format!("{base}: the rendered step is invalid")
    } else {
        format!("{base} {how}: {}", msgs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::scenario::{Action, Captured, Scenario, StepBody};

    /// The URL of the `i`th step of `sc` as built for a run with `captured`.
    fn url(sc: &Scenario, i: usize, captured: &[Captured]) -> String {
        let StepBody::PerRun(d) = &sc.steps[i].body else {
            panic!("not built per run: {:?}", sc.steps[i]);
        };
        match (d.build)(captured).unwrap().0.action {
            Action::Http(h) => h.url.to_string(),
            other => panic!("not http: {other:?}"),
        }
    }

    const TWO: &str = r#"
scenarios:
  - scenario: one
    interval: 10s
    vars: {user: alice}
    steps:
      - {name: a, http: {url: "http://127.0.0.1:1/{{ user }}/{{ uuid() }}"}, capture: {t: {json: "$.t"}}}
      - {name: b, http: {url: "http://127.0.0.1:1/{{ user }}/{{ t }}"}, resolver: ["127.0.0.1:5353"]}
  - scenario: two
    interval: 10s
    vars: {user: bob}
    steps:
      - {name: a, http: {url: "http://127.0.0.1:1/{{ user }}/{{ uuid() }}"}, capture: {t: {json: "$.t"}}}
      - {name: b, http: {url: "http://127.0.0.1:1/{{ user }}/{{ t }}"}, resolver: ["127.0.0.1:5353"]}
"#;

    /// Equal texts of per-run steps are kept once; different ones apart.
    #[test]
    fn raw_texts_are_kept_once() {
        let mut texts = super::RawTexts::default();
        let v = |s: &str| serde_norway::from_str::<serde_norway::Value>(s).unwrap();
        let a = texts.intern(&v("{http: {url: 'http://x/{{ user }}'}}"));
        let b = texts.intern(&v("{http: {url: 'http://x/{{ user }}'}}"));
        let c = texts.intern(&v("{http: {url: 'http://y/{{ user }}'}}"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, r#"{"http":{"url":"http://x/{{ user }}"}}"#);
        assert!(!std::sync::Arc::ptr_eq(&a, &c));
    }

    /// Scenarios share what a per-run build needs of their file and load, and step `b`'s text
    /// (the same in both), not their scope: each renders its own vars and the run's captures,
    /// every run.
    #[test]
    fn per_run_builds_render_their_own_scenarios_vars() {
        let cfg = crate::config::load_str("t.yaml", TWO, &Default::default()).unwrap();
        let [one, two] = &cfg.scenarios[..] else {
            panic!("two scenarios");
        };
        assert!(url(one, 0, &[]).starts_with("http://127.0.0.1:1/alice/"));
        assert!(url(two, 0, &[]).starts_with("http://127.0.0.1:1/bob/"));
        assert_ne!(url(one, 0, &[]), url(one, 0, &[]), "uuid() is per run");
        let t = |v: u16| vec![("t".to_string(), serde_json::json!(v))];
        assert_eq!(url(one, 1, &t(200)), "http://127.0.0.1:1/alice/200");
        assert_eq!(url(two, 1, &t(503)), "http://127.0.0.1:1/bob/503");
        assert_eq!(url(one, 1, &t(404)), "http://127.0.0.1:1/alice/404");
    }

    const SESSIONS: &str = r#"
scenarios:
  - scenario: kept
    interval: 10s
    session: persistent
    vars: {user: alice, literal: "{% raw %}{{ env.HOME }}{% endraw %}"}
    setup:
      - {name: connect, ws.connect: {as: a, url: "ws://127.0.0.1:1/{{ user }}"}}
      - {name: hello, ws.send: {on: a, text: "hello {{ user }} {{ literal }}"}}
    steps:
      - {name: ping, ws.send: {on: a, text: "ping {{ user }}"}}
    teardown:
      - {name: bye, ws.send: {on: a, text: "bye {{ user }}"}}
  - scenario: per-run
    interval: 10s
    setup:
      - {name: connect, ws.connect: {as: a, url: "ws://127.0.0.1:1/x"}}
    steps:
      - {name: ping, ws.send: {on: a, text: ping}}
"#;

    fn sent_text(built: &crate::config::scenario::Built) -> String {
        use crate::config::scenario::{Action, WsAction};
        match &built.action {
            Action::Ws(WsAction::Send(s)) => match &s.payload {
                sonde_probes::ws::Payload::Text(t) => t.clone(),
                other => panic!("not text: {other:?}"),
            },
            other => panic!("not ws.send: {other:?}"),
        }
    }

    /// A persistent session's setup and teardown are kept as their rendered text and built when
    /// they run, to what the load built; its `steps:`, and every step of a per-run scenario,
    /// stay built. What rendered into template syntax is sent as it is, never rendered again.
    #[test]
    fn a_sessions_setup_and_teardown_are_built_when_they_run_from_their_rendered_text() {
        let cfg = crate::config::load_str("t.yaml", SESSIONS, &Default::default()).unwrap();
        let [kept, per_run] = &cfg.scenarios[..] else {
            panic!("two scenarios");
        };
        let on_demand = |s: &crate::config::scenario::Step| match &s.body {
            StepBody::OnDemand(d) => d.build().unwrap(),
            other => panic!("{} is not built on demand: {other:?}", s.name),
        };
        assert!(matches!(kept.setup[0].body, StepBody::OnDemand(_)));
        assert_eq!(
            sent_text(&on_demand(&kept.setup[1])),
            "hello alice {{ env.HOME }}"
        );
        assert_eq!(sent_text(&on_demand(&kept.teardown[0])), "bye alice");
        // Built again each time, the same.
        assert_eq!(
            sent_text(&on_demand(&kept.setup[1])),
            "hello alice {{ env.HOME }}"
        );
        assert_eq!(sent_text(kept.steps[0].built().unwrap()), "ping alice");
        assert!(per_run.setup[0].built().is_some());
        assert!(per_run.steps[0].built().is_some());
    }

    /// Built again for a reconnect, a session's setup finds the TLS client the load built from
    /// its `tls_config` files: a CA file gone since (rotated, unmounted) does not fail it.
    #[test]
    fn a_sessions_setup_builds_after_its_ca_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = ca.self_signed(&key).unwrap().pem();
        std::fs::write(dir.path().join("ca.crt"), pem).unwrap();
        let file = dir.path().join("s.yaml");
        let text = "scenario: s\ninterval: 10s\nsession: persistent\nsetup:\n  - {name: c, ws.connect: {as: a, url: \"wss://127.0.0.1:1/x\", tls_config: {ca_file: ca.crt}}}\nsteps:\n  - {name: p, ws.send: {on: a, text: p}}\n";
        std::fs::write(&file, text).unwrap();
        let cfg = crate::config::load_paths(&[file], &Default::default()).unwrap();
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let StepBody::OnDemand(d) = &cfg.scenarios[0].setup[0].body else {
            panic!("not built on demand");
        };
        if let Err(e) = d.build() {
            panic!("{e}");
        }
    }

    /// The same for a `.proto` file: the load compiled it, and a reconnect's build takes that,
    /// however the file changed on disk since.
    #[test]
    fn a_sessions_setup_builds_after_its_proto_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let proto = "syntax = \"proto3\";\npackage t;\nmessage F { string a = 1; }\n";
        std::fs::write(dir.path().join("t.proto"), proto).unwrap();
        let file = dir.path().join("s.yaml");
        let text = "scenario: s\ninterval: 10s\nsession: persistent\nsetup:\n  - {name: c, tcp.connect: {as: a, target: \"127.0.0.1:1\", framing: {length: {bytes: 4}}, proto_file: t.proto, message: t.F}}\n  - {name: hi, tcp.send: {on: a, proto_file: t.proto, message: t.F, protobuf: {a: hi}}}\nsteps:\n  - {name: p, tcp.send: {on: a, text: p}}\n";
        std::fs::write(&file, text).unwrap();
        let cfg = crate::config::load_paths(&[file], &Default::default()).unwrap();
        std::fs::remove_file(dir.path().join("t.proto")).unwrap();
        for step in &cfg.scenarios[0].setup {
            let StepBody::OnDemand(d) = &step.body else {
                panic!("{} not built on demand", step.name);
            };
            if let Err(e) = d.build() {
                panic!("{}: {e}", step.name);
            }
        }
    }

    /// An `mqtt.connect` without a `client_id` picks a random one when it is built: a session
    /// keeps the one picked at load across reconnects, so that step stays built; with a
    /// `client_id` it is built on demand like the rest.
    #[test]
    fn an_mqtt_connect_with_a_random_client_id_stays_built() {
        let text = |id: &str| {
            format!(
                "scenario: m\ninterval: 10s\nsession: persistent\nsetup:\n  - {{name: c, mqtt.connect: {{as: m, url: \"mqtt://127.0.0.1:1\"{id}}}}}\nsteps:\n  - {{name: p, mqtt.publish: {{on: m, topic: t, text: x}}}}\n"
            )
        };
        let cfg = crate::config::load_str("m.yaml", &text(""), &Default::default()).unwrap();
        assert!(matches!(cfg.scenarios[0].setup[0].body, StepBody::Built(_)));
        let cfg =
            crate::config::load_str("m.yaml", &text(", client_id: probe-1"), &Default::default())
                .unwrap();
        assert!(matches!(
            cfg.scenarios[0].setup[0].body,
            StepBody::OnDemand(_)
        ));
    }
}

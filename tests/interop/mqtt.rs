//! The mqtt steps against Debian's mosquitto (started by servers.sh): two clients, a round trip
//! at QoS 0, 1 and 2 over each listener — plain MQTT, MQTT over TLS (the generated CA), MQTT over
//! WebSocket — in MQTT 3.1.1 and 5, with password authentication; a wrong password fails with
//! the broker's reason and the password shows nowhere.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{assert_failing, assert_passing, doc, Serve, FIRST_RUNS, SONDE};

/// What servers.sh wrote about mosquitto.
struct Mosquitto {
    tcp: String,
    tls: String,
    ws: String,
    user: String,
    password: String,
    ca: String,
}

fn mosquitto() -> Mosquitto {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run `bash tests/interop/run.sh` (servers.sh starts mosquitto)")
        })
    };
    Mosquitto {
        tcp: var("SONDE_INTEROP_MQTT"),
        tls: var("SONDE_INTEROP_MQTTS"),
        ws: var("SONDE_INTEROP_MQTT_WS"),
        user: var("SONDE_INTEROP_MQTT_USER"),
        password: var("SONDE_INTEROP_MQTT_PASSWORD"),
        ca: var("SONDE_INTEROP_CA"),
    }
}

/// One scenario: alice publishes at QoS 0, 1 and 2, bob receives each; per-run session.
fn round_trip(name: &str, url: &str, protocol: &str, user: &str, tls: &str) -> String {
    format!(
        r#"
  - scenario: {name}
    interval: 5s
    timeout: 5s
    steps:
      - name: alice
        mqtt.connect: {{as: alice, url: "{url}", protocol: "{protocol}", username: {user}, password: "{{{{ env.MQTT_PASSWORD }}}}"{tls}}}
      - name: bob
        mqtt.connect: {{as: bob, url: "{url}", protocol: "{protocol}", username: {user}, password: "{{{{ env.MQTT_PASSWORD }}}}"{tls}}}
      - name: subscribe
        mqtt.subscribe: {{on: bob, topic: "sonde/{name}/#", qos: 2}}
      - {{name: pub0, mqtt.publish: {{on: alice, topic: sonde/{name}/q0, text: "zero {{{{ uuid() }}}}", capture: {{m0: {{frame: true}}}}}}}}
      - {{name: got0, mqtt.expect: {{on: bob, topic: sonde/{name}/q0, match: {{equals: "{{{{ m0 }}}}"}}, within: 3s}}}}
      - {{name: pub1, mqtt.publish: {{on: alice, topic: sonde/{name}/q1, qos: 1, json: {{n: 1, id: "{{{{ uuid() }}}}"}}, capture: {{m1: {{json: "$.id"}}}}}}}}
      - {{name: got1, mqtt.expect: {{on: bob, topic: sonde/{name}/q1, match: {{json: {{"$.id": "{{{{ m1 }}}}"}}}}, within: 3s}}}}
      - {{name: pub2, mqtt.publish: {{on: alice, topic: sonde/{name}/q2, qos: 2, text: "two {{{{ uuid() }}}}", capture: {{m2: {{frame: true}}}}}}}}
      - {{name: got2, mqtt.expect: {{on: bob, topic: "sonde/{name}/+", match: {{equals: "{{{{ m2 }}}}"}}, within: 3s}}}}
      - mqtt.close: {{on: alice}}
      - mqtt.close: {{on: bob}}
"#
    )
}

fn named<'a>(all: &'a BTreeMap<String, Value>, scenario: &str, step: &str) -> &'a Value {
    doc(all, scenario)["last_run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("{scenario}: no step {step}"))
}

#[test]
#[ignore = "needs real servers: run tests/interop/run.sh"]
fn mqtt_round_trips_against_mosquitto() {
    let m = mosquitto();
    let tls = format!(", tls_config: {{ca_file: \"{}\"}}", m.ca);
    let listeners = [
        ("tcp", format!("mqtt://{}", m.tcp), ""),
        ("tls", format!("mqtts://{}", m.tls), tls.as_str()),
        ("ws", format!("ws://{}/mqtt", m.ws), ""),
    ];
    let mut yaml = String::from("scenarios:\n");
    let mut names = Vec::new();
    for (listener, url, tls) in &listeners {
        for (v, protocol) in [("v311", "3.1.1"), ("v5", "5")] {
            let name = format!("mqtt-{listener}-{v}");
            yaml.push_str(&round_trip(&name, url, protocol, &m.user, tls));
            names.push(name);
        }
    }
    yaml.push_str(&format!(
        r#"
  - scenario: mqtt-wrong-password
    interval: 2s
    steps:
      - mqtt.connect: {{as: a, url: "mqtt://{tcp}", protocol: "5", username: {user}, password: not-the-password-42}}
"#,
        tcp = m.tcp,
        user = m.user
    ));
    let s = Serve::command(SONDE)
        .config_yaml("scenarios.yaml", &yaml)
        .env("MQTT_PASSWORD", &m.password)
        .start();
    let all = s.wait_all_ran(FIRST_RUNS);
    for name in &names {
        assert_passing(&all, name);
        let d = doc(&all, name);
        assert!(
            named(&all, name, "alice")["timings"]
                .get("connack")
                .is_some(),
            "{name}: {d:#}"
        );
        assert!(named(&all, name, "subscribe")["timings"]
            .get("suback")
            .is_some());
        assert!(named(&all, name, "pub1")["timings"].get("puback").is_some());
        let p2 = &named(&all, name, "pub2")["timings"];
        assert!(
            p2.get("pubrec").is_some() && p2.get("pubcomp").is_some(),
            "{p2}"
        );
        for (step, qos) in [("got0", 0), ("got1", 1), ("got2", 2)] {
            assert_eq!(
                named(&all, name, step)["facts"]["qos"],
                qos,
                "{name} {step}"
            );
        }
        if name.starts_with("mqtt-tls") {
            assert_eq!(
                named(&all, name, "alice")["facts"]["connect"]["tls"]["verified"],
                true
            );
        }
    }
    // mosquitto answers a bad password with "bad user name or password" (5: 0x86).
    assert_failing(
        &all,
        "mqtt-wrong-password",
        "status",
        &["refused the connection"],
    );
    // The password (from the environment, and the literal wrong one) is nowhere to be read.
    for path in ["/api/v1/scenarios", "/config", "/metrics"] {
        let body = s.get(path).body;
        assert!(!body.contains(&m.password), "{path} shows the password");
        assert!(
            !body.contains("not-the-password-42"),
            "{path} shows a password"
        );
    }
    for name in names
        .iter()
        .chain(["mqtt-wrong-password".to_string()].iter())
    {
        let body = s.get(&format!("/api/v1/scenarios/{name}")).body;
        assert!(!body.contains(&m.password), "{name} shows the password");
        assert!(
            !body.contains("not-the-password-42"),
            "{name} shows a password"
        );
    }
    let log = s.log();
    assert!(!log.contains(&m.password), "the log shows the password");
}

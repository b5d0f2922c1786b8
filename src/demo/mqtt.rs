//! An MQTT broker (3.1.1 and 5, QoS 0–2, retained messages) as the demo target of
//! `scenarios/mqtt-round-trip.yaml`: the fixture broker of the tests (`testkit/src/mqtt.rs`,
//! built on rumqttc's codec), served without authentication on plain MQTT.

#[allow(dead_code, clippy::all)]
#[path = "../../testkit/src/mqtt.rs"]
mod broker;

pub use broker::MqttBroker as Handle;

/// Serve on `listener` until the handle is dropped.
pub fn start(listener: tokio::net::TcpListener) -> Handle {
    broker::MqttBroker::serve_on(listener, broker::MqttOptions::default())
}

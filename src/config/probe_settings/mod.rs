//! Probe settings that scenario steps and blackbox modules both write — TLS clients and their
//! ALPN lists, DNS rcodes and record checks, HTTP header matchers — compiled in one place, so
//! the two file formats cannot drift apart in what they accept or build.
//!
//! Each format keeps its own model (blackbox's mirrors blackbox_exporter's YAML, optional fields
//! and all) and turns it into these helpers' inputs; where the formats' messages differ on
//! purpose, [`Dialect`] says whose words to use.

pub mod dns;
pub mod http;
pub mod protobuf;
pub mod tls;

/// Whose file a setting was written in. blackbox modules keep blackbox_exporter's strictness and
/// words (so a refused module reads as blackbox's refusal would); scenarios use sonde's.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    Scenario,
    Blackbox,
}

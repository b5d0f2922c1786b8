//! ICMP probe: one echo request to an IPv4 or IPv6 address with surge-ping.
//!
//! (Skeleton: the implementation lands in the next commit.)

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::resolve::{ResolveOptions, Resolver};
use crate::{Failure, FailureReason, Outcome, Recorder};

#[derive(Clone, Debug)]
pub struct IcmpRequest {
    pub host: String,
    pub resolver: Resolver,
    pub ip: ResolveOptions,
    /// Bytes of payload after the ICMP header.
    pub payload_size: usize,
    /// IPv4 TTL / IPv6 hop limit of the request.
    pub ttl: Option<u32>,
    /// IPv4 only: set the don't-fragment bit.
    pub dont_fragment: bool,
    pub source: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IcmpFacts {
    pub rtt: Option<Duration>,
    /// TTL / hop limit of the reply, when the socket reports it.
    pub reply_hop_limit: Option<u8>,
}

pub type IcmpOutcome = Outcome<IcmpFacts>;

pub async fn probe(req: &IcmpRequest, deadline: Instant) -> IcmpOutcome {
    let _ = (req, deadline);
    Recorder::new().finish(
        Some(Failure::new(
            FailureReason::Protocol,
            "icmp probe not implemented yet",
        )),
        IcmpFacts::default(),
    )
}

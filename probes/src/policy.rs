//! A caller's say over where a probe may connect.
//!
//! A probe may reach addresses its caller never named: a redirect sends the HTTP probe to
//! another host, and a name may resolve differently from one lookup to the next (DNS
//! rebinding). A caller that must confine probes (an exposed `/probe` endpoint, say) gives the
//! request a [`DialPolicy`]; the probe asks it about every address it is about to connect to —
//! every resolved address of every hop, redirect hops included — and fails with
//! [`FailureReason::Connect`] and the policy's reason instead of connecting when one is refused.
//! The probe knows nothing of what the policy is made of (allow-lists, the caller's own
//! addresses); the policy knows nothing of probes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::{Failure, FailureReason, Recorder};

/// Decides whether a probe may connect to one address.
pub trait DialPolicy: Send + Sync + fmt::Debug {
    /// May the probe connect to `addr`, one of the addresses `host` (a name or an IP literal, as
    /// written in the URL or target) resolved to? Err: why not, in words for the failure.
    fn allow(&self, host: &str, addr: SocketAddr) -> Result<(), String>;
}

/// How requests carry a policy: shared, cheap to clone.
pub type Policy = Arc<dyn DialPolicy>;

/// Ask `policy` about every address before any is tried: a name with one refused address is
/// refused as a whole (connecting to "the others" would let a rebinding name pick its address).
pub fn check(
    policy: Option<&Policy>,
    host: &str,
    addrs: &[IpAddr],
    port: u16,
    rec: &mut Recorder,
) -> Result<(), Failure> {
    let Some(policy) = policy else {
        return Ok(());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        if let Err(why) = policy.allow(bare, addr) {
            rec.remote_addr = Some(addr);
            return Err(Failure::new(
                FailureReason::Connect,
                format!("refused to connect to {addr} ({bare}): {why}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct OnlyPort(u16);

    impl DialPolicy for OnlyPort {
        fn allow(&self, _host: &str, addr: SocketAddr) -> Result<(), String> {
            if addr.port() == self.0 {
                Ok(())
            } else {
                Err(format!("port {} is not {}", addr.port(), self.0))
            }
        }
    }

    #[test]
    fn one_refused_address_refuses_the_host() {
        let p: Policy = Arc::new(OnlyPort(80));
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let mut rec = Recorder::new();
        assert!(check(Some(&p), "h", &ips, 80, &mut rec).is_ok());
        let f = check(Some(&p), "[::1]", &ips, 81, &mut rec).unwrap_err();
        assert_eq!(f.reason, FailureReason::Connect);
        assert!(
            f.message.contains("127.0.0.1:81 (::1): port 81 is not 80"),
            "{f}"
        );
        assert!(check(None, "h", &ips, 81, &mut rec).is_ok());
    }
}

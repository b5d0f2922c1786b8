//! Reading the final response body under bounds.
//!
//! The body is always read to its end (that is the `transfer` phase, and a truncated body is a
//! failure), but it is only *kept* as far as something needs it: the first `keep_body` bytes for
//! the caller, and — only when body regexes are configured — the body for inspection, never more
//! than `body_size_limit` and never more than [`REGEX_BODY_CAP`]. Without either, bytes are
//! counted and dropped, so an endless body costs time (bounded by the deadline), not memory.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::conn::describe_hyper;
use super::HttpRequest;
use crate::{Failure, FailureReason};

/// The most body bytes body regexes inspect (16 MiB). A larger body fails the regex checks
/// (reason `body`) instead of being judged on a prefix: a prefix could hide the text a
/// `fail_if_body_matches` looks for, or miss the one `fail_if_body_not_matches` needs. Set
/// `body_size_limit` to fail earlier with a clearer message.
pub const REGEX_BODY_CAP: u64 = 16 << 20;

/// What to do with the body of the final response.
pub(super) struct Plan {
    limit: Option<u64>,
    keep: usize,
    inspect: bool,
}

impl Plan {
    pub(super) fn for_request(req: &HttpRequest) -> Plan {
        Plan {
            limit: req.body_size_limit,
            keep: req.keep_body,
            inspect: !req.checks.fail_if_body_matches.is_empty()
                || !req.checks.fail_if_body_not_matches.is_empty(),
        }
    }

    /// How many leading bytes to hold on to.
    fn retain(&self) -> usize {
        let inspect = if self.inspect {
            self.limit.unwrap_or(REGEX_BODY_CAP).min(REGEX_BODY_CAP)
        } else {
            0
        };
        (inspect as usize).max(self.keep)
    }
}

/// A body read to its end.
pub(super) struct Body {
    head: Bytes,
    total: u64,
}

impl Body {
    /// The first `n` bytes, for [`super::HttpFacts::body`].
    pub(super) fn kept(&self, n: usize) -> Bytes {
        self.head.slice(..n.min(self.head.len()))
    }

    /// The whole body as text for regexes (invalid UTF-8 replaced), or a failure when it is
    /// larger than what regexes inspect.
    pub(super) fn for_regex(&self) -> Result<Cow<'_, str>, Failure> {
        if self.total > REGEX_BODY_CAP || self.total > self.head.len() as u64 {
            return Err(Failure::new(
                FailureReason::Body,
                format!(
                    "body is {} bytes, more than the {} bytes body regexes inspect — set \
                     body_size_limit or drop the body regexes",
                    self.total, REGEX_BODY_CAP
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&self.head))
    }
}

/// Read `body` to its end under `plan`. `count` is updated as bytes arrive, so a timeout still
/// reports how much came.
pub(super) async fn read(
    mut body: Incoming,
    plan: &Plan,
    count: &mut u64,
) -> Result<Body, Failure> {
    let retain = plan.retain();
    let mut head = BytesMut::new();
    *count = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!(
                    "response body broken after {count} bytes: {}",
                    describe_hyper(&e)
                ),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        *count += data.len() as u64;
        if let Some(limit) = plan.limit {
            if *count > limit {
                return Err(Failure::new(
                    FailureReason::Body,
                    format!("body exceeds body_size_limit: more than {limit} bytes"),
                ));
            }
        }
        if head.len() < retain {
            let take = (retain - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
        }
    }
    Ok(Body {
        head: head.freeze(),
        total: *count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_bounded() {
        let p = |limit, keep, inspect| Plan {
            limit,
            keep,
            inspect,
        };
        assert_eq!(p(None, 0, false).retain(), 0);
        assert_eq!(p(None, 100, false).retain(), 100);
        assert_eq!(p(None, 0, true).retain(), REGEX_BODY_CAP as usize);
        assert_eq!(p(Some(1000), 10, true).retain(), 1000);
        assert_eq!(p(Some(u64::MAX), 0, true).retain(), REGEX_BODY_CAP as usize);
    }

    #[test]
    fn regexes_refuse_a_partial_body() {
        let b = Body {
            head: Bytes::from_static(b"abc"),
            total: 10,
        };
        assert_eq!(b.for_regex().unwrap_err().reason, FailureReason::Body);
        let b = Body {
            head: Bytes::from_static(b"abc"),
            total: 3,
        };
        assert_eq!(b.for_regex().unwrap(), "abc");
        assert_eq!(b.kept(2), Bytes::from_static(b"ab"));
        assert_eq!(b.kept(20), Bytes::from_static(b"abc"));
    }
}

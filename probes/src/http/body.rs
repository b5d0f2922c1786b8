//! Reading the final response body under bounds.
//!
//! The body is always read to its end (that is the `transfer` phase, and a truncated body is a
//! failure), but it is only *kept* as far as something needs it: the first `keep_body` bytes for
//! the caller, and — only when body regexes are configured — the body for inspection, never more
//! than `body_size_limit` and never more than [`REGEX_BODY_CAP`]. Without either, bytes are
//! counted and dropped, so an endless body costs time (bounded by the deadline), not memory.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::conn::ResponseBody;
use super::{ContentCoding, HttpRequest};
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
    decompress: Option<ContentCoding>,
}

impl Plan {
    pub(super) fn for_request(req: &HttpRequest) -> Plan {
        Plan {
            limit: req.body_size_limit,
            keep: req.keep_body,
            inspect: !req.checks.fail_if_body_matches.is_empty()
                || !req.checks.fail_if_body_not_matches.is_empty()
                || !req.checks.body_checks.is_empty(),
            decompress: req.checks.decompress,
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
/// reports how much came. With a content coding to decode, `decoded` counts the decoded bytes,
/// and the limit, the kept head and the regexes apply to them.
pub(super) async fn read(
    mut body: ResponseBody,
    plan: &Plan,
    count: &mut u64,
    decoded: &mut Option<u64>,
) -> Result<Body, Failure> {
    let mut sink = Sink {
        retain: plan.retain(),
        limit: plan.limit,
        head: BytesMut::new(),
        total: 0,
    };
    let mut decoder = plan.decompress.map(Decoder::new);
    *count = 0;
    *decoded = decoder.as_ref().map(|_| 0);
    while let Some(chunk) = body.next_chunk().await {
        let data = chunk.map_err(|e| {
            Failure::new(
                FailureReason::Protocol,
                format!("response body broken after {count} bytes: {e}"),
            )
        })?;
        *count += data.len() as u64;
        match &mut decoder {
            None => sink.take(&data)?,
            Some(d) => {
                let out = d.write(&data)?;
                sink.take(&out)?;
                *decoded = Some(sink.total);
            }
        }
    }
    if let Some(d) = decoder {
        let out = d.finish()?;
        sink.take(&out)?;
        *decoded = Some(sink.total);
    }
    Ok(Body {
        head: sink.head.freeze(),
        total: sink.total,
    })
}

/// Where body bytes (decoded, when decoding) go: counted, limited, and the head kept.
struct Sink {
    retain: usize,
    limit: Option<u64>,
    head: BytesMut,
    total: u64,
}

impl Sink {
    fn take(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.total += data.len() as u64;
        if let Some(limit) = self.limit {
            if self.total > limit {
                return Err(Failure::new(
                    FailureReason::Body,
                    format!("body exceeds body_size_limit: more than {limit} bytes"),
                ));
            }
        }
        if self.head.len() < self.retain {
            let take = (self.retain - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        Ok(())
    }
}

/// A streaming decoder: compressed chunks in, decoded bytes out, so an endless or bomb-like
/// body is bounded by the limit and the deadline, never buffered whole.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::DeflateDecoder<Vec<u8>>),
    Br(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    fn new(c: ContentCoding) -> Decoder {
        match c {
            ContentCoding::Gzip => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            ContentCoding::Deflate => {
                Decoder::Deflate(flate2::write::DeflateDecoder::new(Vec::new()))
            }
            ContentCoding::Br => Decoder::Br(Box::new(
                brotli_decompressor::DecompressorWriter::new(Vec::new(), 8192),
            )),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate(_) => "deflate",
            Decoder::Br(_) => "br",
        }
    }

    fn fail(&self, e: std::io::Error) -> Failure {
        Failure::new(
            FailureReason::Body,
            format!(
                "the body is not valid {} (compression: {}): {e}",
                self.name(),
                self.name()
            ),
        )
    }

    /// Feed compressed bytes; returns what they decoded to.
    fn write(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        use std::io::Write;
        let res = match self {
            Decoder::Gzip(d) => d.write_all(data).map(|_| std::mem::take(d.get_mut())),
            Decoder::Deflate(d) => d.write_all(data).map(|_| std::mem::take(d.get_mut())),
            Decoder::Br(d) => d.write_all(data).map(|_| std::mem::take(d.get_mut())),
        };
        res.map_err(|e| self.fail(e))
    }

    /// The end of the body: the rest of the output, or a failure for a truncated stream.
    fn finish(self) -> Result<Vec<u8>, Failure> {
        let name = self.name();
        let truncated = |e: std::io::Error| {
            Failure::new(
                FailureReason::Body,
                format!("the body is not valid {name} (compression: {name}): {e}"),
            )
        };
        match self {
            Decoder::Gzip(d) => d.finish().map_err(truncated),
            Decoder::Deflate(d) => d.finish().map_err(truncated),
            Decoder::Br(mut d) => {
                use std::io::Write;
                d.flush().map_err(truncated)?;
                match d.close() {
                    Ok(()) => Ok(std::mem::take(d.get_mut())),
                    Err(e) => Err(truncated(e)),
                }
            }
        }
    }
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
            decompress: None,
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

    #[test]
    fn gzip_and_deflate_bodies_decode_in_chunks() {
        use std::io::Write;
        let text = b"all good, compressed".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut d = Decoder::new(ContentCoding::Gzip);
        let mut out = Vec::new();
        for chunk in gz.chunks(7) {
            out.extend(d.write(chunk).unwrap());
        }
        out.extend(d.finish().unwrap());
        assert_eq!(out, text);

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        let raw = raw.finish().unwrap();
        let mut d = Decoder::new(ContentCoding::Deflate);
        let mut out = d.write(&raw).unwrap();
        out.extend(d.finish().unwrap());
        assert_eq!(out, text);
    }

    #[test]
    fn bodies_that_do_not_decode_fail_with_body() {
        let mut d = Decoder::new(ContentCoding::Gzip);
        let f = d.write(b"this is not gzip at all").unwrap_err();
        assert_eq!(f.reason, FailureReason::Body);
        assert!(f.message.contains("not valid gzip"), "{}", f.message);
        // A stream cut short fails at the end.
        let d = Decoder::new(ContentCoding::Gzip);
        assert_eq!(d.finish().unwrap_err().reason, FailureReason::Body);
        let mut d = Decoder::new(ContentCoding::Br);
        let bad = d.write(&[0xff; 64]).and_then(|_| d.finish());
        assert_eq!(bad.unwrap_err().reason, FailureReason::Body);
    }
}

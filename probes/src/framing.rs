//! How a byte stream is cut into frames, for long-lived raw TCP/TLS connections
//! ([`crate::tcp_conn`]): lines, a delimiter, a length prefix, or a fixed size.
//!
//! Every mode is bounded by `max_frame_size`: a peer that announces a huge length, or never
//! sends the delimiter, fails the connection with a clear message instead of making the prober
//! buffer (or even reserve) what it announced. Length prefixes are decoded by tokio-util's
//! `LengthDelimitedCodec`, which checks the announced length against the maximum *before*
//! reserving room for it.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// Byte order of a length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    Big,
    Little,
}

/// A length-prefixed framing: `[header: offset bytes][length: width bytes][body]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LengthPrefix {
    /// 1, 2, 4 or 8 bytes.
    pub width: usize,
    pub endian: Endian,
    /// The length counts the header and the length field too, not only the body.
    pub includes_header: bool,
    /// The fixed header before the length field, sent as is before every frame (its length
    /// is the offset of the length field). Received frames are the body only.
    pub header: Vec<u8>,
}

/// How frames are delimited on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Lines ending at `\n` (a trailing `\r` is dropped from received lines); sent frames end
    /// with `\r\n` when `crlf`, else `\n`.
    Lines {
        crlf: bool,
    },
    /// Frames end with this byte sequence (not part of the frame).
    Delimiter(Vec<u8>),
    LengthPrefix(LengthPrefix),
    /// Every frame is exactly this many bytes.
    Fixed(usize),
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framing::Lines { crlf: true } => f.write_str("CRLF lines"),
            Framing::Lines { crlf: false } => f.write_str("lines"),
            Framing::Delimiter(d) => write!(f, "frames delimited by {:?}", Bytes::from(d.clone())),
            Framing::LengthPrefix(l) => write!(
                f,
                "{}-byte {} length prefix{}{}",
                l.width,
                match l.endian {
                    Endian::Big => "big-endian",
                    Endian::Little => "little-endian",
                },
                if l.header.is_empty() {
                    String::new()
                } else {
                    format!(" after a {}-byte header", l.header.len())
                },
                if l.includes_header {
                    " (counting the header)"
                } else {
                    ""
                }
            ),
            Framing::Fixed(n) => write!(f, "fixed {n}-byte frames"),
        }
    }
}

/// Cuts received bytes into frames and wraps frames to send, under one size limit.
pub struct Codec {
    framing: Framing,
    state: FrameState,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("framing", &self.framing)
            .field("max_frame_size", &self.state.max_frame_size)
            .finish()
    }
}

impl Codec {
    pub fn new(framing: Framing, max_frame_size: usize) -> Codec {
        let state = FrameState::new(&framing, max_frame_size);
        Codec { framing, state }
    }

    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// The next whole frame in `buf` (consumed), `None` when more bytes are needed, or why the
    /// stream cannot be framed (the connection is then unusable).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        self.state.decode(&self.framing, buf)
    }

    /// `body` as it goes on the wire, or why it cannot be sent with this framing.
    pub fn encode(&self, body: &[u8]) -> Result<Bytes, String> {
        encode(&self.framing, body)
    }
}

/// What cutting a stream into frames keeps between reads, without the framing itself: a
/// connection's task reads that from the request it shares with every identical connection,
/// rather than keep a copy (40 bytes of every connection's task, which it holds for its life).
pub struct FrameState {
    max_frame_size: usize,
    length: Option<LengthDelimitedCodec>,
}

impl FrameState {
    /// The state for `framing`, which every [`FrameState::decode`] must be given.
    pub fn new(framing: &Framing, max_frame_size: usize) -> FrameState {
        let length = match framing {
            Framing::LengthPrefix(l) => {
                let head = l.header.len() + l.width;
                let mut b = LengthDelimitedCodec::builder();
                b.length_field_offset(l.header.len())
                    .length_field_length(l.width)
                    .num_skip(head)
                    .max_frame_length(max_frame_size);
                if l.includes_header {
                    b.length_adjustment(-(head as isize));
                }
                match l.endian {
                    Endian::Big => b.big_endian(),
                    Endian::Little => b.little_endian(),
                };
                Some(b.new_codec())
            }
            _ => None,
        };
        FrameState {
            max_frame_size,
            length,
        }
    }

    /// The next whole frame in `buf` (consumed), `None` when more bytes are needed, or why the
    /// stream cannot be framed (the connection is then unusable). `framing` is the one this
    /// state was made for.
    pub fn decode(
        &mut self,
        framing: &Framing,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, String> {
        let max = self.max_frame_size;
        match framing {
            Framing::Lines { .. } => Ok(delimited(buf, b"\n", max)?.map(|mut line| {
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                line
            })),
            Framing::Delimiter(d) => delimited(buf, d, max),
            Framing::Fixed(n) => Ok((buf.len() >= *n).then(|| buf.split_to(*n).freeze())),
            Framing::LengthPrefix(_) => {
                let codec = self.length.as_mut().expect("made for this framing");
                match codec.decode(buf) {
                    Ok(f) => Ok(f.map(BytesMut::freeze)),
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(format!(
                        "the server announced a frame longer than max_frame_size ({max} bytes) in its length prefix"
                    )),
                    Err(e) => Err(format!("invalid length prefix: {e}")),
                }
            }
        }
    }
}

/// `body` as it goes on the wire with `framing`, or why it cannot be sent with it.
pub fn encode(framing: &Framing, body: &[u8]) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    match framing {
        Framing::Lines { crlf } => {
            if body.contains(&b'\n') {
                return Err("a line frame cannot contain a line break".into());
            }
            out.reserve(body.len() + 2);
            out.put_slice(body);
            out.put_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        Framing::Delimiter(d) => {
            out.reserve(body.len() + d.len());
            out.put_slice(body);
            out.put_slice(d);
            // "x\0" before "\0\0" would end the frame one byte early: the first delimiter
            // on the wire must be the one we append.
            if find(&out, d) != Some(body.len()) {
                return Err("the frame contains (or ends with part of) the delimiter".into());
            }
        }
        Framing::Fixed(n) => {
            if body.len() != *n {
                return Err(format!(
                    "the frame is {} bytes — expected exactly {n} with fixed framing",
                    body.len()
                ));
            }
            out.put_slice(body);
        }
        Framing::LengthPrefix(l) => {
            let head = l.header.len() + l.width;
            let n = if l.includes_header {
                body.len() + head
            } else {
                body.len()
            } as u64;
            let fits = l.width >= 8 || n < (1u64 << (8 * l.width));
            if !fits {
                return Err(format!(
                    "the frame is {} bytes, too long for a {}-byte length",
                    body.len(),
                    l.width
                ));
            }
            out.reserve(head + body.len());
            out.put_slice(&l.header);
            match l.endian {
                Endian::Big => out.put_uint(n, l.width),
                Endian::Little => out.put_uint_le(n, l.width),
            }
            out.put_slice(body);
        }
    }
    Ok(out.freeze())
}

/// The bytes before the first `delim` (both consumed), bounded by `max`.
fn delimited(buf: &mut BytesMut, delim: &[u8], max: usize) -> Result<Option<Bytes>, String> {
    match find(buf, delim) {
        Some(i) if i > max => Err(too_long(max)),
        Some(i) => {
            let frame = buf.split_to(i).freeze();
            buf.advance(delim.len());
            Ok(Some(frame))
        }
        // The delimiter may still arrive split across reads: keep up to its length - 1 extra.
        None if buf.len() > max + delim.len() => Err(too_long(max)),
        None => Ok(None),
    }
}

fn too_long(max: usize) -> String {
    format!("the server sent more than max_frame_size ({max} bytes) without a frame delimiter")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|b| *b == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(width: usize, endian: Endian, includes_header: bool, header: &[u8]) -> Framing {
        Framing::LengthPrefix(LengthPrefix {
            width,
            endian,
            includes_header,
            header: header.to_vec(),
        })
    }

    fn all(codec: &mut Codec, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn every_mode_round_trips() {
        let modes = [
            Framing::Lines { crlf: false },
            Framing::Lines { crlf: true },
            Framing::Delimiter(b"\0".to_vec()),
            Framing::Delimiter(b"\r\n\r\n".to_vec()),
            Framing::Fixed(5),
            lp(1, Endian::Big, false, b""),
            lp(2, Endian::Little, false, b""),
            lp(4, Endian::Big, true, b""),
            lp(8, Endian::Little, true, b"\x01\x02"),
            lp(2, Endian::Big, false, b"\xca\xfe\x00"),
        ];
        for m in modes {
            let mut c = Codec::new(m.clone(), 1024);
            let mut wire = Vec::new();
            for body in [&b"hello"[..], b"world"] {
                wire.extend_from_slice(&c.encode(body).unwrap());
            }
            // Byte by byte: frames come out whole whatever the read boundaries.
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for b in &wire {
                buf.put_u8(*b);
                while let Some(f) = c.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, vec![Bytes::from("hello"), Bytes::from("world")], "{m}");
            assert!(buf.is_empty(), "{m}");
        }
    }

    #[test]
    fn wire_layout_of_length_prefixes() {
        let c = Codec::new(lp(2, Endian::Big, false, b""), 64);
        assert_eq!(&c.encode(b"ab").unwrap()[..], b"\x00\x02ab");
        let c = Codec::new(lp(4, Endian::Little, true, b"\x07"), 64);
        assert_eq!(&c.encode(b"ab").unwrap()[..], b"\x07\x07\x00\x00\x00ab");
        let c = Codec::new(lp(1, Endian::Big, false, b""), 1024);
        assert!(c.encode(&[0u8; 256]).unwrap_err().contains("too long"));
    }

    #[test]
    fn lines_drop_a_trailing_cr() {
        let mut c = Codec::new(Framing::Lines { crlf: false }, 64);
        assert_eq!(all(&mut c, b"a\r\nb\n").unwrap(), ["a", "b"]);
        assert!(c.encode(b"x\ny").is_err());
    }

    #[test]
    fn an_oversized_length_prefix_fails_without_reserving_it() {
        let mut c = Codec::new(lp(8, Endian::Big, false, b""), 1024);
        let mut buf = BytesMut::from(&u64::MAX.to_be_bytes()[..]);
        let cap = buf.capacity();
        let e = c.decode(&mut buf).unwrap_err();
        assert!(e.contains("max_frame_size (1024 bytes)"), "{e}");
        assert_eq!(
            buf.capacity(),
            cap,
            "no room was reserved for the announced length"
        );
        // A length that counts the header but is shorter than it.
        let mut c = Codec::new(lp(4, Endian::Big, true, b""), 1024);
        assert!(c.decode(&mut BytesMut::from(&[0, 0, 0, 1][..])).is_err());
    }

    #[test]
    fn a_missing_delimiter_is_bounded() {
        let mut c = Codec::new(Framing::Delimiter(b"\0".to_vec()), 8);
        let e = all(&mut c, &[b'x'; 20]).unwrap_err();
        assert!(e.contains("without a frame delimiter"), "{e}");
        let mut c = Codec::new(Framing::Lines { crlf: false }, 8);
        assert!(all(&mut c, b"0123456789\n").is_err());
        assert!(all(&mut c, b"01234567\n").is_ok());
    }

    #[test]
    fn a_body_that_would_end_early_is_refused() {
        let c = Codec::new(Framing::Delimiter(b"\0\0".to_vec()), 64);
        assert!(c.encode(b"x\0").is_err());
        assert!(c.encode(b"a\0\0b").is_err());
        assert!(c.encode(b"\0x").is_ok());
    }

    #[test]
    fn fixed_frames_wait_for_whole_frames() {
        let mut c = Codec::new(Framing::Fixed(3), 8);
        let mut buf = BytesMut::from(&b"abcde"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), "abc");
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(c.encode(b"ab").is_err());
    }
}

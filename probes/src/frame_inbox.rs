//! The inbox of a connection whose frames are bytes (raw TCP frames, WebSocket messages): the
//! frames a step has not read yet, packed one after another in one buffer.
//!
//! A connection no step reads (a sender's, whose peer sends presence noise) keeps a full inbox
//! for its whole life, so what a frame costs beside its body is paid `limit` times per
//! connection. A slot per frame (40 bytes) plus an allocation per body (rounded up to its size
//! class) cost ~70 bytes for a 17-byte protobuf presence frame; packed, a frame costs its body
//! and a 21-byte header. Bounded like [`crate::inbox::Inbox`]: when full the oldest frame is
//! dropped and counted, and the buffer shrinks again once drained, so an idle connection costs
//! nothing and a burst is not kept for the connection's life.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::inbox::Arrival;
use crate::kts::RealTime;

/// A frame as queued and as handed back.
pub(crate) struct Stored {
    /// What the connection says the body is (a WebSocket message's text or binary kind).
    pub(crate) tag: u8,
    pub(crate) body: Vec<u8>,
    pub(crate) received: Arrival,
    pub(crate) kernel_rx: Option<RealTime>,
}

/// Length (4), tag (1), arrival (8), kernel receive time (8), little-endian.
const HEADER: usize = 21;

/// The kernel receive time of a frame that has none (nanoseconds since 1970 reach it in 2554).
const NO_KERNEL_RX: u64 = u64::MAX;

/// Below this a drained buffer is kept: reallocating it for the next frame would cost more.
const KEEP_EMPTY: usize = 256;

pub(crate) struct FrameInbox(Mutex<Ring>);

struct Ring {
    bytes: VecDeque<u8>,
    frames: usize,
    limit: usize,
    dropped: u64,
}

impl FrameInbox {
    /// An inbox keeping at most `limit` frames (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        FrameInbox(Mutex::new(Ring {
            bytes: VecDeque::new(),
            frames: 0,
            limit: limit.max(1),
            dropped: 0,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a frame, dropping (and counting) the oldest when full.
    pub(crate) fn push(&self, frame: Stored) {
        let mut r = self.lock();
        if r.frames >= r.limit {
            r.skip_one();
            r.dropped += 1;
            r.give_back_room();
        }
        r.append(&frame);
    }

    pub(crate) fn pop(&self) -> Option<Stored> {
        let mut r = self.lock();
        let frame = r.take_one()?;
        r.give_back_room();
        Some(frame)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().frames
    }

    /// Frames dropped because the inbox was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes the buffer holds room for (tests: what the inbox costs).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.lock().bytes.capacity()
    }
}

impl Ring {
    fn append(&mut self, f: &Stored) {
        let len = u32::try_from(f.body.len()).expect("a frame is bounded far below 4 GiB");
        let need = HEADER + f.body.len();
        self.grow_for(need);
        let rx = f.kernel_rx.map_or(NO_KERNEL_RX, RealTime::as_nanos);
        self.bytes.extend(len.to_le_bytes());
        self.bytes.push_back(f.tag);
        self.bytes.extend(f.received.as_nanos().to_le_bytes());
        self.bytes.extend(rx.to_le_bytes());
        self.bytes.extend(&f.body);
        self.frames += 1;
    }

    /// Room for `need` more bytes, growing by at least an eighth: a frame at a time would copy
    /// the whole buffer for every frame while it fills, doubling would leave up to half of it
    /// unused for the connection's life.
    fn grow_for(&mut self, need: usize) {
        let free = self.bytes.capacity() - self.bytes.len();
        if need > free {
            let step = need.max(self.bytes.len() / 8);
            self.bytes.reserve_exact(step);
        }
    }

    fn header(&self) -> Option<(usize, u8, u64, u64)> {
        if self.frames == 0 {
            return None;
        }
        let mut h = [0u8; HEADER];
        for (i, b) in self.bytes.range(..HEADER).enumerate() {
            h[i] = *b;
        }
        let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        Some((len, h[4], word(5), word(13)))
    }

    /// The first `n` bytes, copied a slice at a time (the ring may wrap once).
    fn copy_front(&self, n: usize) -> Vec<u8> {
        let (a, b) = self.bytes.as_slices();
        let from_a = n.min(a.len());
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&a[..from_a]);
        out.extend_from_slice(&b[..n - from_a]);
        out
    }

    fn skip_one(&mut self) {
        if let Some((len, ..)) = self.header() {
            self.bytes.drain(..HEADER + len);
            self.frames -= 1;
        }
    }

    fn take_one(&mut self) -> Option<Stored> {
        let (len, tag, arrival, rx) = self.header()?;
        self.bytes.drain(..HEADER);
        let body = self.copy_front(len);
        self.bytes.drain(..len);
        self.frames -= 1;
        Some(Stored {
            tag,
            body,
            received: Arrival::from_nanos(arrival),
            kernel_rx: (rx != NO_KERNEL_RX).then(|| RealTime::from_nanos(rx)),
        })
    }

    /// A burst (or one large frame) grew the buffer: once drained, or once what is left would
    /// fit a quarter of it, give the room back. Called after a drop too: a connection no step
    /// reads never pops.
    fn give_back_room(&mut self) {
        let (len, cap) = (self.bytes.len(), self.bytes.capacity());
        if len == 0 && cap > KEEP_EMPTY {
            self.bytes = VecDeque::new();
        } else if cap > KEEP_EMPTY && len < cap / 4 {
            self.bytes.shrink_to(len * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8], tag: u8, rx: Option<RealTime>) -> Stored {
        Stored {
            tag,
            body: body.to_vec(),
            received: Arrival::from_nanos(body.len() as u64 * 1_000),
            kernel_rx: rx,
        }
    }

    #[test]
    fn frames_come_back_whole_in_order() {
        let inbox = FrameInbox::new(8);
        let rx = RealTime::from_timespec(1_700_000_000, 999_999_999);
        inbox.push(frame(b"", 1, None));
        inbox.push(frame(b"\x00\xffabc", 2, rx));
        inbox.push(frame(&[7; 300], 0, None));
        assert_eq!(inbox.len(), 3);
        let f = inbox.pop().unwrap();
        assert_eq!((f.tag, f.body.len(), f.kernel_rx), (1, 0, None));
        let f = inbox.pop().unwrap();
        assert_eq!(
            (f.tag, &f.body[..], f.kernel_rx),
            (2, &b"\x00\xffabc"[..], rx)
        );
        assert_eq!(f.received.as_nanos(), 5_000);
        let f = inbox.pop().unwrap();
        assert_eq!((f.tag, f.body, f.kernel_rx), (0, vec![7; 300], None));
        assert!(inbox.pop().is_none());
        assert_eq!(inbox.len(), 0);
    }

    #[test]
    fn a_full_inbox_drops_the_oldest_and_counts_it() {
        let inbox = FrameInbox::new(2);
        for i in 0..5u8 {
            inbox.push(frame(&[i; 3], 0, None));
        }
        assert_eq!((inbox.dropped(), inbox.len()), (3, 2));
        assert_eq!(inbox.pop().unwrap().body, vec![3; 3]);
        assert_eq!(inbox.pop().unwrap().body, vec![4; 3]);
        assert!(inbox.pop().is_none());
    }

    /// 64 presence frames of 17 bytes: the buffer holds them in about what they take packed,
    /// where a slot and an allocation each took ~70 bytes.
    #[test]
    fn a_full_inbox_of_small_frames_costs_about_their_packed_size() {
        let inbox = FrameInbox::new(64);
        for _ in 0..1_000 {
            inbox.push(frame(&[1; 17], 0, None));
        }
        let packed = 64 * (HEADER + 17);
        assert!(inbox.capacity() >= packed);
        assert!(
            inbox.capacity() <= packed + packed / 4,
            "{}",
            inbox.capacity()
        );
    }

    /// A large frame read once does not leave its room behind for the connection's life, even
    /// when the inbox never drains (a connection no step reads).
    #[test]
    fn room_a_large_frame_took_is_given_back() {
        let inbox = FrameInbox::new(4);
        inbox.push(frame(&[0; 100_000], 0, None));
        for _ in 0..4 {
            inbox.push(frame(&[1; 10], 0, None));
        }
        assert_eq!(inbox.dropped(), 1);
        assert!(inbox.capacity() < 1_000, "{}", inbox.capacity());
        while inbox.pop().is_some() {}
        assert!(inbox.capacity() <= KEEP_EMPTY);
    }

    /// Pushes and pops of varied sizes wrap the ring around: every frame still comes back as
    /// it went in, as a plain queue of frames would give it.
    #[test]
    fn a_wrapping_ring_matches_a_plain_queue() {
        let inbox = FrameInbox::new(5);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seed = 7u32;
        for i in 0..2_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (seed >> 16) as usize % 90;
            if seed % 3 == 0 {
                assert_eq!(inbox.pop().map(|f| f.body), model.pop_front());
            } else {
                let body: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                inbox.push(frame(&body, 0, None));
                if model.len() == 5 {
                    model.pop_front();
                }
                model.push_back(body);
            }
            assert_eq!(inbox.len(), model.len());
        }
    }
}

//! Scenario definitions kept for `/config`, compressed (Snappy, already in the tree for
//! remote_write) in chunks shared by the scenarios loaded one after another.
//!
//! A definition as JSON is ~1.4 KB that only `/config` reads, held by every scenario. Alone,
//! Snappy halves it (~660 bytes for an IM session). Scenarios of one file are mostly alike (10,000
//! sessions differing by their user names): compressed together, each costs what differs from
//! the one before it, about a sixth. Reading one back decompresses its chunk ([`CHUNK`] bytes of
//! text: microseconds).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock, Weak};

thread_local! {
    /// The chunk this thread decompressed last, and its text (see [`Packed::text`]).
    static LAST: RefCell<(Weak<Chunk>, Vec<u8>)> =
        const { RefCell::new((Weak::new(), Vec::new())) };
}

/// Text compressed in one piece: large enough that alike scenarios share most of it, small
/// enough that reading one definition back stays cheap.
const CHUNK: usize = 32 * 1024;

/// One scenario's text: a range of a chunk.
pub struct Packed {
    chunk: Arc<Chunk>,
    start: u32,
    len: u32,
}

/// Texts appended while the load runs, compressed once full (or when the load ends).
#[derive(Default)]
struct Chunk {
    /// Held while sealing, so a reader sees either the open text or the sealed bytes.
    open: Mutex<String>,
    sealed: OnceLock<Box<[u8]>>,
}

impl Chunk {
    fn seal(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.sealed.get().is_some() {
            return;
        }
        let bytes = snap::raw::Encoder::new()
            .compress_vec(open.as_bytes())
            .unwrap_or_else(|_| open.as_bytes().to_vec());
        let _ = self.sealed.set(bytes.into_boxed_slice());
        *open = String::new();
    }
}

impl Packed {
    /// The text as given.
    ///
    /// `/config` reads every scenario in load order, so consecutive calls mostly hit the same
    /// chunk: the thread keeps the last chunk it decompressed, and 10,000 scenarios cost one
    /// decompression per chunk instead of one per scenario (~330 MB of output).
    pub fn text(&self) -> String {
        let open = self.chunk.open.lock().unwrap_or_else(|e| e.into_inner());
        let range = self.start as usize..(self.start + self.len) as usize;
        let Some(sealed) = self.chunk.sealed.get() else {
            return open.get(range).unwrap_or_default().to_string();
        };
        drop(open);
        LAST.with_borrow_mut(|last| {
            let same = last
                .0
                .upgrade()
                .is_some_and(|c| Arc::ptr_eq(&c, &self.chunk));
            if !same {
                let whole = snap::raw::Decoder::new()
                    .decompress_vec(sealed)
                    .unwrap_or_else(|_| sealed.to_vec());
                *last = (Arc::downgrade(&self.chunk), whole);
            }
            last.1
                .get(range)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default()
                .to_string()
        })
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} bytes)", self.len)
    }
}

/// Packs the texts of one load into shared chunks; the last chunk is sealed when the packer
/// is dropped (the load's end).
pub struct Packer {
    current: Option<Arc<Chunk>>,
    /// Text a chunk holds before it is sealed.
    chunk: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Packer::with_chunk(CHUNK)
    }
}

/// Chunks for texts read back one at a time, at moments of their own (a persistent session's
/// setup steps, built each time they run, see `scenario::OnDemand`): reading one decompresses
/// its chunk, and a quarter of [`CHUNK`] costs a quarter of the time while alike scenarios,
/// several to a chunk, still share most of it.
pub const SMALL_CHUNK: usize = CHUNK / 4;

impl Packer {
    /// A packer sealing chunks of about `chunk` bytes of text.
    pub fn with_chunk(chunk: usize) -> Packer {
        Packer {
            current: None,
            chunk,
        }
    }

    pub fn pack(&mut self, text: &str) -> Packed {
        let chunk = self.current.get_or_insert_with(Arc::default).clone();
        let (start, end) = {
            let mut open = chunk.open.lock().unwrap_or_else(|e| e.into_inner());
            let start = open.len();
            open.push_str(text);
            (start, open.len())
        };
        if end >= self.chunk {
            self.seal();
        }
        let to_u32 = |n: usize| u32::try_from(n).expect("a chunk stays far below 4 GiB");
        Packed {
            chunk,
            start: to_u32(start),
            len: to_u32(end - start),
        }
    }

    fn seal(&mut self) {
        if let Some(chunk) = self.current.take() {
            chunk.seal();
        }
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        self.seal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_back_whole_before_and_after_sealing() {
        let mut p = Packer::default();
        let texts: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"scenario":"im-{i:05}","user":"alice-{i}","é":"ü"}}"#))
            .collect();
        let packed: Vec<Packed> = texts.iter().map(|t| p.pack(t)).collect();
        assert_eq!(packed[99].text(), texts[99], "open chunk");
        drop(p);
        for (t, k) in texts.iter().zip(&packed) {
            assert_eq!(&k.text(), t);
        }
        let empty = Packer::default().pack("");
        assert_eq!(empty.text(), "");
    }

    /// Alike definitions compressed together cost a fraction of one compressed alone.
    #[test]
    fn alike_texts_share_their_chunk() {
        let one = |i: usize| {
            format!(
                r#"{{"scenario":"im-tcp-{i:05}","setup":[{{"name":"a-connect","tcp.connect":{{"as":"a","target":"127.0.0.1:9301","framing":{{"length":{{"bytes":4}}}}}}}},{{"name":"a-login","tcp.send":{{"on":"a","protobuf":{{"login":{{"user":"alice-{i}"}}}}}}}}]}}"#
            )
        };
        let alone = snap::raw::Encoder::new()
            .compress_vec(one(7).as_bytes())
            .unwrap()
            .len();
        let mut p = Packer::default();
        let packed: Vec<Packed> = (0..1_000).map(|i| p.pack(&one(i))).collect();
        drop(p);
        let mut chunks: Vec<&Arc<Chunk>> = packed.iter().map(|k| &k.chunk).collect();
        chunks.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let total: usize = chunks
            .iter()
            .map(|c| c.sealed.get().map_or(0, |b| b.len()))
            .sum();
        let per = total / packed.len();
        assert!(per * 3 < alone, "{per} bytes each against {alone} alone");
        assert_eq!(packed[500].text(), one(500));
    }
}

//! The log's last line of defence: every formatted event goes through [`super::text`] before it
//! is written, so a URL with a password or a token in a message or a field — start-up,
//! remote_write, notifiers, an error chain that quotes a URL — never reaches the log.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] whose writers redact each event (the fmt layer writes one event per
/// writer) before passing it on.
pub struct Redacting<M>(pub M);

/// Collects one event, writes it redacted when dropped (or flushed).
pub struct EventWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = EventWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for EventWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return self.inner.flush();
        }
        let buf = std::mem::take(&mut self.buf);
        let text = String::from_utf8_lossy(&buf);
        self.inner.write_all(super::text(&text).as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for EventWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_are_redacted_before_they_are_written() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Redacting(move || sink.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(url = %"http://rw:hunter22@127.0.0.1:9/w?token=t0k3n", "pushing");
            tracing::warn!("push failed for http://127.0.0.1:9/w?token=t0k3n: refused");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("pushing"), "{text}");
        assert!(text.contains("refused"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
        assert!(!text.contains("t0k3n"), "{text}");
        assert_eq!(text.matches("token=<redacted>").count(), 2, "{text}");
    }
}

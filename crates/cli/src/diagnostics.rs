//! Cairn's own diagnostics (`tracing`, filtered by `CAIRN_LOG`) on stderr, masked: each event
//! is formatted whole, then masked with every secret the process knows so far, then written.
//! Server notices travel this way too (sqlx logs them), so a `RAISE WARNING` quoting a secret
//! is printed as `***`. Before the first secret is read nothing secret exists to mask.

use std::io::Write;

/// The `tracing` writer of `cairn`: one masked write to stderr per event.
pub struct MaskedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MaskedStderr {
    type Writer = Event;

    fn make_writer(&'a self) -> Event {
        Event(Vec::new())
    }
}

/// One event's text, written masked when it is dropped (the formatter writes an event whole).
pub struct Event(Vec<u8>);

impl Write for Event {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let masked = match cairn_engine::masker::diagnostics() {
            Some(m) => m.mask(&text),
            None => text.into_owned(),
        };
        // Nowhere to report a failing stderr.
        let _ = std::io::stderr().lock().write_all(masked.as_bytes());
    }
}

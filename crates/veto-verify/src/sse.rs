//! A Server-Sent Events parser (the WHATWG "event stream interpretation"), fed with the bytes
//! of a response body as they arrive, in chunks that may split a line or a CRLF anywhere.
//!
//! Only what veto's stream uses is kept: `event`, `data` and `id`; `retry` is ignored (the
//! verifier has its own backoff, docs/stream.md) and comments (`:`) are skipped. A line longer
//! than the parser's limit is an error rather than a buffer without bound: veto sends snapshots
//! in parts of at most 5,000 entries so that no line needs to be huge.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, `message` when none was given.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen on the stream so far (it persists across events, as in a browser).
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line is longer than {0} bytes")]
pub struct LineTooLong(pub usize);

pub struct SseParser {
    /// Bytes of a line not yet terminated.
    pending: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting the next one belongs to that line end.
    after_cr: bool,
    /// Nothing fed yet: a leading byte-order mark is dropped.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    max_line: usize,
}

impl SseParser {
    pub fn new(max_line: usize) -> Self {
        SseParser {
            pending: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            max_line,
        }
    }

    /// Feeds the next chunk; returns the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut out = Vec::new();
        if self.after_cr {
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
            self.after_cr = false;
        }
        while let Some(end) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.pending.extend_from_slice(&chunk[..end]);
            let is_cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if is_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            self.check_len()?;
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.line(&line) {
                out.push(event);
            }
        }
        self.pending.extend_from_slice(chunk);
        self.check_len()?;
        Ok(out)
    }

    fn check_len(&self) -> Result<(), LineTooLong> {
        if self.pending.len() > self.max_line {
            return Err(LineTooLong(self.max_line));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let mut line = line;
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // The spec ignores an id holding NUL.
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    const STREAM: &str = "event: snapshot\nid: 0-1\ndata: {\"a\":1}\n\n: a comment\n\
        event:change\r\nid:0-2\r\ndata: x\r\ndata:  y\r\n\r\n\
        data\rid: 0-3\r\r\
        retry: 10\nevent: heartbeat\ndata: {}\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev("snapshot", "{\"a\":1}", Some("0-1")),
            ev("change", "x\n y", Some("0-2")),
            ev("message", "", Some("0-3")),
            ev("heartbeat", "{}", Some("0-3")),
        ]
    }

    #[test]
    fn parses_fields_line_ends_and_comments() {
        let mut p = SseParser::new(1024);
        assert_eq!(p.push(STREAM.as_bytes()).unwrap(), expected());
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for size in 1..bytes.len() {
            let mut p = SseParser::new(1024);
            let mut got = Vec::new();
            for chunk in bytes.chunks(size) {
                got.extend(p.push(chunk).unwrap());
            }
            assert_eq!(got, expected(), "chunks of {size}");
        }
        // Every split point in two, which puts a CR/LF pair across chunks somewhere.
        for at in 0..bytes.len() {
            let mut p = SseParser::new(1024);
            let mut got = p.push(&bytes[..at]).unwrap();
            got.extend(p.push(&bytes[at..]).unwrap());
            assert_eq!(got, expected(), "split at {at}");
        }
    }

    #[test]
    fn an_event_without_a_blank_line_is_not_dispatched() {
        let mut p = SseParser::new(1024);
        assert!(p.push(b"event: change\ndata: cut").unwrap().is_empty());
        assert!(p.push(b"\n").unwrap().is_empty());
        assert_eq!(p.push(b"\n").unwrap(), vec![ev("change", "cut", None)]);
        // An event without data resets its name and dispatches nothing.
        assert!(p.push(b"event: x\n\ndata: d\n\n").unwrap() == vec![ev("message", "d", None)]);
    }

    #[test]
    fn bom_and_limits() {
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push("\u{feff}data: a\n\n".as_bytes()).unwrap(),
            vec![ev("message", "a", None)]
        );
        assert_eq!(p.push(&[b'x'; 17]), Err(LineTooLong(16)));
        let mut p = SseParser::new(16);
        assert_eq!(p.push(b"data: 0123456789abcdef\n"), Err(LineTooLong(16)));
    }
}

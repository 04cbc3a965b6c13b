//! Reading a Server-Sent Events stream: the fields of each event (`event`, `id`,
//! `data`) as the W3C EventSource rules assemble them; comments (heartbeats) are
//! skipped.

use crate::error::{Error, Result};

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `record`, `assignment` or `error` (`message` when the server gives none).
    pub event: String,
    pub id: Option<String>,
    /// The data lines joined with `\n`.
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.data).map_err(|e| Error::Decode(format!("event data is not JSON: {e}")))
    }
}

/// An open stream.
pub struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Heartbeat comments seen so far.
    pub heartbeats: u64,
}

impl EventStream {
    pub(crate) fn new(resp: reqwest::Response) -> Self {
        Self { resp, buf: Vec::new(), heartbeats: 0 }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.take_event() {
                return Ok(Some(event));
            }
            match self.resp.chunk().await.map_err(|e| Error::Transport(e.to_string()))? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// Parses the first complete event out of the buffer, skipping comment-only blocks.
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let end = find_blank_line(&self.buf)?;
            let block: Vec<u8> = self.buf.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&block[..end.0]).into_owned();
            let mut event = Event::default();
            let mut has_field = false;
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if line.starts_with(':') {
                    self.heartbeats += 1;
                    continue;
                }
                let (field, value) =
                    line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
                has_field = true;
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if has_field {
                if event.event.is_empty() {
                    event.event = "message".into();
                }
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}

/// `(end of the block, end of the blank line)` of the first block in `buf`.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buf.len() {
        if buf[i..].starts_with(b"\n\n") {
            return Some((i, i + 2));
        }
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some((i, i + 4));
        }
    }
    None
}

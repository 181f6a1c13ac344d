//! A Server-Sent Events client over HTTP, reading GET /v1/events as a browser's
//! EventSource does (WHATWG HTML, "Interpreting an event stream"): events are blocks of
//! fields ended by a blank line; `id:` sets the last event id even in a block without
//! data; `retry:` sets the reconnection delay; lines starting with `:` are comments.

use std::time::Duration;

/// One event of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub data: serde_json::Value,
}

/// What a block of fields held, in order of arrival.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Event(SseEvent),
    /// A comment (a heartbeat).
    Comment(String),
    /// Fields without data: a `retry:` or an `id:` alone.
    Fields,
}

pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// The last event id, as a browser keeps it for Last-Event-ID.
    pub last_id: Option<String>,
    /// The `retry:` hint, in milliseconds.
    pub retry_ms: Option<u64>,
    /// Every block so far.
    pub blocks: Vec<Block>,
    ended: bool,
}

impl SseStream {
    /// GET `url` with `token` and, if given, Last-Event-ID: the stream, or the status and
    /// body of a response that is not one.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, (u16, String)> {
        let mut request = client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(|e| (0, e.to_string()))?;
        let status = response.status().as_u16();
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if status != 200 || !event_stream {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(Self {
            response,
            buffer: String::new(),
            last_id: None,
            retry_ms: None,
            blocks: Vec::new(),
            ended: false,
        })
    }

    /// The next block, None once the stream has ended (waiting at most `timeout` for it).
    pub async fn next_block(&mut self, timeout: Duration) -> Option<Block> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                let block = self.parse(&text);
                self.blocks.push(block.clone());
                return Some(block);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout(timeout, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
                Err(_) => panic!("the event stream went quiet for {timeout:?}"),
            }
        }
    }

    /// The next event, None once the stream has ended.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        loop {
            if let Block::Event(event) = self.next_block(timeout).await? {
                return Some(event);
            }
        }
    }

    /// Reads to the end of the stream: true if it ended (rather than going quiet).
    pub async fn read_to_end(&mut self, timeout: Duration) -> bool {
        while self.next_block(timeout).await.is_some() {}
        self.ended
    }

    /// The events read so far.
    pub fn events(&self) -> Vec<SseEvent> {
        self.blocks
            .iter()
            .filter_map(|block| match block {
                Block::Event(event) => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many heartbeat comments were read.
    pub fn heartbeats(&self) -> usize {
        self.blocks
            .iter()
            .filter(|block| matches!(block, Block::Comment(text) if text == "heartbeat"))
            .count()
    }

    fn parse(&mut self, text: &str) -> Block {
        let mut data: Option<String> = None;
        let mut comment = None;
        for line in text.lines().filter(|line| !line.is_empty()) {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "" => comment = Some(value.to_owned()),
                "id" => self.last_id = Some(value.to_owned()),
                "retry" => self.retry_ms = value.parse().ok(),
                "data" => {
                    let data = data.get_or_insert_with(String::new);
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                _ => {}
            }
        }
        match (data, comment) {
            (Some(data), _) => Block::Event(SseEvent {
                id: self.last_id.clone().unwrap_or_default(),
                data: serde_json::from_str(&data)
                    .unwrap_or_else(|error| panic!("event data is not JSON ({error}): {data}")),
            }),
            (None, Some(comment)) => Block::Comment(comment),
            (None, None) => Block::Fields,
        }
    }
}

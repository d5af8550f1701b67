//! A local stand-in for a Slack incoming webhook: records every POST and answers from a script
//! (e.g. one 429 with `Retry-After`, then 200), so the notifier's retries can be checked.
//! Loopback only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One scripted answer: status and extra headers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn ok() -> Self {
        Self { status: 200, headers: vec![] }
    }
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self { status: 429, headers: vec![("Retry-After".into(), retry_after_seconds.to_string())] }
    }
    pub fn status(status: u16) -> Self {
        Self { status, headers: vec![] }
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Posted {
    pub path: String,
    pub body: Value,
    pub at: std::time::Instant,
}

pub struct WebhookServer {
    pub url: String,
    posted: Arc<Mutex<Vec<Posted>>>,
}

impl WebhookServer {
    /// Starts on 127.0.0.1; answers from `script` in order, then 200 for everything after.
    pub async fn start(path: &str, script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}{path}", listener.local_addr().expect("addr"));
        let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let p = posted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (p, script) = (p.clone(), script.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    loop {
                        let Some((_, path, body)) = crate::http::read_request(&mut reader).await
                        else {
                            return;
                        };
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        p.lock().unwrap().push(Posted {
                            path,
                            body,
                            at: std::time::Instant::now(),
                        });
                        let answer = script.lock().unwrap().pop_front().unwrap_or_else(Answer::ok);
                        let text = if answer.status == 200 { "ok" } else { "error" };
                        let mut response = format!(
                            "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
                            answer.status,
                            text.len()
                        );
                        for (k, v) in &answer.headers {
                            response.push_str(&format!("{k}: {v}\r\n"));
                        }
                        response.push_str("\r\n");
                        response.push_str(text);
                        if write.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, posted }
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

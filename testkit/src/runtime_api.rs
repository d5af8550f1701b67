//! A minimal local Lambda Runtime API (the HTTP interface a Lambda runtime polls), so tests can
//! run a function's real release or debug binary exactly as Lambda would: the binary asks for
//! the next invocation, gets an event, and posts a response or an error.
//!
//! Only what `lambda_runtime` uses is implemented: `GET …/invocation/next`,
//! `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error`, `POST …/init/error`.
//! Besides, `POST /invoke` is what Lambda's Invoke API does for a caller: it queues its body as
//! an invocation and answers with the function's reply (a function error with the header
//! `x-function-error: Unhandled`, as Lambda says it). The local stack's Step Functions
//! emulator invokes functions there. Loopback only.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};

/// What the function answered to one invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Response(Value),
    Error(Value),
}

/// What the endpoint's connections share: the queue of invocations, where each reply goes,
/// and when the function first asked for work.
#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<(String, Value)>>,
    /// Replies awaited by a `POST /invoke` caller, by request id; the others go to `replies`.
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    first_poll: Mutex<Option<Instant>>,
    invocations: AtomicU64,
}

impl Shared {
    async fn enqueue(&self, event: Value) -> String {
        let n = self.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("req-{n}");
        self.queue.lock().await.push_back((id.clone(), event));
        id
    }
}

/// A running Runtime API endpoint.
pub struct RuntimeApi {
    pub address: String,
    shared: Arc<Shared>,
    replies: mpsc::UnboundedReceiver<(String, Reply)>,
    started: Instant,
}

impl RuntimeApi {
    /// Starts listening on 127.0.0.1 (a free port).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("local addr").to_string();
        let shared: Arc<Shared> = Arc::default();
        let (tx, replies) = mpsc::unbounded_channel();
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, state.clone(), tx.clone()));
            }
        });
        Self { address, shared, replies, started: Instant::now() }
    }

    /// Queues an invocation; returns its request id.
    pub async fn invoke(&self, event: Value) -> String {
        self.shared.enqueue(event).await
    }

    /// Where a caller invokes the function as Lambda's Invoke API would (`POST` the payload).
    pub fn invoke_url(&self) -> String {
        format!("http://{}/invoke", self.address)
    }

    /// The next reply to an invocation queued with [`RuntimeApi::invoke`], waiting at most
    /// `timeout`.
    pub async fn reply(&mut self, timeout: Duration) -> Option<(String, Reply)> {
        tokio::time::timeout(timeout, self.replies.recv()).await.ok().flatten()
    }

    /// Time from [`RuntimeApi::start`] to the function's first poll for work: its init time
    /// (plus process start) when the process was spawned right after `start`.
    pub async fn time_to_first_poll(&self) -> Option<Duration> {
        self.shared.first_poll.lock().await.map(|t| t.duration_since(self.started))
    }

    /// The environment a Lambda runtime expects, pointing at this endpoint.
    pub fn lambda_env(&self, function: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Starts the function binary `exe` under this endpoint as function `name`, with `envs` and
    /// `RUST_LOG=info`, its output piped for [`stop_and_collect_logs`]; killed when dropped.
    /// Several processes of one function under one endpoint take invocations concurrently, as
    /// Lambda's execution environments do.
    pub fn spawn(&self, exe: &str, name: &str, envs: &[(&str, &str)]) -> tokio::process::Child {
        tokio::process::Command::new(exe)
            .envs(self.lambda_env(name))
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"))
    }
}

async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    replies: mpsc::UnboundedSender<(String, Reply)>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some((method, path, body)) = crate::http::read_request(&mut reader).await else {
            return;
        };
        let response = match (method.as_str(), path.as_str()) {
            ("GET", p) if p.ends_with("/invocation/next") => next_invocation(&shared).await,
            ("POST", "/invoke") => invoke_and_wait(&shared, &body).await,
            (_, p) => {
                take_reply(&shared, &replies, p, &body).await;
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
        };
        if write.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// The next queued invocation, waiting for one, with the headers `lambda_runtime` reads.
async fn next_invocation(shared: &Shared) -> Vec<u8> {
    shared.first_poll.lock().await.get_or_insert_with(Instant::now);
    let (id, event) = loop {
        if let Some(item) = shared.queue.lock().await.pop_front() {
            break item;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let body = serde_json::to_vec(&event).unwrap_or_default();
    // 15 minutes, the longest timeout the template gives a function (the enforcer's and the
    // reaper's sweeps stop starting actions some time before the deadline).
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 900_000)
        .unwrap_or(0);
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {id}\r\n\
         lambda-runtime-deadline-ms: {deadline}\r\nlambda-runtime-invoked-function-arn: \
         arn:aws:lambda:us-east-1:123456789012:function:local\r\nlambda-runtime-trace-id: Root=1-0-0\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend(body);
    head
}

/// `POST /invoke`: queues the payload and answers with the function's reply.
async fn invoke_and_wait(shared: &Shared, body: &[u8]) -> Vec<u8> {
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (tx, rx) = oneshot::channel();
    // Registered while the waiting map is held, so the reply cannot arrive before it.
    let id = {
        let mut waiting = shared.waiting.lock().await;
        let id = shared.enqueue(event).await;
        waiting.insert(id.clone(), tx);
        id
    };
    let (error, value) = match tokio::time::timeout(Duration::from_secs(900), rx).await {
        Ok(Ok(Reply::Response(v))) => (None, v),
        Ok(Ok(Reply::Error(v))) => (Some("Unhandled"), v),
        _ => {
            shared.waiting.lock().await.remove(&id);
            (Some("Unhandled"), serde_json::json!({"errorMessage": "no reply in 900 s"}))
        }
    };
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let error = error.map(|e| format!("x-function-error: {e}\r\n")).unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{error}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend(body);
    head
}

/// A response or error the function posted: to the `POST /invoke` caller waiting for it, else
/// to [`RuntimeApi::reply`].
async fn take_reply(
    shared: &Shared,
    replies: &mpsc::UnboundedSender<(String, Reply)>,
    path: &str,
    body: &[u8],
) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.split('/').collect();
    let (id, reply) = match segments.as_slice() {
        [.., "invocation", id, "response"] => (id.to_string(), Reply::Response(value)),
        [.., "invocation", id, "error"] => (id.to_string(), Reply::Error(value)),
        [.., "init", "error"] => ("init".to_owned(), Reply::Error(value)),
        _ => return,
    };
    let waiter = shared.waiting.lock().await.remove(&id);
    match waiter {
        Some(waiter) => {
            let _ = waiter.send(reply);
        }
        None => {
            let _ = replies.send((id, reply));
        }
    }
}

/// Stops a function process started with piped stdout/stderr and returns what it printed
/// (its JSON log lines).
pub async fn stop_and_collect_logs(mut child: tokio::process::Child) -> String {
    child.kill().await.ok();
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).await.ok();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut out).await.ok();
    }
    out
}

/// The event an EventBridge schedule delivers (`detail-type: Scheduled Event`) from the rule
/// `rule` in `region`, with an id of its own.
pub fn scheduled_event(region: &str, rule: &str) -> Value {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({
        "version": "0", "id": format!("5f3c1b9e-0000-4000-8000-{:06x}{n:06x}", std::process::id()), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region, "resources": [format!("arn:aws:events:{region}:123456789012:rule/{rule}")], "detail": {}
    })
}

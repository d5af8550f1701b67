//! A fault-injecting HTTP/1.1 proxy in front of the local stack: what the handlers see when AWS
//! misbehaves. Throttling and 5xx answers, connection resets, and the case that decides whether
//! anything is written twice: a request the service carried out whose answer never arrived.
//!
//! The proxy listens on 127.0.0.1 (never another address) and forwards to the local stack's
//! loopback endpoint. It reads each request of a keep-alive connection, draws one decision per
//! request from a seeded generator ([`Mix`] sets the fraction of each [`Fault`]), and either
//! forwards it or answers in the service's own error shape (DynamoDB's JSON, EC2's XML, the
//! query protocol's XML, told apart by `X-Amz-Target` and the signing scope). The same seed and
//! the same request sequence give the same faults, so a failing run can be replayed.
//!
//! With [`FaultProxy::set_latency`] it also holds each answer back as an AWS endpoint would
//! take to give it ([`Latency`]), and with [`FaultProxy::set_ec2_buckets`] it throttles EC2
//! requests as AWS's token buckets would ([`crate::aws_model`]), for benchmarks of what a sweep
//! costs at AWS's latency and request limits. `GET /_proxy/stats` and `POST /_proxy/reset` on
//! the proxy itself read and zero the model's statistics; they are never forwarded.
//!
//! With [`FaultProxy::start_sharded`] it forwards to several local stacks, each holding whole
//! accounts, and sends each request to the one of its account ([`crate::shards`]), so that a
//! benchmark's emulator serves as many requests at once as the machine has cores.
//!
//! It is not a general proxy: plain HTTP/1.1 with `Content-Length` or chunked bodies, as the AWS
//! SDK speaks to the local stack, and tests only.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::aws_model::{form_params, AwsModel, Call, Ec2Buckets, ModelStats, Verdict};
use crate::shards::{Route, Shards};

/// What the proxy does to one request instead of forwarding it faithfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Answered with the service's throttling error (DynamoDB `ThrottlingException`, 400;
    /// EC2 `RequestLimitExceeded`, 503; query services `Throttling`, 400). Not forwarded.
    Throttle,
    /// Answered 500 or 503 (`InternalError` / `InternalServerError`, `Unavailable`). Not forwarded.
    ServerError,
    /// The connection is reset once the request was read. Not forwarded.
    ResetBeforeForward,
    /// Forwarded — the service acted — then the connection is reset instead of the answer.
    ResetAfterForward,
    /// Forwarded — the service acted — then a 500 instead of the answer.
    ErrorAfterForward,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::ResetBeforeForward,
        Fault::ResetAfterForward,
        Fault::ErrorAfterForward,
    ];

    /// Whether the service received the request (its effects happened).
    pub fn forwards(self) -> bool {
        matches!(self, Fault::ResetAfterForward | Fault::ErrorAfterForward)
    }
}

/// The fraction of requests that get each fault (the rest are forwarded untouched). The
/// fractions add up to at most 1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mix {
    pub throttle: f64,
    pub server_error: f64,
    pub reset_before: f64,
    pub reset_after: f64,
    pub error_after: f64,
}

impl Mix {
    /// No faults: every request forwarded.
    pub const NONE: Mix = Mix {
        throttle: 0.0,
        server_error: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        error_after: 0.0,
    };

    /// `total` of all requests faulted, split evenly across every kind.
    pub fn even(total: f64) -> Self {
        let each = total.clamp(0.0, 1.0) / Fault::ALL.len() as f64;
        Mix {
            throttle: each,
            server_error: each,
            reset_before: each,
            reset_after: each,
            error_after: each,
        }
    }

    /// `fraction` of all requests get `fault`, the rest are forwarded.
    pub fn only(fault: Fault, fraction: f64) -> Self {
        let mut mix = Mix::NONE;
        *mix.slot(fault) = fraction.clamp(0.0, 1.0);
        mix
    }

    fn slot(&mut self, fault: Fault) -> &mut f64 {
        match fault {
            Fault::Throttle => &mut self.throttle,
            Fault::ServerError => &mut self.server_error,
            Fault::ResetBeforeForward => &mut self.reset_before,
            Fault::ResetAfterForward => &mut self.reset_after,
            Fault::ErrorAfterForward => &mut self.error_after,
        }
    }

    /// The fault for a uniform draw `r` in `[0, 1)`.
    fn pick(mut self, r: f64) -> Option<Fault> {
        let mut upper = 0.0;
        for fault in Fault::ALL {
            upper += *self.slot(fault);
            if r < upper {
                return Some(fault);
            }
        }
        None
    }
}

/// What the proxy saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests read from clients, faulted or not.
    pub requests: u64,
    /// Requests that reached the local stack (untouched ones and the `*AfterForward` faults).
    pub forwarded: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<Fault, u64>,
    /// Requests by operation (`PutItem`, `DescribeImages`, …).
    pub by_operation: BTreeMap<String, u64>,
}

impl Counts {
    pub fn of(&self, fault: Fault) -> u64 {
        self.injected.get(&fault).copied().unwrap_or(0)
    }

    pub fn injected_total(&self) -> u64 {
        self.injected.values().sum()
    }

    /// What happened since `before` (an earlier [`FaultProxy::counts`]).
    pub fn since(&self, before: &Counts) -> Counts {
        fn minus<K: Ord + Clone>(
            now: &BTreeMap<K, u64>,
            then: &BTreeMap<K, u64>,
        ) -> BTreeMap<K, u64> {
            now.iter()
                .filter_map(|(k, n)| {
                    let d = n - then.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect()
        }
        Counts {
            requests: self.requests - before.requests,
            forwarded: self.forwarded - before.forwarded,
            injected: minus(&self.injected, &before.injected),
            by_operation: minus(&self.by_operation, &before.by_operation),
        }
    }
}

/// A running proxy. Dropping it stops it and closes its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    /// The local stacks, in shard order; one in most tests.
    upstreams: Vec<(String, u16)>,
    state: Mutex<State>,
}

struct State {
    mix: Mix,
    rng: u64,
    scripted: VecDeque<(String, Fault)>,
    /// `refuse_next`: operation and error code.
    refusals: VecDeque<(String, &'static str)>,
    counts: Counts,
    latency: Latency,
    model: AwsModel,
    shards: Shards,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long the proxy holds each answer back: a fixed part (the round trip to an AWS endpoint)
/// plus a part per KiB of the answer (its transfer and the service's work on larger pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub fixed: Duration,
    pub per_kib: Duration,
}

impl Latency {
    /// The delay of an answer of `bytes` bytes.
    pub fn of(&self, bytes: usize) -> Duration {
        self.fixed + self.per_kib.mul_f64(bytes as f64 / 1024.0)
    }
}

impl State {
    /// xorshift64*: a uniform draw in `[0, 1)`.
    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl FaultProxy {
    /// A proxy in front of the local stack (`AWS_ENDPOINT_URL`, which must be loopback).
    pub async fn in_front_of_local_stack(mix: Mix, seed: u64) -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        Self::start(&endpoint, mix, seed).await.unwrap_or_else(|e| {
            panic!(
                "fault proxy in front of AWS_ENDPOINT_URL={endpoint:?}: {e}. \
                 Run the tests with dev/test, or eval \"$(dev/local-stack up)\" first."
            )
        })
    }

    /// A proxy on 127.0.0.1 (a free port) forwarding to `upstream`, an `http://` loopback URL.
    pub async fn start(upstream: &str, mix: Mix, seed: u64) -> io::Result<Self> {
        Self::start_sharded(&[upstream], mix, seed).await
    }

    /// A proxy forwarding each request to the one of `upstreams` (loopback URLs, at least one)
    /// that holds its account ([`crate::shards`]). The own account's requests and unidentified
    /// ones go to the first. Seed every account through the proxy, so it lands in its shard.
    pub async fn start_sharded(upstreams: &[&str], mix: Mix, seed: u64) -> io::Result<Self> {
        if upstreams.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no upstream to forward to"));
        }
        let upstreams =
            upstreams.iter().map(|u| loopback_host_port(u)).collect::<io::Result<Vec<_>>>()?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shards = Shards::new(upstreams.len());
        let shared = Arc::new(Shared {
            upstreams,
            state: Mutex::new(State {
                mix,
                rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                scripted: VecDeque::new(),
                refusals: VecDeque::new(),
                counts: Counts::default(),
                latency: Latency::default(),
                model: AwsModel::default(),
                shards,
            }),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, accept })
    }

    /// The URL to give the SDK as its endpoint.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base` (the product's configuration: its retries, backoff and timeouts) with this
    /// proxy as the endpoint.
    pub async fn sdk_config(&self, base: &aws_config::SdkConfig) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint_url());
        if let Some(retry) = base.retry_config() {
            loader = loader.retry_config(retry.clone());
        }
        if let Some(timeouts) = base.timeout_config() {
            loader = loader.timeout_config(timeouts.clone());
        }
        loader.load().await
    }

    /// Changes the fractions from the next request on.
    pub fn set_mix(&self, mix: Mix) {
        self.state().mix = mix;
    }

    /// Forwards every request from now on (scripted faults are dropped too).
    pub fn faults_off(&self) {
        let mut state = self.state();
        state.mix = Mix::NONE;
        state.scripted.clear();
        state.refusals.clear();
    }

    /// The next request for `operation` (e.g. `PutItem`) gets `fault`, whatever the mix says.
    /// Calls queue up: two calls fault the next two such requests.
    pub fn inject_next(&self, operation: &str, fault: Fault) {
        self.state().scripted.push_back((operation.to_owned(), fault));
    }

    /// The next request for `operation` is answered 400 with the service's error `code` and
    /// not forwarded: a refusal of that one request, not a fault (not counted as injected, and
    /// the SDK does not retry it). E.g. EC2's `UnsupportedOperation` or `InvalidAction`.
    pub fn refuse_next(&self, operation: &str, code: &'static str) {
        self.state().refusals.push_back((operation.to_owned(), code));
    }

    pub fn counts(&self) -> Counts {
        self.state().counts.clone()
    }

    /// Holds every answer back by `latency` from now on (none by default).
    pub fn set_latency(&self, latency: Latency) {
        self.state().latency = latency;
    }

    /// Throttles EC2 requests as AWS's token buckets would, with these sizes, from now on
    /// (`None`, the default: never). Starts afresh: full buckets, zero statistics.
    pub fn set_ec2_buckets(&self, buckets: Option<Ec2Buckets>) {
        self.state().model.set_ec2_buckets(buckets);
    }

    /// The EC2 model's statistics: requests admitted and throttled per bucket, and the floor
    /// they set. Counted against AWS's sizes even while throttling is off.
    pub fn model_stats(&self) -> ModelStats {
        self.state().model.stats()
    }

    /// Zeroes the model's statistics and fills its buckets (`POST /_proxy/reset` does the same).
    pub fn reset_model(&self) {
        self.state().model.reset();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn loopback_host_port(url: &str) -> io::Result<(String, u16)> {
    let invalid =
        |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?}: {why}"));
    let rest = url.strip_prefix("http://").ok_or_else(|| invalid("not an http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
    let port = port.parse().map_err(|_| invalid("bad port"))?;
    let host = match host {
        "127.0.0.1" | "localhost" => "127.0.0.1",
        "[::1]" => "::1",
        _ => return Err(invalid("not a loopback address")),
    };
    Ok((host.to_owned(), port))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // The connections live in the set: aborting this task (dropping the proxy) ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(Arc::clone(&shared), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one client connection: request after request until it closes or is reset.
async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut client = BufReader::new(stream);
    loop {
        let request = match read_message(&mut client, Kind::Request).await {
            Ok(Some(request)) => request,
            _ => return,
        };
        let closing = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let answer = match own_path(&shared, &request) {
            Some(answer) => answer,
            None => match respond(&shared, &request).await {
                Some(answer) => answer,
                None => return reset(client),
            },
        };
        if client.get_mut().write_all(&answer).await.is_err() || closing {
            return;
        }
    }
}

/// What the proxy does with one request, decided under the lock.
enum Plan {
    /// Answered 400 with this error code (`refuse_next`).
    Refuse(&'static str),
    /// Its EC2 bucket was empty: answered `RequestLimitExceeded` with this request id.
    Throttle(String),
    /// Forwarded untouched (`None`) or given a fault; the flag picks 500 over 503.
    Fault(Option<Fault>, bool),
}

fn plan(state: &mut State, operation: &str, call: &Call) -> Plan {
    state.counts.requests += 1;
    *state.counts.by_operation.entry(operation.to_owned()).or_default() += 1;
    if let Verdict::Throttle { request_id } = state.model.admit(call, Instant::now()) {
        return Plan::Throttle(request_id);
    }
    let refused = state.refusals.iter().position(|(op, _)| *op == operation);
    let refused = refused.and_then(|i| state.refusals.remove(i)).map(|(_, code)| code);
    let scripted = state.scripted.iter().position(|(op, _)| *op == operation);
    let fault = match (refused, scripted) {
        (Some(_), _) => None,
        (None, Some(i)) => state.scripted.remove(i).map(|(_, f)| f),
        (None, None) => {
            let r = state.draw();
            state.mix.pick(r)
        }
    };
    if let Some(f) = fault {
        *state.counts.injected.entry(f).or_default() += 1;
    }
    if refused.is_none() && fault.is_none_or(Fault::forwards) {
        state.counts.forwarded += 1;
    }
    // Drawn for every request, refused or not, so that a seed replays the same faults.
    let five_hundred = state.draw() < 0.5;
    match refused {
        Some(code) => Plan::Refuse(code),
        None => Plan::Fault(fault, five_hundred),
    }
}

/// The answer to one request, held back by the latency; `None` when the connection is to be
/// reset instead.
async fn respond(shared: &Shared, request: &Message) -> Option<Vec<u8>> {
    let operation = operation(request);
    let call = model_call(request);
    let (plan, latency, route) = {
        let mut state = shared.state();
        (plan(&mut state, &operation, &call), state.latency, state.shards.route(&call))
    };
    let answer = match plan {
        Plan::Refuse(code) => error_answer(request, (400, "Bad Request"), code),
        Plan::Throttle(request_id) => ec2_throttled(&request_id),
        Plan::Fault(None, _) => forward_answer(shared, &route, request, &call).await,
        Plan::Fault(Some(Fault::Throttle), _) => refusal(request, Fault::Throttle, false),
        Plan::Fault(Some(Fault::ServerError), five_hundred) => {
            refusal(request, Fault::ServerError, five_hundred)
        }
        Plan::Fault(Some(Fault::ResetBeforeForward), _) => return None,
        Plan::Fault(Some(Fault::ResetAfterForward), _) => {
            let _ = forward(shared, &route, request).await;
            return None;
        }
        Plan::Fault(Some(Fault::ErrorAfterForward), _) => {
            let _ = forward(shared, &route, request).await;
            refusal(request, Fault::ServerError, true)
        }
    };
    if latency != Latency::default() {
        tokio::time::sleep(latency.of(answer.len())).await;
    }
    Some(answer)
}

/// The local stack's answer to `request`. An STS `AssumeRole` answer also tells the EC2 model
/// and the routing which account the access key it hands out acts in.
async fn forward_answer(shared: &Shared, route: &Route, request: &Message, call: &Call) -> Vec<u8> {
    let response = match forward(shared, route, request).await {
        Ok(response) => response,
        Err(e) => {
            let text = format!("fault proxy: the local stack did not answer: {e}");
            return plain(502, "Bad Gateway", &text);
        }
    };
    let assumed = call.service.as_deref() == Some("sts")
        && call.param("Action") == Some("AssumeRole")
        && response.start.split_whitespace().nth(1) == Some("200");
    if assumed {
        let body = String::from_utf8_lossy(&response.body);
        let mut state = shared.state();
        state.model.learn_assumed_role(call, &body);
        state.shards.learn_assumed_role(call, &body);
    }
    response.to_bytes(Some("HTTP/1.1"), &[])
}

/// The proxy's own paths, answered here and never forwarded: `GET /_proxy/stats` (the EC2
/// model's statistics as JSON) and `POST /_proxy/reset` (zeroes them, fills the buckets).
/// `None` for every other path.
fn own_path(shared: &Shared, request: &Message) -> Option<Vec<u8>> {
    let mut start = request.start.split_whitespace();
    let (method, target) = (start.next()?, start.next()?);
    let path = target.split('?').next().unwrap_or(target);
    if !path.starts_with("/_proxy/") {
        return None;
    }
    let mut state = shared.state();
    let answer = match (method, path) {
        ("GET", "/_proxy/stats") => json_answer(&state.model.stats().to_json()),
        ("POST", "/_proxy/reset") => {
            state.model.reset();
            json_answer(&state.model.stats().to_json())
        }
        _ => plain(404, "Not Found", "the proxy answers GET /_proxy/stats and POST /_proxy/reset"),
    };
    Some(answer)
}

/// Drops the connection with a TCP reset (zero linger), not an orderly close.
fn reset(client: BufReader<TcpStream>) {
    let stream = client.into_inner();
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Sends `request` to the local stack `route` picks, on a connection of its own, and reads the
/// whole answer.
async fn forward(shared: &Shared, route: &Route, request: &Message) -> io::Result<Message> {
    // The routing has as many shards as there are upstreams, so the index is in range.
    let (host, port) = &shared.upstreams[route.shard];
    let mut extra = vec![("connection", "close")];
    if let Some(account) = &route.act_as {
        extra.push(("x-moto-account-id", account.as_str()));
    }
    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&request.to_bytes(None, &extra)).await?;
        let mut reader = BufReader::new(stream);
        read_message(&mut reader, Kind::Response)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering"))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer within 30 s")))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    Response,
}

/// A request or response: the first line, the headers, the whole body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The message with its framing made explicit (`Content-Length`, no hop-by-hop headers),
    /// the version of a status line replaced by `version` when given, plus `extra` headers.
    fn to_bytes(&self, version: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
        const HOP: [&str; 5] =
            ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"];
        let start = match (version, self.start.split_once(' ')) {
            (Some(v), Some((_, rest))) => format!("{v} {rest}"),
            _ => self.start.clone(),
        };
        let mut out = format!("{start}\r\n");
        for (name, value) in &self.headers {
            if !HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

const MAX_LINE: usize = 64 * 1024;

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = (&mut *reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long or cut off"));
    }
    Ok(Some(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned()))
}

/// Reads one message; `None` when the connection closed cleanly before it began.
async fn read_message<R: AsyncRead + AsyncBufRead + Unpin>(
    reader: &mut R,
    kind: Kind,
) -> io::Result<Option<Message>> {
    let cut = || io::Error::new(io::ErrorKind::UnexpectedEof, "message cut off");
    let start = loop {
        match read_line(reader).await? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader).await?.ok_or_else(cut)?;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut message = Message { start, headers, body: Vec::new() };
    let status = message.start.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = message.header("content-length").and_then(|v| v.parse::<usize>().ok());
    if kind == Kind::Response && matches!(status, Some(100..=199 | 204 | 304)) {
        return Ok(Some(message));
    }
    if chunked {
        loop {
            let size_line = read_line(reader).await?.ok_or_else(cut)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                while !read_line(reader).await?.ok_or_else(cut)?.is_empty() {}
                break;
            }
            let at = message.body.len();
            message.body.resize(at + size, 0);
            reader.read_exact(&mut message.body[at..]).await?;
            read_line(reader).await?.ok_or_else(cut)?;
        }
    } else if let Some(length) = length {
        message.body.resize(length, 0);
        reader.read_exact(&mut message.body).await?;
    } else if kind == Kind::Response {
        reader.read_to_end(&mut message.body).await?;
    }
    Ok(Some(message))
}

/// The operation a request calls: `X-Amz-Target`'s last part (JSON protocols) or the query
/// protocols' `Action`.
fn operation(request: &Message) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let form = String::from_utf8_lossy(&request.body);
    let query = request
        .start
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.split_once('?'))
        .map(|(_, q)| q)
        .unwrap_or("");
    form.split('&')
        .chain(query.split('&'))
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_owned)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A part of a request's SigV4 credential scope (`Credential=<key>/<date>/<region>/<service>/
/// aws4_request`): 0 the access key, 2 the region, 3 the service.
fn credential_part(request: &Message, index: usize) -> Option<String> {
    let auth = request.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    credential.split('/').nth(index).map(str::to_owned)
}

/// The service a request is signed for.
fn signing_service(request: &Message) -> Option<String> {
    credential_part(request, 3)
}

/// What the EC2 model needs to know of `request`. Only form bodies (the query protocols') are
/// read for parameters.
fn model_call(request: &Message) -> Call {
    let is_form =
        request.header("content-type").is_some_and(|t| t.contains("x-www-form-urlencoded"));
    let form = if is_form { String::from_utf8_lossy(&request.body) } else { "".into() };
    let query = request.start.split_whitespace().nth(1).and_then(|t| t.split_once('?'));
    let mut params = form_params(&form);
    params.extend(form_params(query.map_or("", |(_, q)| q)));
    Call {
        service: credential_part(request, 3),
        region: credential_part(request, 2),
        access_key: credential_part(request, 0),
        account_header: request.header("x-moto-account-id").map(str::to_owned),
        params,
    }
}

enum Protocol {
    DynamoDb,
    Json,
    Ec2,
    Query,
}

fn protocol(request: &Message) -> Protocol {
    match (request.header("x-amz-target"), signing_service(request).as_deref()) {
        (Some(target), _) if target.starts_with("DynamoDB_") => Protocol::DynamoDb,
        (Some(_), _) => Protocol::Json,
        (None, Some("ec2")) => Protocol::Ec2,
        (None, _) => Protocol::Query,
    }
}

/// The service's own error answer for `fault` (`Throttle` or `ServerError`; `five_hundred`
/// picks 500 over 503 for the latter).
fn refusal(request: &Message, fault: Fault, five_hundred: bool) -> Vec<u8> {
    let throttle = fault == Fault::Throttle;
    let (status, reason) = if throttle {
        match protocol(request) {
            Protocol::Ec2 => (503, "Service Unavailable"),
            _ => (400, "Bad Request"),
        }
    } else if five_hundred {
        (500, "Internal Server Error")
    } else {
        (503, "Service Unavailable")
    };
    let code = match (protocol(request), throttle, status) {
        (Protocol::DynamoDb | Protocol::Json, true, _) => "ThrottlingException",
        (Protocol::DynamoDb | Protocol::Json, false, 500) => "InternalServerError",
        (Protocol::DynamoDb | Protocol::Json, false, _) => "ServiceUnavailable",
        (Protocol::Ec2, true, _) => "RequestLimitExceeded",
        (Protocol::Ec2, false, 500) => "InternalError",
        (Protocol::Ec2, false, _) => "Unavailable",
        (Protocol::Query, true, _) => "Throttling",
        (Protocol::Query, false, 500) => "InternalError",
        (Protocol::Query, false, _) => "ServiceUnavailable",
    };
    error_answer(request, (status, reason), code)
}

/// An error answer in the request's protocol: HTTP `status`, the service's error `code`.
fn error_answer(request: &Message, status: (u16, &str), code: &str) -> Vec<u8> {
    const NOTE: &str = "injected by warden_testkit::faults";
    const ID: &str = "fault-proxy";
    let (content_type, body) = match protocol(request) {
        Protocol::DynamoDb | Protocol::Json => {
            let code = match protocol(request) {
                Protocol::DynamoDb => format!("com.amazonaws.dynamodb.v20120810#{code}"),
                _ => code.to_owned(),
            };
            let content_type =
                request.header("content-type").unwrap_or("application/x-amz-json-1.0").to_owned();
            (content_type, format!(r#"{{"__type":"{code}","message":"{NOTE}"}}"#))
        }
        Protocol::Ec2 => (EC2_XML.to_owned(), ec2_error_body(code, NOTE, ID)),
        Protocol::Query => {
            let kind = if status.0 < 500 { "Sender" } else { "Receiver" };
            let body = format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{NOTE}</Message></Error>\
                 <RequestId>{ID}</RequestId></ErrorResponse>"
            );
            ("text/xml".to_owned(), body)
        }
    };
    answer(status, content_type, body, ID)
}

const EC2_XML: &str = "text/xml;charset=UTF-8";

/// EC2's answer when a request's bucket is empty.
fn ec2_throttled(request_id: &str) -> Vec<u8> {
    let body = ec2_error_body("RequestLimitExceeded", "Request limit exceeded.", request_id);
    answer((503, "Service Unavailable"), EC2_XML.to_owned(), body, request_id)
}

fn ec2_error_body(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
}

fn answer((status, reason): (u16, &str), content_type: String, body: String, id: &str) -> Vec<u8> {
    let message = Message {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers: vec![
            ("content-type".to_owned(), content_type),
            ("x-amzn-requestid".to_owned(), id.to_owned()),
        ],
        body: body.into_bytes(),
    };
    message.to_bytes(None, &[])
}

fn json_answer(value: &serde_json::Value) -> Vec<u8> {
    answer((200, "OK"), "application/json".to_owned(), value.to_string(), "proxy")
}

fn plain(status: u16, reason: &str, text: &str) -> Vec<u8> {
    let message = Message {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        body: text.as_bytes().to_vec(),
    };
    message.to_bytes(None, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_a_fixed_part_plus_a_part_per_kib_of_the_answer() {
        let latency =
            Latency { fixed: Duration::from_millis(60), per_kib: Duration::from_millis(2) };
        assert_eq!(latency.of(0), Duration::from_millis(60));
        assert_eq!(latency.of(10 * 1024), Duration::from_millis(80));
        assert_eq!(Latency::default().of(1 << 20), Duration::ZERO);
    }

    #[test]
    fn mix_fractions_pick_their_share_of_draws() {
        let mut state = State {
            mix: Mix::even(0.5),
            rng: 42 | 1,
            scripted: VecDeque::new(),
            refusals: VecDeque::new(),
            counts: Counts::default(),
            latency: Latency::default(),
            model: AwsModel::default(),
            shards: Shards::new(1),
        };
        let mut picked: BTreeMap<Option<Fault>, u32> = BTreeMap::new();
        for _ in 0..10_000 {
            let r = state.draw();
            assert!((0.0..1.0).contains(&r));
            *picked.entry(state.mix.pick(r)).or_default() += 1;
        }
        assert!((4_700..5_300).contains(&picked[&None]), "{picked:?}");
        for fault in Fault::ALL {
            assert!((850..1_150).contains(&picked[&Some(fault)]), "{fault:?}: {picked:?}");
        }
        assert_eq!(Mix::NONE.pick(0.0), None);
        assert_eq!(Mix::only(Fault::Throttle, 1.0).pick(0.999), Some(Fault::Throttle));
    }

    /// A stand-in for one local stack: answers every request with its `name`, the account
    /// header it was sent, and an access key of its own (as STS AssumeRole would hand out).
    async fn fake_stack(name: &'static str) -> String {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut reader = BufReader::new(stream);
                let Ok(Some(request)) = read_message(&mut reader, Kind::Request).await else {
                    continue;
                };
                let account = request.header("x-moto-account-id").unwrap_or("-");
                let body = format!("{name} {account} <AccessKeyId>key-of-{name}</AccessKeyId>");
                let answer = answer((200, "OK"), "text/xml".to_owned(), body, "fake");
                let _ = reader.get_mut().write_all(&answer).await;
            }
        });
        url
    }

    /// The first two words of the proxy's answer to a form POST signed with `key` for
    /// `service`, with `headers`: the shard that answered and the account header it got.
    async fn ask(
        proxy: &FaultProxy,
        key: &str,
        service: &str,
        headers: &str,
        form: &str,
    ) -> String {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("the proxy listens");
        let scope = format!("{key}/20260101/us-east-1/{service}/aws4_request");
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             authorization: AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host,Signature=s\r\n\
             {headers}connection: close\r\ncontent-length: {}\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut reader = BufReader::new(stream);
        let answer = read_message(&mut reader, Kind::Response).await.expect("read").expect("some");
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        body.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    #[tokio::test]
    async fn each_request_reaches_its_accounts_stack_and_assumed_keys_get_their_account_named() {
        let (a, b) = (fake_stack("a").await, fake_stack("b").await);
        let proxy = FaultProxy::start_sharded(&[&a, &b], Mix::NONE, 1).await.expect("started");
        assert_eq!(ask(&proxy, "testing", "dynamodb", "", "").await, "a -");
        let member = "x-moto-account-id: 400001000001\r\n";
        assert_eq!(
            ask(&proxy, "testing", "iam", member, "Action=CreateRole").await,
            "b 400001000001"
        );
        let assume = "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A400001000001%3Arole%2FR";
        assert_eq!(ask(&proxy, "testing", "sts", "", assume).await, "b -");
        let describe = "Action=DescribeImages";
        assert_eq!(ask(&proxy, "key-of-b", "ec2", "", describe).await, "b 400001000001");
        // One upstream: requests go as they came, even with a key AssumeRole handed out.
        let single = FaultProxy::start(&b, Mix::NONE, 1).await.expect("started");
        assert_eq!(ask(&single, "testing", "sts", "", assume).await, "b -");
        assert_eq!(ask(&single, "key-of-b", "ec2", "", describe).await, "b -");
    }

    #[test]
    fn only_loopback_upstreams_are_accepted() {
        assert_eq!(
            loopback_host_port("http://127.0.0.1:5000").unwrap(),
            ("127.0.0.1".to_owned(), 5000)
        );
        assert_eq!(
            loopback_host_port("http://localhost:5000/").unwrap(),
            ("127.0.0.1".to_owned(), 5000)
        );
        assert!(loopback_host_port("http://10.0.0.1:5000").is_err());
        assert!(loopback_host_port("https://127.0.0.1:5000").is_err());
    }
}

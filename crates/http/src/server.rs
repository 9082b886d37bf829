//! The edge: accepting connections and bounding what a client may cost. Hostile clients
//! (slow, huge, many) cost bounded time, memory and connections, and every answer the HTTP
//! layer gives itself is JSON with a stable code, like the API's own:
//!
//! - at most `max_connections` connections; one more is answered 503 `too_many_connections`;
//! - a request head must arrive within `head_timeout` (408 `request_timeout`), fit in
//!   `max_head_bytes` (431 `headers_too_large`) with a target of at most `max_uri_bytes` (414
//!   `uri_too_long`), and be well formed (400 `malformed_request`), checked by [`Guarded`]
//!   before hyper sees it;
//! - a keep-alive connection idle for `idle_timeout` is closed;
//! - the body is read, within `body_timeout` (408) and the body limit (413), before any
//!   handler runs, so a slow upload never holds a database connection;
//! - a whole request gets `request_timeout` (503 `timeout`);
//! - on shutdown, in-flight requests get `shutdown_grace`, then every connection is cut.

use crate::error::ApiError;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How much a client may cost. Every field has a configuration variable (README).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_headers: usize,
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_head_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then in-flight requests get
/// `config.shutdown_grace` to finish and whatever is left is cut.
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (app, config, stop) = (app.clone(), config.clone(), stop_rx.clone());
                        connections.spawn(async move {
                            connection(stream, peer, app, config, stop).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        connections.spawn(refuse(stream, Refusal::TooManyConnections));
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown deadline reached: cutting the connections still open"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// One connection: hyper behind the [`Guarded`] reader, the client's address on every
/// request, a graceful end on shutdown, and the guard's refusal (if any) written last.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    config: Arc<ServerConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let in_flight = InFlight::new();
    let io = Guarded::new(stream, config.clone(), in_flight.clone());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        let busy = in_flight.enter();
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        Box::pin(async move {
            let response =
                tower::ServiceExt::oneshot(app, request.map(axum::body::Body::new)).await;
            // Answered once the whole body is written: the guard waits for that.
            response.map(|r| r.map(|body| Tracked { body, _busy: busy }))
        }) as Pin<Box<dyn Future<Output = _> + Send>>
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_headers(config.max_headers)
        // Our own limit is checked first; hyper's is the backstop.
        .max_buf_size((config.max_head_bytes * 2).max(16 * 1024));
    let mut conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut stopping = *stop.borrow();
    if stopping {
        Pin::new(&mut conn).graceful_shutdown();
    }
    let result = loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    let mut io = conn.into_parts().io.into_inner();
    match io.refusal.take() {
        Some(refusal) => write_and_close(io.io, refusal).await,
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(1), io.io.shutdown()).await;
        }
    }
}

/// Counts the requests of one connection that hyper has been given and that are not yet
/// answered (their response body not yet written), and wakes the reader that waits for them
/// (a refusal is written only after them).
#[derive(Default)]
struct InFlight {
    /// Requests whose response body has been written (or dropped).
    answered: AtomicUsize,
    waiting: Mutex<Option<Waker>>,
}

/// One request being answered; answered when dropped.
struct Busy(Arc<InFlight>);

impl InFlight {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    fn enter(self: &Arc<Self>) -> Busy {
        Busy(self.clone())
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    fn wake_when_answered(&self, waker: &Waker) {
        if let Ok(mut waiting) = self.waiting.lock() {
            *waiting = Some(waker.clone());
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::SeqCst);
        if let Some(waker) = self.0.waiting.lock().ok().and_then(|mut w| w.take()) {
            waker.wake();
        }
    }
}

/// A response body that marks its request answered when hyper is done with it.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the edge answers by itself, before (or instead of) the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Malformed,
    HeadTooLarge,
    UriTooLong,
    HeadTimeout,
    TooManyConnections,
}

impl Refusal {
    fn response(self) -> Vec<u8> {
        let (status, reason, error, retry) = match self {
            Refusal::Malformed => (
                400,
                "Bad Request",
                ApiError::BadRequest {
                    code: "malformed_request",
                    message: "the request is not well-formed HTTP/1.1".into(),
                },
                false,
            ),
            Refusal::HeadTooLarge => (
                431,
                "Request Header Fields Too Large",
                ApiError::HeadersTooLarge,
                false,
            ),
            Refusal::UriTooLong => (414, "URI Too Long", ApiError::UriTooLong, false),
            Refusal::HeadTimeout => (408, "Request Timeout", ApiError::RequestTimeout, false),
            Refusal::TooManyConnections => (
                503,
                "Service Unavailable",
                ApiError::TooManyConnections,
                true,
            ),
        };
        let body = error.body().to_string();
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if retry {
            head.push_str("retry-after: 1\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

async fn refuse(stream: TcpStream, refusal: Refusal) {
    write_and_close(stream, refusal).await;
}

/// Writes `refusal`'s response and closes, within bounded time. Half-closes first and reads
/// what the client still sends for a moment, so the kernel does not reset the connection
/// (and lose the answer) over unread bytes.
async fn write_and_close(mut stream: TcpStream, refusal: Refusal) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&refusal.response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Between requests, or inside a head that is still arriving.
    Head,
    /// Inside a body of known length: this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// A body whose framing we could not follow: hyper sees the rest as sent and refuses it
    /// itself (the connection cannot be resynchronised).
    Passthrough,
}

/// The client's side of a connection, checked before hyper reads it: request heads are
/// parsed (httparse, as hyper does) and held back until complete and acceptable, bodies pass
/// through while their framing is followed to find the next head, and the head and idle
/// deadlines are kept. A refused head is never shown to hyper: the reader ends (once the
/// requests already handed over are answered) and the refusal is written after hyper is
/// done.
pub(crate) struct Guarded {
    io: TcpStream,
    config: Arc<ServerConfig>,
    in_flight: Arc<InFlight>,
    /// Read from the client, not yet checked.
    raw: BytesMut,
    /// Checked, for hyper to read.
    ready: BytesMut,
    framing: Framing,
    head_started: Option<Instant>,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    refusal: Option<Refusal>,
    closed: bool,
    /// Request heads handed to hyper.
    passed: usize,
}

impl Guarded {
    fn new(io: TcpStream, config: Arc<ServerConfig>, in_flight: Arc<InFlight>) -> Self {
        let now = Instant::now();
        Self {
            io,
            config,
            in_flight,
            raw: BytesMut::with_capacity(4096),
            ready: BytesMut::new(),
            framing: Framing::Head,
            head_started: None,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
            refusal: None,
            closed: false,
            passed: 0,
        }
    }

    /// Moves what can be checked from `raw` to `ready`, or sets the refusal.
    fn advance(&mut self) {
        loop {
            let before = (self.raw.len(), self.framing);
            match self.framing {
                Framing::Head => self.head(),
                Framing::Body(left) => {
                    let n = left.min(self.raw.len() as u64);
                    self.pass(n as usize);
                    self.framing = if n == left {
                        Framing::Head
                    } else {
                        Framing::Body(left - n)
                    };
                }
                Framing::ChunkSize => match httparse::parse_chunk_size(&self.raw) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pass(used);
                        self.framing = if size == 0 {
                            Framing::Trailers
                        } else {
                            Framing::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if self.raw.len() < 1024 => {}
                    _ => self.framing = Framing::Passthrough,
                },
                Framing::ChunkData(left) => {
                    let n = left.min(self.raw.len() as u64);
                    self.pass(n as usize);
                    self.framing = if n == left {
                        Framing::ChunkEnd
                    } else {
                        Framing::ChunkData(left - n)
                    };
                }
                Framing::ChunkEnd => {
                    if self.raw.starts_with(b"\r\n") {
                        self.pass(2);
                        self.framing = Framing::ChunkSize;
                    } else if self.raw.len() >= 2 || self.raw.first().is_some_and(|b| *b != b'\r') {
                        self.framing = Framing::Passthrough;
                    }
                }
                Framing::Trailers => match self.raw.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        let empty = end == 0 || (end == 1 && self.raw[0] == b'\r');
                        self.pass(end + 1);
                        if empty {
                            self.framing = Framing::Head;
                        }
                    }
                    None if self.raw.len() > self.config.max_head_bytes => {
                        self.framing = Framing::Passthrough;
                    }
                    None => {}
                },
                Framing::Passthrough => self.pass(self.raw.len()),
            }
            if self.refusal.is_some() || (self.raw.len(), self.framing) == before {
                return;
            }
        }
    }

    fn pass(&mut self, n: usize) {
        let bytes = self.raw.split_to(n);
        self.ready.extend_from_slice(&bytes);
    }

    /// Checks a request head that may be complete.
    fn head(&mut self) {
        // Empty lines before a request line are allowed (RFC 9112, 2.2).
        while self.raw.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            self.raw.advance(1);
        }
        if self.raw.is_empty() {
            return;
        }
        self.head_started.get_or_insert_with(Instant::now);
        let mut headers = vec![httparse::EMPTY_HEADER; self.config.max_headers];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.raw) {
            Err(httparse::Error::TooManyHeaders) => self.refusal = Some(Refusal::HeadTooLarge),
            Err(_) => self.refusal = Some(Refusal::Malformed),
            Ok(httparse::Status::Partial) => {
                let line_done = self.raw.contains(&b'\n');
                if !line_done && self.raw.len() > self.config.max_uri_bytes + 32 {
                    self.refusal = Some(Refusal::UriTooLong);
                } else if self.raw.len() > self.config.max_head_bytes {
                    self.refusal = Some(Refusal::HeadTooLarge);
                }
            }
            Ok(httparse::Status::Complete(len)) => match check_head(&request, &self.config) {
                Err(refusal) => self.refusal = Some(refusal),
                Ok(_) if len > self.config.max_head_bytes => {
                    self.refusal = Some(Refusal::HeadTooLarge)
                }
                Ok(framing) => {
                    self.pass(len);
                    self.passed += 1;
                    self.head_started = None;
                    self.framing = framing;
                }
            },
        }
    }

    /// When the current wait must end, and what happens then.
    fn deadline(&self) -> Option<(Instant, Deadline)> {
        if self.framing != Framing::Head {
            return None;
        }
        if let Some(started) = self.head_started {
            return Some((started + self.config.head_timeout, Deadline::Head));
        }
        if self.unanswered() {
            return None;
        }
        Some((
            self.last_activity + self.config.idle_timeout,
            Deadline::Idle,
        ))
    }

    /// Whether a request hyper was given is not answered yet.
    fn unanswered(&self) -> bool {
        self.in_flight.answered() < self.passed
    }
}

enum Deadline {
    Head,
    Idle,
}

/// The checks hyper would make on a complete head, and the framing of its body.
fn check_head(request: &httparse::Request, config: &ServerConfig) -> Result<Framing, Refusal> {
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Refusal::Malformed);
    };
    if target.len() > config.max_uri_bytes {
        return Err(Refusal::UriTooLong);
    }
    if http::Method::from_bytes(method.as_bytes()).is_err() || http::Uri::try_from(target).is_err()
    {
        return Err(Refusal::Malformed);
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).map_err(|_| Refusal::Malformed)?;
            for part in value.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refusal::Malformed);
                }
                let n: u64 = part.parse().map_err(|_| Refusal::Malformed)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::Malformed);
                }
                length = Some(n);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = std::str::from_utf8(header.value).map_err(|_| Refusal::Malformed)?;
            transfer_encoding = true;
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    // Both, or a transfer coding that does not end in chunked, or chunked in HTTP/1.0: the
    // body's end would be ambiguous (request smuggling), so refuse.
    if transfer_encoding && (length.is_some() || !chunked || version == 0) {
        return Err(Refusal::Malformed);
    }
    Ok(match (chunked, length) {
        (true, _) => Framing::ChunkSize,
        (false, Some(n)) if n > 0 => Framing::Body(n),
        _ => Framing::Head,
    })
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.refusal.is_some() {
                // End hyper's reading, but only once the requests it has are answered.
                if this.unanswered() {
                    this.in_flight.wake_when_answered(cx.waker());
                    if this.unanswered() {
                        return Poll::Pending;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            this.advance();
            if !this.ready.is_empty() || this.refusal.is_some() {
                continue;
            }
            if let Some((at, what)) = this.deadline() {
                if Instant::now() >= at {
                    match what {
                        Deadline::Head => this.refusal = Some(Refusal::HeadTimeout),
                        Deadline::Idle => this.closed = true,
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    if got.is_empty() {
                        this.closed = true;
                    } else {
                        this.raw.extend_from_slice(got);
                        this.last_activity = Instant::now();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Woken by the client's bytes or by the deadline, whichever comes first.
                    if let Some((at, _)) = this.deadline() {
                        this.timer.as_mut().reset(at);
                        if this.timer.as_mut().poll(cx).is_ready() {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Reads the whole request body, within `body_timeout` and the body limit, before the
/// router's handlers run: a handler opens its tenant transaction only once the body is here,
/// so a slow or never-sent body never holds a database connection.
pub(crate) async fn read_body(
    axum::extract::State(config): axum::extract::State<Arc<ServerConfig>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::BODY_LIMIT as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let collected = tokio::time::timeout(
        config.body_timeout,
        axum::body::to_bytes(body, crate::BODY_LIMIT),
    )
    .await;
    let bytes = match collected {
        Err(_) => return ApiError::RequestTimeout.into_response(),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::PayloadTooLarge.into_response()
            } else {
                ApiError::BadRequest {
                    code: "invalid_body",
                    message: "the request body could not be read".into(),
                }
                .into_response()
            };
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Bounds a whole request (body included): past `request_timeout` the handler is dropped
/// (its tenant transaction rolls back) and the answer is 503 `timeout`.
pub(crate) async fn request_timeout(
    axum::extract::State(config): axum::extract::State<Arc<ServerConfig>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

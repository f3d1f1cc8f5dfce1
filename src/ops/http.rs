//! A small HTTP/1.1 server for the operator surface: `POST /` carries JSON RPC
//! ([`rpc::handle`]), `GET /metrics` the Prometheus text ([`metrics::render`]); anything else is
//! 404. Plain `std::net`, one accept thread, one short-lived thread per connection (at most
//! `max_connections` at once; beyond that `503`), one request per connection
//! (`Connection: close`), bounded header and body sizes, a deadline per request.
//! [`HttpServer::stop`] ends the accept loop within one poll interval and waits (bounded) for
//! the connections in flight.
//!
//! **Host check** (DNS rebinding defence, both servers): a web page on a name the attacker
//! controls can point that name at 127.0.0.1 and have the victim's browser send requests here;
//! the browser then sends the attacker's name as `Host`. So a request is served only when its
//! `Host` names this server: `localhost`, `127.0.0.1`, `[::1]` or the bound address, with or
//! without a port (the port is not compared: port forwarding changes it, and a rebinding
//! needs a name); on a server bound to all addresses (`0.0.0.0`, `[::]`), any IP address.
//! Any other `Host` — every DNS name but `localhost` — gets `403` with
//! `{"error": "Host not allowed"}`. A request without `Host` is served when it is HTTP/1.0
//! (old tools; browsers always send `Host`, so it cannot be a rebinding); HTTP/1.1 requires
//! one (RFC 9112 §3.2): without it, or with two, `400`. See [`host_allowed`].

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics;
use super::rpc::{self, NodeApi};

/// How often the accept loop looks at the stop flag when idle.
const POLL: Duration = Duration::from_millis(20);
/// Socket read timeout slice: in-flight reads notice a stop within this.
const READ_SLICE: Duration = Duration::from_millis(100);
/// Largest request head (request line + headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// What failed in the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for (bind, reading back the bound address, or going
        /// non-blocking failed).
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The accept thread could not be started.
    #[error("cannot start the HTTP thread: {0}")]
    Spawn(std::io::Error),
}

/// What the server serves, and its bounds.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve JSON RPC on `POST /`.
    pub rpc: bool,
    /// Serve Prometheus text on `GET /metrics`.
    pub metrics: bool,
    /// Largest request body accepted (larger: `413`).
    pub max_body: usize,
    /// Most connections handled at once (more: `503`).
    pub max_connections: usize,
    /// Time allowed to receive a whole request (slower: `408`).
    pub read_timeout: Duration,
    /// Allow RPC actions that change the node's state
    /// ([`CONTROL_ACTIONS`](super::rpc::CONTROL_ACTIONS): `keepalive`), like nano-node's
    /// `enable_control`; without it they answer `{"error": "RPC control is disabled"}`.
    pub enable_control: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            rpc: true,
            metrics: true,
            max_body: 64 * 1024,
            max_connections: 16,
            read_timeout: Duration::from_secs(5),
            enable_control: false,
        }
    }
}

/// A running server; stops on [`HttpServer::stop`] or drop.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks one) and starts serving `api`.
    pub fn start(
        addr: SocketAddr,
        api: Arc<dyn NodeApi>,
        options: ServerOptions,
    ) -> Result<HttpServer, HttpError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let ctx = Service {
            local,
            api,
            options: Arc::new(options),
            stop: stop.clone(),
            active: active.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("http-{}", local.port()))
            .spawn(move || accept_loop(listener, ctx))
            .map_err(HttpError::Spawn)?;
        tracing::info!(%local, "HTTP server listening");
        Ok(HttpServer {
            addr: local,
            stop,
            active,
            thread: Some(thread),
        })
    }

    /// The bound address: the port the OS picked when `start` was given port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections being handled now.
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Stops accepting, joins the accept thread and waits up to one second for connections in
    /// flight (their reads give up within 100 ms of the stop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// What every connection thread of the server shares: the node, the options, the stop flag
/// and the count of connections being served.
#[derive(Clone)]
struct Service {
    /// The bound address (for the Host check).
    local: SocketAddr,
    api: Arc<dyn NodeApi>,
    options: Arc<ServerOptions>,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
}

/// Decrements the active count when a connection thread ends (also on panic).
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, ctx: Service) {
    while !ctx.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let n = ctx.active.fetch_add(1, Ordering::SeqCst);
                let guard = ActiveGuard(ctx.active.clone());
                if n >= ctx.options.max_connections {
                    tracing::debug!(%peer, "HTTP connection refused: too many connections");
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let mut s = stream;
                    // no lingering here: the accept loop must not stall under overload
                    let _ =
                        respond_then(&mut s, 503, "text/plain", b"too many connections\n", false);
                    drop(guard);
                    continue;
                }
                let c = ctx.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            let _guard = guard;
                            serve(stream, &c);
                        });
                if let Err(e) = spawned {
                    tracing::warn!(%e, "cannot spawn an HTTP connection thread");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(%e, "HTTP accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    /// HTTP/1.0 (a missing `Host` is allowed).
    http10: bool,
    /// The `Host` header values (normally one).
    hosts: Vec<String>,
    body: Vec<u8>,
}

/// Why a request was not read.
enum Reject {
    Status(u16, &'static str),
    Gone,
}

fn serve(mut stream: TcpStream, ctx: &Service) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_SLICE));
    let _ = stream.set_write_timeout(Some(ctx.options.read_timeout));
    let _ = stream.set_nodelay(true);
    let req = match read_request(&mut stream, ctx) {
        Ok(r) => r,
        Err(Reject::Status(code, msg)) => {
            let _ = respond(&mut stream, code, "text/plain", msg.as_bytes());
            return;
        }
        Err(Reject::Gone) => return,
    };
    let host_ok = match req.hosts.as_slice() {
        [] => req.http10,
        [host] => host_allowed(host, ctx.local),
        _ => false,
    };
    if !host_ok {
        tracing::debug!(hosts = ?req.hosts, "HTTP request refused: Host not allowed");
        let _ = if req.hosts.is_empty() || req.hosts.len() > 1 {
            respond(
                &mut stream,
                400,
                "text/plain",
                b"exactly one Host header required\n",
            )
        } else {
            respond(
                &mut stream,
                403,
                "application/json",
                br#"{"error":"Host not allowed"}"#,
            )
        };
        return;
    }
    let o = &ctx.options;
    let path = req.path.split('?').next().unwrap_or("");
    let (code, ctype, body): (u16, &str, Vec<u8>) = match (path, req.method.as_str()) {
        ("/", "POST") if o.rpc => {
            let v = rpc::handle(ctx.api.as_ref(), &req.body, o.enable_control);
            (200, "application/json", v.to_string().into_bytes())
        }
        ("/metrics", "GET") if o.metrics => {
            let text = metrics::render(&ctx.api.metrics());
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.into_bytes(),
            )
        }
        ("/", _) if o.rpc => (405, "text/plain", b"use POST\n".to_vec()),
        ("/metrics", _) if o.metrics => (405, "text/plain", b"use GET\n".to_vec()),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    };
    let _ = respond(&mut stream, code, ctype, &body);
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn read_request(stream: &mut TcpStream, ctx: &Service) -> Result<Request, Reject> {
    let deadline = Instant::now() + ctx.options.read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(Reject::Status(431, "request head too large\n"));
        }
        read_some(stream, &mut chunk, &mut buf, deadline, ctx)?;
    };
    if head_end > MAX_HEAD {
        return Err(Reject::Status(431, "request head too large\n"));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Reject::Status(400, "bad request\n"))?
        .to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path, version) = (
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
        first.next().unwrap_or(""),
    );
    if method.is_empty() || !path.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(Reject::Status(400, "bad request\n"));
    }
    let mut content_length: Option<usize> = None;
    let mut expect_continue = false;
    let mut hosts = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(Reject::Status(400, "bad header\n"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| Reject::Status(400, "bad content-length\n"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(Reject::Status(400, "conflicting content-length\n"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("host") {
            hosts.push(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reject::Status(501, "transfer-encoding not supported\n"));
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue")
        {
            expect_continue = true;
        }
    }
    let len = content_length.unwrap_or(0);
    if len > ctx.options.max_body {
        return Err(Reject::Status(413, "request body too large\n"));
    }
    if method == "POST" && content_length.is_none() {
        return Err(Reject::Status(411, "content-length required\n"));
    }
    if expect_continue && len > 0 && buf.len() - head_end < len {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    while buf.len() - head_end < len {
        read_some(stream, &mut chunk, &mut buf, deadline, ctx)?;
    }
    let body = buf[head_end..head_end + len].to_vec();
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        http10: version == "HTTP/1.0",
        hosts,
        body,
    })
}

fn read_some(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    buf: &mut Vec<u8>,
    deadline: Instant,
    ctx: &Service,
) -> Result<(), Reject> {
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return Err(Reject::Status(503, "shutting down\n"));
        }
        if Instant::now() >= deadline {
            return Err(Reject::Status(408, "request timeout\n"));
        }
        match stream.read(chunk) {
            Ok(0) => return Err(Reject::Gone),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Reject::Gone),
        }
    }
}

/// Whether a `Host` header value names the server bound at `bound` (see the module docs):
/// `localhost`, `127.0.0.1`, `[::1]` or the bound IP, each with or without a port; any IP
/// address when `bound` is unspecified (`0.0.0.0`, `[::]`). DNS names other than `localhost`,
/// malformed values and bare (unbracketed) IPv6 addresses are refused.
pub fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
        || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
        || bound.ip().is_unspecified()
        || ip == bound.ip()
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), brackets
/// removed; `None` when malformed (empty, bad port, unbracketed IPv6).
fn host_name(host: &str) -> Option<&str> {
    let port_ok = |p: &str| p.is_empty() || (p.parse::<u16>().is_ok() && !p.starts_with('+'));
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => "",
            a => a.strip_prefix(':').filter(|p| !p.is_empty())?,
        };
        return (port_ok(port) && inside.parse::<Ipv6Addr>().is_ok()).then_some(inside);
    }
    let (name, port) = match host.split_once(':') {
        Some((n, p)) if !p.is_empty() => (n, p),
        Some(_) => return None,
        None => (host, ""),
    };
    let valid = !name.is_empty()
        && port_ok(port)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    valid.then_some(name)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    respond_then(stream, code, ctype, body, true)
}

/// Writes a whole response, half-closes, and (if `drain`) lingers for the client's input.
fn respond_then(
    stream: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &[u8],
    drain: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if drain {
        linger(stream);
    }
    Ok(())
}

/// Reads and discards what the client still sends (bounded: 64 KiB, 200 ms), so that closing
/// with unread input does not reset the connection before the client reads the response.
fn linger(stream: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(200);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while total < 64 * 1024 && Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check_allows_the_bound_address_and_localhost_only() {
        let bound: SocketAddr = "127.0.0.1:7076".parse().unwrap();
        for ok in [
            "localhost",
            "LocalHost:7076",
            "127.0.0.1",
            "127.0.0.1:7076",
            "127.0.0.1:9999",
            "[::1]",
            "[::1]:7076",
        ] {
            assert!(host_allowed(ok, bound), "{ok}");
        }
        for refused in [
            "",
            "evil.example",
            "evil.example:7076",
            "localhost.evil.example",
            "127.0.0.2:7076",
            "10.0.0.5:7076",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1]:99999",
            "[not-v6]:1",
            "localhost:",
            "localhost:+1",
            "localhost:7076:1",
            "local host",
        ] {
            assert!(!host_allowed(refused, bound), "{refused:?}");
        }
        // a server on another address: that address too, not other IPs
        let v6: SocketAddr = "[::1]:9100".parse().unwrap();
        assert!(host_allowed("[::1]:9100", v6));
        assert!(host_allowed("127.0.0.1:9100", v6));
        let lan: SocketAddr = "192.0.2.7:7076".parse().unwrap();
        assert!(host_allowed("192.0.2.7:7076", lan));
        assert!(!host_allowed("192.0.2.8:7076", lan));
        // bound to all addresses: any IP literal, still no names
        let all: SocketAddr = "0.0.0.0:7076".parse().unwrap();
        assert!(host_allowed("192.0.2.8:7076", all));
        assert!(host_allowed("[2001:db8::1]", all));
        assert!(!host_allowed("node.example:7076", all));
    }
}

//! Forwarding a CRM call to its upstream: a generic HTTP/2 (h2c) proxy that knows gRPC only by
//! its headers, so a new RPC needs no code here. Before forwarding it starts (or continues) the
//! trace, verifies the token, applies the user's rate limit, strips identity metadata the client
//! must not set, and sets the deadline; afterwards it streams the response back, trailers included.

use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use crm_platform::{auth::TokenVerifier, telemetry};
use http::{HeaderMap, HeaderValue, Request, Response, Uri, Version, header};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::{Code, Status, body::Body};
use tracing::{Instrument as _, Span};

use crate::{
    balance::{BalanceError, Balancer, Resolve},
    config::DeadlineSettings,
    deadline,
    rate_limit::RateLimit,
    routing::{GrpcPath, Routes, Upstream},
};

/// An upstream that stopped at the deadline the gateway gave it answers CANCELLED (tonic's
/// server does); within this margin of the deadline, the gateway reports DEADLINE_EXCEEDED.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);
/// Client-sent headers in this namespace would claim an identity; only the token does.
const IDENTITY_PREFIX: &str = "x-crm-";

/// Forwards calls to the upstream of their package. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    /// The replicas of each upstream, by route key.
    balancers: Arc<BTreeMap<String, Arc<Balancer>>>,
    routes: Routes,
    verifier: TokenVerifier,
    rate_limit: RateLimit,
    deadlines: DeadlineSettings,
}

impl Proxy {
    /// A proxy that spreads each upstream's calls over the addresses `resolver` finds for its
    /// host, asking again every `resolve_interval` (see [`crate::balance`]).
    pub fn new(
        routes: Routes,
        verifier: TokenVerifier,
        rate_limit: RateLimit,
        deadlines: DeadlineSettings,
        resolver: Arc<dyn Resolve>,
        resolve_interval: Duration,
    ) -> Self {
        let balancers = routes
            .upstreams()
            .map(|upstream| {
                let balancer = Balancer::new(
                    upstream.host(),
                    upstream.port(),
                    Arc::clone(&resolver),
                    resolve_interval,
                );
                (upstream.name.clone(), balancer)
            })
            .collect();
        Self {
            balancers: Arc::new(balancers),
            routes,
            verifier,
            rate_limit,
            deadlines,
        }
    }

    /// Handles one call to a `crm.*` service; every failure is a gRPC status, never a hang.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        // Deadlines count from arrival: time spent here is the caller's time too.
        let received = Instant::now();
        let path = request.uri().path().to_owned();
        let Some(grpc) = GrpcPath::parse(&path) else {
            return Status::unimplemented(format!("malformed gRPC path {path:?}")).into_http();
        };
        let span = tracing::info_span!(
            "grpc proxy",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %grpc.service,
            rpc.method = %grpc.method,
            enduser.id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            upstream = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::set_parent_from_headers(&span, request.headers());
        let response = self
            .forward(request, grpc, received, span.clone())
            .instrument(span.clone())
            .await;
        if let Some(code) = response
            .headers()
            .get(Status::GRPC_STATUS)
            .and_then(|v| v.to_str().ok())
        {
            // Trailers-only: the call ended here; otherwise the body records its trailers.
            span.record("rpc.grpc.status_code", code);
        }
        response
    }

    async fn forward(
        &self,
        request: Request<Body>,
        grpc: GrpcPath<'_>,
        received: Instant,
        span: Span,
    ) -> Response<Body> {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = match self.verifier.verify_header(header) {
            Ok(caller) => caller,
            Err(err) => {
                tracing::info!(error = %err, "call refused: unauthenticated");
                return Status::from(err).into_http();
            }
        };
        span.record("enduser.id", caller.subject.as_str());
        if let Err(exceeded) = self.rate_limit.check(&caller.subject) {
            tracing::info!(retry_after_ms = %exceeded.retry_after_ms, "call refused: rate limit");
            return Status::resource_exhausted(exceeded.to_string()).into_http();
        }
        let upstream = match self.routes.resolve(grpc) {
            Some(upstream) => upstream,
            None => {
                tracing::info!("call refused: no upstream for the service");
                return Status::unimplemented(format!(
                    "service {} is not served here",
                    grpc.service
                ))
                .into_http();
            }
        };
        span.record("upstream", upstream.name.as_str());

        let timeout = deadline::effective(
            request.headers().get(deadline::GRPC_TIMEOUT),
            &self.deadlines,
        );
        let deadline = received + timeout;
        let request = match upstream_request(request, upstream, deadline, &span) {
            Ok(request) => request,
            Err(status) => return status.into_http(),
        };

        let Some(balancer) = self.balancers.get(&upstream.name) else {
            return Status::internal(format!("no balancer for route {}", upstream.name))
                .into_http();
        };
        match tokio::time::timeout_at(deadline, balancer.send(request)).await {
            Err(_elapsed) => {
                tracing::info!(
                    timeout_ms = %timeout.as_millis(),
                    "deadline exceeded before the upstream answered"
                );
                deadline_exceeded(timeout).into_http()
            }
            Ok(Err(err)) => {
                // The chain names the cause (no address, refused, timed out, reset) for the
                // operator; the caller learns only that the service cannot be reached.
                let err = error_chain(&err);
                tracing::warn!(upstream = %upstream.name, error = %err, "upstream unreachable");
                Status::unavailable(format!("service {} is unavailable", upstream.name)).into_http()
            }
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                cancelled_at_deadline_is_deadline_exceeded(&mut parts.headers, deadline, timeout);
                Response::from_parts(
                    parts,
                    Body::new(UpstreamBody::new(body, deadline, timeout, span)),
                )
            }
        }
    }
}

/// The error and its causes, `: `-separated.
fn error_chain(err: &BalanceError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Rewrites the client's request for the upstream: its address, HTTP/2, no hop-by-hop or
/// identity headers, the remaining deadline and this span's trace context.
fn upstream_request(
    request: Request<Body>,
    upstream: &Upstream,
    deadline: Instant,
    span: &Span,
) -> Result<Request<Body>, Status> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .ok_or_else(|| Status::unimplemented("missing gRPC path"))?;
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| Status::internal(format!("cannot build the upstream URI: {e}")))?;
    // gRPC-Web arrives over HTTP/1.1 too; upstreams speak HTTP/2 only.
    parts.version = Version::HTTP_2;

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    strip_identity(headers);
    // It may count the client's encoding (gRPC-Web text), not what is forwarded.
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let remaining = deadline.saturating_duration_since(Instant::now());
    headers.insert(deadline::GRPC_TIMEOUT, deadline::encode(remaining));
    // Without an OpenTelemetry layer (a bare subscriber) the span has no context: then the
    // client's own trace headers pass through unchanged, so the trace still continues.
    if telemetry::trace_id(span).is_some() {
        telemetry::inject_headers(span, headers);
    }
    Ok(Request::from_parts(parts, Body::new(UnknownLength(body))))
}

/// The client's request body with its size hidden. hyper sends an exact size hint as
/// `content-length` upstream, and tonic-web passes the size of the *encoded* body through for
/// gRPC-Web text (base64) calls, so the upstream would see fewer bytes than announced and reset
/// the stream. gRPC needs no `content-length`.
struct UnknownLength(Body);

impl http_body::Body for UnknownLength {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// Removes the headers that describe one HTTP connection, not the call (RFC 9110 §7.6.1),
/// including any the client listed in `connection`. HTTP/2 forbids them.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// Removes every `x-crm-*` header: services must take the caller's identity from the verified
/// token only, never from metadata a client could forge.
fn strip_identity(headers: &mut HeaderMap) {
    let forged: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(IDENTITY_PREFIX))
        .cloned()
        .collect();
    if !forged.is_empty() {
        tracing::debug!(headers = ?forged, "identity headers from the client removed");
    }
    for name in forged {
        headers.remove(name);
    }
}

fn deadline_exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("deadline of {} ms exceeded", timeout.as_millis()))
}

/// tonic's server answers CANCELLED when the `grpc-timeout` it was given runs out; to the
/// caller that is its deadline being exceeded.
fn cancelled_at_deadline_is_deadline_exceeded(
    headers: &mut HeaderMap,
    deadline: Instant,
    timeout: Duration,
) {
    let cancelled = Status::from_header_map(headers).is_some_and(|s| s.code() == Code::Cancelled);
    if cancelled && Instant::now() + DEADLINE_SLACK >= deadline {
        headers.remove(Status::GRPC_STATUS);
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        let _ = deadline_exceeded(timeout).add_header(headers);
    }
}

/// The upstream's response body, passed through frame by frame (trailers included), ended with
/// DEADLINE_EXCEEDED trailers when the deadline passes mid-stream and with UNAVAILABLE trailers
/// when the upstream connection breaks, so the caller always gets a gRPC status.
struct UpstreamBody {
    /// `None` once finished: dropping the upstream body resets its HTTP/2 stream, which
    /// cancels the call upstream.
    inner: Option<hyper::body::Incoming>,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    span: Span,
}

impl UpstreamBody {
    fn new(inner: hyper::body::Incoming, deadline: Instant, timeout: Duration, span: Span) -> Self {
        Self {
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            span,
        }
    }

    fn end_with(&mut self, status: &Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.inner = None;
        self.span
            .record("rpc.grpc.status_code", i32::from(status.code()));
        let mut trailers = HeaderMap::new();
        let _ = status.add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame
                    .trailers_ref()
                    .and_then(|t| t.get(Status::GRPC_STATUS))
                    .and_then(|v| v.to_str().ok())
                {
                    this.span.record("rpc.grpc.status_code", code);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => {
                this.span
                    .in_scope(|| tracing::warn!(error = ?err, "upstream response broke off"));
                return this.end_with(&Status::unavailable("the service's response broke off"));
            }
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.span
                .in_scope(|| tracing::info!("deadline exceeded while the upstream was answering"));
            return this.end_with(&deadline_exceeded(this.timeout));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |inner| inner.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer t"),
            ("x-crm-subject", "admin"),
            ("x-crm-roles", "admin"),
            ("connection", "keep-alive, x-custom"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("host", "gateway"),
            ("x-request-id", "r1"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        strip_identity(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-request-id"]);
    }

    #[tokio::test]
    async fn an_upstream_cancelled_at_the_deadline_reads_as_deadline_exceeded() {
        let timeout = Duration::from_millis(100);
        let mut headers = HeaderMap::new();
        Status::cancelled("Timeout expired")
            .add_header(&mut headers)
            .unwrap();
        let mut early = headers.clone();
        cancelled_at_deadline_is_deadline_exceeded(&mut early, Instant::now() + timeout, timeout);
        assert_eq!(
            Status::from_header_map(&early).unwrap().code(),
            Code::Cancelled
        );
        cancelled_at_deadline_is_deadline_exceeded(&mut headers, Instant::now(), timeout);
        assert_eq!(
            Status::from_header_map(&headers).unwrap().code(),
            Code::DeadlineExceeded
        );
    }
}

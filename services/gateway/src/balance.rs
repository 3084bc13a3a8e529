//! Client-side load balancing over the replicas of an upstream.
//!
//! gRPC multiplexes every call on one long-lived HTTP/2 connection, so behind a Kubernetes
//! ClusterIP Service (which balances *connections*) all calls would stick to the one pod that
//! connection landed on. Instead the gateway resolves the upstream's host name itself (a
//! headless Service answers with the address of every ready pod), keeps one HTTP/2 connection per
//! address, and spreads calls over them in turn.
//!
//! Resolution is repeated when the answer is older than the resolve interval, and sooner after a
//! connection failure, so pods that come and go are followed: a new address gets a connection on
//! its first call; an address that disappears is dropped, its connection closing once its calls
//! in flight finished. A call goes to the next address when one cannot be connected to, so a pod
//! that went away but is still in the last answer costs no failed call.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::http2::{self, SendRequest},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpStream, time::Instant};
use tonic::body::Body;

/// How long to wait for a TCP connection to an upstream address: a replica that is down is
/// skipped (or the call answered UNAVAILABLE) after at most this, instead of holding the caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on upstream connections, so a vanished replica (pod killed without a FIN) is
/// noticed and its address skipped.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// An address that could not be connected to is tried last for this long.
const FAILED_BACKOFF: Duration = Duration::from_secs(1);
/// Failures ask for a new resolution, but not more often than this: a service that is down must
/// not turn every call into a DNS query.
const MIN_RESOLVE_GAP: Duration = Duration::from_secs(1);

/// A boxed future, so that resolvers can be trait objects.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Finds the addresses of a host: in a cluster, the ready pods behind a headless Service.
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host` with `port`; an empty answer or an error keeps the last one.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, then DNS), which is what a pod's
/// `resolv.conf` points at the cluster's DNS with.
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsResolver;

impl Resolve for DnsResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.collect())
        })
    }
}

/// Why a call could not be handed to any replica.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    /// The host name has no address (yet), e.g. no pod is ready.
    #[error("no address for {host}: {reason}")]
    NoAddress {
        /// The host that was resolved.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// Every address was tried and none took the call.
    #[error("no replica could be reached, last error: {0}")]
    Unreachable(String),
    /// The replica took the call, then the call failed (e.g. the connection broke).
    #[error("the call failed: {0}")]
    Call(#[source] hyper::Error),
}

/// The replicas of one upstream, `host:port`, and one HTTP/2 connection to each.
pub struct Balancer {
    host: String,
    port: u16,
    resolver: Arc<dyn Resolve>,
    resolve_interval: Duration,
    state: Mutex<State>,
    /// Round-robin position: each call starts at the next address.
    next: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Sorted by address; shared with calls in flight.
    endpoints: Arc<Vec<Arc<Endpoint>>>,
    /// When the last resolution ended; `None` before the first.
    resolved_at: Option<Instant>,
    /// A resolution is running (only one at a time).
    resolving: bool,
}

/// One replica's address and the connection to it.
struct Endpoint {
    addr: SocketAddr,
    /// A tokio mutex: callers that find no connection wait for the one connecting, instead of
    /// each opening their own.
    connection: tokio::sync::Mutex<Option<SendRequest<Body>>>,
    /// Until then the address is tried only after every other one.
    failed_until: Mutex<Option<Instant>>,
}

impl Balancer {
    /// A balancer over the addresses of `host` (resolved on the first call, then again when
    /// the answer is older than `resolve_interval`).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        resolver: Arc<dyn Resolve>,
        resolve_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            host: host.into(),
            port,
            resolver,
            resolve_interval,
            state: Mutex::new(State::default()),
            next: AtomicUsize::new(0),
        })
    }

    /// Sends `request` to the next replica that can be connected to.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, BalanceError> {
        let endpoints = self.endpoints().await?;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        // The turn of every address from `start` on, those that failed lately at the end.
        let mut order: Vec<&Arc<Endpoint>> = (0..endpoints.len())
            .map(|i| &endpoints[(start + i) % endpoints.len()])
            .collect();
        order.sort_by_key(|endpoint| endpoint.failed_lately(now));

        let mut request = request;
        let mut last_error = String::from("no address to try");
        for endpoint in order {
            let mut sender = match endpoint.sender().await {
                Ok(sender) => sender,
                Err(err) => {
                    tracing::debug!(addr = %endpoint.addr, error = %err, "cannot connect to a replica");
                    last_error = format!("{}: {err}", endpoint.addr);
                    endpoint.mark_failed();
                    self.resolve_soon();
                    continue;
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut err) => match err.take_message() {
                    // The connection closed before it took the call (e.g. the replica is
                    // shutting down): the call was not sent, so the next replica may take it.
                    Some(unsent) => {
                        last_error = format!("{}: {}", endpoint.addr, err.error());
                        endpoint.forget(&sender).await;
                        request = unsent;
                    }
                    None => return Err(BalanceError::Call(err.into_error())),
                },
            }
        }
        Err(BalanceError::Unreachable(last_error))
    }

    /// The addresses of the last resolution: resolved now when there are none yet, refreshed in
    /// the background when older than the resolve interval.
    async fn endpoints(self: &Arc<Self>) -> Result<Arc<Vec<Arc<Endpoint>>>, BalanceError> {
        let (endpoints, stale) = {
            let state = self.lock_state();
            let stale = state
                .resolved_at
                .is_none_or(|at| at.elapsed() >= self.resolve_interval);
            (Arc::clone(&state.endpoints), stale)
        };
        if endpoints.is_empty() {
            // Nothing to call yet: this call waits for the answer (concurrent ones each ask;
            // that happens only until the host has addresses).
            self.resolve().await?;
            let endpoints = Arc::clone(&self.lock_state().endpoints);
            return Ok(endpoints);
        }
        if stale {
            self.resolve_in_background();
        }
        Ok(endpoints)
    }

    /// Resolves again after a failure, unless a resolution ran within [`MIN_RESOLVE_GAP`].
    fn resolve_soon(self: &Arc<Self>) {
        let recent = self
            .lock_state()
            .resolved_at
            .is_some_and(|at| at.elapsed() < MIN_RESOLVE_GAP);
        if !recent {
            self.resolve_in_background();
        }
    }

    fn resolve_in_background(self: &Arc<Self>) {
        {
            let mut state = self.lock_state();
            if state.resolving {
                return;
            }
            state.resolving = true;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // Errors are logged inside; the last answer stays in use.
            let _ = this.resolve().await;
        });
    }

    /// Asks the resolver and adopts a non-empty answer, keeping the connections of addresses
    /// that are still there.
    async fn resolve(&self) -> Result<(), BalanceError> {
        let answer = self.resolver.resolve(&self.host, self.port).await;
        let mut state = self.lock_state();
        state.resolving = false;
        state.resolved_at = Some(Instant::now());
        let mut addrs = match answer {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) => {
                return self.keep_last_answer(&state, "the answer has no address".into());
            }
            Err(err) => return self.keep_last_answer(&state, err.to_string()),
        };
        addrs.sort_unstable();
        addrs.dedup();
        let old = &state.endpoints;
        let same = old.len() == addrs.len() && old.iter().zip(&addrs).all(|(e, a)| e.addr == *a);
        if same {
            return Ok(());
        }
        let endpoints: Vec<Arc<Endpoint>> = addrs
            .iter()
            .map(|addr| {
                old.iter()
                    .find(|endpoint| endpoint.addr == *addr)
                    .map_or_else(|| Arc::new(Endpoint::new(*addr)), Arc::clone)
            })
            .collect();
        tracing::info!(
            host = %self.host,
            port = self.port,
            addrs = ?addrs,
            "upstream replicas changed"
        );
        state.endpoints = Arc::new(endpoints);
        Ok(())
    }

    fn keep_last_answer(&self, state: &State, reason: String) -> Result<(), BalanceError> {
        if state.endpoints.is_empty() {
            tracing::debug!(host = %self.host, %reason, "upstream has no address");
            Err(BalanceError::NoAddress {
                host: self.host.clone(),
                reason,
            })
        } else {
            tracing::warn!(host = %self.host, %reason, "cannot resolve the upstream again; keeping its last addresses");
            Ok(())
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic elsewhere cannot leave it
        // half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses in use now, sorted: what the last resolution answered.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lock_state().endpoints.iter().map(|e| e.addr).collect()
    }
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connection: tokio::sync::Mutex::new(None),
            failed_until: Mutex::new(None),
        }
    }

    /// The open connection to this replica, or a new one.
    async fn sender(&self) -> io::Result<SendRequest<Body>> {
        let mut connection = self.connection.lock().await;
        if let Some(sender) = connection.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *connection = None;
        let sender = connect(self.addr).await?;
        *connection = Some(sender.clone());
        *self
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(sender)
    }

    /// Drops the connection `sender` belongs to, unless another caller already replaced it.
    async fn forget(&self, sender: &SendRequest<Body>) {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_some_and(SendRequest::is_closed) || sender.is_closed() {
            *connection = None;
        }
    }

    fn mark_failed(&self) {
        *self
            .failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + FAILED_BACKOFF);
    }

    fn failed_lately(&self, now: Instant) -> bool {
        self.failed_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > now)
    }
}

/// Opens an h2c connection to `addr`; its driver runs as a task until the connection closes
/// (every sender dropped and every call done, or the peer went away).
async fn connect(addr: SocketAddr) -> io::Result<SendRequest<Body>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .adaptive_window(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%addr, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Answers whatever the test set, and counts the questions.
    #[derive(Default)]
    struct Answers {
        addrs: Mutex<Vec<SocketAddr>>,
        asked: AtomicU32,
    }

    impl Resolve for Arc<Answers> {
        fn resolve(&self, _host: &str, _port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let addrs = self.addrs.lock().unwrap().clone();
            Box::pin(async move {
                if addrs.is_empty() {
                    Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
                } else {
                    Ok(addrs)
                }
            })
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn a_host_without_address_is_an_error_until_it_has_one() {
        let answers = Arc::new(Answers::default());
        let balancer = Balancer::new("svc", 1, Arc::new(Arc::clone(&answers)), Duration::ZERO);
        let err = balancer.endpoints().await.err().unwrap();
        assert!(matches!(err, BalanceError::NoAddress { .. }), "{err}");

        *answers.addrs.lock().unwrap() = vec![addr("127.0.0.2:1"), addr("127.0.0.1:1")];
        let endpoints = balancer.endpoints().await.unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(balancer.addrs(), [addr("127.0.0.1:1"), addr("127.0.0.2:1")]);
    }

    #[tokio::test]
    async fn a_new_answer_keeps_the_endpoints_still_there_and_a_failed_one_keeps_the_last() {
        let answers = Arc::new(Answers::default());
        *answers.addrs.lock().unwrap() = vec![addr("127.0.0.1:1"), addr("127.0.0.2:1")];
        let balancer = Balancer::new("svc", 1, Arc::new(Arc::clone(&answers)), Duration::ZERO);
        let before = balancer.endpoints().await.unwrap();

        *answers.addrs.lock().unwrap() = vec![addr("127.0.0.2:1"), addr("127.0.0.3:1")];
        balancer.resolve().await.unwrap();
        let after = Arc::clone(&balancer.lock_state().endpoints);
        assert_eq!(balancer.addrs(), [addr("127.0.0.2:1"), addr("127.0.0.3:1")]);
        // The same endpoint (and so the same connection) for the address that stayed.
        assert!(Arc::ptr_eq(&before[1], &after[0]));

        answers.addrs.lock().unwrap().clear();
        balancer.resolve().await.unwrap();
        assert_eq!(balancer.addrs(), [addr("127.0.0.2:1"), addr("127.0.0.3:1")]);
    }

    #[tokio::test]
    async fn a_stale_answer_is_refreshed_in_the_background_and_a_fresh_one_is_not() {
        let answers = Arc::new(Answers::default());
        *answers.addrs.lock().unwrap() = vec![addr("127.0.0.1:1")];
        let balancer = Balancer::new(
            "svc",
            1,
            Arc::new(Arc::clone(&answers)),
            Duration::from_millis(200),
        );
        balancer.endpoints().await.unwrap();
        balancer.endpoints().await.unwrap();
        assert_eq!(
            answers.asked.load(Ordering::SeqCst),
            1,
            "fresh: not asked again"
        );

        *answers.addrs.lock().unwrap() = vec![addr("127.0.0.1:1"), addr("127.0.0.2:1")];
        tokio::time::sleep(Duration::from_millis(250)).await;
        // This call still uses the old answer; the new one arrives for the next calls.
        assert_eq!(balancer.endpoints().await.unwrap().len(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while balancer.addrs().len() != 2 {
            assert!(Instant::now() < deadline, "the new answer never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(answers.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_address_nobody_listens_on_is_unreachable_and_tried_last() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let answers = Arc::new(Answers::default());
        *answers.addrs.lock().unwrap() = vec![closed];
        let balancer = Balancer::new("svc", 1, Arc::new(Arc::clone(&answers)), Duration::ZERO);
        let request = Request::builder()
            .uri(format!("http://svc:{}/crm.x.v1.S/M", closed.port()))
            .body(Body::empty())
            .unwrap();
        let err = balancer.send(request).await.unwrap_err();
        assert!(matches!(err, BalanceError::Unreachable(_)), "{err}");
        let endpoints = balancer.endpoints().await.unwrap();
        assert!(endpoints[0].failed_lately(Instant::now()));
    }
}

//! Running a CRM service: the start-up every service shares, said once, so that a service's
//! `lib.rs` says only what it serves and what it consumes.
//!
//! [`run`] connects the pool, serves health from the start (NOT_SERVING while the migrations
//! run), runs the platform's and the service's migrations, starts the outbox relay, the
//! dependency watcher that reports readiness and the service's consumers and background tasks,
//! serves the gRPC services the service wired up, and on shutdown stops accepting, lets
//! in-flight calls finish, stops the background tasks and closes the pool.
//!
//! [`main`] is the whole `main` of a service binary: settings, telemetry, and the command
//! (`serve`, the default, or `migrate`, which only runs the migrations: the Helm chart's
//! pre-install/pre-upgrade Job, so replicas never race to migrate).

use std::{convert::Infallible, future::Future, pin::Pin};

use sqlx::{PgPool, migrate::Migrator};
use tokio::sync::watch;
use tonic::{body::Body, server::NamedService, service::RoutesBuilder};

use crate::{
    auth::{AuthInterceptor, ServiceCallInterceptor, TokenVerifier},
    clock::Clock,
    db,
    events::{Consumer, EventHandler, Outbox, Relay, RelayWaker},
    redis_conn, server,
    settings::{BaseSettings, SettingsError},
};

/// What a service's own code gets from the platform to build its handlers and consumers.
#[derive(Clone)]
pub struct Context {
    name: &'static str,
    /// The pool bound to the service's schema.
    pub pool: PgPool,
    /// Wakes the relay after a commit that wrote events.
    pub relay: RelayWaker,
    /// The time source (a fixed clock in tests).
    pub clock: Clock,
    verifier: TokenVerifier,
    settings: BaseSettings,
}

impl Context {
    /// The service's name (`opportunities`): producer of its events and its consumer group.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The platform settings the service runs with.
    pub fn settings(&self) -> &BaseSettings {
        &self.settings
    }

    /// The interceptor that verifies the bearer token of every call and names the caller.
    pub fn auth(&self) -> AuthInterceptor {
        AuthInterceptor::new(self.verifier.clone())
    }

    /// The full name of `stream` (`crm.events.opportunities`), with the configured prefix.
    pub fn stream(&self, stream: &str) -> String {
        redis_conn::stream_name(&self.settings.redis, stream)
    }

    /// An outbox for this service's events bound for `stream` (name without prefix).
    pub fn outbox(&self, stream: &str) -> Outbox {
        Outbox::new(self.name, self.stream(stream))
    }

    /// A consumer of `stream` (name without prefix) in this service's consumer group, applying
    /// events with `handler`; hand it to [`Wiring::consume`].
    pub fn consumer<H: EventHandler>(
        &self,
        stream: &str,
        handler: H,
    ) -> anyhow::Result<Consumer<H>> {
        Ok(Consumer::new(
            self.pool.clone(),
            &self.settings.redis,
            self.stream(stream),
            self.name,
            handler,
        )?
        .with_settings(self.settings.consumer.clone()))
    }

    /// The client interceptor for calls from this service to a sibling (service token, trace
    /// context).
    pub fn service_calls(&self) -> ServiceCallInterceptor {
        ServiceCallInterceptor::new(self.name, &self.settings.auth)
    }
}

type Task =
    Box<dyn FnOnce(watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a service serves and what runs beside it: built by the service from its [`Context`].
#[derive(Default)]
pub struct Wiring {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    tasks: Vec<Task>,
}

impl Wiring {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves a gRPC service (normally `XServer::with_interceptor(api, ctx.auth())`); its name
    /// is reported by health and reflection.
    pub fn serve<S, B>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Runs `consumer` once the migrations have run, until shutdown.
    pub fn consume<H: EventHandler>(self, consumer: Consumer<H>) -> Self {
        self.background(move |stop| consumer.run(stop))
    }

    /// Runs `task` once the migrations have run; it must return soon after `stop` turns true.
    pub fn background<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }
}

/// A service: its name and its migrations.
#[derive(Clone, Copy, Debug)]
pub struct ServiceDef {
    /// Its name (`opportunities`): log and telemetry name, event producer, consumer group.
    pub name: &'static str,
    /// Its own migrations (`sqlx::migrate!("./migrations")`).
    pub migrations: &'static Migrator,
}

/// Serves the service `def` on `listener` until `shutdown` completes (see the module doc);
/// `wire` builds its services and consumers from the [`Context`].
pub async fn run(
    def: ServiceDef,
    settings: &BaseSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
    wire: impl FnOnce(&Context) -> anyhow::Result<Wiring>,
) -> anyhow::Result<()> {
    let verifier = TokenVerifier::from_settings(&settings.auth)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let pool = db::connect(&settings.database).await?;
    let relay = Relay::new(pool.clone(), &settings.redis, settings.relay.clone())?;
    let context = Context {
        name: def.name,
        pool: pool.clone(),
        relay: relay.waker(),
        clock,
        verifier,
        settings: settings.clone(),
    };
    let wiring = wire(&context)?;
    let health = server::Health::new(&wiring.names).await;

    // Serve health from the start, so orchestrators see NOT_SERVING while migrations run.
    let serving = tokio::spawn({
        let health = health.clone();
        let stop_tx = stop_tx.clone();
        let routes = wiring.routes.routes();
        let server_settings = settings.server.clone();
        async move {
            let result = server::serve(listener, routes, &health, &server_settings, shutdown).await;
            // However serving ended, stop the background tasks too.
            let _ = stop_tx.send(true);
            result
        }
    });

    let background = async {
        db::migrate(&pool, def.migrations).await?;
        let redis = redis_conn::connect(&settings.redis).await?;
        let mut tasks = vec![
            health.watch_dependencies(pool.clone(), redis, stop_rx.clone()),
            tokio::spawn(relay.run(stop_rx.clone())),
        ];
        for task in wiring.tasks {
            tasks.push(tokio::spawn(task(stop_rx.clone())));
        }
        anyhow::Ok(tasks)
    };
    let tasks = match background.await {
        Ok(tasks) => tasks,
        Err(err) => {
            // Without its schema or Redis the service cannot work: stop serving and say why.
            serving.abort();
            return Err(err.context(format!("{} could not start", def.name)));
        }
    };

    let served = serving.await?;
    let _ = stop_tx.send(true);
    futures::future::join_all(tasks).await;
    pool.close().await;
    served?;
    Ok(())
}

/// Applies the platform's and the service's migrations and returns: the `migrate` command.
pub async fn migrate(def: ServiceDef, settings: &BaseSettings) -> anyhow::Result<()> {
    let pool = db::connect(&settings.database).await?;
    db::migrate(&pool, def.migrations).await?;
    pool.close().await;
    tracing::info!(service = def.name, "migrations applied");
    Ok(())
}

/// What a service binary was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the migrations and exit.
    Migrate,
}

impl Command {
    /// The command named on the command line (`serve` when none); `--config PATH` may come
    /// anywhere. An unknown word is an error naming the commands.
    pub fn from_args() -> Result<Self, String> {
        let mut args = std::env::args().skip(1);
        let mut command = None;
        while let Some(arg) = args.next() {
            if arg == "--config" {
                args.next();
                continue;
            }
            if arg.starts_with("--config=") {
                continue;
            }
            let parsed = match arg.as_str() {
                "serve" => Self::Serve,
                "migrate" => Self::Migrate,
                other => {
                    return Err(format!(
                        "unknown command {other:?}: use `serve` (the default) or `migrate`, \
                         optionally with `--config PATH`"
                    ));
                }
            };
            if command.replace(parsed).is_some() {
                return Err("give one command: `serve` or `migrate`".into());
            }
        }
        Ok(command.unwrap_or(Self::Serve))
    }
}

/// The `main` of a service binary: loads the settings with `load` (a bad value ends the process
/// with status 2 and a message naming the key), starts telemetry, then serves until
/// SIGTERM/SIGINT with `serve`, or runs `migrate`.
pub async fn main<S, F, Fut>(
    def: ServiceDef,
    load: impl FnOnce(Option<&std::path::Path>) -> Result<S, SettingsError>,
    base: impl Fn(&S) -> &BaseSettings,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(S, tokio::net::TcpListener, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let fail = |message: String| -> ! {
        eprintln!("crm-{}: {message}", def.name);
        std::process::exit(2);
    };
    let command = Command::from_args().unwrap_or_else(|message| fail(message));
    let settings = load(crate::settings::config_file_from_args().as_deref())
        .unwrap_or_else(|err| fail(err.to_string()));
    let _telemetry = crate::telemetry::init(def.name, &base(&settings).telemetry)?;
    match command {
        Command::Migrate => migrate(def, base(&settings)).await,
        Command::Serve => {
            let listener =
                tokio::net::TcpListener::bind(base(&settings).server.listen_addr).await?;
            tracing::info!(addr = %listener.local_addr()?, "{} listening", def.name);
            serve(settings, listener, Box::pin(server::shutdown_signal())).await
        }
    }
}

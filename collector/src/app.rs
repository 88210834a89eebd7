//! The collector, assembled once: [`prepare`] checks what can be checked
//! before binding (TLS files, the CA, the database and its schema);
//! [`App::assemble`] builds the shared parts (pools, loader, authenticator,
//! heartbeats, published plans, run requests, admission) that the front
//! doors use;
//! [`run`] starts the background tasks and the gRPC side ([`crate::grpc`]),
//! and shuts down in order: stop accepting, drain calls, stop background
//! work (heartbeats flush once more), close the pools. Takes an
//! already-bound listener so tests can use port 0.

use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::enroll::Enroller;
use crate::heartbeats::Heartbeats;
use crate::tls::RevokedAgents;

use crate::admission::Admission;
use crate::config::CollectorConfig;
use crate::grpc::health;
use crate::identity::Authenticator;
use crate::load::Loader;
use crate::plans::PublishedPlans;
use crate::run_requests::RunRequests;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(
        "the control schema is missing or out of date: run `transmissor-collector migrate` first"
    )]
    NotMigrated,
    #[error("CA: {0}")]
    Ca(#[from] crate::ca::CaError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot read the published plans: {0}")]
    Plans(String),
    #[error("cannot read the pending run requests: {0}")]
    RunRequests(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertsConfigError),
    #[error("cannot start the login hashing threads: {0}")]
    LoginPool(std::io::Error),
}

/// What `prepare` checked and built, ready to serve.
pub struct Prepared {
    pub tls: Arc<rustls::ServerConfig>,
    pub pool: PgPool,
    /// Small pool used only by the per-call identity check.
    pub auth_pool: PgPool,
    /// One connection for the health probe: it asks whether the database
    /// answers, so it must never queue behind loads for a pooled connection
    /// (found by the scale test: a burst of commits made a probe on the
    /// load pool time out and the collector report NOT_SERVING).
    pub health_pool: PgPool,
    pub revoked: Arc<RevokedAgents>,
    pub enroller: Option<Arc<Enroller>>,
}

/// Checks everything that can be checked before binding: TLS files, the CA,
/// the database and its schema.
pub async fn prepare(cfg: &CollectorConfig) -> Result<Prepared, ServeError> {
    tls::install_crypto_provider();
    // A webhook URL that cannot be read stops start-up (not a silent gap).
    cfg.alerts.check_urls()?;
    let revoked = Arc::new(RevokedAgents::default());
    let tls_config = tls::server_config(&cfg.tls, revoked.clone())?;
    let pool = crate::db::connect(&cfg.database).await?;
    let applied: Option<(i64,)> =
        sqlx::query_as("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
    let latest = crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if applied.map(|(v,)| v) != Some(latest) {
        return Err(ServeError::NotMigrated);
    }
    crate::db::ensure_schemas(&pool, &cfg.load.target_schema).await?;
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM transmissor.agents WHERE revoked_at IS NOT NULL")
            .fetch_all(&pool)
            .await
            .map_err(crate::db::DbError::from)?;
    revoked.replace(ids.into_iter().collect());
    let enroller = match &cfg.ca {
        Some(ca) => {
            let loaded = crate::ca::load(&ca.dir)?;
            let own_pool =
                crate::db::connect_sized(&cfg.database, cfg.enrollment.database_connections)
                    .await?;
            Some(Arc::new(Enroller::new(
                own_pool,
                Arc::new(loaded),
                ca,
                &cfg.enrollment,
            )))
        }
        None => None,
    };
    let auth_pool =
        crate::db::connect_sized(&cfg.database, crate::db::AUTH_POOL_CONNECTIONS).await?;
    let health_pool = crate::db::connect_sized(&cfg.database, 1).await?;
    Ok(Prepared {
        tls: tls_config,
        pool,
        auth_pool,
        health_pool,
        revoked,
        enroller,
    })
}

/// The parts both front doors serve from, built once.
pub struct App {
    pub pool: PgPool,
    pub auth_pool: PgPool,
    pub health_pool: PgPool,
    pub revoked: Arc<RevokedAgents>,
    pub enroller: Option<Arc<Enroller>>,
    pub auth: Authenticator,
    pub loader: Loader,
    pub heartbeats: Arc<Heartbeats>,
    pub plans: Arc<PublishedPlans>,
    pub run_requests: Arc<RunRequests>,
    pub admission: Arc<Admission>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The health evaluator's own connections (a stream and a transaction).
    pub monitor_pool: PgPool,
    /// One connection LISTENing for identity changes (the identity cache).
    pub listen_pool: PgPool,
}

impl App {
    /// Builds the shared parts from what [`prepare`] made.
    pub async fn assemble(cfg: &CollectorConfig, prepared: Prepared) -> Result<Self, ServeError> {
        let Prepared {
            tls: _,
            pool,
            auth_pool,
            health_pool,
            revoked,
            enroller,
        } = prepared;
        let plans = PublishedPlans::load(
            pool.clone(),
            cfg.plans.trusted(),
            cfg.plans.allow_local_jobs,
        )
        .await
        .map_err(|e| ServeError::Plans(crate::pg_error::describe(&e)))?;
        let run_requests = RunRequests::load(pool.clone())
            .await
            .map_err(|e| ServeError::RunRequests(crate::pg_error::describe(&e)))?;
        let monitor_pool = crate::db::connect_sized(&cfg.database, 2).await?;
        let listen_pool = crate::db::connect_sized(&cfg.database, 1).await?;
        let identity_cache = Arc::new(crate::identity::IdentityCache::new(
            cfg.limits.identity_cache_ttl,
        ));
        Ok(Self {
            run_requests,
            monitor_pool,
            listen_pool,
            auth: Authenticator::new(auth_pool.clone(), identity_cache),
            loader: Loader::new(pool.clone(), &cfg.load, &cfg.limits),
            heartbeats: Arc::new(Heartbeats::new(cfg.limits.max_heartbeat_runs)),
            admission: Arc::new(Admission::new(&cfg.limits)),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            plans,
            pool,
            auth_pool,
            health_pool,
            revoked,
            enroller,
        })
    }

    /// Starts the background work; it ends with `stop`.
    fn start_background(
        &self,
        cfg: &CollectorConfig,
        stop: &CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let limits = &cfg.limits;
        tasks.spawn(self.revoked.clone().watch(
            self.pool.clone(),
            Duration::from_secs(2),
            stop.clone(),
        ));
        tasks.spawn(self.auth.cache().clone().listen(
            self.listen_pool.clone(),
            stop.clone(),
            || {},
        ));
        tasks.spawn(self.heartbeats.clone().run(
            self.pool.clone(),
            Duration::from_secs(1),
            stop.clone(),
            self.metrics.clone(),
        ));
        tasks.spawn(
            self.plans
                .clone()
                .run(cfg.plans.refresh_every, stop.clone()),
        );
        tasks.spawn(
            self.run_requests
                .clone()
                .run(cfg.plans.refresh_every, stop.clone()),
        );
        {
            let (pool, stop) = (self.pool.clone(), stop.clone());
            let failure_window = cfg.enrollment.failure_window;
            let session_idle = cfg.http.session_idle;
            tasks.spawn(async move {
                loop {
                    if let Err(e) = crate::enroll::audit_expired_tokens(&pool).await {
                        tracing::warn!(error = %e, "cannot audit expired tokens");
                    }
                    if let Err(e) = crate::enroll::prune_attempts(&pool, failure_window).await {
                        tracing::warn!(error = %e, "cannot prune enrollment failure counters");
                    }
                    if let Err(e) = crate::operators::session::prune(&pool, session_idle).await {
                        tracing::warn!(error = %crate::pg_error::describe(&e), "cannot prune expired sessions");
                    }
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                }
            });
        }
        {
            let evaluator = crate::health::Evaluator::new(
                self.monitor_pool.clone(),
                self.plans.clone(),
                cfg.monitor.clone(),
            );
            let metrics = self.metrics.clone();
            let (alerts, notifier) = crate::alerts::Alerts::spawn(cfg.alerts.clone(), stop.clone());
            tasks.spawn(async move {
                if let Err(e) = notifier.await {
                    tracing::warn!(error = %e, "alert notifier ended abnormally");
                }
            });
            let mut counted = crate::health::AlertCounts::default();
            tasks.spawn(evaluator.run(stop.clone(), move |report| {
                crate::health::record_metrics(&metrics, report);
                crate::health::hand_to_alerts(&alerts, report);
                counted.record(&metrics, &alerts.stats());
            }));
        }
        tasks.spawn(self.loader.clone().run_reaper(
            limits.stale_transmission_after,
            limits.reap_every,
            stop.clone(),
        ));
        tasks
    }

    /// Starts the HTTP side when `[http]` asks for it; it stops accepting
    /// with `stop` and drains within `server.drain_timeout`.
    async fn start_http(
        &self,
        cfg: &CollectorConfig,
        stop: &CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, ServeError> {
        use crate::http::{listen, router};
        if cfg.http.listen.is_none() && cfg.http.metrics_listen.is_none() {
            return Ok(Vec::new());
        }
        let web_pool =
            crate::db::connect_sized(&cfg.database, cfg.http.database_connections).await?;
        let state = router::HttpState {
            health_pool: self.health_pool.clone(),
            web_pool,
            session_idle: cfg.http.session_idle,
            session_lifetime: cfg.http.session_lifetime,
            https: !cfg.http.plain,
            logins: Arc::new(
                crate::operators::guard::LoginGuard::new(&cfg.http.login)
                    .map_err(ServeError::LoginPool)?,
            ),
            metrics: self.metrics.clone(),
            ca: if self.enroller.is_some() {
                router::CaState::Loaded
            } else {
                router::CaState::NotConfigured
            },
            tokens: self.enroller.as_ref().zip(cfg.ca.as_ref()).map(|(e, ca)| {
                router::TokenIssuer {
                    pin: e.pin(),
                    ttl: ca.token_ttl,
                }
            }),
            plan_keys: cfg.plans.trusted().map(Arc::new),
            plans: self.plans.clone(),
            run_requests: self.run_requests.clone(),
        };
        let drain = cfg.server.drain_timeout;
        let mut handles = Vec::new();
        if let Some(addr) = cfg.http.listen {
            let tls = if cfg.http.plain {
                None
            } else {
                Some(listen::tls_config(&cfg.tls)?)
            };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Bind(addr, e))?;
            tracing::info!(%addr, tls = tls.is_some(), "http listening (probes, metrics)");
            let r = router::router(state.clone(), cfg.http.metrics_listen.is_none());
            handles.push(tokio::spawn(listen::serve(
                listener,
                tls,
                r,
                stop.clone(),
                drain,
                listen::Admission::new(&cfg.http, self.metrics.connections_refused.clone()),
            )));
        }
        if let Some(addr) = cfg.http.metrics_listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Bind(addr, e))?;
            tracing::info!(%addr, "metrics listening (plain http)");
            let r = router::metrics_router(state);
            handles.push(tokio::spawn(listen::serve(
                listener,
                None,
                r,
                stop.clone(),
                drain,
                listen::Admission::new(&cfg.http, self.metrics.connections_refused.clone()),
            )));
        }
        Ok(handles)
    }

    /// Closes the pools (after the last call and background task).
    async fn close(self) {
        if let Some(e) = &self.enroller {
            e.close().await;
        }
        self.auth_pool.close().await;
        self.listen_pool.close().await;
        self.health_pool.close().await;
        self.pool.close().await;
    }
}

/// Serves until `shutdown` is cancelled, then drains in-flight calls for at
/// most `server.drain_timeout` and closes the pools.
pub async fn run(
    cfg: &CollectorConfig,
    prepared: Prepared,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tls_config = prepared.tls.clone();
    let app = App::assemble(cfg, prepared).await?;
    let background = CancellationToken::new();
    let mut tasks = app.start_background(cfg, &background);
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(health::watch(
        reporter,
        app.health_pool.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));

    // The accept loop stops with `accept_stop`; in-flight calls then drain.
    let accept_stop = CancellationToken::new();
    let grpc = crate::grpc::serve(
        cfg,
        &app,
        tls_config,
        listener,
        health_service,
        accept_stop.clone(),
    );
    let drain = cfg.server.drain_timeout;
    let http = app.start_http(cfg, &accept_stop).await?;
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new connections, draining in-flight calls");
            accept_stop.cancel();
        }
    };
    let result = tokio::select! {
        r = async { tokio::join!(grpc, signal).0 } => r.map_err(ServeError::from),
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(timeout = ?drain, "drain deadline passed; closing remaining calls");
            Ok(())
        }
    };
    let _ = health_task.await;
    for h in http {
        let _ = h.await;
    }
    // Background work stops after the last call has drained (heartbeats flush once more).
    background.cancel();
    while tasks.join_next().await.is_some() {}
    app.close().await;
    tracing::info!("collector stopped");
    result
}

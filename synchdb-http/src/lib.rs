//! The operations API of synchdb pipelines over HTTP: an axum [`Router`]
//! that a service mounts (or [`serve`]s on its own), with
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the web console (one page, assets in the binary) |
//! | `GET /metrics` | Prometheus text ([`install_prometheus`]) |
//! | `GET /api/status` | `{"pipelines": [PipelineStatus, ...]}` |
//! | `POST /api/pause`, `/api/resume`, `/api/stop` | `{"pipeline": "id"}` (optional: all pipelines) |
//! | `POST /api/seek` | `{"position": "mysql-bin.000003:4"}` or `{"gtid": "0-1-1234"}` (while paused) |
//! | `POST /api/resnapshot` | `{"tables": ["db.t"]}` |
//! | `POST /api/tables` | `{"add": ["db.t"]}`: select more tables while running |
//! | `POST /api/verify` | `{"tables": ["db.t"], "chunk_rows": 10000}` (optional): start a verification ([`Api::verifier`]) |
//! | `GET /api/verify` | its state, progress and report |
//!
//! With a token ([`Api::token`]), every `/api` call needs
//! `Authorization: Bearer TOKEN` (compared in constant time; 401 otherwise).
//! Errors are JSON: `{"error": {"kind": "...", "message": "..."}}` with a
//! 4xx status for a bad request and 5xx for a server-side failure.
//!
//! ```no_run
//! # async fn demo(control: synchdb_core::PipelineControl) -> std::io::Result<()> {
//! let metrics = synchdb_http::install_prometheus().ok();
//! let api = synchdb_http::Api::new().pipeline(control).metrics(metrics).token(Some("s3cret".into()));
//! // Mount it in an existing service ...
//! let app = axum::Router::new().nest("/replication", api.clone().router());
//! # let _ = app;
//! // ... or serve it alone.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! synchdb_http::serve(listener, api).await
//! # }
//! ```
#![warn(missing_docs)]

use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use synchdb_core::{Error, ErrorKind, PipelineControl, PipelineStatus};
use synchdb_types::{GtidSet, Position, TableId};

const CONSOLE: &str = include_str!("console.html");

/// Install the process-wide Prometheus recorder of the `metrics` facade
/// (once; later calls return the same handle). Call it before starting
/// pipelines so that no count is missed. Fails when another recorder was
/// installed first.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("synchdb_batch_events".into()),
                    &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0],
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// The API over some pipelines: build it, then take its [`router`](Api::router).
#[derive(Clone, Default)]
pub struct Api {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    pipelines: Vec<PipelineControl>,
    token: Option<String>,
    metrics: Option<PrometheusHandle>,
    verifier: Option<Verifier>,
    verification: std::sync::Mutex<Verification>,
}

/// A verification asked for over HTTP: which tables (none: every selected
/// one) and the chunk size (none: the configured one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The pipeline (optional when there is one).
    pub pipeline: Option<String>,
    /// Source tables, `db.t`.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Rows per compared chunk.
    pub chunk_rows: Option<u64>,
}

/// Runs a verification of a pipeline's replica (see `synchdb_core::verify`):
/// given the pipeline id, the tables and the chunk size.
pub type Verifier = Arc<
    dyn Fn(
            String,
            Vec<TableId>,
            Option<u64>,
        )
            -> futures::future::BoxFuture<'static, synchdb_core::Result<synchdb_core::verify::VerifyReport>>
        + Send
        + Sync,
>;

/// The last verification started over HTTP.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Verification {
    /// `idle`, `running`, `done` or `failed`.
    state: &'static str,
    pipeline: Option<String>,
    tables: Vec<String>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether every table is equal (when done).
    equal: Option<bool>,
    /// The report's text (as `replicate --verify` prints it).
    summary: Option<String>,
    report: Option<synchdb_core::verify::VerifyReport>,
    error: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("pipelines", &self.inner.pipelines.iter().map(|p| p.id().to_string()).collect::<Vec<_>>())
            .field("token", &self.inner.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Api {
    /// An API over no pipeline yet.
    pub fn new() -> Self {
        Api::default()
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configure the Api before cloning it")
    }

    /// Add a pipeline (its [`PipelineHandle::control`](synchdb_core::PipelineHandle::control)).
    pub fn pipeline(mut self, control: PipelineControl) -> Self {
        self.inner_mut().pipelines.push(control);
        self
    }

    /// Require `Authorization: Bearer TOKEN` on `/api` (none: open).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.inner_mut().token = token.filter(|t| !t.is_empty());
        self
    }

    /// Serve `GET /metrics` from this Prometheus handle (none: 404).
    pub fn metrics(mut self, handle: Option<PrometheusHandle>) -> Self {
        self.inner_mut().metrics = handle;
        self
    }

    /// Serve `POST /api/verify` and `GET /api/verify` with this function
    /// (none: 404). `replicate --http` composes it from its source, sink and
    /// mapping.
    pub fn verifier(mut self, verifier: Option<Verifier>) -> Self {
        self.inner_mut().verifier = verifier;
        self
    }

    /// The router (state included): mount it or serve it.
    pub fn router(self) -> Router {
        let api = Router::new()
            .route("/status", get(status))
            .route("/pause", post(pause))
            .route("/resume", post(resume))
            .route("/stop", post(stop))
            .route("/seek", post(seek))
            .route("/resnapshot", post(resnapshot))
            .route("/tables", post(tables))
            .route("/verify", post(start_verify).get(verify_state))
            .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
            .route_layer(middleware::from_fn_with_state(self.clone(), auth));
        Router::new()
            .route("/", get(|| async { Html(CONSOLE) }))
            .route("/metrics", get(metrics))
            .nest("/api", api)
            .with_state(self)
    }

    fn find(&self, id: Option<&str>) -> Result<Vec<PipelineControl>, ApiError> {
        let all = &self.inner.pipelines;
        match id {
            None => Ok(all.clone()),
            Some(id) => match all.iter().find(|p| p.id() == id) {
                Some(p) => Ok(vec![p.clone()]),
                None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no pipeline {id:?}"))),
            },
        }
    }

    /// The one pipeline a request is about: named, or the only one.
    fn one(&self, id: Option<&str>) -> Result<PipelineControl, ApiError> {
        let mut found = self.find(id)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no pipeline")),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "request",
                "several pipelines run here: name one with \"pipeline\"",
            )),
        }
    }
}

/// Serve the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, api: Api) -> std::io::Result<()> {
    axum::serve(listener, api.router()).await
}

/// An error answer: `{"error": {"kind", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError { status, kind: kind.to_string(), message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match e.kind() {
            ErrorKind::Request
            | ErrorKind::Config
            | ErrorKind::SourcePositionLost
            | ErrorKind::SourceDiverged => StatusCode::BAD_REQUEST,
            ErrorKind::SourcePrivilege => StatusCode::FORBIDDEN,
            ErrorKind::SourceConnection | ErrorKind::SinkConnection => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, kind: e.kind().label(), message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "kind": self.kind, "message": self.message } }));
        (self.status, body).into_response()
    }
}

async fn auth(State(api): State<Api>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(token) = &api.inner.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        let ok: bool = given.as_bytes().ct_eq(token.as_bytes()).into();
        if !ok {
            let mut r =
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")
                    .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(request).await
}

async fn metrics(State(api): State<Api>) -> Response {
    match &api.inner.metrics {
        Some(h) => {
            // Gauges are current to the second; refresh them for this scrape.
            for p in &api.inner.pipelines {
                p.publish_metrics();
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response()
        }
        None => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no metrics recorder installed").into_response()
        }
    }
}

fn statuses(pipelines: &[PipelineControl]) -> Json<serde_json::Value> {
    let all: Vec<PipelineStatus> = pipelines.iter().map(PipelineControl::status).collect();
    Json(json!({ "pipelines": all }))
}

async fn status(State(api): State<Api>) -> Json<serde_json::Value> {
    statuses(&api.inner.pipelines)
}

/// The body of pause, resume and stop: which pipeline (none: all).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    pipeline: Option<String>,
}

/// An optional JSON body: empty means the default.
fn body<T: Default + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "request", format!("bad JSON body: {e}")))
}

async fn pause(
    State(api): State<Api>,
    bytes: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t: Target = body(&bytes)?;
    let ps = api.find(t.pipeline.as_deref())?;
    for p in &ps {
        p.pause();
    }
    Ok(statuses(&ps))
}

async fn resume(
    State(api): State<Api>,
    bytes: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t: Target = body(&bytes)?;
    let ps = api.find(t.pipeline.as_deref())?;
    for p in &ps {
        p.resume();
    }
    Ok(statuses(&ps))
}

async fn stop(State(api): State<Api>, bytes: axum::body::Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let t: Target = body(&bytes)?;
    let ps = api.find(t.pipeline.as_deref())?;
    for p in &ps {
        p.shutdown();
    }
    Ok(statuses(&ps))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    pipeline: Option<String>,
    position: Option<String>,
    gtid: Option<String>,
}

async fn seek(State(api): State<Api>, bytes: axum::body::Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let b: SeekBody = body(&bytes)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "request", m);
    let position = match (&b.position, &b.gtid) {
        (Some(p), None) => p.parse::<Position>().map_err(|e| bad(format!("bad position {p:?}: {e}")))?,
        (None, Some(g)) => {
            let set: GtidSet = g.parse().map_err(|e| bad(format!("bad GTID position {g:?}: {e}")))?;
            Position { binlog: synchdb_types::BinlogPosition::new("", 0), gtid: Some(set) }
        }
        _ => return Err(bad("give either \"position\" (file:offset) or \"gtid\"".into())),
    };
    let p = api.one(b.pipeline.as_deref())?;
    let at = p.seek(position).await?;
    Ok(Json(json!({ "pipeline": p.id(), "position": at.to_string() })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResnapshotBody {
    pipeline: Option<String>,
    #[serde(default)]
    tables: Vec<String>,
}

async fn resnapshot(
    State(api): State<Api>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: ResnapshotBody = body(&bytes)?;
    let tables = table_ids(&b.tables)?;
    let p = api.one(b.pipeline.as_deref())?;
    let started = p.resnapshot(tables).await?;
    let code = if started { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((code, Json(json!({ "pipeline": p.id(), "started": started }))))
}

fn table_ids(names: &[String]) -> Result<Vec<TableId>, ApiError> {
    names
        .iter()
        .map(|t| match t.split_once('.') {
            Some((db, name)) if !db.is_empty() && !name.is_empty() => Ok(TableId::new(db, name)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "request",
                format!("table {t:?} is not database.table"),
            )),
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TablesBody {
    pipeline: Option<String>,
    #[serde(default)]
    add: Vec<String>,
}

async fn tables(
    State(api): State<Api>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: TablesBody = body(&bytes)?;
    let tables = table_ids(&b.add)?;
    let p = api.one(b.pipeline.as_deref())?;
    match p.add_tables(tables).await? {
        Some(added) => {
            let added: Vec<String> = added.iter().map(ToString::to_string).collect();
            Ok((StatusCode::OK, Json(json!({ "pipeline": p.id(), "added": added, "started": true }))))
        }
        None => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "pipeline": p.id(), "added": [], "started": false }))))
        }
    }
}

async fn start_verify(
    State(api): State<Api>,
    bytes: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(verifier) = api.inner.verifier.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "verification is not offered here"));
    };
    let b: VerifyRequest = body(&bytes)?;
    let tables = table_ids(&b.tables)?;
    let p = api.one(b.pipeline.as_deref())?;
    {
        let mut v = api.inner.verification.lock().expect("verification poisoned");
        if v.state == "running" {
            return Err(ApiError::new(StatusCode::CONFLICT, "request", "a verification is running"));
        }
        *v = Verification {
            state: "running",
            pipeline: Some(p.id().to_string()),
            tables: b.tables.clone(),
            started_at: Some(chrono::Utc::now()),
            ..Default::default()
        };
    }
    let inner = api.inner.clone();
    let id = p.id().to_string();
    tokio::spawn(async move {
        let r = verifier(id, tables, b.chunk_rows).await;
        let mut v = inner.verification.lock().expect("verification poisoned");
        v.finished_at = Some(chrono::Utc::now());
        match r {
            Ok(report) => {
                v.state = "done";
                v.equal = Some(report.all_equal());
                v.summary = Some(report.to_string());
                v.report = Some(report);
            }
            Err(e) => {
                v.state = "failed";
                v.error = Some(e.to_string());
            }
        }
    });
    let v = api.inner.verification.lock().expect("verification poisoned").clone();
    Ok((StatusCode::ACCEPTED, Json(json!(v))))
}

async fn verify_state(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    if api.inner.verifier.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "verification is not offered here"));
    }
    let mut v = api.inner.verification.lock().expect("verification poisoned").clone();
    if v.state.is_empty() {
        v.state = "idle";
    }
    Ok(Json(json!(v)))
}

//! `replicate`: replicate MySQL/MariaDB databases into PostgreSQL.
//!
//! ```text
//! cargo run --release --example replicate -- \
//!   --source mysql://USER:PASS@HOST:PORT --databases DB1[,DB2] [--tables 'DB1.t*,!DB1.tmp_*'] \
//!   --target postgres://USER@HOST:PORT/DBNAME \
//!   [--pipeline-id NAME] [--snapshot initial|initial_only|no_data|never|always] \
//!   [--until-caught-up] [--error-policy exit|retry|skip] [--mapping FILE.toml|FILE.json] [--explain]
//!   [--http 127.0.0.1:8080 [--http-token TOKEN]]
//! replicate --status --target postgres://... [--pipeline-id NAME]
//!
//! # Scale out over NATS JetStream
//! replicate --source mysql://... --databases DB1 --target nats://HOST:PORT/STREAM   # publish
//! replicate --source nats://HOST:PORT/STREAM --databases DB1 [--tables ...] \
//!   --target postgres://... --pipeline-id APPLIER                               # apply
//!   [--nats-prefix P] [--nats-replicas N] [--nats-creds FILE] [--nats-tls-ca FILE]
//!   [--nats-tls-cert FILE --nats-tls-key FILE] [--nats-format native|debezium]
//! ```
//!
//! Each MySQL database `DB` lands in the PostgreSQL schema `DB`, unless a
//! mapping file (`--mapping`, see the README) renames, filters or masks it;
//! `--explain` prints what each source table and column maps to and exits. The
//! checkpoint lives in the target's `synchdb` schema under the pipeline id,
//! so running the same command again continues where the last run stopped.
//! This file is also the reference for embedding synchdb in a program.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use synchdb::core::mapping::{Mapping, MappingRules};
use synchdb::core::{
    retry_transient, Converter, ErrorPolicy, Pipeline, PipelineHandle, RetryPolicy, StatsSnapshot,
};
use synchdb::mysql::{MySqlSource, MySqlSourceOptions, SnapshotMode};
use synchdb::postgres::{pg_type_for, PgSink, PgSinkOptions};

#[derive(Debug, Parser)]
#[command(name = "replicate", about = "Replicate MySQL/MariaDB into PostgreSQL")]
struct Args {
    /// Source URL, mysql://USER:PASS@HOST:PORT. Failover servers of the same
    /// topology: repeat --source, or list them (`mysql://U:P@db1:3306,db2:3306`);
    /// the first that answers is used, the others when it fails (GTID).
    #[arg(long, env = "SYNCHDB_SOURCE_URL", hide_env_values = true, required_unless_present = "status")]
    source: Vec<String>,
    /// Databases to replicate, comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present = "status")]
    databases: Vec<String>,
    /// Table patterns, comma-separated: `db.t*` includes, `!db.tmp_*` excludes.
    #[arg(long)]
    tables: Option<String>,
    /// Target URL, postgres://USER@HOST:PORT/DBNAME
    #[arg(long, env = "SYNCHDB_TARGET_URL", hide_env_values = true)]
    target: String,
    /// Names the stored checkpoint; pipelines with different ids run side by side.
    #[arg(long, default_value = "synchdb")]
    pipeline_id: String,
    /// Snapshot mode: initial, initial_only, no_data, never, always.
    #[arg(long, default_value = "initial")]
    snapshot: SnapshotMode,
    /// Follow the binlog until the position the source had at start, then exit.
    #[arg(long)]
    until_caught_up: bool,
    /// What a failed batch does: exit, retry or skip.
    #[arg(long, default_value = "exit")]
    error_policy: ErrorPolicy,
    /// Largest batch of change events applied in one PostgreSQL transaction.
    #[arg(long, default_value_t = synchdb::core::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Snapshot reader and writer parallelism (default: the number of cores).
    #[arg(long)]
    snapshot_workers: Option<usize>,
    /// Rows per snapshot chunk (large tables are read in primary-key ranges of this size).
    #[arg(long)]
    chunk_rows: Option<u64>,
    /// Binlog client server id (default: derived from the pipeline id).
    #[arg(long)]
    server_id: Option<u32>,
    /// Seconds between heartbeats that move the checkpoint when nothing selected changes.
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    /// PostgreSQL connection pool size.
    #[arg(long, default_value_t = 8)]
    pool_size: u32,
    /// A statement that changes rows without row events (partition DDL, statement-based DML):
    /// resync (copy the table again while the others follow) or stop.
    #[arg(long, default_value = "resync")]
    unlogged_changes: synchdb::mysql::UnloggedChanges,
    /// NUL (0x00) characters in text, which PostgreSQL cannot store: error, strip or replace (U+FFFD).
    #[arg(long, default_value = "error")]
    text_nul: synchdb::types::TextNul,
    /// Format of the snapshot's COPY: binary (PostgreSQL stores bytes without parsing
    /// text; tables with type overrides or SQL transforms still go as text) or text.
    #[arg(long, default_value = "binary")]
    copy_format: synchdb::postgres::CopyFormat,
    /// Do not give tables without a primary or unique key an index of their own
    /// on the replica (`<table>_synchdb_match`, over one bounded column), through
    /// which updates and deletes find their rows instead of reading the table.
    #[arg(long)]
    no_keyless_index: bool,
    /// PostgreSQL sessions a batch of row changes is applied by. Above 1, a
    /// batch of 256 or more row events without DDL is split over them (tables
    /// joined by foreign keys together, other tables' rows by key) and
    /// committed by two-phase commit with the checkpoint: exactly once, but a
    /// reader may see a batch's parts commit a moment apart. Needs
    /// max_prepared_transactions ≥ N on PostgreSQL and --pool-size > N
    #[arg(long, default_value_t = 1)]
    apply_workers: u32,
    /// Mapping rules (renames, exclusions, types, transforms, masks, filters): a .toml or .json file.
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Print, for each source table and column, the destination name and type and the
    /// transforms applied; then exit without replicating.
    #[arg(long)]
    explain: bool,
    /// Verify the replica instead of replicating: compare every selected table
    /// (through the mapping) between source and target while the pipeline keeps
    /// following; exit 0 only when all are equal (1 when some differ).
    #[arg(long)]
    verify: bool,
    /// With --verify: only these source tables (`db.t`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    verify_tables: Vec<String>,
    /// With --verify: rows per compared chunk (default: the snapshot's chunk size).
    #[arg(long)]
    verify_chunk_rows: Option<u64>,
    /// With --verify: chunks compared at once.
    #[arg(long, default_value_t = 2)]
    verify_parallelism: usize,
    /// With --verify: at most this many source rows read per second.
    #[arg(long)]
    verify_rate: Option<u64>,
    /// With --verify: how many times a differing chunk is read again (at later
    /// positions) before its differences are reported.
    #[arg(long, default_value_t = 3)]
    verify_rechecks: u32,
    /// With --verify: how long to wait for the target to reach a chunk's source
    /// position, in seconds (the pipeline must be running, or caught up).
    #[arg(long, default_value_t = 120)]
    verify_timeout: u64,
    /// With --verify: write the differing chunks of keyed tables again from the
    /// source (the pipeline is held at its checkpoint meanwhile and then applies
    /// the changes after it again), then verify those tables again.
    #[arg(long, requires = "verify")]
    repair: bool,
    /// Serve the operations API, Prometheus metrics (/metrics) and the web
    /// console (/) on this address (`HOST:PORT`, or a port on 127.0.0.1).
    #[arg(long)]
    http: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every /api call.
    #[arg(long, env = "SYNCHDB_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// NATS subject prefix (`<prefix>.<database>.<table>`), default `synchdb`.
    #[arg(long)]
    nats_prefix: Option<String>,
    /// Replicas of the JetStream stream when the publisher creates it.
    #[arg(long)]
    nats_replicas: Option<usize>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long)]
    nats_creds: Option<PathBuf>,
    /// Root certificate (PEM) for a TLS connection to NATS (requires TLS).
    #[arg(long)]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with NATS.
    #[arg(long, requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS with NATS.
    #[arg(long, requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Message format of a publisher: native (what appliers read) or debezium (JSON envelope).
    #[arg(long)]
    nats_format: Option<synchdb::nats::Format>,
    /// Retention of the stream by age when the publisher creates it (`7d`, `12h`).
    #[arg(long)]
    nats_max_age: Option<String>,
    /// Retention of the stream by size when the publisher creates it (`10GB`).
    #[arg(long)]
    nats_max_bytes: Option<String>,
    /// Print the status the pipeline stored on the target (phase, positions,
    /// lag, counters, per-table counters) as JSON, without the source; exit.
    #[arg(long)]
    status: bool,
}

fn main() -> ExitCode {
    // mysql_async keeps up to 128 packet buffers for reuse, each up to 4 MiB:
    // after a snapshot of wide rows (large BLOBs) that is hundreds of MB held
    // for nothing. Returned buffers are cut to 256 KiB unless the user says
    // otherwise (set before any thread starts).
    if std::env::var_os("MYSQL_ASYNC_BUFFER_SIZE_CAP").is_none() {
        std::env::set_var("MYSQL_ASYNC_BUFFER_SIZE_CAP", "262144");
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run_main()),
        Err(e) => {
            eprintln!("replicate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNCHDB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,synchdb=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let args = Args::parse();
    if args.status {
        return match status(&args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("replicate: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.verify {
        return match verify(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("replicate: {e}");
                ExitCode::from(2)
            }
        };
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replicate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--status`: the status stored on the target; `false` for an unknown pipeline.
async fn status(args: &Args) -> synchdb::core::Result<bool> {
    if is_nats(&args.target) {
        return publisher_status(args).await;
    }
    let target: PgSinkOptions = args.target.parse::<PgSinkOptions>()?;
    let sink = PgSink::connect(target.pool_size(1)).await?;
    match sink.stored_status(&args.pipeline_id).await? {
        Some(s) => {
            let text = serde_json::to_string_pretty(&s)
                .map_err(|e| synchdb::core::Error::internal("status to JSON").with_source(e))?;
            println!("{text}");
            Ok(true)
        }
        None => {
            eprintln!("replicate: no pipeline {:?} on this target", args.pipeline_id);
            Ok(false)
        }
    }
}

/// `--status --target nats://...`: what a publisher has left in the stream.
async fn publisher_status(args: &Args) -> synchdb::core::Result<bool> {
    use synchdb::core::SnapshotStatus;
    let sink = synchdb::nats::JetStreamSink::connect_existing(nats_options(args, &args.target)?).await?;
    let stream = sink.stream_state().await?;
    let Some(state) = sink.stored_state(&args.pipeline_id).await? else {
        eprintln!("replicate: no publisher {:?} in stream {}", args.pipeline_id, stream.stream);
        return Ok(false);
    };
    let snapshot = match &state.snapshot {
        SnapshotStatus::NotStarted => "not started".to_string(),
        SnapshotStatus::InProgress(p) => {
            format!("in progress: {} of {} chunks", p.done.len(), p.plan.chunks.len())
        }
        SnapshotStatus::Done => "done".to_string(),
        other => format!("{other:?}"),
    };
    let json = serde_json::json!({
        "pipeline": args.pipeline_id,
        "stream": stream,
        "position": state.position.as_ref().map(ToString::to_string),
        "snapshot": snapshot,
        "resync": state.resync.as_ref().map(|r| r.tables.iter().map(|t| t.id.to_string()).collect::<Vec<_>>()),
        "tables": state.schemas.len(),
    });
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| synchdb::core::Error::internal("status to JSON").with_source(e))?;
    println!("{text}");
    Ok(true)
}

/// The address of `--http`: `HOST:PORT`, or a port alone on the loopback.
fn http_address(spec: &str) -> synchdb::core::Result<std::net::SocketAddr> {
    let spec = spec.trim();
    let full =
        if spec.chars().all(|c| c.is_ascii_digit()) { format!("127.0.0.1:{spec}") } else { spec.to_string() };
    full.parse().map_err(|e| synchdb::core::Error::config(format!("--http {spec:?}: not HOST:PORT ({e})")))
}

/// Serve the operations API for `handle` in the background (with
/// verification of the replica from `POST /api/verify`).
async fn serve_http(
    args: &Args,
    handle: &PipelineHandle,
    verifier: Option<synchdb::http::Verifier>,
) -> synchdb::core::Result<()> {
    let Some(spec) = &args.http else { return Ok(()) };
    let addr = http_address(spec)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| synchdb::core::Error::config(format!("--http: cannot listen on {addr}: {e}")))?;
    let token = args.http_token.clone().filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the operations API listens beyond the loopback without a token (--http-token)");
    }
    let metrics = match synchdb::http::install_prometheus() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "no Prometheus metrics");
            None
        }
    };
    let api =
        synchdb::http::Api::new().pipeline(handle.control()).metrics(metrics).token(token).verifier(verifier);
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("http: operations API and console on http://{local}/");
    tokio::spawn(async move {
        if let Err(e) = synchdb::http::serve(listener, api).await {
            tracing::error!(error = %e, "the operations API stopped");
        }
    });
    Ok(())
}

fn source_options(args: &Args) -> synchdb::core::Result<MySqlSourceOptions> {
    let mut options: MySqlSourceOptions = args.source.join(",").parse()?;
    let patterns: Vec<&str> =
        args.tables.as_deref().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let has_includes = patterns.iter().any(|p| !p.starts_with('!'));
    if has_includes {
        for p in &patterns {
            let database = p.trim_start_matches('!').split('.').next().unwrap_or_default();
            if !args.databases.iter().any(|d| d == database) {
                return Err(synchdb::core::Error::config(format!(
                    "table pattern {p:?} names a database not in --databases"
                )));
            }
        }
    } else {
        for d in &args.databases {
            options = options.database(d);
        }
    }
    if !patterns.is_empty() {
        options = options.tables(&patterns.join(","));
    }
    options = options
        .snapshot_mode(args.snapshot)
        .stop_at_caught_up(args.until_caught_up)
        .unlogged_changes(args.unlogged_changes);
    if let Some(id) = args.server_id {
        // Otherwise the library derives it from the pipeline id.
        options = options.server_id(id);
    }
    if let Some(n) = args.snapshot_workers {
        options = options.snapshot_workers(n);
    }
    if let Some(n) = args.chunk_rows {
        options = options.chunk_rows(n);
    }
    if let Some(s) = args.heartbeat_secs {
        options = options.heartbeat_interval(Duration::from_secs(s.max(1)));
    }
    options.validate()?;
    Ok(options)
}

/// Print the mapping of every selected source table (`--explain`).
fn explain(
    mapping: &Mapping,
    tables: &[synchdb::types::TableSchema],
    target: &PgSinkOptions,
) -> synchdb::core::Result<()> {
    for mut view in mapping.explain(tables)? {
        view.resolve_types(|table, column| pg_type_for(table, column, target))?;
        println!("{view}");
    }
    Ok(())
}

fn is_nats(url: &str) -> bool {
    url.starts_with("nats://") || url.starts_with("tls://")
}

/// The JetStream options of a `nats://` URL and the `--nats-*` flags.
fn nats_options(args: &Args, url: &str) -> synchdb::core::Result<synchdb::nats::JetStreamOptions> {
    let mut o: synchdb::nats::JetStreamOptions = url.parse()?;
    if let Some(p) = &args.nats_prefix {
        o = o.prefix(p.clone());
    }
    if let Some(n) = args.nats_replicas {
        o = o.replicas(n);
    }
    if let Some(f) = &args.nats_creds {
        o = o.creds_file(f.clone());
    }
    if let Some(ca) = &args.nats_tls_ca {
        o = o.tls(Some(ca.clone()));
    }
    if let (Some(cert), Some(key)) = (&args.nats_tls_cert, &args.nats_tls_key) {
        o.tls_client = Some((cert.clone(), key.clone()));
        o.tls_required = true;
    }
    if let Some(f) = args.nats_format {
        o = o.format(f);
    }
    // The same spellings as the URL's settings.
    if let Some(a) = &args.nats_max_age {
        o.set("max_age", a)?;
    }
    if let Some(b) = &args.nats_max_bytes {
        o.set("max_bytes", b)?;
    }
    o.validate()?;
    Ok(o)
}

async fn run(args: Args) -> synchdb::core::Result<()> {
    let nats_source = args.source.len() == 1 && is_nats(&args.source[0]);
    if nats_source && is_nats(&args.target) {
        return Err(synchdb::core::Error::config("--source and --target cannot both be NATS streams"));
    }
    if nats_source {
        return apply_stream(args).await;
    }
    if is_nats(&args.target) {
        return publish(args).await;
    }
    let options = source_options(&args)?;
    let target: PgSinkOptions = target_options(&args)?;
    let mapping = match &args.mapping {
        Some(path) => Some(Arc::new(Mapping::new(MappingRules::load(path)?)?)),
        None => None,
    };
    // Servers that are down or restarting at start are waited for (a log line per attempt).
    let startup = RetryPolicy::forever();
    if args.explain {
        let discovered =
            retry_transient(&startup, "reading the source schema", || MySqlSource::discover(&options))
                .await?;
        let none = Mapping::new(MappingRules::new())?;
        let m = mapping.as_deref().unwrap_or(&none);
        m.validate(&discovered)?;
        return explain(m, &discovered, &target);
    }
    if args.http.is_some() {
        // Before any count is recorded.
        let _ = synchdb::http::install_prometheus();
    }
    let target = target.pool_size(args.pool_size);
    let sink =
        retry_transient(&startup, "connecting to PostgreSQL", || PgSink::connect(target.clone())).await?;
    // The pipeline checks the mapping against the source's tables and the
    // target before any data moves.
    let verifier = http_verifier(&args, &options, &sink, mapping.clone());
    let mut builder = Pipeline::builder()
        .id(args.pipeline_id.clone())
        .source(MySqlSource::new(options))
        .sink(sink)
        .batch_size(args.batch_size)
        .error_policy(args.error_policy.clone());
    if let Some(m) = mapping {
        builder = builder.converter_arc(m);
    }
    if let Some(n) = args.snapshot_workers {
        builder = builder.snapshot_parallelism(n);
    }
    let handle = builder.build()?.start();
    if let Err(e) = serve_http(&args, &handle, Some(verifier)).await {
        let _ = handle.stop().await;
        return Err(e);
    }
    let started = Instant::now();
    let stats = drive(handle).await?;
    let secs = started.elapsed().as_secs_f64();
    println!("{}", summary(&stats, secs));
    Ok(())
}

fn load_mapping(args: &Args) -> synchdb::core::Result<Option<Arc<Mapping>>> {
    match &args.mapping {
        Some(path) => Ok(Some(Arc::new(Mapping::new(MappingRules::load(path)?)?))),
        None => Ok(None),
    }
}

/// Run `source` into `sink` with the pipeline flags to the end (HTTP API,
/// progress, summary).
async fn run_pipeline(
    args: &Args,
    source: impl synchdb::core::Source + 'static,
    sink: impl synchdb::core::Sink + 'static,
) -> synchdb::core::Result<()> {
    if args.http.is_some() {
        let _ = synchdb::http::install_prometheus();
    }
    let mut builder = Pipeline::builder()
        .id(args.pipeline_id.clone())
        .source(source)
        .sink(sink)
        .batch_size(args.batch_size)
        .error_policy(args.error_policy.clone());
    if let Some(m) = load_mapping(args)? {
        builder = builder.converter_arc(m);
    }
    if let Some(n) = args.snapshot_workers {
        builder = builder.snapshot_parallelism(n);
    }
    let handle = builder.build()?.start();
    if let Err(e) = serve_http(args, &handle, None).await {
        let _ = handle.stop().await;
        return Err(e);
    }
    let started = Instant::now();
    let stats = drive(handle).await?;
    println!("{}", summary(&stats, started.elapsed().as_secs_f64()));
    Ok(())
}

/// `--target nats://...`: publish the selected tables' snapshot and changes to a stream.
async fn publish(args: Args) -> synchdb::core::Result<()> {
    if args.explain || args.verify {
        return Err(synchdb::core::Error::config(
            "--explain and --verify need a PostgreSQL target; run them on an applier",
        ));
    }
    let options = source_options(&args)?;
    let target = nats_options(&args, &args.target)?;
    let startup = RetryPolicy::forever();
    let sink = retry_transient(&startup, "connecting to NATS", || {
        synchdb::nats::JetStreamSink::connect(target.clone())
    })
    .await?;
    run_pipeline(&args, MySqlSource::new(options), sink).await
}

/// `--source nats://...`: apply the tables this applier owns of a stream into PostgreSQL.
async fn apply_stream(args: Args) -> synchdb::core::Result<()> {
    if args.explain || args.verify {
        return Err(synchdb::core::Error::config("--explain and --verify need a MySQL source"));
    }
    let stream = nats_options(&args, &args.source[0])?;
    let mut selection = synchdb::nats::TableSelection::all();
    let patterns = args.tables.as_deref().unwrap_or("");
    if patterns.split(',').any(|p| !p.trim().is_empty() && !p.trim().starts_with('!')) {
        selection = selection.tables(patterns)?;
    } else {
        for d in &args.databases {
            selection = selection.database(d.clone());
        }
        selection = selection.tables(patterns)?;
    }
    let source = synchdb::nats::JetStreamSource::new(stream)
        .selection(selection)
        .stop_at_caught_up(args.until_caught_up);
    let target: PgSinkOptions = target_options(&args)?.pool_size(args.pool_size);
    let startup = RetryPolicy::forever();
    let sink =
        retry_transient(&startup, "connecting to PostgreSQL", || PgSink::connect(target.clone())).await?;
    run_pipeline(&args, source, sink).await
}

/// The verification of `POST /api/verify`: the `--verify-*` settings, the
/// pipeline's source, sink and mapping.
fn http_verifier(
    args: &Args,
    options: &MySqlSourceOptions,
    sink: &PgSink,
    mapping: Option<Arc<Mapping>>,
) -> synchdb::http::Verifier {
    use synchdb::core::verify::{VerifyOptions, VerifyTarget};
    let base = verify_options(args, Vec::new());
    let source = Arc::new(MySqlSource::new(options.clone()));
    let target: Arc<dyn VerifyTarget> = Arc::new(sink.clone());
    let converters: Vec<Arc<dyn Converter>> = mapping.into_iter().map(|m| m as Arc<dyn Converter>).collect();
    Arc::new(move |pipeline: String, tables, chunk_rows| {
        let opts = VerifyOptions { tables, chunk_rows: chunk_rows.or(base.chunk_rows), ..base.clone() };
        let (source, target, converters) = (source.clone(), target.clone(), converters.clone());
        Box::pin(async move {
            synchdb::core::verify::verify(&*source, target, &converters, &pipeline, &opts).await
        })
    })
}

fn verify_options(args: &Args, tables: Vec<synchdb::types::TableId>) -> synchdb::core::verify::VerifyOptions {
    synchdb::core::verify::VerifyOptions {
        tables,
        chunk_rows: args.verify_chunk_rows,
        parallelism: args.verify_parallelism.max(1),
        rows_per_second: args.verify_rate,
        rechecks: args.verify_rechecks,
        catch_up_timeout: Duration::from_secs(args.verify_timeout),
        ..Default::default()
    }
}

/// `--verify`: compare the replica with the source; `true` when all tables are equal.
/// The PostgreSQL target's options: its URL plus the flags that shape what it stores.
fn target_options(args: &Args) -> synchdb::core::Result<PgSinkOptions> {
    Ok(args
        .target
        .parse::<PgSinkOptions>()?
        .text_nul(args.text_nul)
        .copy_format(args.copy_format)
        .keyless_index(!args.no_keyless_index)
        .apply_workers(args.apply_workers))
}

async fn verify(args: Args) -> synchdb::core::Result<bool> {
    use synchdb::core::verify::{VerifyOptions, VerifyTarget};
    let options = source_options(&args)?;
    let target: PgSinkOptions = target_options(&args)?;
    let mut converters: Vec<Arc<dyn synchdb::core::Converter>> = Vec::new();
    if let Some(path) = &args.mapping {
        converters.push(Arc::new(Mapping::new(MappingRules::load(path)?)?));
    }
    let startup = RetryPolicy::forever();
    let sink = retry_transient(&startup, "connecting to PostgreSQL", || {
        PgSink::connect(target.clone().pool_size(args.pool_size.max(args.verify_parallelism as u32 + 1)))
    })
    .await?;
    let tables = args
        .verify_tables
        .iter()
        .map(|t| {
            t.parse::<synchdb::types::TableId>()
                .map_err(|e| synchdb::core::Error::config(format!("--verify-tables: {e}")))
        })
        .collect::<synchdb::core::Result<Vec<_>>>()?;
    let opts = verify_options(&args, tables);
    let source = MySqlSource::new(options);
    let target: Arc<dyn VerifyTarget> = Arc::new(sink);
    let report =
        synchdb::core::verify::verify(&source, target.clone(), &converters, &args.pipeline_id, &opts).await?;
    println!("{report}");
    if report.all_equal() || !args.repair {
        return Ok(report.all_equal());
    }
    for t in report.differing().filter(|t| !t.keyed) {
        println!(
            "repair: {} not repaired: without a key its changes would apply twice; copy it again",
            t.source
        );
    }
    // The pipeline's next batch may deadlock with the repair: try again.
    let mut attempt = 0;
    let (tables, rows) = loop {
        attempt += 1;
        match synchdb::core::verify::repair(&source, target.clone(), &converters, &args.pipeline_id, &report)
            .await
        {
            Ok(r) => break r,
            Err(e) if e.kind().is_transient() && attempt < 5 => {
                tracing::warn!(error = %e, attempt, "repair failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if tables.is_empty() {
        return Ok(false);
    }
    println!(
        "repair: {rows} rows written again in {} tables ({}); verifying them again",
        tables.len(),
        tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    let again = VerifyOptions { tables, ..opts };
    let after =
        synchdb::core::verify::verify(&source, target, &converters, &args.pipeline_id, &again).await?;
    println!("{after}");
    Ok(after.all_equal() && report.differing().all(|t| t.keyed))
}

/// Wait for the pipeline while printing progress; Ctrl-C or SIGTERM stops it gracefully.
async fn drive(handle: PipelineHandle) -> synchdb::core::Result<StatsSnapshot> {
    let tty = std::io::stderr().is_terminal();
    let period = if tty { Duration::from_millis(500) } else { Duration::from_secs(10) };
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    let mut progress = Progress::new(tty);
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| synchdb::core::Error::internal("cannot install SIGTERM handler").with_source(e))?;
    loop {
        #[cfg(unix)]
        let terminated = term.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                progress.finish();
                eprintln!("stopping: finishing the batch in flight and storing the checkpoint");
                handle.shutdown();
            }
            _ = terminated => {
                progress.finish();
                eprintln!("stopping on SIGTERM");
                handle.shutdown();
            }
            _ = handle.finished() => break,
            _ = ticker.tick() => progress.show(&handle.stats()),
        }
    }
    if progress.tty {
        progress.show(&handle.stats());
    }
    progress.finish();
    handle.wait().await
}

/// Terminal progress: indicatif bars on a TTY (a bar of chunks while
/// snapshotting, a status line while following), plain log lines otherwise.
struct Progress {
    tty: bool,
    started: Instant,
    last: Option<(Instant, u64)>,
    bar: Option<(bool, indicatif::ProgressBar)>,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Progress { tty, started: Instant::now(), last: None, bar: None }
    }

    /// The bar for the phase (`snapshot` or follow), replacing the other one.
    fn bar(&mut self, snapshot: bool) -> &indicatif::ProgressBar {
        if self.bar.as_ref().is_some_and(|(s, _)| *s != snapshot) {
            self.finish();
        }
        &self
            .bar
            .get_or_insert_with(|| {
                let (bar, template) = if snapshot {
                    (indicatif::ProgressBar::new(0), "snapshot [{bar:24}] chunks {pos}/{len} {msg} ETA {eta}")
                } else {
                    (indicatif::ProgressBar::new_spinner(), "{spinner} follow: {msg}")
                };
                let style = indicatif::ProgressStyle::with_template(template)
                    .expect("valid progress template")
                    .progress_chars("#>-");
                (snapshot, bar.with_style(style))
            })
            .1
    }

    fn show(&mut self, s: &StatsSnapshot) {
        let now = Instant::now();
        let done = s.snapshot_rows + s.row_changes();
        let rate = match self.last {
            Some((t, n)) => (done.saturating_sub(n)) as f64 / now.duration_since(t).as_secs_f64().max(1e-3),
            None => done as f64 / self.started.elapsed().as_secs_f64().max(1e-3),
        };
        self.last = Some((now, done));
        let snapshotting = s.snapshot_chunks_total > 0 && s.snapshot_chunks_done < s.snapshot_chunks_total;
        let follow = format!(
            "applied {} changes ({} ins, {} upd, {} del, {} ddl) {:.0}/s lag {} ms{}",
            s.row_changes(),
            s.inserts,
            s.updates,
            s.deletes,
            s.ddl,
            rate,
            s.latency_last.as_millis(),
            s.position.as_ref().map(|p| format!(" at {p}")).unwrap_or_default()
        );
        let tables =
            format!("tables {} rows {} {:.0} rows/s", s.snapshot_tables_total, s.snapshot_rows, rate);
        if !self.tty {
            if snapshotting {
                eprintln!("snapshot: chunks {}/{} {tables}", s.snapshot_chunks_done, s.snapshot_chunks_total);
            } else {
                eprintln!("follow: {follow}");
            }
            return;
        }
        if snapshotting {
            let bar = self.bar(true);
            bar.set_length(s.snapshot_chunks_total);
            bar.set_position(s.snapshot_chunks_done);
            bar.set_message(tables);
        } else {
            let bar = self.bar(false);
            bar.set_message(follow);
            bar.tick();
        }
    }

    /// Leave the last line on screen and end the bar (before other output).
    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.abandon();
        }
    }
}

fn summary(s: &StatsSnapshot, secs: f64) -> String {
    format!(
        "done in {secs:.1}s: snapshot {} rows in {} chunks; applied {} transactions: {} inserts, {} updates, \
         {} deletes, {} truncates, {} ddl; {} skipped; lag p50 {} ms p99 {} ms{}",
        s.snapshot_rows,
        s.snapshot_chunks_done,
        s.transactions,
        s.inserts,
        s.updates,
        s.deletes,
        s.truncates,
        s.ddl,
        s.skipped,
        s.latency_p50.as_millis(),
        s.latency_p99.as_millis(),
        s.position.as_ref().map(|p| format!("; position {p}")).unwrap_or_default()
    )
}

//! Building a pipeline and starting it.

use super::*;

impl Pipeline {
    /// A builder with the defaults: id `default`, batches of
    /// [`DEFAULT_BATCH_SIZE`] events, the `exit` error policy, one snapshot
    /// writer per core.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            id: "default".into(),
            source: None,
            converters: Vec::new(),
            sink: None,
            store: None,
            batch_size: DEFAULT_BATCH_SIZE,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            snapshot_parallelism: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            error_policy: ErrorPolicy::Exit,
            restart: RetryPolicy::forever(),
        }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Start the pipeline on the current tokio runtime.
    pub fn start(self) -> PipelineHandle {
        let stats = Arc::new(Stats::new(self.id.clone()));
        stats.set_phase(Phase::Starting);
        let (shutdown_tx, _) = watch::channel(false);
        let shutdown_tx = Arc::new(shutdown_tx);
        let (pause_tx, pause_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let (restart_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            id: self.id.clone(),
            stats: stats.clone(),
            shutdown: shutdown_tx.clone(),
            pause: pause_tx,
            done: done_rx,
            restart: restart_tx,
            seek: std::sync::Mutex::new(None),
            commands: self.commands.clone(),
            source_control: self.source.control(),
            supports_resnapshot: self.source.supports_resnapshot(),
            seek_lock: tokio::sync::Mutex::new(()),
        });
        let span = info_span!("pipeline", id = %self.id);
        let sink = self.sink.clone();
        let last_sink = self.sink.clone();
        let run = supervise(self, shared.clone(), pause_rx);
        let monitor = tokio::spawn(monitor(shared.clone(), sink).instrument(span.clone()));
        let task_stats = stats.clone();
        let task = tokio::spawn(
            async move {
                let result = run.await;
                match &result {
                    Ok(()) => task_stats.set_phase(Phase::Stopped),
                    Err(e) => {
                        task_stats.record_error(e, false);
                        task_stats.set_phase(Phase::Failed);
                    }
                }
                // The monitor publishes the final status, then ends.
                let _ = done_tx.send(true);
                let _ = monitor.await;
                if let Err(e) = last_sink.shutdown().await {
                    warn!(error = %e, "sink shutdown failed");
                }
                result
            }
            .instrument(span),
        );
        PipelineHandle { control: PipelineControl { shared }, task }
    }
}

impl PipelineBuilder {
    /// The pipeline id: names its stored state.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The source.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Add a converter; converters run in the order they are added.
    pub fn converter(mut self, converter: impl Converter + 'static) -> Self {
        self.converters.push(Arc::new(converter));
        self
    }

    /// Add a shared converter.
    pub fn converter_arc(mut self, converter: Arc<dyn Converter>) -> Self {
        self.converters.push(converter);
        self
    }

    /// The sink.
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// A shared sink.
    pub fn sink_arc(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Where to keep state when the sink does not store it itself
    /// (default: in memory, lost with the process).
    pub fn checkpoint_store(mut self, store: impl CheckpointStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Largest batch in change events (whole transactions; one larger
    /// transaction forms a batch of its own).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// Capacity of the bounded channel after the source, in messages.
    pub fn channel_capacity(mut self, messages: usize) -> Self {
        self.channel_capacity = messages;
        self
    }

    /// How many snapshot chunks are written at once.
    pub fn snapshot_parallelism(mut self, n: usize) -> Self {
        self.snapshot_parallelism = n;
        self
    }

    /// The error policy.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// How the pipeline restarts after a transient failure (a lost or refused
    /// connection, a server restart): from its stored state, after a backoff.
    /// The default retries for ever (`max_retries` of `u32::MAX`), every 200 ms
    /// doubling up to 30 s; a run that lasted a minute resets the backoff.
    pub fn restart_policy(mut self, policy: RetryPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Check the settings and build the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let source = self.source.ok_or_else(|| Error::config("pipeline has no source"))?;
        let sink = self.sink.ok_or_else(|| Error::config("pipeline has no sink"))?;
        if self.id.is_empty() || self.id.len() > 128 {
            return Err(Error::config("pipeline id must be 1 to 128 characters"));
        }
        if self.batch_size == 0 || self.channel_capacity == 0 || self.snapshot_parallelism == 0 {
            return Err(Error::config(
                "batch size, channel capacity and snapshot parallelism must be at least 1",
            ));
        }
        Ok(Pipeline {
            id: self.id,
            source,
            converters: self.converters,
            sink,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new())),
            batch_size: self.batch_size,
            channel_capacity: self.channel_capacity,
            snapshot_parallelism: self.snapshot_parallelism,
            error_policy: self.error_policy,
            restart: self.restart,
            commands: SourceCommands::default(),
        })
    }
}

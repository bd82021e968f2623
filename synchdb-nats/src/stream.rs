//! What publisher and applier share: the connection, the stream, message
//! headers, and mapping NATS errors to synchdb's error kinds.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use futures::StreamExt;
use synchdb_core::{Error, ErrorKind, Result};
use synchdb_types::Position;

use crate::options::JetStreamOptions;
use crate::wire::header;

/// A connection to the stream.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) options: JetStreamOptions,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("options", &self.options).finish_non_exhaustive()
    }
}

/// The error for a failed NATS call: transient (`kind`, a connection kind)
/// unless the text says otherwise.
pub(crate) fn nats_error(kind: ErrorKind, what: &str, e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let kind = if lower.contains("maximum payload") || lower.contains("message size exceeds") {
        if kind == ErrorKind::SinkConnection {
            ErrorKind::SinkValue
        } else {
            ErrorKind::SourceValue
        }
    } else if lower.contains("authorization") || lower.contains("permissions violation") {
        ErrorKind::Config
    } else {
        kind
    };
    Error::new(kind, format!("{what}: {text}"))
}

impl Connection {
    pub(crate) async fn open(options: &JetStreamOptions, kind: ErrorKind) -> Result<Connection> {
        options.validate()?;
        let client = options.connect(kind).await?;
        let js = jetstream::new(client.clone());
        Ok(Connection { client, js, options: options.clone() })
    }

    /// The stream, created (publisher) when missing.
    pub(crate) async fn stream(&self, create: bool, kind: ErrorKind) -> Result<stream::Stream> {
        let o = &self.options;
        let wanted = format!("{}.>", o.prefix);
        match self.js.get_stream(&o.stream).await {
            Ok(mut s) => {
                let info =
                    s.info().await.map_err(|e| nats_error(kind, "reading the stream's settings", e))?;
                if !info.config.subjects.iter().any(|p| covers(p, &wanted)) {
                    return Err(Error::config(format!(
                        "stream {} takes subjects {:?}, which do not include {wanted}: use another stream or prefix",
                        o.stream, info.config.subjects
                    )));
                }
                if create && info.config.num_replicas != o.replicas {
                    tracing::warn!(
                        stream = %o.stream,
                        replicas = info.config.num_replicas,
                        asked = o.replicas,
                        "the stream exists with another number of replicas; it is left as it is"
                    );
                }
                Ok(s)
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                if !create {
                    return Err(Error::new(
                        kind,
                        format!("stream {} does not exist (yet) on {}: {e}", o.stream, o.display_servers()),
                    ));
                }
                let config = stream::Config {
                    name: o.stream.clone(),
                    subjects: vec![wanted],
                    max_age: o.max_age.unwrap_or_default(),
                    max_bytes: o.max_bytes.unwrap_or(-1),
                    max_message_size: o.max_message_size.unwrap_or(-1),
                    num_replicas: o.replicas,
                    duplicate_window: o.duplicate_window,
                    storage: stream::StorageType::File,
                    description: Some("synchdb change stream".into()),
                    ..Default::default()
                };
                tracing::info!(stream = %o.stream, replicas = o.replicas, "creating the stream");
                self.js
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| nats_error(kind, &format!("creating stream {}", o.stream), e))
            }
            Err(e) => Err(nats_error(kind, &format!("opening stream {}", o.stream), e)),
        }
    }

    /// The largest payload a message may carry: the server's limit and the
    /// stream's, less room for the headers.
    pub(crate) async fn payload_limit(&self, stream: &mut stream::Stream, kind: ErrorKind) -> Result<usize> {
        let server = self.client.server_info().max_payload;
        let info = stream.info().await.map_err(|e| nats_error(kind, "reading the stream's settings", e))?;
        let mut limit = if server == 0 { 1 << 20 } else { server };
        if info.config.max_message_size > 0 {
            limit = limit.min(info.config.max_message_size as usize);
        }
        Ok(limit.saturating_sub(4096).max(4096))
    }
}

/// Whether subject pattern `pattern` matches every subject `wanted` does
/// (`wanted` ends with `>`).
pub(crate) fn covers(pattern: &str, wanted: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let w: Vec<&str> = wanted.split('.').collect();
    for (i, pt) in p.iter().enumerate() {
        if *pt == ">" {
            return true;
        }
        match w.get(i) {
            None => return false,
            Some(&">") => return false,
            Some(wt) if *pt == "*" || pt == wt => continue,
            Some(_) => return false,
        }
    }
    false
}

/// A header's value.
pub(crate) fn get_header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

/// The source position a message carries.
pub(crate) fn header_position(headers: Option<&HeaderMap>) -> Option<Position> {
    get_header(headers, header::POSITION).and_then(|p| p.parse().ok())
}

/// Read messages `from..=to` of `subject_filter` in order with an ordered
/// consumer, calling `f` for each.
pub(crate) async fn scan(
    stream: &stream::Stream,
    filter: &str,
    from: u64,
    to: u64,
    kind: ErrorKind,
    mut f: impl FnMut(u64, &async_nats::Message) -> Result<()>,
) -> Result<()> {
    if from > to {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error(kind, "reading the stream's tail", e))?;
    let mut messages =
        consumer.messages().await.map_err(|e| nats_error(kind, "reading the stream's tail", e))?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let m = match next {
            // Nothing of `filter` in the rest of the range (a stream shared
            // with other subjects).
            Err(_) => return Ok(()),
            Ok(None) => return Err(Error::new(kind, "reading the stream's tail: the consumer ended")),
            Ok(Some(Err(e))) => return Err(nats_error(kind, "reading the stream's tail", e)),
            Ok(Some(Ok(m))) => m,
        };
        let (seq, pending) = m
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .map_err(|e| nats_error(kind, "reading a message's metadata", e))?;
        if seq > to {
            return Ok(());
        }
        f(seq, &m.message)?;
        if seq >= to || pending == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn subject_patterns_cover() {
        assert!(covers("synchdb.>", "synchdb.>"));
        assert!(covers(">", "synchdb.>"));
        assert!(covers("a.>", "a.b.>"));
        assert!(covers("*.>", "a.>"));
        assert!(!covers("a.b.>", "a.>"));
        assert!(!covers("b.>", "a.>"));
        assert!(!covers("a.*", "a.>"));
    }
}

//! Connection and stream options: `nats://[USER:PASS@]HOST:PORT[,HOST:PORT...]/STREAM[?...]`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use synchdb_core::{Error, ErrorKind, Result};

use crate::subject;

/// The message format a publisher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// synchdb's lossless native encoding (MessagePack of the typed events),
    /// one message per run of one table's events in a transaction. What
    /// [`JetStreamSource`](crate::JetStreamSource) reads.
    #[default]
    Native,
    /// Debezium-compatible JSON, one message per row event
    /// (`before`/`after`/`source`/`op`/`ts_ms`), for existing Debezium
    /// consumers. Output only: a synchdb applier cannot read it back.
    Debezium,
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(Format::Native),
            "debezium" | "debezium-json" => Ok(Format::Debezium),
            other => Err(Error::config(format!("format {other:?}: expected native or debezium"))),
        }
    }
}

/// Where and how to reach a JetStream stream, and how to create it.
///
/// Parsed from `nats://[USER:PASS@]HOST:PORT[,HOST:PORT...]/STREAM` with
/// optional query settings: `prefix` (subject prefix, default `synchdb`),
/// `replicas` (stream replicas when created, default 1), `max_age`
/// (retention by age: `7d`, `12h`, `30m`, `90s`), `max_bytes` (retention by
/// size), `max_msg_size` (largest message the stream takes), `dup_window`
/// (de-duplication window, default `2m`), `creds` (a `.creds` file),
/// `token`, `tls` (`true` requires TLS), `tls_ca`, `tls_cert`, `tls_key`,
/// `format` (`native` or `debezium`) and `debezium_schema` (`true` adds the
/// schema section). `tls://` URLs require TLS.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JetStreamOptions {
    /// Servers, `host:port`.
    pub servers: Vec<String>,
    /// The stream name.
    pub stream: String,
    /// Subject prefix: messages go to `<prefix>.<database>.<table>`.
    pub prefix: String,
    /// User and password.
    pub user: Option<(String, String)>,
    /// Token authentication.
    pub token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// Require TLS.
    pub tls_required: bool,
    /// Root certificates (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Replicas of the stream when it is created.
    pub replicas: usize,
    /// Retention by age (`None`: unlimited).
    pub max_age: Option<Duration>,
    /// Retention by size in bytes (`None`: unlimited).
    pub max_bytes: Option<i64>,
    /// Largest message the stream takes (`None`: the server's limit).
    pub max_message_size: Option<i32>,
    /// De-duplication window of the stream when created.
    pub duplicate_window: Duration,
    /// Message format written by a publisher.
    pub format: Format,
    /// Debezium format: include the `schema` section.
    pub debezium_schema: bool,
}

impl std::fmt::Debug for JetStreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamOptions")
            .field("servers", &self.servers)
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("tls_required", &self.tls_required)
            .field("replicas", &self.replicas)
            .field("max_age", &self.max_age)
            .field("max_bytes", &self.max_bytes)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl JetStreamOptions {
    /// Options for `stream` on `server` (`host:port`), everything else default.
    pub fn new(server: impl Into<String>, stream: impl Into<String>) -> Self {
        JetStreamOptions {
            servers: vec![server.into()],
            stream: stream.into(),
            prefix: "synchdb".into(),
            user: None,
            token: None,
            creds_file: None,
            tls_required: false,
            tls_ca: None,
            tls_client: None,
            replicas: 1,
            max_age: None,
            max_bytes: None,
            max_message_size: None,
            duplicate_window: Duration::from_secs(120),
            format: Format::Native,
            debezium_schema: false,
        }
    }

    /// Set the subject prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Set the number of stream replicas (used when the stream is created).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Set the retention by age.
    pub fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// Set the retention by size.
    pub fn max_bytes(mut self, bytes: Option<i64>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Set the message format a publisher writes.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Use a credentials file.
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds_file = Some(path.into());
        self
    }

    /// Require TLS, trusting `ca` when given.
    pub fn tls(mut self, ca: Option<PathBuf>) -> Self {
        self.tls_required = true;
        self.tls_ca = ca;
        self
    }

    /// Apply one setting as the URL's query spells it (`max_age`, `7d`;
    /// see the type's docs for the list; `tls_cert` and `tls_key` go
    /// together in [`tls_client`](Self::tls_client)).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.to_string();
        match key {
            "prefix" => self.prefix = v,
            "replicas" => {
                self.replicas = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| Error::config(format!("replicas={v:?}: expected 1 to 5")))?
            }
            "max_age" => self.max_age = Some(parse_duration("max_age", &v)?),
            "max_bytes" => self.max_bytes = Some(parse_bytes("max_bytes", &v)?),
            "max_msg_size" => {
                let n = parse_bytes("max_msg_size", &v)?;
                self.max_message_size =
                    Some(i32::try_from(n).map_err(|_| Error::config(format!("max_msg_size={v:?}: too large")))?)
            }
            "dup_window" => self.duplicate_window = parse_duration("dup_window", &v)?,
            "creds" => self.creds_file = Some(PathBuf::from(v)),
            "token" => self.token = Some(v),
            "tls" => self.tls_required |= parse_bool("tls", &v)?,
            "tls_ca" => {
                self.tls_ca = Some(PathBuf::from(v));
                self.tls_required = true;
            }
            "format" => self.format = v.parse()?,
            "debezium_schema" => self.debezium_schema = parse_bool("debezium_schema", &v)?,
            other => {
                return Err(Error::config(format!(
                    "NATS URL setting {other:?} is not known (prefix, replicas, max_age, max_bytes, max_msg_size, dup_window, creds, token, tls, tls_ca, tls_cert, tls_key, format, debezium_schema)"
                )))
            }
        }
        Ok(())
    }

    /// Check the options.
    pub fn validate(&self) -> Result<()> {
        if self.servers.is_empty() {
            return Err(Error::config("a NATS URL needs a server (nats://HOST:PORT/STREAM)"));
        }
        if self.stream.is_empty()
            || self.stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(Error::config(format!(
                "stream name {:?}: give one without spaces, '.', '*', '>' or slashes (nats://HOST:PORT/STREAM)",
                self.stream
            )));
        }
        subject::check_prefix(&self.prefix).map_err(Error::config)?;
        Ok(())
    }

    /// The server list for logs, without credentials.
    pub fn display_servers(&self) -> String {
        format!("nats://{}/{}", self.servers.join(","), self.stream)
    }

    /// Connect to the servers.
    pub(crate) async fn connect(&self, kind: ErrorKind) -> Result<async_nats::Client> {
        let mut opts = async_nats::ConnectOptions::new().name("synchdb");
        if let Some((u, p)) = &self.user {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            opts = opts.token(t.clone());
        }
        if let Some(path) = &self.creds_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| Error::config(format!("NATS credentials file {}: {e}", path.display())))?;
        }
        if self.tls_required {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let scheme = if self.tls_required { "tls" } else { "nats" };
        let addrs: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|s| {
                format!("{scheme}://{s}")
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|e| Error::config(format!("NATS server {s:?}: {e}")))
            })
            .collect::<Result<_>>()?;
        opts.connect(addrs.as_slice()).await.map_err(|e| {
            Error::new(kind, format!("cannot connect to NATS at {}: {e}", self.display_servers()))
                .with_source(e)
        })
    }
}

fn parse_duration(key: &str, v: &str) -> Result<Duration> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 =
        num.parse().map_err(|_| Error::config(format!("{key}={v:?}: expected e.g. 7d, 12h, 30m, 90s")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(Error::config(format!("{key}={v:?}: unit must be s, m, h or d"))),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_bytes(key: &str, v: &str) -> Result<i64> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: i64 =
        num.parse().map_err(|_| Error::config(format!("{key}={v:?}: expected e.g. 10GB, 512MB, 1048576")))?;
    let mult: i64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(Error::config(format!("{key}={v:?}: unit must be B, KB, MB, GB or TB"))),
    };
    n.checked_mul(mult).ok_or_else(|| Error::config(format!("{key}={v:?}: too large")))
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(format!("{key}={v:?}: expected true or false"))),
    }
}

impl FromStr for JetStreamOptions {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| Error::config("a NATS URL looks like nats://HOST:PORT/STREAM"))?;
        let tls = match scheme {
            "nats" => false,
            "tls" => true,
            other => return Err(Error::config(format!("URL scheme {other:?}: expected nats:// or tls://"))),
        };
        // Several servers (`host1:4222,host2:4222`) are more than the url
        // crate parses: it reads the first, the others are kept as written.
        // `nats://a:1,nats://b:2/S` lists servers too.
        let rest = rest.replace(",nats://", ",").replace(",tls://", ",");
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_query) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
        let first = hosts
            .next()
            .ok_or_else(|| Error::config("a NATS URL needs a server: nats://HOST:PORT/STREAM"))?;
        let rebuilt = match userinfo {
            Some(u) => format!("nats://{u}@{first}{path_query}"),
            None => format!("nats://{first}{path_query}"),
        };
        let url = url::Url::parse(&rebuilt).map_err(|e| Error::config(format!("NATS URL: {e}")))?;
        let host = url.host_str().ok_or_else(|| Error::config("a NATS URL needs a host"))?;
        let mut servers = vec![format!("{host}:{}", url.port().unwrap_or(4222))];
        for h in hosts {
            let u = url::Url::parse(&format!("nats://{h}"))
                .map_err(|e| Error::config(format!("NATS server {h:?}: {e}")))?;
            let host = u.host_str().ok_or_else(|| Error::config(format!("NATS server {h:?} has no host")))?;
            servers.push(format!("{host}:{}", u.port().unwrap_or(4222)));
        }
        let stream = url.path().trim_matches('/').to_string();
        if stream.is_empty() {
            return Err(Error::config("a NATS URL names its stream: nats://HOST:PORT/STREAM"));
        }
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mut o = JetStreamOptions::new(servers.remove(0), decode(&stream));
        o.servers.extend(servers);
        o.tls_required = tls;
        if !url.username().is_empty() {
            let user = decode(url.username());
            match url.password() {
                Some(p) => o.user = Some((user, decode(p))),
                None => o.token = Some(user),
            }
        }
        let mut cert = None;
        let mut key = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "tls_cert" => cert = Some(PathBuf::from(v.into_owned())),
                "tls_key" => key = Some(PathBuf::from(v.into_owned())),
                k => o.set(k, &v)?,
            }
        }
        match (cert, key) {
            (Some(c), Some(k)) => {
                o.tls_client = Some((c, k));
                o.tls_required = true;
            }
            (None, None) => {}
            _ => return Err(Error::config("tls_cert and tls_key go together")),
        }
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_options() {
        let o: JetStreamOptions = "nats://127.0.0.1:4222/CDC".parse().unwrap();
        assert_eq!(o.servers, vec!["127.0.0.1:4222"]);
        assert_eq!(o.stream, "CDC");
        assert_eq!(o.prefix, "synchdb");
        assert_eq!(o.replicas, 1);
        let o: JetStreamOptions =
            "nats://u:p%40ss@a:1,b:2,c/S?prefix=cdc.prod&replicas=3&max_age=7d&max_bytes=10GB&format=debezium"
                .parse()
                .unwrap();
        assert_eq!(o.servers, vec!["a:1", "b:2", "c:4222"]);
        let many: JetStreamOptions = "nats://a:1,nats://b:2,nats://c:3/S".parse().unwrap();
        assert_eq!(many.servers, vec!["a:1", "b:2", "c:3"]);
        assert_eq!(many.stream, "S");
        assert_eq!(o.user, Some(("u".into(), "p@ss".into())));
        assert_eq!(o.prefix, "cdc.prod");
        assert_eq!(o.replicas, 3);
        assert_eq!(o.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(o.max_bytes, Some(10 << 30));
        assert_eq!(o.format, Format::Debezium);
        assert!(!format!("{o:?}").contains("p@ss"));
        let o: JetStreamOptions = "tls://tok@h:4443/S?tls_ca=/ca.pem".parse().unwrap();
        assert!(o.tls_required);
        assert_eq!(o.token.as_deref(), Some("tok"));
        let mut o = o;
        o.set("max_age", "12h").unwrap();
        assert_eq!(o.max_age, Some(Duration::from_secs(12 * 3600)));
        assert!(o.set("max_bytes", "3XB").is_err());
        for bad in [
            "nats://h:4222",
            "nats://h:4222/",
            "nats://h:4222/a.b",
            "http://h/S",
            "nats://h/S?replicas=9",
            "nats://h/S?prefix=a.*",
            "nats://h/S?what=1",
            "nats://h/S?max_age=3w",
            "nats://h/S?tls_cert=/c",
        ] {
            assert!(bad.parse::<JetStreamOptions>().is_err(), "{bad}");
        }
    }
}

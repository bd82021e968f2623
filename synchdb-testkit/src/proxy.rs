//! A TCP fault proxy: forwards `127.0.0.1:<free port>` to a target address and, on
//! demand, stalls the traffic, cuts connections (with a reset, in the middle of data if
//! asked), refuses new connections for a while, or cuts connections at random moments.
//!
//! It runs on its own thread with its own (single-threaded) tokio runtime, so both
//! synchronous tests and tests on any async runtime can use it; every control method
//! takes `&self`, returns at once and may be called from any thread.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Size of the forwarding buffer of each direction of a connection.
const BUFFER: usize = 16 * 1024;

/// Largest number of bytes a random cut ([`FaultProxy::chaos`]) lets through before
/// cutting: small enough that the cut usually lands inside the next packet.
const CHAOS_MAX_PARTIAL: u64 = 2048;

/// A TCP proxy between a client under test and a server, with fault injection.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// let mysql = synchdb_testkit::mariadb();
/// let proxy = synchdb_testkit::FaultProxy::start(("127.0.0.1", mysql.port()))?;
/// let url = format!("mysql://synchdb:synchdb@127.0.0.1:{}/", proxy.port());
/// // ... start the client under test with `url` ...
/// proxy.cut_all(); // every live connection is reset
/// proxy.stall(true); // nothing moves, connections stay open
/// proxy.stall(false);
/// proxy.refuse_for(Duration::from_secs(2)); // new connections are reset at once
/// proxy.chaos(42, Duration::from_millis(300)); // random cuts in the middle of data
/// proxy.chaos_off();
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
///
/// Dropping the proxy stops it: the listener closes and live connections are closed.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Counters of a [`FaultProxy`] since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted and forwarded (refused ones not included).
    pub accepted: u64,
    /// Connections reset on arrival by [`FaultProxy::refuse_for`].
    pub refused: u64,
    /// Connections cut by [`FaultProxy::cut_all`], [`FaultProxy::cut_after_bytes`] or
    /// [`FaultProxy::chaos`].
    pub cuts: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
}

#[derive(Debug)]
struct Shared {
    stalled: watch::Sender<bool>,
    refuse_until: Mutex<Option<Instant>>,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    chaos: watch::Sender<Option<Chaos>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    cuts: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Chaos {
    seed: u64,
    mean: Duration,
}

/// One live connection's fault controls.
#[derive(Debug, Default)]
struct Conn {
    /// Bytes (both directions together) still forwarded before the cut; `None`: no cut
    /// is armed.
    budget: Mutex<Option<u64>>,
    /// Wakes the connection to cut it now, whether data flows or not.
    cut_now: Notify,
}

impl Conn {
    /// Arm a cut after `bytes` more bytes; an earlier armed cut stays if sooner.
    fn arm(&self, bytes: u64) {
        let mut b = lock(&self.budget);
        *b = Some(b.map_or(bytes, |old| old.min(bytes)));
    }

    /// How many of `n` read bytes to forward, and whether to cut after them.
    fn take(&self, n: usize) -> (usize, bool) {
        let mut b = lock(&self.budget);
        match *b {
            None => (n, false),
            Some(left) => {
                let k = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                let rest = left - k as u64;
                *b = Some(rest);
                (k, rest == 0)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Start a proxy on `127.0.0.1:<free port>` forwarding to `target` (e.g.
    /// `("127.0.0.1", server.port())`); the first address `target` resolves to is used.
    pub fn start(target: impl ToSocketAddrs) -> io::Result<FaultProxy> {
        let target = target
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "target resolves to no address"))?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stalled: watch::channel(false).0,
            refuse_until: Mutex::new(None),
            conns: Mutex::new(BTreeMap::new()),
            chaos: watch::channel(None).0,
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = watch::channel(false);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new().name(format!("fault-proxy-{}", addr.port())).spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fault proxy on {addr}: {e}");
                            return;
                        }
                    };
                    tokio::spawn(chaos_loop(shared.clone()));
                    accept_loop(listener, target, shared, stopped).await;
                });
            })?
        };
        Ok(FaultProxy { addr, target, shared, stop: Some(stop), thread: Some(thread) })
    }

    /// The port the proxy listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Stop (`true`) or resume (`false`) forwarding bytes, both directions of every
    /// connection, new ones included; connections stay open meanwhile.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// Whether forwarding is stalled.
    pub fn is_stalled(&self) -> bool {
        *self.shared.stalled.borrow()
    }

    /// Cut every live connection now: both sides are closed with a reset (`SO_LINGER`
    /// 0), whatever is in flight is lost. Returns the number of connections cut.
    pub fn cut_all(&self) -> usize {
        let conns = self.live();
        for c in &conns {
            c.arm(0);
            c.cut_now.notify_one();
        }
        conns.len()
    }

    /// Cut every live connection once `bytes` more bytes (both directions together) have
    /// gone through it: the buffer that crosses the limit is forwarded only up to it, so
    /// the cut lands in the middle of data. Connections without traffic stay open until
    /// they have some. Returns the number of connections armed.
    pub fn cut_after_bytes(&self, bytes: u64) -> usize {
        let conns = self.live();
        for c in &conns {
            c.arm(bytes);
            if bytes == 0 {
                c.cut_now.notify_one();
            }
        }
        conns.len()
    }

    /// For `duration` from now, new connections are accepted and reset at once; live
    /// connections are not affected. A later call replaces the deadline.
    pub fn refuse_for(&self, duration: Duration) {
        *lock(&self.shared.refuse_until) = Some(Instant::now() + duration);
    }

    /// Random cuts: at random moments (exponentially distributed intervals of mean
    /// `mean_interval`, drawn from `seed`), one live connection picked at random is
    /// armed to cut after a random 0 to 2 KiB of further traffic, i.e. in the middle of
    /// the next data it carries. Replaces an earlier chaos setting.
    pub fn chaos(&self, seed: u64, mean_interval: Duration) {
        self.shared
            .chaos
            .send_replace(Some(Chaos { seed, mean: mean_interval.max(Duration::from_millis(1)) }));
    }

    /// End [`chaos`](Self::chaos) (cuts already armed still happen).
    pub fn chaos_off(&self) {
        self.shared.chaos.send_replace(None);
    }

    /// The number of live (forwarded) connections.
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Wait until at least `n` connections are live; false if `timeout` passes first.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.connections() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The counters since the proxy started.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            cuts: s.cuts.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }

    fn live(&self) -> Vec<Arc<Conn>> {
        lock(&self.shared.conns).values().cloned().collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors or an aborted handshake: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let refusing = {
            let mut until = lock(&shared.refuse_until);
            match *until {
                Some(t) if Instant::now() < t => true,
                Some(_) => {
                    *until = None;
                    false
                }
                None => false,
            }
        };
        if refusing {
            let _ = client.set_zero_linger();
            drop(client);
            shared.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::default());
        lock(&shared.conns).insert(id, conn.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(client, target, &conn, &shared).await;
            lock(&shared.conns).remove(&id);
        });
    }
}

/// Why forwarding ended abnormally.
enum End {
    /// A fault cut the connection.
    Cut,
    /// One side failed (reset); the other side is reset too.
    Failed,
}

async fn serve(mut client: TcpStream, target: SocketAddr, conn: &Conn, shared: &Shared) {
    let connected = tokio::select! {
        s = TcpStream::connect(target) => s,
        _ = conn.cut_now.notified() => {
            shared.cuts.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let mut server = match connected {
        Ok(s) => s,
        Err(_) => {
            // The target refuses: so does the proxy.
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, conn, shared);
        let down = pump(server_read, client_write, conn, shared);
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
            _ = conn.cut_now.notified() => Err(End::Cut),
        }
    };
    match outcome {
        Ok(()) => {}
        Err(end) => {
            if matches!(end, End::Cut) {
                shared.cuts.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

/// Forward one direction until end of stream (passed on as a shutdown), a failure or a
/// cut.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    conn: &Conn,
    shared: &Shared,
) -> Result<(), End> {
    let mut stalled = shared.stalled.subscribe();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let _ = stalled.wait_for(|s| !*s).await;
        let n = from.read(&mut buf).await.map_err(|_| End::Failed)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let _ = stalled.wait_for(|s| !*s).await;
        let (k, cut) = conn.take(n);
        if k > 0 {
            to.write_all(&buf[..k]).await.map_err(|_| End::Failed)?;
            shared.bytes.fetch_add(k as u64, Ordering::Relaxed);
        }
        if cut {
            // Let the partial data reach the peer before the reset.
            tokio::time::sleep(Duration::from_millis(2)).await;
            return Err(End::Cut);
        }
    }
}

async fn chaos_loop(shared: Arc<Shared>) {
    let mut settings = shared.chaos.subscribe();
    loop {
        let current = *settings.borrow_and_update();
        let Some(chaos) = current else {
            if settings.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut rng = SplitMix64(chaos.seed);
        loop {
            let wait = rng.exponential(chaos.mean);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
            let conns: Vec<Arc<Conn>> = lock(&shared.conns).values().cloned().collect();
            if conns.is_empty() {
                continue;
            }
            let pick = rng.below(conns.len() as u64) as usize;
            conns[pick].arm(rng.below(CHAOS_MAX_PARTIAL + 1));
        }
    }
}

/// A small deterministic random generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean, capped at 5 means.
    fn exponential(&mut self, mean: Duration) -> Duration {
        let factor = (-self.unit().ln()).min(5.0);
        mean.mul_f64(factor).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream as StdStream;
    use std::sync::mpsc;

    /// A threaded echo server; each closed connection reports the bytes it received.
    struct Echo {
        port: u16,
        closed: mpsc::Receiver<(u64, bool)>,
    }

    fn echo() -> Echo {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut total = 0u64;
                    let reset = loop {
                        match s.read(&mut buf) {
                            Ok(0) => break false,
                            Ok(n) => {
                                total += n as u64;
                                if s.write_all(&buf[..n]).is_err() {
                                    break true;
                                }
                            }
                            Err(_) => break true,
                        }
                    };
                    let _ = tx.send((total, reset));
                });
            }
        });
        Echo { port, closed }
    }

    fn connect(proxy: &FaultProxy) -> StdStream {
        let s = StdStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn roundtrip(s: &mut StdStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }

    /// The connection is closed: a read gives a reset or end of stream, not data.
    fn assert_closed(s: &mut StdStream) {
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes from a cut connection"),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
                "unexpected error {e}"
            ),
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn forwards_both_ways_and_counts_connections() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        assert_eq!(proxy.connections(), 0);
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        roundtrip(&mut a, b"hello");
        roundtrip(&mut b, &vec![7u8; 200_000]);
        assert_eq!(proxy.connections(), 2);
        drop(a);
        let (received, reset) = echo.closed.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((received, reset), (5, false), "a normal close is passed on as a normal close");
        wait_until("one connection", || proxy.connections() == 1);
        let stats = proxy.stats();
        assert_eq!((stats.accepted, stats.cuts, stats.refused), (2, 0, 0));
        assert_eq!(stats.bytes, 2 * 200_005);
        roundtrip(&mut b, b"still there");
    }

    #[test]
    fn stall_holds_bytes_and_keeps_connections() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"before");
        proxy.stall(true);
        assert!(proxy.is_stalled());
        s.write_all(b"during").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).expect_err("nothing comes back while stalled");
        assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
        assert_eq!(proxy.connections(), 1);
        // A new connection is accepted but carries nothing either.
        let mut late = connect(&proxy);
        late.write_all(b"late").unwrap();
        wait_until("two connections", || proxy.connections() == 2);
        proxy.stall(false);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut buf[..6]).unwrap();
        assert_eq!(&buf[..6], b"during");
        late.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"late");
        roundtrip(&mut s, b"after");
    }

    #[test]
    fn cut_all_resets_both_sides() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        roundtrip(&mut a, b"a");
        roundtrip(&mut b, b"b");
        assert_eq!(proxy.cut_all(), 2);
        assert_closed(&mut a);
        assert_closed(&mut b);
        for _ in 0..2 {
            let (_, reset) = echo.closed.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(reset, "the server side sees a reset");
        }
        wait_until("no connections", || proxy.connections() == 0);
        assert_eq!(proxy.stats().cuts, 2);
        // New connections work.
        let mut c = connect(&proxy);
        roundtrip(&mut c, b"again");
    }

    #[test]
    fn cut_after_bytes_forwards_part_of_a_buffer() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"0123456789");
        assert_eq!(proxy.cut_after_bytes(4), 1);
        s.write_all(b"abcdefghij").unwrap();
        assert_closed(&mut s);
        let (received, reset) = echo.closed.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(received, 14, "the server got 4 of the 10 bytes, then the cut");
        assert!(reset);
        assert_eq!(proxy.stats().cuts, 1);
    }

    #[test]
    fn cut_after_bytes_waits_for_traffic() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"x");
        proxy.cut_after_bytes(7); // "abc" up and back: 6 bytes; then 1 more byte
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(proxy.connections(), 1, "idle connections stay");
        roundtrip(&mut s, b"abc");
        s.write_all(b"defg").unwrap();
        assert_closed(&mut s);
        let (received, _) = echo.closed.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(received, 1 + 3 + 1);
    }

    #[test]
    fn refuse_for_resets_new_connections_for_a_while() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let mut live = connect(&proxy);
        roundtrip(&mut live, b"live");
        proxy.refuse_for(Duration::from_millis(400));
        let mut refused = connect(&proxy);
        let _ = refused.write_all(b"hello");
        assert_closed(&mut refused);
        roundtrip(&mut live, b"unaffected");
        assert_eq!(proxy.stats().refused, 1);
        std::thread::sleep(Duration::from_millis(450));
        let mut later = connect(&proxy);
        roundtrip(&mut later, b"accepted again");
        assert_eq!(proxy.stats().accepted, 2);
    }

    #[test]
    fn target_down_closes_the_client() {
        let port = {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = FaultProxy::start(("127.0.0.1", port)).unwrap();
        let mut s = connect(&proxy);
        assert_closed(&mut s);
        wait_until("no connections", || proxy.connections() == 0);
    }

    #[test]
    fn chaos_cuts_busy_connections_mid_stream_and_stops() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        proxy.chaos(7, Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cut = 0;
        let mut partial = 0;
        while cut < 5 {
            assert!(Instant::now() < deadline, "chaos cut {cut} connections in 10 s");
            let mut s = connect(&proxy);
            let msg = vec![1u8; 1000];
            let mut sent = 0u64;
            loop {
                if s.write_all(&msg).is_err() {
                    break;
                }
                let mut back = vec![0u8; msg.len()];
                if s.read_exact(&mut back).is_err() {
                    break;
                }
                sent += msg.len() as u64;
            }
            let (received, reset) = echo.closed.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(reset);
            if received % 1000 != 0 || received > sent {
                partial += 1;
            }
            cut += 1;
        }
        assert!(partial > 0, "some cuts landed inside a message");
        proxy.chaos_off();
        std::thread::sleep(Duration::from_millis(50));
        let before = proxy.stats().cuts;
        let mut s = connect(&proxy);
        for _ in 0..50 {
            roundtrip(&mut s, &[2u8; 1000]);
            std::thread::sleep(Duration::from_millis(2));
        }
        // A cut armed just before chaos_off may still land; no new ones are armed.
        assert!(proxy.stats().cuts <= before + 1);
    }

    #[test]
    fn drop_stops_the_proxy() {
        let echo = echo();
        let proxy = FaultProxy::start(("127.0.0.1", echo.port)).unwrap();
        let addr = proxy.addr();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"x");
        drop(proxy);
        assert_closed(&mut s);
        assert!(StdStream::connect(addr).is_err(), "nothing listens any more");
    }

    #[test]
    fn random_generator_is_deterministic() {
        let (mut a, mut b) = (SplitMix64(3), SplitMix64(3));
        let xs: Vec<u64> = (0..10).map(|_| a.below(100)).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.below(100)).collect();
        assert_eq!(xs, ys);
        let mean = Duration::from_millis(100);
        let total: Duration = (0..2000).map(|_| a.exponential(mean)).sum();
        let avg = total / 2000;
        assert!(avg > Duration::from_millis(80) && avg < Duration::from_millis(120), "{avg:?}");
    }
}

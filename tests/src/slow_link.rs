//! A slow, lossy link on loopback between a phone and the server: a `noxious` proxy (a Rust
//! port of Toxiproxy) with bandwidth, latency and connections cut mid-transfer, for the 2G
//! village scenario (`village::sync_village`). The kernel here refuses `tc netem`.

use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop, Stopper};
use noxious::socket::TcpListener;
use noxious::toxic::{StreamDirection, Toxic, ToxicKind};
use std::net::SocketAddr;
use std::time::Duration;

/// What the link does to the bytes crossing it.
#[derive(Debug, Clone, Copy)]
pub struct LinkProfile {
    /// Each way, in bytes per second (at least 100).
    pub bytes_per_sec: u64,
    /// Added to every chunk in each direction, so a round trip gains twice this.
    pub one_way_latency: Duration,
    /// The share of connections that are cut, and after how many bytes from the server: a
    /// response lost mid-way, after the server may have applied the request.
    pub cut: Option<(f32, u64)>,
    /// The same on the way up: a request lost before the server read all of it.
    pub cut_up: Option<(f32, u64)>,
}

impl LinkProfile {
    /// About 50 kbit/s each way, 300 ms added to a round trip, and one connection in four cut
    /// (half of them on the way up, half on the way down).
    pub fn village_2g() -> Self {
        Self {
            bytes_per_sec: 6_000,
            one_way_latency: Duration::from_millis(150),
            cut: Some((0.125, 1_500)),
            cut_up: Some((0.125, 3_000)),
        }
    }

    fn toxics(&self) -> Toxics {
        let toxic = |name: &str, kind, direction, toxicity| Toxic {
            kind,
            name: name.to_owned(),
            toxicity,
            direction,
        };
        // The bandwidth as slices of a hundredth of a second's bytes, each sent 10 ms after the
        // last: noxious 1.0.4's own `bandwidth` toxic sends 100 bytes per tick whatever the rate
        // and panics (a Duration underflow) on chunks larger than the rate times 100.
        let slices = || ToxicKind::Slicer {
            average_size: (self.bytes_per_sec / 100).max(1),
            size_variation: 0,
            delay: 10_000,
        };
        let latency = self.one_way_latency.as_millis() as u64;
        // One direction: latency, then bandwidth, then (on some connections) the cut.
        let chain = |direction, suffix: &str, cut: Option<(f32, u64)>| {
            let mut chain = vec![
                toxic(
                    &format!("latency_{suffix}"),
                    ToxicKind::Latency { latency, jitter: 0 },
                    direction,
                    1.0,
                ),
                toxic(&format!("bandwidth_{suffix}"), slices(), direction, 1.0),
            ];
            if let Some((share, bytes)) = cut {
                chain.push(toxic(
                    &format!("cut_{suffix}"),
                    ToxicKind::LimitData { bytes },
                    direction,
                    share,
                ));
            }
            chain
        };
        Toxics {
            upstream: chain(StreamDirection::Upstream, "up", self.cut_up),
            downstream: chain(StreamDirection::Downstream, "down", self.cut),
        }
    }
}

/// A running proxy; stopped when dropped.
pub struct SlowLink {
    pub port: u16,
    stopper: Option<Stopper>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowLink {
    /// Listens on a free loopback port and forwards to `upstream` through `profile`.
    pub fn start(upstream: SocketAddr, profile: LinkProfile) -> Self {
        // noxious binds the address it is given: a port the OS just handed out and freed, which
        // a parallel test may take in between, hence a few tries.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(link) = Self::start_on(port, upstream, profile) {
                return link;
            }
        }
        panic!("the slow link could not bind a port in 5 tries");
    }

    fn start_on(port: u16, upstream: SocketAddr, profile: LinkProfile) -> Option<Self> {
        let config = ProxyConfig {
            name: "village".to_owned(),
            listen: format!("127.0.0.1:{port}"),
            upstream: upstream.to_string(),
            enabled: true,
            // No seed: with one, noxious draws the same numbers for every connection, so a
            // toxic of toxicity below 1 would hit all connections or none.
            rand_seed: None,
        };
        let (stop, stopper) = Stop::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let bound = ProxyRunner::initialize_proxy::<TcpListener>(config, profile.toxics()).await;
                let Ok((listener, info)) = bound else {
                    let _ = ready_tx.send(false);
                    return;
                };
                let _ = ready_tx.send(true);
                // Toxics are never changed at run time: the event channel stays idle.
                let (_events, receiver) = bmrng::channel(1);
                let (_close, closer) = Close::new();
                let _ = ProxyRunner::run_proxy(listener, info, receiver, stop, closer).await;
            });
        });
        if !ready_rx.recv().unwrap_or(false) {
            return None;
        }
        Some(Self {
            port,
            stopper: Some(stopper),
            thread: Some(thread),
        })
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        if let Some(s) = self.stopper.take() {
            s.stop();
        }
        // The runner only looks at its stop signal between connections; a connection still open
        // would keep it waiting, so the thread is left to end with the process.
        drop(self.thread.take());
    }
}

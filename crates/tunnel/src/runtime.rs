//! The endpoint's tokio tasks: the TUN interface and the UDP socket around the [`Engine`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tun_rs::{
    AsyncDevice, DeviceBuilder, DeviceImpl, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN,
};

use super::TunnelConfig;
use super::engine::{Engine, HandshakeJob, Io, MIN_SCRATCH, TunOutcome};

/// Initiations waiting for the handshake task; more are dropped (and counted).
const HANDSHAKE_QUEUE: usize = 256;
/// How often every peer's timers run.
const TIMER_PERIOD: Duration = Duration::from_millis(100);
/// Datagrams handled per wake-up before yielding to the other tasks.
const BATCH: usize = 64;
const SOCKET_BUFFER: usize = 4 << 20;

pub(super) struct Started {
    pub local_addr: SocketAddr,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Output of the tasks that never write to the TUN (handshakes, timers, the TUN reader).
struct NetIo<'a> {
    udp: &'a UdpSocket,
}

impl Io for NetIo<'_> {
    fn send_udp(&mut self, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.udp.try_send_to(packet, to).map(|_| ())
    }

    fn write_tun(&mut self, _packet: &[u8]) -> io::Result<()> {
        Err(io::Error::other("not the TUN writer"))
    }
}

/// Decrypted packets waiting to be written to the TUN together: with offload on, tun-rs
/// coalesces consecutive TCP segments (GRO) so the kernel sees fewer, larger packets.
struct TunBatch {
    bufs: Vec<Vec<u8>>,
    len: usize,
    gro: GROTable,
}

impl TunBatch {
    fn new() -> Self {
        TunBatch {
            bufs: (0..IDEAL_BATCH_SIZE)
                .map(|_| Vec::with_capacity(2048))
                .collect(),
            len: 0,
            gro: GROTable::default(),
        }
    }

    fn push(&mut self, packet: &[u8]) -> io::Result<()> {
        let Some(b) = self.bufs.get_mut(self.len) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        b.clear();
        b.resize(VIRTIO_NET_HDR_LEN, 0);
        b.extend_from_slice(packet);
        self.len += 1;
        Ok(())
    }

    fn flush(&mut self, tun: &DeviceImpl) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let n = std::mem::take(&mut self.len);
        tun.send_multiple(&mut self.gro, &mut self.bufs[..n], VIRTIO_NET_HDR_LEN)
            .map(|_| ())
    }
}

/// Output of the UDP task: datagrams sent at once, TUN packets batched.
struct UdpSideIo<'a> {
    udp: &'a UdpSocket,
    batch: &'a mut TunBatch,
}

impl Io for UdpSideIo<'_> {
    fn send_udp(&mut self, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
        self.udp.try_send_to(packet, to).map(|_| ())
    }

    fn write_tun(&mut self, packet: &[u8]) -> io::Result<()> {
        self.batch.push(packet)
    }
}

/// Logs an I/O error at most once every ten seconds per task.
struct ErrorLog {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn new(what: &'static str) -> Self {
        ErrorLog {
            what,
            last: None,
            suppressed: 0,
        }
    }

    fn log(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "tunnel: {}", self.what);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

pub(super) fn start(cfg: &TunnelConfig, engine: Arc<Engine>) -> anyhow::Result<Started> {
    if cfg.prefix > 32 {
        bail!("tunnel prefix /{} is not an IPv4 prefix", cfg.prefix);
    }
    if !(576..=9000).contains(&cfg.mtu) {
        bail!("tunnel MTU {} out of range (576..=9000)", cfg.mtu);
    }
    if cfg.interface.is_empty() || cfg.interface.len() > 15 {
        bail!("interface name {:?} must be 1 to 15 bytes", cfg.interface);
    }
    let build = |offload: bool| {
        DeviceBuilder::new()
            .name(&cfg.interface)
            .ipv4(cfg.address, cfg.prefix, None)
            .mtu(cfg.mtu)
            .offload(offload)
            .enable(true)
            .build_async()
    };
    // Offload (virtio-net header, TSO/GRO) lets the kernel hand over and take whole TCP
    // bursts; kernels without it get a plain TUN.
    let tun = build(true)
        .or_else(|e| {
            tracing::warn!(error = %e, "TUN offload unavailable, trying without");
            build(false)
        })
        .with_context(|| {
            format!(
                "creating TUN interface {} (needs CAP_NET_ADMIN and /dev/net/tun)",
                cfg.interface
            )
        })?;
    let udp = bind_udp(cfg.listen).with_context(|| format!("binding UDP {}", cfg.listen))?;
    let local_addr = udp.local_addr()?;
    let tun = Arc::new(tun);
    let udp = Arc::new(udp);
    let (hs_tx, hs_rx) = mpsc::channel(HANDSHAKE_QUEUE);

    let tasks = vec![
        tokio::spawn(udp_task(
            Arc::clone(&engine),
            Arc::clone(&udp),
            Arc::clone(&tun),
            hs_tx,
        )),
        tokio::spawn(tun_task(
            Arc::clone(&engine),
            Arc::clone(&udp),
            Arc::clone(&tun),
            cfg.mtu,
        )),
        tokio::spawn(handshake_task(Arc::clone(&engine), Arc::clone(&udp), hs_rx)),
        tokio::spawn(timer_task(engine, udp)),
    ];
    Ok(Started { local_addr, tasks })
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // [::]:port takes IPv4 terminals too.
        socket.set_only_v6(false)?;
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn udp_task(
    engine: Arc<Engine>,
    udp: Arc<UdpSocket>,
    tun: Arc<AsyncDevice>,
    hs_tx: mpsc::Sender<HandshakeJob>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut batch = TunBatch::new();
    let mut errors = ErrorLog::new("UDP receive failed");
    let mut tun_errors = ErrorLog::new("TUN write failed");
    loop {
        if let Err(e) = udp.readable().await {
            errors.log(&e);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        {
            // No await in here: set_peers waits for this batch.
            let _gate = engine.batch_gate.read().unwrap_or_else(|e| e.into_inner());
            for _ in 0..BATCH {
                let (n, from) = match udp.try_recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        errors.log(&e);
                        break;
                    }
                };
                let mut io = UdpSideIo {
                    udp: &udp,
                    batch: &mut batch,
                };
                if let Some(job) = engine.handle_udp(from, &buf[..n], &mut scratch, &mut io)
                    && hs_tx.try_send(job).is_err()
                {
                    engine
                        .counters
                        .d_handshake_queue_full
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if let Err(e) = batch.flush(&tun) {
                engine
                    .counters
                    .d_io
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tun_errors.log(&e);
            }
        }
        tokio::task::yield_now().await;
    }
}

async fn tun_task(engine: Arc<Engine>, udp: Arc<UdpSocket>, tun: Arc<AsyncDevice>, mtu: u16) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65_535];
    let mut bufs: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; usize::from(mtu) + 64])
        .collect();
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut errors = ErrorLog::new("TUN read failed");
    loop {
        let n = match tun
            .recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                errors.log(&e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        for i in 0..n {
            let mut io = NetIo { udp: &udp };
            if let TunOutcome::Blocked { peer, to, range } =
                engine.handle_tun(&bufs[i][..sizes[i]], &mut scratch, &mut io)
            {
                // The socket buffer is full: wait, then send what is already encrypted,
                // unless the peer was removed meanwhile.
                loop {
                    if udp.writable().await.is_err() || !peer.is_live() {
                        break;
                    }
                    match udp.try_send_to(&scratch[range.clone()], to) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        _ => break,
                    }
                }
            }
        }
    }
}

async fn handshake_task(
    engine: Arc<Engine>,
    udp: Arc<UdpSocket>,
    mut jobs: mpsc::Receiver<HandshakeJob>,
) {
    let mut scratch = vec![0u8; MIN_SCRATCH];
    while let Some(job) = jobs.recv().await {
        engine.handle_handshake(&job, &mut scratch, &mut NetIo { udp: &udp });
    }
}

async fn timer_task(engine: Arc<Engine>, udp: Arc<UdpSocket>) {
    let mut scratch = vec![0u8; MIN_SCRATCH];
    let mut interval = tokio::time::interval(TIMER_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_reset = Instant::now();
    loop {
        interval.tick().await;
        if last_reset.elapsed() >= Duration::from_secs(1) {
            engine.reset_rate_limits();
            last_reset = Instant::now();
        }
        engine.tick(&mut scratch, &mut NetIo { udp: &udp });
    }
}

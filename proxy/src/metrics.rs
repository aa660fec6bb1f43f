//! Prometheus metrics for the management listener's `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use sekisho_audit::AuditMetrics;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub latency: Family<Labels, Histogram>,
    pub handshake_failures: Family<Labels, Counter>,
    pub connections_open: Gauge,
    /// Of them, idle HTTP/1 connections held without hyper's buffers (`gateway/served.rs`).
    pub connections_parked: Gauge,
    pub spoofed_headers_removed: Counter,
    pub enrollments: Family<Labels, Counter>,
    pub audit: AuditMetrics,
    /// The audit export's destinations (`sekisho_export`).
    pub export: sekisho_export::ExportMetrics,
    /// Emergency access declarations by state: active grants, awaiting approval, unreviewed,
    /// unreviewed past `break_glass.unreviewed_days`, follow-up overdue.
    pub break_glass: Family<Labels, Gauge>,
    /// Anomaly findings this replica recorded, by rule (`crate::oversight::anomaly`).
    pub anomaly_findings: Family<Labels, Counter>,
    /// Open anomaly findings in the store (all replicas'), as this replica's last scan saw them.
    pub anomaly_open: Gauge,
    pub notify: NotifyMetrics,
    /// Attempts refused by `[rate_limits]`, by scope and cause (`limit`, `table_full`), and
    /// the bursts that were put on record (`crate::throttle`).
    pub rate_limited: Family<Labels, Counter>,
    pub rate_limit_bursts: Family<Labels, Counter>,
}

/// The notification sender's metrics (`crate::notify`): what it delivered, and what is waiting.
/// The backlog gauges are the shared outbox's, as the last pass of this replica's sender saw it.
#[derive(Clone, Debug, Default)]
pub struct NotifyMetrics {
    /// Attempts by channel (`webhook`, `smtp`) and result (`delivered`, `retry`, `gave_up`).
    pub deliveries: Family<Labels, Counter>,
    pub pending: Gauge,
    pub oldest_pending_seconds: Gauge,
}

impl NotifyMetrics {
    fn register(registry: &mut Registry) -> NotifyMetrics {
        let m = NotifyMetrics::default();
        registry.register(
            "sekisho_notify_deliveries",
            "Notification delivery attempts by channel and result (delivered, retry, gave_up)",
            m.deliveries.clone(),
        );
        registry.register(
            "sekisho_notify_pending",
            "Notification deliveries neither delivered nor given up",
            m.pending.clone(),
        );
        registry.register(
            "sekisho_notify_oldest_pending_seconds",
            "Age of the oldest notice with a delivery pending (0 when none is)",
            m.oldest_pending_seconds.clone(),
        );
        m
    }

    pub fn delivery(&self, channel: &'static str, result: &'static str) {
        self.deliveries
            .get_or_create(&vec![("channel", channel), ("result", result)])
            .inc();
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_requests",
            "Requests by decision and reason",
            requests.clone(),
        );
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "sekisho_request_duration_seconds",
            "Time from request head to response head, by decision",
            latency.clone(),
        );
        let handshake_failures = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_tls_handshake_failures",
            "Failed TLS handshakes by reason",
            handshake_failures.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "sekisho_connections_open",
            "Open terminal connections",
            connections_open.clone(),
        );
        let connections_parked = Gauge::default();
        registry.register(
            "sekisho_connections_parked",
            "Open terminal connections idle between HTTP/1 requests, held without hyper's buffers",
            connections_parked.clone(),
        );
        let spoofed_headers_removed = Counter::default();
        registry.register(
            "sekisho_spoofed_headers_removed",
            "Inbound identity headers removed before processing",
            spoofed_headers_removed.clone(),
        );
        let enrollments = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_enrollments",
            "Enrollment attempts by result",
            enrollments.clone(),
        );
        let audit = AuditMetrics::register(&mut registry);
        let export = sekisho_export::ExportMetrics::register(&mut registry);
        let break_glass = Family::<Labels, Gauge>::default();
        registry.register(
            "sekisho_break_glass",
            "Emergency access declarations by state (active, awaiting_approval, unreviewed, unreviewed_overdue, follow_up_overdue)",
            break_glass.clone(),
        );
        let anomaly_findings = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_anomaly_findings",
            "Anomaly findings recorded by this replica, by rule",
            anomaly_findings.clone(),
        );
        let anomaly_open = Gauge::default();
        registry.register(
            "sekisho_anomaly_open",
            "Open anomaly findings awaiting an officer",
            anomaly_open.clone(),
        );
        let notify = NotifyMetrics::register(&mut registry);
        let rate_limited = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_rate_limited",
            "Attempts refused by a rate limit, by scope and cause (limit, table_full)",
            rate_limited.clone(),
        );
        let rate_limit_bursts = Family::<Labels, Counter>::default();
        registry.register(
            "sekisho_rate_limit_bursts",
            "Bursts of refused attempts put on record (one audit record each), by scope",
            rate_limit_bursts.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            handshake_failures,
            connections_open,
            connections_parked,
            spoofed_headers_removed,
            enrollments,
            audit,
            export,
            break_glass,
            anomaly_findings,
            anomaly_open,
            notify,
            rate_limited,
            rate_limit_bursts,
        }
    }

    /// The WireGuard endpoint's counters, read at each scrape (`sekisho_tunnel_*`).
    pub fn register_tunnel(&mut self, tunnel: sekisho_tunnel::Tunnel) {
        self.registry
            .register_collector(Box::new(TunnelCollector(tunnel)));
    }

    pub fn request(&self, decision: &'static str, reason: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&vec![("decision", decision), ("reason", reason)])
            .inc();
        self.latency
            .get_or_create(&vec![("decision", decision)])
            .observe(seconds);
    }

    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter family for the collector: name, help, label name, (label value, count).
type CounterFamily = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
);

/// Encodes [`sekisho_tunnel::TunnelStats`] on every scrape: the endpoint keeps the counts.
struct TunnelCollector(sekisho_tunnel::Tunnel);

impl std::fmt::Debug for TunnelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelCollector")
    }
}

impl prometheus_client::collector::Collector for TunnelCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = self.0.stats();
        let peers = ConstGauge::new(s.peers as i64);
        peers.encode(encoder.encode_descriptor(
            "sekisho_tunnel_peers",
            "WireGuard peers configured (active terminals with a tunnel key)",
            None,
            peers.metric_type(),
        )?)?;
        let families: [CounterFamily; 5] = [
            (
                "sekisho_tunnel_handshakes",
                "WireGuard handshakes by result",
                "result",
                vec![("ok", s.handshakes_ok), ("failed", s.handshakes_failed)],
            ),
            (
                "sekisho_tunnel_cookie_replies",
                "Cookie replies sent instead of handshakes, under load",
                "kind",
                vec![("sent", s.cookie_replies_sent)],
            ),
            (
                "sekisho_tunnel_packets",
                "Inner packets through the tunnel by direction (in: to the gateway)",
                "direction",
                vec![("in", s.packets_in), ("out", s.packets_out)],
            ),
            (
                "sekisho_tunnel_bytes",
                "Inner bytes through the tunnel by direction",
                "direction",
                vec![("in", s.bytes_in), ("out", s.bytes_out)],
            ),
            (
                "sekisho_tunnel_dropped",
                "Datagrams and packets the endpoint dropped, by reason",
                "reason",
                {
                    let d = &s.dropped;
                    vec![
                        ("malformed", d.malformed),
                        ("bad_mac", d.bad_mac),
                        ("unknown_key", d.unknown_key),
                        ("unknown_index", d.unknown_index),
                        ("removed_peer", d.removed_peer),
                        ("handshake_queue_full", d.handshake_queue_full),
                        ("source_rate_limited", d.source_rate_limited),
                        ("source_mismatch", d.source_mismatch),
                        ("not_gateway", d.not_gateway),
                        ("no_route", d.no_route),
                        ("no_endpoint", d.no_endpoint),
                        ("rejected_by_session", d.rejected_by_session),
                        ("io", d.io),
                    ]
                },
            ),
        ];
        for (name, help, label, values) in families {
            let mut m = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (value_label, v) in values {
                let labels = [(label, value_label)];
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

//! Prometheus metrics for the management listener's `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::AuditMetrics;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub latency: Family<Labels, Histogram>,
    pub handshake_failures: Family<Labels, Counter>,
    pub connections_open: Gauge,
    pub spoofed_headers_removed: Counter,
    pub enrollments: Family<Labels, Counter>,
    pub audit: AuditMetrics,
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
        Metrics {
            registry,
            requests,
            latency,
            handshake_failures,
            connections_open,
            spoofed_headers_removed,
            enrollments,
            audit,
        }
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

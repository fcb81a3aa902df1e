//! Prometheus metrics: requests by outcome and error code, latency per stage, pool usage.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::pipeline::Cached;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub pool: IntGaugeVec,
    pub rewrite_cache: IntCounterVec,
}

const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

impl Metrics {
    /// Builds the registry. Registration only fails on duplicate names, which is a bug here.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "rowgate_requests_total",
                "Requests by endpoint, outcome and error code.",
            ),
            &["endpoint", "outcome", "code"],
        )?;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("rowgate_stage_seconds", "Time spent per request stage.")
                .buckets(BUCKETS.to_vec()),
            &["stage"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "rowgate_pool_connections",
                "Database connection pool: size, available, waiting.",
            ),
            &["state"],
        )?;
        let rewrite_cache = IntCounterVec::new(
            Opts::new(
                "rowgate_rewrite_cache_total",
                "Rewrites answered from the cache (hit), made and kept (miss), or too long to keep (skipped).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(rewrite_cache.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            stage_seconds,
            pool,
            rewrite_cache,
        })
    }

    pub fn observe(&self, stage: &str, seconds: f64) {
        self.stage_seconds
            .with_label_values(&[stage])
            .observe(seconds);
    }

    pub fn rewrite_cache(&self, cached: Cached) {
        let result = match cached {
            Cached::Hit => "hit",
            Cached::Miss => "miss",
            Cached::Skipped => "skipped",
        };
        self.rewrite_cache.with_label_values(&[result]).inc();
    }

    pub fn count(&self, endpoint: &str, outcome: &str, code: &str) {
        self.requests
            .with_label_values(&[endpoint, outcome, code])
            .inc();
    }

    pub fn render(&self, pool: &deadpool_postgres::Status) -> String {
        self.pool.with_label_values(&["size"]).set(pool.size as i64);
        self.pool
            .with_label_values(&["available"])
            .set(pool.available as i64);
        self.pool
            .with_label_values(&["waiting"])
            .set(pool.waiting as i64);
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

//! Client quotas per principal (Kafka's `producer_byte_rate`, `consumer_byte_rate` and
//! `request_percentage`, as rates): produce bytes/s, consume bytes/s and requests/s, each
//! a token bucket holding one second of its rate. A request is refused
//! (`429 quota_exceeded`, with `Retry-After`) while its principal's bucket is empty or in
//! debt, before anything is done; a produce or consume that is let in is charged its
//! bytes, which may put the bucket in debt — the next request then waits it out, as
//! Kafka throttles the client after the fact. An SSE stream in debt pauses instead.
//!
//! Each gateway keeps its own buckets: behind a load balancer spreading a principal over
//! N gateways, the principal gets up to N times its quota (as Kafka's quotas are per
//! broker). Set the quota to the cluster-wide rate divided by N.

use crate::config::{QuotaConfig, QuotaLimits};
use crate::error::{ApiError, ApiResult};
use fjord_protocol::{ErrorCode, ErrorDetails, FjordError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a bucket meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ProduceBytes,
    ConsumeBytes,
    Requests,
}

impl Kind {
    fn rate(self, limits: &QuotaLimits) -> u64 {
        match self {
            Kind::ProduceBytes => limits.produce_bytes_per_second,
            Kind::ConsumeBytes => limits.consume_bytes_per_second,
            Kind::Requests => limits.requests_per_second,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::ProduceBytes => "produce bytes/s",
            Kind::ConsumeBytes => "consume bytes/s",
            Kind::Requests => "requests/s",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Units available; negative: debt.
    level: f64,
    at: Instant,
}

/// Every principal's buckets on this gateway.
#[derive(Debug)]
pub struct Quotas {
    config: QuotaConfig,
    /// Whether any rate is set (read once: the hot path asks on every request).
    enabled: bool,
    buckets: Mutex<HashMap<(String, Kind), Bucket>>,
}

/// Most buckets kept; beyond, idle full ones are forgotten (a full bucket is the same as
/// a new one).
const MAX_BUCKETS: usize = 100_000;

impl Quotas {
    pub fn new(config: QuotaConfig) -> Self {
        Self { enabled: config.is_set(), config, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether any quota is configured at all (the hot path skips everything if not).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn rate(&self, principal: &str, kind: Kind) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let limits = self.config.limits(principal);
        kind.rate(&limits)
    }

    /// Runs `f` on `principal`'s refilled bucket of `kind` (rate per second `rate`).
    fn with_bucket<T>(&self, principal: &str, kind: Kind, rate: u64, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let now = Instant::now();
        let cap = rate as f64;
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.level + now.duration_since(b.at).as_secs_f64() * cap < cap);
        }
        let b = buckets.entry((principal.to_owned(), kind)).or_insert(Bucket { level: cap, at: now });
        b.level = (b.level + now.duration_since(b.at).as_secs_f64() * cap).min(cap);
        b.at = now;
        f(b)
    }

    /// How long until `principal`'s `kind` bucket is out of debt (`None`: it is not, or
    /// there is no quota). For a stream to pause on.
    pub fn debt(&self, principal: &str, kind: Kind) -> Option<Duration> {
        let rate = self.rate(principal, kind);
        if rate == 0 {
            return None;
        }
        self.with_bucket(principal, kind, rate, |b| {
            (b.level < 0.0).then(|| Duration::from_secs_f64(-b.level / rate as f64))
        })
    }

    /// Lets a request in, or refuses it while the bucket is in debt.
    pub fn admit(&self, principal: &str, kind: Kind) -> ApiResult<()> {
        match self.debt(principal, kind) {
            None => Ok(()),
            Some(wait) => Err(exceeded(principal, kind, self.rate(principal, kind), wait)),
        }
    }

    /// [`admit`](Self::admit), then charges `units` (which may leave the bucket in debt).
    pub fn spend(&self, principal: &str, kind: Kind, units: u64) -> ApiResult<()> {
        let rate = self.rate(principal, kind);
        if rate == 0 {
            return Ok(());
        }
        // One request needs a whole unit; bytes need only a bucket not in debt.
        let need = if kind == Kind::Requests { 1.0 } else { f64::MIN_POSITIVE };
        self.with_bucket(principal, kind, rate, |b| {
            if b.level < need {
                let wait = Duration::from_secs_f64(((need - b.level) / rate as f64).max(0.001));
                return Err(exceeded(principal, kind, rate, wait));
            }
            b.level -= units as f64;
            Ok(())
        })
    }

    /// Charges `units` already served (consumed bytes, known after the read).
    pub fn charge(&self, principal: &str, kind: Kind, units: u64) {
        let rate = self.rate(principal, kind);
        if rate > 0 {
            self.with_bucket(principal, kind, rate, |b| b.level -= units as f64);
        }
    }
}

fn exceeded(principal: &str, kind: Kind, rate: u64, wait: Duration) -> ApiError {
    let retry_after_ms = (wait.as_millis() as u64).max(1);
    tracing::info!(target: "audit", principal, quota = kind.what(), rate, retry_after_ms, decision = "quota_exceeded");
    ApiError(
        FjordError::new(
            ErrorCode::QuotaExceeded,
            format!("principal `{principal}` is over its quota of {rate} {}; nothing was done", kind.what()),
        )
        .with_details(ErrorDetails { retry_after_ms: Some(retry_after_ms), ..Default::default() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(produce: u64, requests: u64) -> Quotas {
        let mut c = QuotaConfig::default();
        c.default.produce_bytes_per_second = produce;
        c.default.requests_per_second = requests;
        c.principals.insert(
            "vip".into(),
            crate::config::QuotaOverride { produce_bytes_per_second: Some(0), ..Default::default() },
        );
        Quotas::new(c)
    }

    /// A principal past its byte rate is refused with the time until it is out of debt;
    /// another principal is not; an override of 0 is unlimited; requests/s counts calls.
    #[test]
    fn buckets_refuse_in_debt_and_are_per_principal() {
        let q = quotas(1000, 2);
        q.spend("a", Kind::ProduceBytes, 3000).expect("a bucket not in debt lets one request in");
        let e = q.spend("a", Kind::ProduceBytes, 1).expect_err("in debt");
        assert_eq!(e.code(), ErrorCode::QuotaExceeded);
        let wait = e.0.details.and_then(|d| d.retry_after_ms).expect("retry after");
        assert!((1500..=2000).contains(&wait), "{wait}");
        q.spend("b", Kind::ProduceBytes, 10).expect("another principal is unaffected");
        for _ in 0..10 {
            q.spend("vip", Kind::ProduceBytes, 1 << 30).expect("an override of 0 is unlimited");
        }
        q.spend("a", Kind::Requests, 1).expect("1");
        q.spend("a", Kind::Requests, 1).expect("2");
        assert!(q.spend("a", Kind::Requests, 1).is_err(), "a third request in the same instant");
        assert!(q.admit("a", Kind::ConsumeBytes).is_ok(), "no consume quota");
    }
}

//! Latency samples and their summary: throughput, p50, p99 and p99.9 over one timed run.

use std::time::Duration;

use serde::Serialize;

/// One timed run's figures, as written to `result.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Completed requests (answered as expected) in the run.
    pub requests: u64,
    /// Requests that failed (transport error, unexpected status or answer).
    pub errors: u64,
    /// Wall time of the run, in seconds.
    pub seconds: f64,
    /// `requests / seconds`.
    pub per_s: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency in milliseconds.
    pub p999_ms: f64,
    /// Server CPU time (user + system) per request over the run, in microseconds; `null` when the
    /// server's `/proc` entry could not be read.
    pub server_cpu_us_per_request: Option<f64>,
    /// Server context switches (all threads) per request over the run.
    pub ctx_switches_per_request: Option<f64>,
    /// The load generator's own CPU time per request (reported apart from the server's).
    pub loadgen_cpu_us_per_request: Option<f64>,
    /// The database server's CPU time per request (PostgreSQL: the postmaster and its processes),
    /// when it was measured (`--database-pid-file`); `null` otherwise (sled is inside the server).
    pub database_cpu_us_per_request: Option<f64>,
    /// PKCS#11 object searches (`C_FindObjectsInit`) per request over the run, from the server's
    /// `offline_signer_hsm_object_searches_total`; 0 when every key handle came from the session
    /// caches; `null` when `/metrics` could not be read.
    pub hsm_object_searches_per_request: Option<f64>,
    /// Share of the run's key look-ups answered from the sessions' caches of key handles
    /// (`offline_signer_hsm_key_handle_cache_hits_total` against the searches), 0 to 1; `null` when
    /// `/metrics` could not be read or the run looked up no key.
    pub hsm_key_handle_cache_hit_rate: Option<f64>,
}

impl Summary {
    /// The same summary with the run's cost per request filled in.
    pub fn with_cost(self, cost: Option<super::cost::PerRequest>) -> Self {
        Self {
            server_cpu_us_per_request: cost.map(|c| c.server_cpu_us),
            ctx_switches_per_request: cost.map(|c| c.server_ctx_switches),
            loadgen_cpu_us_per_request: cost.map(|c| c.loadgen_cpu_us),
            ..self
        }
    }

    /// The same summary with the database server's CPU time per request.
    pub fn with_database_cpu(self, database_cpu_us: Option<f64>) -> Self {
        Self {
            database_cpu_us_per_request: database_cpu_us,
            ..self
        }
    }

    /// The same summary with the server's PKCS#11 look-ups during the run (counters before and
    /// after): object searches per request and the key-handle cache's hit rate.
    pub fn with_hsm_lookups(
        self,
        before: Option<super::load::HsmLookups>,
        after: Option<super::load::HsmLookups>,
    ) -> Self {
        let delta = match (before, after) {
            (Some(b), Some(a)) if a.searches >= b.searches && a.cache_hits >= b.cache_hits => {
                Some((a.searches - b.searches, a.cache_hits - b.cache_hits))
            }
            _ => None,
        };
        let per_request = delta
            .filter(|_| self.requests > 0)
            .map(|(searches, _)| searches / self.requests as f64);
        let hit_rate = delta
            .filter(|(searches, hits)| searches + hits > 0.0)
            .map(|(searches, hits)| hits / (searches + hits));
        Self {
            hsm_object_searches_per_request: per_request,
            hsm_key_handle_cache_hit_rate: hit_rate,
            ..self
        }
    }
}

/// Collected latencies of one run, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
    errors: u64,
}

impl Latencies {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            micros: Vec::with_capacity(n),
            errors: 0,
        }
    }

    /// Records one successful operation that took `d`.
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Records one failed operation (not counted in the latencies).
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Adds another task's samples.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
    }

    /// Successful operations so far.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// `true` when nothing succeeded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The summary over a run that lasted `elapsed`.
    pub fn summary(mut self, elapsed: Duration) -> Summary {
        self.micros.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        let requests = self.micros.len() as u64;
        Summary {
            requests,
            errors: self.errors,
            seconds,
            per_s: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: percentile_ms(&self.micros, 0.50),
            p99_ms: percentile_ms(&self.micros, 0.99),
            p999_ms: percentile_ms(&self.micros, 0.999),
            server_cpu_us_per_request: None,
            ctx_switches_per_request: None,
            hsm_object_searches_per_request: None,
            hsm_key_handle_cache_hit_rate: None,
            loadgen_cpu_us_per_request: None,
            database_cpu_us_per_request: None,
        }
    }
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds (0 when empty).
fn percentile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[index]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        l.error();
        let s = l.summary(Duration::from_secs(2));
        assert_eq!(s.requests, 1000);
        assert_eq!(s.errors, 1);
        assert_eq!(s.per_s, 500.0);
        assert_eq!(s.p50_ms, 500.0);
        assert_eq!(s.p99_ms, 990.0);
        assert_eq!(s.p999_ms, 999.0);
    }

    #[test]
    fn empty_run_is_all_zero() {
        let s = Latencies::default().summary(Duration::from_secs(1));
        assert_eq!(
            (s.requests, s.p50_ms, s.p999_ms, s.per_s),
            (0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn lookups_give_searches_per_request_and_the_hit_rate() {
        use super::super::load::HsmLookups;
        let mut l = Latencies::default();
        for _ in 0..100 {
            l.record(Duration::from_millis(1));
        }
        let at = |searches, cache_hits| {
            Some(HsmLookups {
                searches,
                cache_hits,
            })
        };
        let s = l
            .summary(Duration::from_secs(1))
            .with_hsm_lookups(at(10.0, 1000.0), at(15.0, 1195.0));
        assert_eq!(s.hsm_object_searches_per_request, Some(0.05));
        assert_eq!(s.hsm_key_handle_cache_hit_rate, Some(0.975));
        // No look-up at all: no rate; counters that went back (a restarted server): nothing.
        let idle = s.with_hsm_lookups(at(3.0, 7.0), at(3.0, 7.0));
        assert_eq!(idle.hsm_object_searches_per_request, Some(0.0));
        assert_eq!(idle.hsm_key_handle_cache_hit_rate, None);
        let restarted = s.with_hsm_lookups(at(3.0, 700.0), at(4.0, 7.0));
        assert_eq!(restarted.hsm_object_searches_per_request, None);
        assert_eq!(restarted.hsm_key_handle_cache_hit_rate, None);
        assert_eq!(
            s.with_hsm_lookups(None, at(1.0, 1.0))
                .hsm_key_handle_cache_hit_rate,
            None
        );
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        b.record(Duration::from_micros(1500));
        a.merge(b);
        let s = a.summary(Duration::ZERO);
        assert_eq!(
            (s.p50_ms, s.p99_ms, s.p999_ms, s.per_s),
            (1.5, 1.5, 1.5, 0.0)
        );
    }
}

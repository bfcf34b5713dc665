//! What a run costs the server, not only how fast it went: CPU time (user + system) and context
//! switches of a process, read from `/proc`, before and after a measured interval. These figures are
//! far steadier than throughput on a shared machine.
//!
//! - CPU: fields 14 and 15 (`utime`, `stime`) of `/proc/PID/stat`, in clock ticks, for the whole
//!   process (every thread); converted with the clock-tick rate (`getconf CLK_TCK`, 100 when unknown).
//! - Context switches: `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` summed over every
//!   thread in `/proc/PID/task/*/status` (the process's own `status` counts its main thread only).
//! - A database server (PostgreSQL: a postmaster and one process per connection): the CPU of the
//!   postmaster and of every process whose parent it is ([`ProcCost::of_tree`]). The connections of
//!   the service's pool live as long as the service, so they are there at both ends of a run.

use std::sync::OnceLock;

/// A process's cumulative cost at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcCost {
    /// CPU time, user + system, in microseconds.
    pub cpu_us: u64,
    /// Context switches, voluntary + involuntary, over all threads alive now.
    pub ctx_switches: u64,
}

impl ProcCost {
    /// The cost of process `pid` so far; `None` when `/proc` cannot be read (not Linux, process gone).
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ticks = cpu_ticks(&stat)?;
        let mut ctx_switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                ctx_switches += ctx_switches_in(&status);
            }
        }
        Some(Self {
            cpu_us: ticks.saturating_mul(1_000_000) / clock_ticks_per_second(),
            ctx_switches,
        })
    }

    /// This process's cost so far (the load generator's own, reported apart).
    pub fn of_self() -> Option<Self> {
        Self::of(std::process::id())
    }

    /// The summed cost of process `root` and its children (by `/proc/PID/stat` field 4, the parent
    /// id); `None` when `root` cannot be read. A child that ends between two snapshots takes its CPU
    /// time with it (measure over processes that live through the run).
    pub fn of_tree(root: u32) -> Option<Self> {
        let mut sum = Self::of(root)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue; // gone since the listing
            };
            if parent_of(&stat) != Some(root) {
                continue;
            }
            if let Some(child) = Self::of(pid) {
                sum = sum.plus(child);
            }
        }
        Some(sum)
    }

    /// The summed cost of several processes (the instances of one service); `None` when one of
    /// them cannot be read or the list is empty.
    pub fn of_all(pids: &[u32]) -> Option<Self> {
        pids.iter()
            .map(|&pid| Self::of(pid))
            .try_fold(None::<Self>, |sum, cost| {
                let cost = cost?;
                Some(Some(sum.map_or(cost, |s| s.plus(cost))))
            })
            .flatten()
    }

    /// The cost of two processes together.
    fn plus(self, other: Self) -> Self {
        Self {
            cpu_us: self.cpu_us + other.cpu_us,
            ctx_switches: self.ctx_switches + other.ctx_switches,
        }
    }
}

/// What an interval cost, per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerRequest {
    /// Server CPU time per request, in microseconds.
    pub server_cpu_us: f64,
    /// Server context switches per request.
    pub server_ctx_switches: f64,
    /// The load generator's CPU time per request, in microseconds.
    pub loadgen_cpu_us: f64,
}

/// The cost per request between two pairs of snapshots (server, load generator) over `requests`;
/// `None` when a snapshot is missing or nothing was requested.
pub fn per_request(
    server: (Option<ProcCost>, Option<ProcCost>),
    loadgen: (Option<ProcCost>, Option<ProcCost>),
    requests: u64,
) -> Option<PerRequest> {
    let (Some(s0), Some(s1)) = server else {
        return None;
    };
    Some(PerRequest {
        server_cpu_us: cpu_per_request(server.0, server.1, requests)?,
        server_ctx_switches: s1.ctx_switches.saturating_sub(s0.ctx_switches) as f64
            / requests as f64,
        loadgen_cpu_us: cpu_per_request(loadgen.0, loadgen.1, requests)?,
    })
}

/// CPU time per request between two snapshots, in microseconds; `None` when one is missing or
/// nothing was requested.
pub fn cpu_per_request(
    before: Option<ProcCost>,
    after: Option<ProcCost>,
    requests: u64,
) -> Option<f64> {
    let (Some(b), Some(a)) = (before, after) else {
        return None;
    };
    (requests > 0).then(|| a.cpu_us.saturating_sub(b.cpu_us) as f64 / requests as f64)
}

/// The postmaster's process id: the first line of PostgreSQL's `postmaster.pid`.
///
/// # Errors
/// The file cannot be read or its first line is not a process id, in words.
pub fn postmaster_pid(file: &std::path::Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading the database's pid file {}: {e}", file.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| format!("{}: the first line is not a process id", file.display()))
}

/// The parent process id (field 4) of a `/proc/PID/stat` line (fields counted after the last `)`).
fn parent_of(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Voluntary + involuntary context switches of one `/proc/PID/task/TID/status`.
fn ctx_switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &u64| *t > 0)
            .unwrap_or(100)
    })
}

/// The value of the Prometheus counter `name` (its unlabelled sample) in a `/metrics` text; `None`
/// when it is absent (the counter was never incremented) or does not parse.
pub fn prometheus_counter(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name)
                .then(|| value.trim().parse().ok())
                .flatten()
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_counter_is_read_from_the_prometheus_text() {
        let text = "# HELP x\n# TYPE offline_signer_hsm_object_searches_total counter\n\
                    offline_signer_hsm_object_searches_total 42\n\
                    offline_signer_hsm_object_searches_total_other 7\n";
        assert_eq!(
            prometheus_counter(text, "offline_signer_hsm_object_searches_total"),
            Some(42.0)
        );
        assert_eq!(prometheus_counter(text, "missing"), None);
        assert_eq!(prometheus_counter("a nope\n", "a"), None);
    }
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 30 0 0 20 0 4 0 100 1000 50 184467";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_the_parent_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 17 4242 4242 0 -1";
        assert_eq!(parent_of(stat), Some(17));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_tree_counts_the_children_of_its_root_and_no_one_else() {
        let me = std::process::id();
        let alone = ProcCost::of_tree(me).expect("/proc is readable");
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .spawn()
            .expect("start a child");
        // Wait until the child has burnt some CPU (it counts to 200,000 first).
        let mut child_cpu = 0;
        for _ in 0..200 {
            child_cpu = ProcCost::of(child.id()).map_or(0, |c| c.cpu_us);
            if child_cpu > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let with_child = ProcCost::of_tree(me).expect("/proc is readable");
        let _ = child.kill();
        let _ = child.wait();
        assert!(child_cpu > 0, "the child never showed CPU time");
        assert!(
            with_child.cpu_us >= alone.cpu_us + child_cpu,
            "{with_child:?} should hold {alone:?} and the child's {child_cpu} µs"
        );
        assert_eq!(ProcCost::of_tree(u32::MAX), None, "a missing root");
    }

    #[test]
    fn cpu_per_request_needs_both_snapshots_and_a_request() {
        let at = |cpu_us| {
            Some(ProcCost {
                cpu_us,
                ctx_switches: 0,
            })
        };
        assert_eq!(cpu_per_request(at(1_000), at(3_000), 4), Some(500.0));
        assert_eq!(cpu_per_request(None, at(3_000), 4), None);
        assert_eq!(cpu_per_request(at(1_000), at(3_000), 0), None);
    }

    #[test]
    fn the_postmaster_pid_is_the_first_line_of_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("postmaster.pid");
        std::fs::write(&file, "31337\n/var/lib/pg\n1700000000\n5432\n").expect("write");
        assert_eq!(postmaster_pid(&file), Ok(31337));
        std::fs::write(&file, "not a pid\n").expect("write");
        assert!(
            postmaster_pid(&file)
                .unwrap_err()
                .contains("not a process id")
        );
        assert!(postmaster_pid(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn sums_both_kinds_of_context_switch() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(ctx_switches_in(status), 15);
    }

    #[test]
    fn several_processes_cost_their_sum() {
        let me = std::process::id();
        assert_eq!(ProcCost::of_all(&[]), None);
        let one = ProcCost::of_all(&[me]).expect("/proc is readable");
        let two = ProcCost::of_all(&[me, me]).expect("/proc is readable");
        assert!(two.cpu_us >= 2 * one.cpu_us);
        assert!(two.ctx_switches >= 2 * one.ctx_switches);
        assert_eq!(ProcCost::of_all(&[me, u32::MAX]), None, "a missing process");
    }

    #[test]
    fn this_process_has_a_cost_and_it_grows() {
        let before = ProcCost::of_self().expect("/proc is readable");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = ProcCost::of_self().expect("/proc is readable");
        // CPU time keeps the time of threads that ended; context switches are summed over the
        // threads alive at each snapshot, and other tests' threads come and go meanwhile, so
        // only the CPU time is compared.
        assert!(after.cpu_us >= before.cpu_us, "{before:?} → {after:?}");
        let per = per_request((Some(before), Some(after)), (Some(before), Some(after)), 10)
            .expect("both snapshots");
        assert!(per.server_cpu_us >= 0.0);
        assert!(per_request((None, Some(after)), (Some(before), Some(after)), 10).is_none());
        assert!(per_request((Some(before), Some(after)), (Some(before), Some(after)), 0).is_none());
    }
}

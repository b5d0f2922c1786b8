//! The `process_*` family every client_golang exporter has (and blackbox_exporter with it):
//! stock dashboards and alerts ("exporter restarted", "exporter leaks fds", CPU per target)
//! read these names, so sonde exposes them the same way, read from `/proc/self` at scrape time.
//!
//! Names, types and help texts are client_golang's process collector's. Off Linux (no
//! `/proc/self/stat`) the family is simply absent, as client_golang's is where it cannot read
//! it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Reads the process's figures on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub virtual_max_bytes: Option<f64>,
}

impl Reading {
    /// The process's figures now, or `None` where `/proc/self/stat` cannot be read.
    pub fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let mut r = parse_stat(&stat, &boot, ticks.max(1) as f64, page.max(1) as f64)?;
        r.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        r.max_fds = soft_limit(libc::RLIMIT_NOFILE);
        r.virtual_max_bytes = soft_limit(libc::RLIMIT_AS);
        Some(r)
    }
}

/// The soft limit of `resource`; unlimited as client_golang shows it (2^64 − 1).
fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<f64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur as f64)
}

/// `/proc/self/stat` and `/proc/stat` into a reading (fds and limits left out). The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
pub fn parse_stat(stat: &str, proc_stat: &str, ticks: f64, page: f64) -> Option<Reading> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state); field n is at index n − 3.
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(Reading {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
        start_time_seconds: btime + num(22)? / ticks,
        open_fds: None,
        max_fds: None,
        virtual_max_bytes: None,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = Reading::now() else {
            return Ok(());
        };
        let gauge = |e: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(m)
        };
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(r.cpu_seconds).encode(m)?;
        if let Some(v) = r.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                v,
            )?;
        }
        if let Some(v) = r.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                v,
            )?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            r.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            r.start_time_seconds,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            r.virtual_bytes,
        )?;
        if let Some(v) = r.virtual_max_bytes {
            gauge(
                &mut encoder,
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                v,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (so nde) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 2048 18446744073709551615";
        let r = parse_stat(stat, "cpu 1 2 3\nbtime 1700000000\n", 100.0, 4096.0).unwrap();
        assert_eq!(r.cpu_seconds, 3.0);
        assert_eq!(r.virtual_bytes, 123456789.0);
        assert_eq!(r.resident_bytes, 2048.0 * 4096.0);
        assert_eq!(r.start_time_seconds, 1700000010.0);
    }

    #[test]
    fn a_truncated_stat_is_no_reading() {
        assert_eq!(parse_stat("1 (x) S 1 2", "btime 1\n", 100.0, 4096.0), None);
        assert_eq!(parse_stat("garbage", "btime 1\n", 100.0, 4096.0), None);
    }

    #[test]
    fn this_process_reads() {
        let Some(r) = Reading::now() else {
            panic!("/proc/self/stat unreadable: the process family would be missing here");
        };
        assert!(r.open_fds.unwrap() >= 3.0, "{r:?}");
        assert!(r.resident_bytes > 0.0, "{r:?}");
        assert!(r.start_time_seconds > 1.0e9, "{r:?}");
    }
}

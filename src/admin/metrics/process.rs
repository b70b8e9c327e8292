//! The process families (CPU, memory, file descriptors, threads), named
//! as Prometheus' client libraries name them.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::family::{family, gauge};
use crate::ops::process::ProcessStats;

/// The process's own numbers, when `/proc` could be read.
pub(super) fn encode(e: &mut DescriptorEncoder, p: &ProcessStats) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    family(
        e,
        "process_cpu_seconds",
        "User and system CPU time of the broker process.",
        Counter,
        &[(vec![], ConstCounter::new(p.cpu_seconds))],
    )?;
    family(
        e,
        "process_resident_memory_bytes",
        "Resident memory.",
        Gauge,
        &[(vec![], gauge(p.resident_bytes))],
    )?;
    family(
        e,
        "process_virtual_memory_bytes",
        "Virtual memory.",
        Gauge,
        &[(vec![], gauge(p.virtual_bytes))],
    )?;
    family(
        e,
        "process_open_fds",
        "Open file descriptors.",
        Gauge,
        &[(vec![], gauge(p.open_fds))],
    )?;
    if let Some(max) = p.max_fds {
        family(
            e,
            "process_max_fds",
            "File descriptor limit.",
            Gauge,
            &[(vec![], gauge(max))],
        )?;
    }
    family(
        e,
        "process_threads",
        "Threads of the broker process.",
        Gauge,
        &[(vec![], gauge(p.threads))],
    )?;
    Ok(())
}

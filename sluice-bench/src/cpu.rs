//! CPU time and memory of a process from /proc (Linux).

/// User + system CPU seconds of `pid` (or this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: what `ps` and `top` show.
    pub rss: u64,
    /// RssAnon: heap and stacks, without mapped files (the binary).
    pub anon: u64,
    /// VmHWM: the highest VmRSS so far.
    pub peak: u64,
}

/// Resident memory of `pid`.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some(Memory {
        rss: kb("VmRSS:")?,
        anon: kb("RssAnon:")?,
        peak: kb("VmHWM:")?,
    })
}

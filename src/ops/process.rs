//! The broker process as the kernel sees it (Linux `/proc`), for metrics.
//! Elsewhere every value reads as absent.

/// CPU time, memory and file descriptors of this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
}

/// Kernel clock ticks per second for `/proc/*/stat` times: 100 on every
/// Linux architecture we build for (USER_HZ).
const CLOCK_TICKS: f64 = 100.0;

impl ProcessStats {
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may
        // contain spaces.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state): utime is field 14, stime 15, threads 20,
        // vsize 23, rss 24 (pages).
        let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        let page = 4096;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|line| line.starts_with("Max open files"))
                    .and_then(|line| line.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        Some(ProcessStats {
            cpu_seconds: (num(14)? + num(15)?) as f64 / CLOCK_TICKS,
            resident_bytes: num(24)? * page,
            virtual_bytes: num(23)?,
            open_fds,
            max_fds,
            threads: num(20)?,
        })
    }
}

/// Raises this process's open-file limit from the soft to the hard one, as
/// servers holding many sockets do (Debian's soft default is 1024, far
/// below `limits.max_connections`). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        #[allow(unsafe_code)]
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    return Some(raised.rlim_cur);
                }
            }
        }
        Some(lim.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let s = ProcessStats::read().expect("/proc/self");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.threads >= 1, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
    }
}

//! CPU and memory of a process from `/proc` (Linux): user + system CPU time from
//! `/proc/PID/stat`, resident set size from `VmRSS` in `/proc/PID/status`.

use std::path::PathBuf;
use std::time::Instant;

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub at: Instant,
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its closing parenthesis.
pub fn parse_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // after the name: field 3 (state) is index 0, so utime (14) is index 11
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Samples one process; CPU % is over the time since the previous sample (100 % = one core).
pub struct ProcMeter {
    dir: PathBuf,
    ticks_per_s: f64,
    prev: Option<Reading>,
}

impl ProcMeter {
    /// A process by pid; fails if it does not exist.
    pub fn pid(pid: u32) -> std::io::Result<ProcMeter> {
        Self::at(PathBuf::from(format!("/proc/{pid}")))
    }

    /// This process.
    pub fn this_process() -> std::io::Result<ProcMeter> {
        Self::at(PathBuf::from("/proc/self"))
    }

    fn at(dir: PathBuf) -> std::io::Result<ProcMeter> {
        let mut m = ProcMeter {
            dir,
            ticks_per_s: clock_ticks_per_second(),
            prev: None,
        };
        m.prev = Some(m.read()?);
        Ok(m)
    }

    pub fn read(&self) -> std::io::Result<Reading> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let stat = std::fs::read_to_string(self.dir.join("stat"))?;
        let status = std::fs::read_to_string(self.dir.join("status"))?;
        Ok(Reading {
            cpu_ticks: parse_stat(&stat).ok_or_else(|| bad("unreadable stat"))?,
            rss_kib: parse_rss_kib(&status).ok_or_else(|| bad("no VmRSS"))?,
            at: Instant::now(),
        })
    }

    /// CPU % since the previous sample and the RSS now (MiB); `None` once the process is gone.
    pub fn sample(&mut self) -> Option<(f64, f64)> {
        let now = self.read().ok()?;
        let cpu = self.prev.map(|p| {
            let secs = now.at.duration_since(p.at).as_secs_f64().max(1e-3);
            (now.cpu_ticks.saturating_sub(p.cpu_ticks)) as f64 / self.ticks_per_s / secs * 100.0
        });
        self.prev = Some(now);
        Some((cpu.unwrap_or(0.0), now.rss_kib as f64 / 1024.0))
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        Some(self.read().ok()?.cpu_ticks as f64 / self.ticks_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 2210 0 0 0 750 125 0 0 20 0 3 0 5871 12345 678 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(875));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tmanifold\nVmPeak:\t  200000 kB\nVmRSS:\t   51200 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status), Some(51200));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let mut m = ProcMeter::this_process().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (cpu, rss) = m.sample().unwrap();
        assert!(cpu >= 0.0);
        assert!(rss > 1.0, "{rss}");
        assert!(ProcMeter::pid(u32::MAX).is_err());
    }
}

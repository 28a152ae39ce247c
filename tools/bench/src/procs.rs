//! Resident memory of the running services, from /proc.

/// `VmRSS` and `VmHWM` (peak) of `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((field(&status, "VmRSS:")?, field(&status, "VmHWM:")?))
}

fn field(status: &str, name: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: f64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_kib_fields_as_mib() {
        let s = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(super::field(s, "VmRSS:"), Some(10.0));
        assert_eq!(super::field(s, "VmHWM:"), Some(20.0));
        assert_eq!(super::field(s, "VmSwap:"), None);
    }
}

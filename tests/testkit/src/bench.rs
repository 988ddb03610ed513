//! Small measuring helpers for benchmarks that drive a channel against a loopback fake in one
//! process: CPU time per named thread group (so client and fake are told apart) and the load
//! average to report beside wall-clock figures. Linux only (`/proc`); elsewhere they say so.

/// CPU seconds (user + system) used so far by this process's threads whose name starts with
/// `prefix`; `None` where `/proc` is not there.
pub fn thread_cpu_secs(prefix: &str) -> Option<f64> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        // After the name: state is field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Some(ticks as f64 / ticks_per_sec)
}

/// The 1, 5 and 15 minute load averages as text (`"unknown"` where `/proc` is not there).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_counted_for_the_named_threads_only() {
        let burner = std::thread::Builder::new()
            .name("cpu-burner-1".into())
            .spawn(|| {
                // Spin until the kernel has charged this thread at least one tick.
                let mut x = 0u64;
                while thread_cpu_secs("cpu-burner").unwrap_or(0.0) == 0.0 {
                    for i in 0..1_000_000u64 {
                        x = x.wrapping_add(i ^ x.rotate_left(3));
                    }
                }
                x
            })
            .unwrap();
        burner.join().unwrap();
        assert_eq!(thread_cpu_secs("no-thread-has-this-name"), Some(0.0));
        assert!(load_average().split_whitespace().count() == 3);
    }
}

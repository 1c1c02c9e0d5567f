//! RocketMQ's rule of thumb for whether a read is still served from the page cache: it
//! starts within `accessMessageInMemoryMaxRatio` of physical memory of the CommitLog's end.
//! It decides where a new group starts and where a lagging consumer is sent.

use std::sync::OnceLock;

use crate::config::Percent;

/// Whether a read `behind` bytes from the CommitLog's end counts as in memory.
pub(crate) fn holds(behind: u64, ratio: Percent) -> bool {
    behind <= ratio.of(physical_memory())
}

/// MemTotal, read once (Java's `OperatingSystemMXBean.getTotalPhysicalMemorySize`, which
/// RocketMQ reads once too); unknown counts as unbounded, so every read is in memory.
fn physical_memory() -> u64 {
    static TOTAL: OnceLock<u64> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_within_the_share_of_memory_is_in_memory() {
        let forty: Percent = "40".parse().unwrap();
        let share = forty.of(physical_memory());
        assert!(share > 0);
        assert!(holds(0, forty));
        assert!(holds(share, forty));
        assert!(!holds(share + 1, forty));
        let none: Percent = "0".parse().unwrap();
        assert!(holds(0, none));
        assert!(!holds(1, none));
    }
}

//! The disk under the data: raw sequential write bandwidth (1 MiB writes, then one
//! fdatasync, through the page cache) and the rate of 4 KiB append + fdatasync, the cost that
//! bounds a SYNC_FLUSH broker's flushes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Context, Scenario};
use crate::report::Report;

pub struct Disk {
    pub dir: PathBuf,
    pub write_mib: usize,
    pub sync_seconds: f64,
}

impl Scenario for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn run(&self, ctx: &Context) -> Result<Report> {
        let mut report = ctx.report(self.name());
        let dir = self.dir.clone();
        let (write_mib, sync_seconds) = (self.write_mib, self.sync_seconds);
        let (bandwidth, syncs) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("bench-disk-{}", std::process::id()));
            let chunk = vec![0xA5u8; 1 << 20];
            let started = Instant::now();
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            for _ in 0..write_mib {
                file.write_all(&chunk)?;
            }
            file.sync_data()?;
            let bandwidth = write_mib as f64 / started.elapsed().as_secs_f64();
            drop(file);
            std::fs::remove_file(&path)?;

            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            let page = vec![0x5Au8; 4096];
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs_f64(sync_seconds) {
                file.write_all(&page)?;
                file.sync_data()?;
                n += 1;
            }
            let syncs = n as f64 / started.elapsed().as_secs_f64();
            drop(file);
            std::fs::remove_file(&path)?;
            Ok((bandwidth, syncs))
        })
        .await??;
        report
            .metrics
            .insert("seq_write_mib_per_s".into(), bandwidth);
        report.metrics.insert("fdatasync_per_s".into(), syncs);
        Ok(report)
    }
}

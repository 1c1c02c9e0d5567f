//! `cargo bench -p store`: append throughput of the store beside what this disk can do raw.
//!
//! Prints, from one run: raw sequential write bandwidth, the single-writer fdatasync rate,
//! msync(range) versus fdatasync(file) after a 4 KiB write into a mapping (the choice the
//! CommitLog flush makes), then appends of 128 B / 1 KiB / 16 KiB bodies under ASYNC_FLUSH
//! and SYNC_FLUSH group commit with 1, 16 and 64 concurrent writers.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use message::Message;
use store::{FlushDiskType, MessageStore, PutMessage, StoreConfig};

const RUN: Duration = Duration::from_millis(1500);

fn raw_sequential_write(dir: &std::path::Path) -> f64 {
    let path = dir.join("raw");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let chunk = vec![7u8; 1 << 20];
    let total = 512usize;
    let started = Instant::now();
    for _ in 0..total {
        file.write_all(&chunk).unwrap();
    }
    file.sync_data().unwrap();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

fn fdatasync_rate(dir: &std::path::Path) -> f64 {
    let path = dir.join("sync");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let page = [1u8; 4096];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < RUN {
        use std::os::unix::fs::FileExt;
        file.write_all_at(&page, count * 4096).unwrap();
        file.sync_data().unwrap();
        count += 1;
    }
    std::fs::remove_file(path).unwrap();
    count as f64 / started.elapsed().as_secs_f64()
}

/// Ops/s of "write 4 KiB into a mapping, then make it durable" with each primitive.
fn mapped_flush_rates(dir: &std::path::Path) -> (f64, f64) {
    let size = 64usize << 20;
    let path = dir.join("mapped");
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    // SAFETY: reserving blocks of our own file.
    assert_eq!(
        unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) },
        0
    );
    // SAFETY: the file is ours and nobody else maps or truncates it.
    let mut map = unsafe {
        memmap2::MmapOptions::new()
            .len(size)
            .map_mut(&file)
            .unwrap()
    };
    let mut rates = [0f64; 2];
    for (which, rate) in rates.iter_mut().enumerate() {
        let started = Instant::now();
        let mut count = 0usize;
        while started.elapsed() < RUN {
            let at = (count * 4096) % size;
            map[at..at + 4096].fill(count as u8);
            if which == 0 {
                map.flush_range(at, 4096).unwrap();
            } else {
                file.sync_data().unwrap();
            }
            count += 1;
        }
        *rate = count as f64 / started.elapsed().as_secs_f64();
    }
    drop(map);
    std::fs::remove_file(path).unwrap();
    (rates[0], rates[1])
}

struct Outcome {
    messages_per_second: f64,
    megabytes_per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn run_store(
    dir: &std::path::Path,
    flush: FlushDiskType,
    body_len: usize,
    writers: usize,
) -> Outcome {
    let root = tempfile::tempdir_in(dir).unwrap();
    let config = StoreConfig {
        mapped_file_size_commit_log: 256 << 20,
        flush_disk_type: flush,
        ..StoreConfig::with_root(root.path())
    };
    let store = Arc::new(MessageStore::open(config).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let (store, stop, count) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&count));
            std::thread::spawn(move || {
                let body = bytes::Bytes::from(vec![b'x'; body_len]);
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let put = PutMessage::new(
                        Message::new("Bench", body.clone()),
                        (writer % 8) as i32,
                        "127.0.0.1:1".parse().unwrap(),
                        "127.0.0.1:10911".parse().unwrap(),
                    );
                    let started = Instant::now();
                    store.append(&put).unwrap().durable.wait().unwrap();
                    latencies.push(started.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let messages = count.load(Ordering::Relaxed) as f64;
    drop(store);
    Outcome {
        messages_per_second: messages / elapsed,
        megabytes_per_second: messages * body_len as f64 / elapsed / 1_048_576.0,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

fn main() {
    // cargo bench passes --bench; a filter argument is accepted and ignored.
    let base = std::env::var_os("ROCKETRY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    println!(
        "# Rocketry store benchmark ({} s per cell)\n",
        RUN.as_secs_f64()
    );
    println!("| disk baseline | value |");
    println!("|---|---|");
    println!(
        "| raw sequential write (1 MiB writes + final fdatasync) | {:.0} MiB/s |",
        raw_sequential_write(dir.path())
    );
    println!(
        "| single-writer 4 KiB write + fdatasync | {:.0} /s |",
        fdatasync_rate(dir.path())
    );
    let (msync, fdatasync) = mapped_flush_rates(dir.path());
    println!("| mmap 4 KiB write + msync(range) | {msync:.0} /s |");
    println!("| mmap 4 KiB write + fdatasync(file) | {fdatasync:.0} /s |");
    println!();
    println!("| mode | body | writers | msgs/s | MiB/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|---|");
    for flush in [FlushDiskType::AsyncFlush, FlushDiskType::SyncFlush] {
        for body in [128usize, 1024, 16 * 1024] {
            for writers in [1usize, 16, 64] {
                let outcome = run_store(dir.path(), flush, body, writers);
                println!(
                    "| {} | {} B | {} | {:.0} | {:.1} | {:?} | {:?} |",
                    if flush == FlushDiskType::SyncFlush {
                        "SYNC"
                    } else {
                        "ASYNC"
                    },
                    body,
                    writers,
                    outcome.messages_per_second,
                    outcome.megabytes_per_second,
                    outcome.p50,
                    outcome.p99
                );
            }
        }
    }
}

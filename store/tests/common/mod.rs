//! What the store's crash tests share: a seeded generator and the disk a power loss leaves.

use std::path::{Path, PathBuf};

use store::durability;

const PAGE: usize = 4096;
const SECTOR: usize = 512;

/// SplitMix64: a generator whose sequence depends on the seed alone, so a failing seed
/// replays the same operations on any machine and any version of a random crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Pages a power loss dropped or tore.
#[derive(Default)]
pub struct Loss {
    pub lost_pages: u64,
    pub torn_pages: u64,
}

/// Rewrites every file under `root` as a power loss leaves it: what the store made durable
/// (the `failpoints` feature's record), plus a random subset of the pages written since,
/// some torn at a 512-byte sector. Files never made durable (a lock file) are left as they
/// are. Recording starts afresh, with the rewritten files as the durable state.
pub fn lose_power(root: &Path, rng: &mut Rng) -> Loss {
    let durable = durability::stop_recording();
    let mut loss = Loss::default();
    let mut rebuilt = Vec::new();
    for file in files(root) {
        let Some(image) = durable.get(&file) else {
            continue;
        };
        let volatile = std::fs::read(&file).unwrap();
        let mut disk = image.clone();
        disk.resize(volatile.len(), 0);
        for page in (0..volatile.len()).step_by(PAGE) {
            let end = (page + PAGE).min(volatile.len());
            if volatile[page..end] == disk[page..end] {
                continue;
            }
            match rng.below(10) {
                // The page never reached the disk.
                0..=3 => loss.lost_pages += 1,
                // It did.
                4..=7 => disk[page..end].copy_from_slice(&volatile[page..end]),
                // Torn: only its first sectors did.
                _ => {
                    loss.torn_pages += 1;
                    let sectors = 1 + rng.below((PAGE / SECTOR - 1) as u64) as usize;
                    let torn = (page + sectors * SECTOR).min(end);
                    disk[page..torn].copy_from_slice(&volatile[page..torn]);
                }
            }
        }
        std::fs::write(&file, &disk).unwrap();
        rebuilt.push((file, disk));
    }
    durability::start_recording();
    for (file, disk) in rebuilt {
        durability::set_durable(&file, disk);
    }
    loss
}

pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

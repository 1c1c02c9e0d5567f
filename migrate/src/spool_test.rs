use super::*;

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

/// A spool in `dir` of 1 MiB holding `entries(n)`.
fn filled(dir: &Path, n: usize) -> Spool {
    let mut spool = Spool::open(dir, 1 << 20).unwrap();
    for entry in entries(n) {
        spool.append(&entry).unwrap();
    }
    spool
}

#[test]
fn entries_come_back_in_order_and_a_drained_spool_gives_its_disk_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = filled(dir.path(), 5);
    assert_eq!(spool.len(), 5);
    assert_eq!(spool.front(2).unwrap(), entries(2));
    spool.take(2).unwrap();
    assert_eq!(spool.front(10).unwrap(), entries(5)[2..]);
    spool.take(3).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert_eq!(std::fs::metadata(dir.path().join(LOG)).unwrap().len(), 0);
}

#[test]
fn a_reopened_spool_replays_only_what_was_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = filled(dir.path(), 4);
        spool.take(1).unwrap();
    }
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.len(), 3);
    assert_eq!(spool.front(10).unwrap(), entries(4)[1..]);
}

#[test]
fn a_torn_last_entry_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path(), 3));
    let log = dir.path().join(LOG);
    let length = std::fs::metadata(&log).unwrap().len();
    // A frame header claiming 4 GiB, and half of a real frame's body: both torn writes.
    let mut file = OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(&u32::MAX.to_le_bytes()).unwrap();
    file.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
    drop(file);
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.len(), 3);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), length);
    spool.append(b"after").unwrap();
    let mut expected = entries(3);
    expected.push(b"after".to_vec());
    assert_eq!(spool.front(10).unwrap(), expected);
}

#[test]
fn a_flipped_byte_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path(), 3));
    let log = dir.path().join(LOG);
    let mut bytes = std::fs::read(&log).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&log, bytes).unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.front(10).unwrap(), entries(2));
}

#[test]
fn a_full_spool_refuses_the_entry_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let frame = FRAME_HEADER + entries(1)[0].len() as u64;
    let mut spool = Spool::open(dir.path(), 2 * frame).unwrap();
    for entry in entries(2) {
        spool.append(&entry).unwrap();
    }
    let refused = spool.append(b"entry 2");
    assert!(
        matches!(refused, Err(Error::SpoolFull { .. })),
        "{refused:?}"
    );
    assert_eq!(spool.len(), 2);
    spool.take(2).unwrap();
    spool.append(b"entry 2").unwrap();
    assert_eq!(spool.front(10).unwrap(), [b"entry 2".to_vec()]);
}

use std::os::unix::fs::FileExt;

use super::*;

fn entry(term: u64, index: u64, len: usize) -> RaftEntry {
    RaftEntry {
        id: EntryId {
            term,
            node: term % 3,
            index,
        },
        payload: vec![(index % 251) as u8; len],
    }
}

fn entries(term: u64, indexes: Range<u64>, len: usize) -> Vec<RaftEntry> {
    indexes.map(|index| entry(term, index, len)).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "meta")
        .collect();
    names.sort();
    names
}

#[test]
fn entries_read_back_across_segments_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.last_id(), None);
    assert_eq!(log.next_index(), 0);
    let written = entries(1, 0..40, 100);
    log.append(&written[..25]).unwrap();
    log.append(&written[25..]).unwrap();
    log.sync().unwrap();
    assert_eq!(log.entries(0..40).unwrap(), written);
    assert_eq!(log.entries(10..12).unwrap(), written[10..12]);
    // A range past the end gives what there is.
    assert_eq!(log.entries(38..100).unwrap(), written[38..]);
    // 132-byte records, a new segment once one holds 1,000 bytes: 8 to a segment.
    assert_eq!(segment_files(dir.path()).len(), 5);
    drop(log);

    let log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..40).unwrap(), written);
    assert_eq!(log.last_id(), Some(written[39].id));
    assert_eq!(log.id_at(17), Some(written[17].id));
    assert_eq!(log.next_index(), 40);
}

#[test]
fn an_append_that_does_not_continue_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    log.append(&entries(1, 0..3, 10)).unwrap();
    for index in [2, 4] {
        match log.append(&[entry(1, index, 10)]) {
            Err(Error::RaftLogGap { expected: 3, got }) => assert_eq!(got, index),
            other => panic!("appending entry {index} after 0..3: {other:?}"),
        }
    }
    assert_eq!(log.next_index(), 3);
}

#[test]
fn an_empty_log_begins_where_its_first_entry_says_and_keeps_that_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    log.append(&entries(1, 7..9, 10)).unwrap();
    log.sync().unwrap();
    drop(log);
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..20).unwrap(), entries(1, 7..9, 10));
    assert_eq!(log.meta().purged, None);

    // Emptied by truncation, with a purged segment still on disk, it begins again further on.
    log.purge(entry(1, 7, 0).id).unwrap();
    log.truncate_after(Some(7)).unwrap();
    assert_eq!(log.next_index(), 8);
    log.append(&entries(2, 20..22, 10)).unwrap();
    log.sync().unwrap();
    assert_eq!(segment_files(dir.path()), ["00000000000000000020"]);
    drop(log);
    let log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..30).unwrap(), entries(2, 20..22, 10));
    assert_eq!(log.last_id(), Some(entry(2, 21, 0).id));
}

#[test]
fn truncation_removes_the_tail_for_good_and_the_log_goes_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let old = entries(1, 0..30, 100);
    log.append(&old).unwrap();
    log.sync().unwrap();
    log.truncate_after(Some(11)).unwrap();
    assert_eq!(log.next_index(), 12);
    assert_eq!(log.last_id(), Some(old[11].id));
    assert_eq!(segment_files(dir.path()).len(), 2);
    let new = entries(2, 12..20, 60);
    log.append(&new).unwrap();
    log.sync().unwrap();
    drop(log);

    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let mut expected = old[..12].to_vec();
    expected.extend(new);
    assert_eq!(log.entries(0..100).unwrap(), expected);
    log.truncate_after(None).unwrap();
    assert_eq!(log.next_index(), 0);
    assert_eq!(log.last_id(), None);
    assert!(segment_files(dir.path()).is_empty());
    drop(log);
    assert_eq!(
        RaftLog::open(dir.path(), 1000)
            .unwrap()
            .entries(0..100)
            .unwrap(),
        vec![]
    );
}

#[test]
fn purging_forgets_entries_up_to_the_point_and_removes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let written = entries(1, 0..40, 100);
    log.append(&written).unwrap();
    log.sync().unwrap();
    log.purge(written[19].id).unwrap();
    assert_eq!(log.meta().purged, Some(written[19].id));
    assert_eq!(log.entries(0..40).unwrap(), written[20..]);
    assert_eq!(log.id_at(19), None);
    // Segments start at 0, 8, 16, 24, 32: the first two hold only purged entries.
    assert_eq!(
        segment_files(dir.path()),
        [
            "00000000000000000016",
            "00000000000000000024",
            "00000000000000000032"
        ]
    );
    drop(log);

    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..40).unwrap(), written[20..]);
    // Purging past the last entry (a follower that installed a snapshot) empties the log,
    // which goes on after the purge point.
    let snapshot = EntryId {
        term: 4,
        node: 1,
        index: 99,
    };
    log.purge(snapshot).unwrap();
    assert_eq!(log.last_id(), Some(snapshot));
    assert_eq!(log.next_index(), 100);
    assert!(segment_files(dir.path()).is_empty());
    log.append(&entries(4, 100..103, 10)).unwrap();
    log.sync().unwrap();
    drop(log);
    let log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..200).unwrap(), entries(4, 100..103, 10));
    assert_eq!(log.meta().purged, Some(snapshot));
}

#[test]
fn clearing_forgets_entries_commit_and_purge_point_and_keeps_the_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let written = entries(3, 0..40, 100);
    log.append(&written).unwrap();
    log.sync().unwrap();
    let vote = Vote {
        term: 3,
        node: 0,
        committed: true,
    };
    log.save_vote(vote).unwrap();
    log.save_committed(Some(written[35].id)).unwrap();
    log.purge(written[19].id).unwrap();
    log.clear().unwrap();
    drop(log);

    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let expected = Meta {
        vote: Some(vote),
        ..Meta::default()
    };
    assert_eq!(log.meta(), expected);
    assert_eq!((log.last_id(), log.next_index()), (None, 0));
    assert!(segment_files(dir.path()).is_empty());
    // It takes a leader's entries from wherever a snapshot leaves it.
    log.purge(written[30].id).unwrap();
    log.append(&entries(3, 31..33, 10)).unwrap();
    log.sync().unwrap();
    assert_eq!(log.entries(0..40).unwrap(), entries(3, 31..33, 10));
}

#[test]
fn a_clear_stopped_before_its_meta_was_saved_opens_and_clears_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let written = entries(1, 0..40, 100);
    log.append(&written).unwrap();
    log.sync().unwrap();
    log.purge(written[19].id).unwrap();
    // The segments are gone; the meta still says the log starts after entry 19.
    for segment in segment_files(dir.path()) {
        std::fs::remove_file(dir.path().join(segment)).unwrap();
    }
    drop(log);
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.last_id(), Some(written[19].id));
    log.clear().unwrap();
    assert_eq!((log.last_id(), log.meta()), (None, Meta::default()));
}

#[test]
fn a_torn_save_leaves_the_vote_synced_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.meta(), Meta::default());
    let first = Vote {
        term: 3,
        node: 2,
        committed: false,
    };
    let second = Vote {
        term: 4,
        node: 1,
        committed: true,
    };
    log.save_vote(first).unwrap();
    let committed = entry(3, 7, 0).id;
    log.save_committed(Some(committed)).unwrap();
    log.save_vote(second).unwrap();
    drop(log);
    let expected = Meta {
        vote: Some(second),
        committed: Some(committed),
        purged: None,
        began: 0,
    };
    assert_eq!(RaftLog::open(dir.path(), 1000).unwrap().meta(), expected);

    // The saves went to slots 1 (synced), 0 (the committed entry, written without a sync)
    // and 0 again: no write touches the slot of the last synced save. Tear the latest, in
    // slot 0: the first vote is read, and the committed entry, never synced, is gone.
    let meta = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("meta"))
        .unwrap();
    meta.write_all_at(&[0xFF; 20], 10).unwrap();
    let log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(
        log.meta(),
        Meta {
            vote: Some(first),
            committed: None,
            purged: None,
            began: 0,
        }
    );
}

#[test]
fn a_torn_tail_is_cut_with_every_segment_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    let written = entries(1, 0..20, 100);
    log.append(&written).unwrap();
    log.sync().unwrap();
    drop(log);
    // Entry 10 is the third record of the second segment (8..16): damage its body.
    let second = dir.path().join("00000000000000000008");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap();
    file.write_all_at(b"torn", 2 * 132 + 40).unwrap();

    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(0..20).unwrap(), written[..10]);
    assert_eq!(log.next_index(), 10);
    assert_eq!(std::fs::metadata(&second).unwrap().len(), 2 * 132);
    assert_eq!(
        segment_files(dir.path()),
        ["00000000000000000000", "00000000000000000008"]
    );
    let new = entries(2, 10..12, 100);
    log.append(&new).unwrap();
    log.sync().unwrap();
    drop(log);
    let log = RaftLog::open(dir.path(), 1000).unwrap();
    assert_eq!(log.entries(8..20).unwrap()[2..], new);
}

#[test]
fn a_log_that_starts_after_its_purge_point_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), 1000).unwrap();
    log.append(&entries(1, 0..20, 100)).unwrap();
    log.sync().unwrap();
    drop(log);
    std::fs::remove_file(dir.path().join("00000000000000000000")).unwrap();
    match RaftLog::open(dir.path(), 1000) {
        Err(Error::DamagedSegment { reason, .. }) => {
            assert!(reason.contains("starts at entry 8"), "{reason}")
        }
        other => panic!("opened a log missing its first entries: {:?}", other.err()),
    }
}

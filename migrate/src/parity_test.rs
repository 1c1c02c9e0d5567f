use super::*;

#[test]
fn windows_cover_the_range_and_the_last_may_be_short() {
    let hour = Duration::from_secs(3600);
    assert_eq!(boundaries(0, 7_200_000, hour), [0, 3_600_000, 7_200_000]);
    assert_eq!(boundaries(0, 5_000_000, hour), [0, 3_600_000, 5_000_000]);
    assert_eq!(boundaries(10, 11, hour), [10, 11]);
}

#[test]
fn a_tally_places_records_by_offset_and_sees_a_missing_one() {
    let offsets = [10, 20, 30];
    let mut full = Tally::new(&offsets);
    let mut short = Tally::new(&offsets);
    for offset in 5..35 {
        full.add(offset, b"k", b"v");
        if offset != 25 {
            short.add(offset, b"k", b"v");
        }
    }
    let (full, short) = (full.finish(), short.finish());
    assert_eq!((full[0].records, full[1].records), (10, 10));
    assert_eq!(full[0], short[0]);
    assert_eq!(short[1].records, 9);
    assert_ne!(full[1].digest, short[1].digest);
}

#[test]
fn a_changed_value_changes_the_digest_but_not_the_count() {
    let offsets = [0, 2];
    let mut a = Tally::new(&offsets);
    let mut b = Tally::new(&offsets);
    a.add(0, b"k", b"v1");
    b.add(0, b"k", b"v2");
    let (a, b) = (a.finish(), b.finish());
    assert_eq!(a[0].records, b[0].records);
    assert_ne!(a[0], b[0]);
}

use super::*;

#[test]
fn forward_moves_go_one_phase_at_a_time() {
    use Phase::*;
    assert_eq!(next_step(Mirror, Done, Done), Step::To(DualWrite));
    assert_eq!(next_step(ShadowRead, Cutover, Done), Step::To(Verified));
    assert_eq!(next_step(Cutover, Done, Done), Step::To(Done));
    assert_eq!(next_step(Verified, Verified, Done), Step::Stay);
}

#[test]
fn going_back_is_a_plain_move_before_cutover_and_refused_after() {
    use Phase::*;
    assert_eq!(next_step(Verified, Mirror, Done), Step::To(Mirror));
    assert!(matches!(
        next_step(Cutover, Verified, Done),
        Step::Refuse(_)
    ));
    assert!(matches!(next_step(Done, Mirror, Done), Step::Refuse(_)));
    assert!(matches!(next_step(RollBack, Mirror, Done), Step::Refuse(_)));
}

#[test]
fn a_rollback_is_allowed_only_before_the_point_of_no_return() {
    use Phase::*;
    assert_eq!(next_step(Cutover, RollBack, Done), Step::To(RollBack));
    assert_eq!(next_step(Mirror, RollBack, Cutover), Step::To(RollBack));
    assert!(matches!(
        next_step(Cutover, RollBack, Cutover),
        Step::Refuse(_)
    ));
    assert!(matches!(next_step(Done, RollBack, Done), Step::Refuse(_)));
}

fn window(topic: &str, start_ms: i64, clean: bool) -> WindowStatus {
    WindowStatus {
        topic: topic.to_string(),
        start_ms,
        end_ms: start_ms + 10,
        clean,
        ..WindowStatus::default()
    }
}

#[test]
fn a_window_is_clean_only_when_every_topic_is_and_a_mismatch_resets_the_streak() {
    let mut kept = Vec::new();
    let streak = record_windows(
        &mut kept,
        0,
        vec![
            window("a", 0, true),
            window("b", 0, true),
            window("a", 10, true),
        ],
    );
    assert_eq!(streak, 2);
    let streak = record_windows(
        &mut kept,
        streak,
        vec![window("a", 20, true), window("b", 20, false)],
    );
    assert_eq!(streak, 0);
    let streak = record_windows(&mut kept, streak, vec![window("a", 30, true)]);
    assert_eq!(streak, 1);
    assert_eq!(kept.len(), 6);
}

#[test]
fn the_status_keeps_the_newest_windows_of_each_topic() {
    let mut kept = Vec::new();
    let many = (0..30).map(|n| window("a", n * 10, true)).collect();
    record_windows(&mut kept, 0, many);
    record_windows(&mut kept, 0, vec![window("b", 0, true)]);
    let a: Vec<i64> = kept
        .iter()
        .filter(|w| w.topic == "a")
        .map(|w| w.start_ms)
        .collect();
    assert_eq!(a.len(), KEPT_WINDOWS);
    assert_eq!(a.first(), Some(&60));
    assert_eq!(a.last(), Some(&290));
    assert_eq!(kept.iter().filter(|w| w.topic == "b").count(), 1);
}

#[test]
fn tolerance_zero_needs_equal_digests_and_more_allows_a_count_difference() {
    assert!(within(0, (5, 9), (5, 9)));
    assert!(!within(0, (5, 9), (5, 8)));
    assert!(within(2, (5, 9), (3, 1)));
    assert!(!within(2, (5, 9), (2, 9)));
}

#[test]
fn a_pattern_matches_whole_names_skips_internal_topics_and_maps_dots() {
    let names = [
        "orders",
        "orders.eu",
        "old-orders",
        "__consumer_offsets",
        "refunds",
    ];
    let topics = matching_topics("orders.*", names).unwrap();
    let mapped: Vec<(&str, &str)> = topics
        .iter()
        .map(|t| (t.source.as_str(), t.target()))
        .collect();
    assert_eq!(mapped, [("orders", "orders"), ("orders.eu", "orders_eu")]);
    assert!(matching_topics(".*", names)
        .unwrap()
        .iter()
        .all(|t| !t.source.starts_with("__")));
    assert!(matching_topics("orders(", names).is_err());
}

use std::collections::HashMap;

use super::*;

fn check(expression: &str, properties: &[(&str, &str)]) -> bool {
    let map: HashMap<&str, &str> = properties.iter().copied().collect();
    Sql92::compile(expression)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .matches(|name| map.get(name).copied())
}

#[test]
fn comparisons_convert_property_strings_to_the_literal_type() {
    assert!(check("a = 3", &[("a", "3")]));
    assert!(check("a > 2.5", &[("a", "3")]));
    assert!(check("a >= 3L", &[("a", "3")]));
    assert!(!check("a < 3", &[("a", "3")]));
    assert!(check("a <> 4", &[("a", "3")]));
    assert!(check("b = 'x'", &[("b", "x")]));
    assert!(!check("b = 'y'", &[("b", "x")]));
    assert!(check("flag = TRUE", &[("flag", "true")]));
    assert!(check("a = -3", &[("a", "-3")]));
}

#[test]
fn a_missing_property_never_matches_a_comparison() {
    assert!(!check("a = 3", &[]));
    assert!(!check("a <> 3", &[]));
    assert!(!check("NOT (a = 3)", &[]));
    assert!(check("a IS NULL", &[]));
    assert!(check("a IS NOT NULL", &[("a", "1")]));
    assert!(check("a = 3 OR b = 'x'", &[("b", "x")]));
    assert!(!check("a = 3 AND b = 'x'", &[("b", "x")]));
}

#[test]
fn between_in_and_string_tests() {
    assert!(check("a BETWEEN 3 AND 5", &[("a", "4")]));
    assert!(check("a BETWEEN 3 AND 5", &[("a", "5")]));
    assert!(!check("a BETWEEN 3 AND 5", &[("a", "6")]));
    assert!(check("a NOT BETWEEN 3 AND 5", &[("a", "6")]));
    assert!(check("TAGS IN ('TagA', 'TagC')", &[("TAGS", "TagC")]));
    assert!(check("TAGS NOT IN ('TagA')", &[("TAGS", "TagC")]));
    assert!(check("k CONTAINS 'ell'", &[("k", "hello")]));
    assert!(check(
        "k STARTSWITH 'he' AND k ENDSWITH 'lo'",
        &[("k", "hello")]
    ));
    assert!(check("k NOT CONTAINS 'z'", &[("k", "hello")]));
    assert!(check("s = 'it''s'", &[("s", "it's")]));
}

#[test]
fn precedence_and_parentheses() {
    assert!(check("a = 1 OR a = 2 AND b = 3", &[("a", "1")]));
    assert!(!check("(a = 1 OR a = 2) AND b = 3", &[("a", "1")]));
    assert!(check("not a = 2", &[("a", "1")]));
}

#[test]
fn bad_expressions_are_refused_with_a_position() {
    for bad in [
        "",
        "a =",
        "a LIKE 'x%'",
        "a BETWEEN 5 AND 3",
        "a IN (1, 2)",
        "a = 'open",
        "a = 1 b",
        "a # 1",
        "a + b = 3",
    ] {
        assert!(Sql92::compile(bad).is_err(), "{bad:?} compiled");
    }
    let error = Sql92::compile("a = 1 )").unwrap_err();
    assert_eq!(error.position, 6);
}

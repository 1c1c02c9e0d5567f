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

/// Runs `work` on a thread with a small stack, so a test proves the parser's bounds
/// rather than leaning on the 8 MiB main stack: an unbounded recursion aborts the test
/// binary. 1 MiB, not less, because an unoptimised build spends about 7 KiB of stack per
/// nesting level; the inputs below would need hundreds of MiB without the bounds.
fn on_a_small_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(work)
        .unwrap()
        .join()
        .unwrap()
}

fn compile_on_a_small_stack(expression: String) -> Result<(), ParseError> {
    on_a_small_stack(move || Sql92::compile(&expression).map(drop))
}

// A few KB of `((((` or `NOT NOT ...` recursed until the stack overflowed and the
// whole broker aborted; deep nesting is now a parse error.
#[test]
fn deep_parentheses_are_a_parse_error_not_a_stack_overflow() {
    let deep = format!("{}a = 1{}", "(".repeat(100_000), ")".repeat(100_000));
    let error = compile_on_a_small_stack(deep).unwrap_err();
    assert!(error.reason.contains("nested deeper than"), "{error}");
}

#[test]
fn deep_not_and_minus_are_a_parse_error_not_a_stack_overflow() {
    let error = compile_on_a_small_stack(format!("{}a = 1", "NOT ".repeat(100_000))).unwrap_err();
    assert!(error.reason.contains("nested deeper than"), "{error}");
    let error = compile_on_a_small_stack(format!("a = {}1", "- ".repeat(100_000))).unwrap_err();
    assert!(error.reason.contains("nested deeper than"), "{error}");
}

// A flat `a=1 AND a=1 AND ...` has no nesting, but its binary tree was as deep as the
// chain was long, and dropping or evaluating it overflowed the stack.
#[test]
fn a_long_and_chain_is_a_parse_error_not_a_stack_overflow() {
    let chain = vec!["a = 1"; 100_000].join(" AND ");
    let started = std::time::Instant::now();
    let error = compile_on_a_small_stack(chain).unwrap_err();
    assert!(error.reason.contains("more than"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn expressions_up_to_the_limits_compile_and_match_on_a_small_stack() {
    // Every level adds an OR and an AND node, the deepest tree the nesting limit allows.
    let mut deepest = "a = 1".to_string();
    for _ in 0..MAX_DEPTH {
        deepest = format!("(b = 2 OR a = 1 AND {deepest})");
    }
    let longest = vec!["a = 1"; MAX_OPERANDS / 2].join(" AND ");
    for text in [deepest.clone(), longest.clone()] {
        on_a_small_stack(move || {
            let filter = Sql92::compile(&text).unwrap();
            assert!(filter.matches(|name| (name == "a").then_some("1")));
            assert!(!filter.matches(|name| (name == "a").then_some("2")));
        });
    }
    assert!(compile_on_a_small_stack(format!("({deepest})")).is_err());
    assert!(compile_on_a_small_stack(format!("{longest} AND a = 1")).is_err());
}

/// Java's `String.hashCode()`: over UTF-16 code units, `h = 31*h + c`, wrapping.
///
/// RocketMQ stores it as a tag code in the ConsumeQueue and as a key hash in the IndexFile, so it
/// must match Java bit for bit, including for characters outside the BMP.
pub fn java_string_hash(text: &str) -> i32 {
    java_string_hash_of(&[text])
}

/// [`java_string_hash`] of the concatenation of `parts`, without building it (the index
/// hashes `topic#key` for every key of every message).
pub fn java_string_hash_of(parts: &[&str]) -> i32 {
    parts
        .iter()
        .flat_map(|part| part.encode_utf16())
        .fold(0i32, |hash, unit| {
            hash.wrapping_mul(31).wrapping_add(unit as i32)
        })
}

/// The ConsumeQueue tag code of a `TAGS` value: its Java hash sign-extended, 0 without tags.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(tags) if !tags.is_empty() => java_string_hash(tags) as i64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        // "hello world".hashCode() in Java
        assert_eq!(java_string_hash("hello world"), 1794106052);
        // wraps negative
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // a surrogate pair counts as two code units
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(
            java_string_hash_of(&["Orders", "#", "k😀1"]),
            java_string_hash("Orders#k😀1")
        );
    }

    #[test]
    fn tags_code_sign_extends() {
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("")), 0);
        assert_eq!(tags_code(Some("polygenelubricants")), i32::MIN as i64);
    }
}

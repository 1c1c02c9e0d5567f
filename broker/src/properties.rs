//! Reads the Java-properties files RocketMQ users already have (`broker.conf`,
//! `namesrv.conf`): `key=value` lines, `#` and `!` comments, `:` or whitespace as
//! separators, and a trailing backslash to continue a line. Escapes other than the line
//! continuation are kept as written; RocketMQ's own config files do not use them.
//!
//! Hand-written because the crates that read this format pull in far more than these
//! twenty lines and none keep the line numbers this reader reports in errors.

/// One `key=value` entry with the 1-based line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let (mut logical, start) = match pending.take() {
            Some((so_far, start)) => (so_far, start),
            None => {
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                (String::new(), index + 1)
            }
        };
        // An odd number of trailing backslashes continues the line.
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            pending = Some((logical, start));
            continue;
        }
        logical.push_str(line);
        entries.push(split(&logical, start));
    }
    if let Some((logical, start)) = pending {
        entries.push(split(&logical, start));
    }
    entries
}

fn split(logical: &str, line: usize) -> Entry {
    let end = logical
        .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .unwrap_or(logical.len());
    let key = logical[..end].to_string();
    let mut rest = logical[end..].trim_start();
    if let Some(after) = rest.strip_prefix(['=', ':']) {
        rest = after.trim_start();
    }
    Entry {
        key,
        value: rest.trim_end().to_string(),
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }

    #[test]
    fn reads_the_separators_java_accepts() {
        assert_eq!(
            pairs("a=1\nb: 2\nc 3\n d = 4 \ne=\n"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "3".into()),
                ("d".into(), "4".into()),
                ("e".into(), "".into()),
            ]
        );
    }

    #[test]
    fn skips_comments_and_blank_lines_and_keeps_line_numbers() {
        let entries = parse("# comment\n\n! other\nbrokerName=broker-a\n");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, 4);
    }

    #[test]
    fn joins_continued_lines() {
        assert_eq!(
            pairs("namesrvAddr=a:9876;\\\n    b:9876\nx=1"),
            vec![
                ("namesrvAddr".into(), "a:9876;b:9876".into()),
                ("x".into(), "1".into()),
            ]
        );
    }

    #[test]
    fn values_may_contain_separators() {
        assert_eq!(
            pairs("messageDelayLevel=1s 5s 10s"),
            vec![("messageDelayLevel".into(), "1s 5s 10s".into())]
        );
    }
}

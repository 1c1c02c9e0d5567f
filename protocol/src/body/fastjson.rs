//! fastjson's non-standard JSON, both directions.
//!
//! fastjson writes maps with non-String keys without quoting the key (`{0:"addr"}`,
//! `{{"topic":"t",...}:{...}}`), and its reader accepts unquoted names, single quotes and
//! stray commas. [`normalize`] turns such text into standard JSON (object keys become their
//! compact JSON text as a string); [`to_vec_with_bare_keys`] writes the unquoted-key form
//! (broker ids, MessageQueue keys) Java clients and mqadmin receive from a Java server.

use serde_json::Value;

use crate::error::{Error, Result};

/// Nesting deeper than this is refused rather than risking the stack; serde_json's own limit
/// is 128 too.
const MAX_DEPTH: usize = 128;

pub fn normalize(text: &str) -> Result<String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        position: 0,
        out: String::with_capacity(text.len() + 16),
    };
    parser.skip_whitespace();
    parser.value(0)?;
    parser.skip_whitespace();
    if parser.position != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(parser.out)
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    position: usize,
    out: String,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: &'static str) -> Error {
        Error::LenientJson {
            offset: self.position,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"' | b'\'') => {
                let text = self.string()?;
                push_json_string(&mut self.out, &text);
                Ok(())
            }
            Some(_) => {
                let word = self.bare_word();
                let is_literal = matches!(word, "true" | "false" | "null")
                    || serde_json::from_str::<serde_json::Number>(word).is_ok();
                if !is_literal {
                    return Err(self.error("unexpected bare word as a value"));
                }
                self.out.push_str(word);
                Ok(())
            }
            None => Err(self.error("unexpected end of input")),
        }
    }

    /// A run of characters that can form a number, literal or unquoted name.
    fn bare_word(&mut self) -> &'a str {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'$' | b'-' | b'+' | b'.') {
                self.position += 1;
            } else {
                break;
            }
        }
        &self.text[start..self.position]
    }

    fn skip_commas(&mut self) {
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b',') {
                self.position += 1;
            } else {
                break;
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<()> {
        self.position += 1;
        self.out.push('{');
        let mut first = true;
        loop {
            self.skip_commas();
            match self.peek() {
                Some(b'}') => {
                    self.position += 1;
                    self.out.push('}');
                    return Ok(());
                }
                None => return Err(self.error("unterminated object")),
                Some(_) => {}
            }
            if !first {
                self.out.push(',');
            }
            first = false;
            let key = self.key(depth)?;
            push_json_string(&mut self.out, &key);
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.position += 1;
            self.out.push(':');
            self.skip_whitespace();
            self.value(depth + 1)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',' | b'}') => {}
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// An object key: a string, a bare name or number, or (fastjson's Map<MessageQueue, _>)
    /// a whole object or array, which becomes its compact JSON text.
    fn key(&mut self, depth: usize) -> Result<String> {
        match self.peek() {
            Some(b'"' | b'\'') => self.string(),
            Some(b'{' | b'[') => {
                let outer = std::mem::take(&mut self.out);
                let result = self.value(depth + 1);
                let key = std::mem::replace(&mut self.out, outer);
                result.map(|_| key)
            }
            _ => {
                let word = self.bare_word();
                if word.is_empty() {
                    return Err(self.error("expected an object key"));
                }
                Ok(word.to_owned())
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<()> {
        self.position += 1;
        self.out.push('[');
        let mut first = true;
        loop {
            self.skip_commas();
            match self.peek() {
                Some(b']') => {
                    self.position += 1;
                    self.out.push(']');
                    return Ok(());
                }
                None => return Err(self.error("unterminated array")),
                Some(_) => {}
            }
            if !first {
                self.out.push(',');
            }
            first = false;
            self.value(depth + 1)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',' | b']') => {}
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A double- or single-quoted string, unescaped.
    fn string(&mut self) -> Result<String> {
        let quote = self.bytes[self.position];
        self.position += 1;
        let mut text = String::new();
        loop {
            let rest = &self.text[self.position..];
            let Some(offset) = rest.find([quote as char, '\\']) else {
                return Err(self.error("unterminated string"));
            };
            text.push_str(&rest[..offset]);
            self.position += offset;
            if self.bytes[self.position] == quote {
                self.position += 1;
                return Ok(text);
            }
            // A backslash escape.
            self.position += 1;
            let escaped = self
                .peek()
                .ok_or_else(|| self.error("unterminated escape"))?;
            self.position += 1;
            match escaped {
                b'"' => text.push('"'),
                b'\'' => text.push('\''),
                b'\\' => text.push('\\'),
                b'/' => text.push('/'),
                b'b' => text.push('\u{8}'),
                b'f' => text.push('\u{c}'),
                b'n' => text.push('\n'),
                b'r' => text.push('\r'),
                b't' => text.push('\t'),
                b'u' => {
                    let hex = self
                        .text
                        .get(self.position..self.position + 4)
                        .ok_or_else(|| self.error("short \\u escape"))?;
                    let unit =
                        u32::from_str_radix(hex, 16).map_err(|_| self.error("bad \\u escape"))?;
                    self.position += 4;
                    // Unpaired surrogates cannot be represented in a Rust string.
                    text.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                }
                _ => return Err(self.error("unknown escape")),
            }
        }
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).expect("string serialisation is infallible"));
}

/// Compact JSON in which the keys of every object stored under one of `maps` are written bare
/// when they are integers or JSON objects, as fastjson writes a `Map<Long, String>` or a
/// `Map<MessageQueue, _>` (whose keys [`normalize`] and serde carry as compact JSON text).
pub fn to_vec_with_bare_keys(value: &Value, maps: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value, false, maps);
    out.into_bytes()
}

/// A key fastjson would write with its own serializer rather than as a string.
fn is_bare_key(key: &str) -> bool {
    key.parse::<i64>().is_ok()
        || (key.starts_with('{') && matches!(serde_json::from_str(key), Ok(Value::Object(_))))
}

fn write_value(out: &mut String, value: &Value, bare_keys: bool, maps: &[&str]) {
    match value {
        Value::Object(object) => {
            out.push('{');
            for (index, (key, child)) in object.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                if bare_keys && is_bare_key(key) {
                    out.push_str(key);
                } else {
                    push_json_string(out, key);
                }
                out.push(':');
                write_value(out, child, maps.contains(&key.as_str()), maps);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item, false, maps);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

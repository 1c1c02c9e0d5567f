//! Source-address patterns of `plain_acl.yml` (`whiteRemoteAddress`), in RocketMQ's forms:
//! `*`, an IP, several separated by commas, and IPv4 segments written `*`, `1-5` or
//! `{1,2}` (`192.168.*`, `10.0.0.1-5`, `10.0.0.{1,7}`). IPv6 addresses match exactly.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct Addresses(Vec<Alternative>);

#[derive(Debug, Clone, PartialEq)]
enum Alternative {
    Any,
    Exact(IpAddr),
    V4(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Any,
    Range(u8, u8),
    Set(Vec<u8>),
}

impl Addresses {
    pub fn parse(text: &str) -> Result<Addresses, String> {
        let invalid = || format!("{text:?} is not an address pattern");
        let mut alternatives = Vec::new();
        for part in split_outside_braces(text) {
            let part = part.trim();
            if part == "*" {
                alternatives.push(Alternative::Any);
            } else if let Ok(ip) = part.parse::<IpAddr>() {
                alternatives.push(Alternative::Exact(ip));
            } else {
                let segments: Vec<&str> = part.split('.').collect();
                // A trailing `*` stands for every segment left: `192.168.*`.
                let open_ended = segments.last() == Some(&"*");
                if segments.len() > 4 || (segments.len() < 4 && !open_ended) {
                    return Err(invalid());
                }
                let mut parsed = segments
                    .iter()
                    .map(|s| segment(s).ok_or_else(invalid))
                    .collect::<Result<Vec<_>, _>>()?;
                parsed.resize(4, Segment::Any);
                alternatives.push(Alternative::V4(parsed));
            }
        }
        if alternatives.is_empty() {
            return Err(invalid());
        }
        Ok(Addresses(alternatives))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|alternative| match alternative {
            Alternative::Any => true,
            Alternative::Exact(exact) => *exact == ip,
            Alternative::V4(segments) => match ip {
                IpAddr::V4(v4) => segments
                    .iter()
                    .zip(v4.octets())
                    .all(|(segment, octet)| segment.matches(octet)),
                IpAddr::V6(_) => false,
            },
        })
    }
}

fn segment(text: &str) -> Option<Segment> {
    if text == "*" {
        return Some(Segment::Any);
    }
    if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let set = inner
            .split(',')
            .map(|n| n.trim().parse().ok())
            .collect::<Option<Vec<u8>>>()?;
        return Some(Segment::Set(set));
    }
    if let Some((low, high)) = text.split_once('-') {
        let (low, high) = (low.parse().ok()?, high.parse().ok()?);
        return (low <= high).then_some(Segment::Range(low, high));
    }
    let n = text.parse().ok()?;
    Some(Segment::Range(n, n))
}

impl Segment {
    fn matches(&self, octet: u8) -> bool {
        match self {
            Segment::Any => true,
            Segment::Range(low, high) => (*low..=*high).contains(&octet),
            Segment::Set(set) => set.contains(&octet),
        }
    }
}

/// Splits at commas that are not inside `{...}`.
fn split_outside_braces(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, ip: &str) -> bool {
        Addresses::parse(pattern)
            .unwrap()
            .matches(ip.parse().unwrap())
    }

    #[test]
    fn rocketmq_pattern_forms_match() {
        assert!(matches("*", "10.1.2.3"));
        assert!(matches("10.1.2.3", "10.1.2.3"));
        assert!(!matches("10.1.2.3", "10.1.2.4"));
        assert!(matches("10.1.2.3,10.1.2.4", "10.1.2.4"));
        assert!(matches("192.168.*", "192.168.7.9"));
        assert!(!matches("192.168.*", "192.169.7.9"));
        assert!(matches("10.0.0.1-5", "10.0.0.5"));
        assert!(!matches("10.0.0.1-5", "10.0.0.6"));
        assert!(matches("10.0.0.{1,7}", "10.0.0.7"));
        assert!(!matches("10.0.0.{1,7}", "10.0.0.2"));
        assert!(matches("127.0.0.1", "::ffff:127.0.0.1"));
        assert!(matches("::1", "::1"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.300",
            "10.0.0.5-1",
            "10.0.0.1.2",
            "host.example",
        ] {
            assert!(Addresses::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}

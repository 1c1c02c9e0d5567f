use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The offset message id: uppercase hex of store IP, port (i32) and CommitLog offset (i64).
/// Clients recompute it from STOREHOSTADDRESS and PHYSICALOFFSET and connect to that address.
pub fn offset_message_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut id = String::with_capacity(56);
    push_offset_message_id(&mut id, store_host, commit_log_offset);
    id
}

/// Appends the offset message id to `out` (a batch's answer joins them), allocating nothing.
pub fn push_offset_message_id(out: &mut String, store_host: SocketAddr, commit_log_offset: i64) {
    let mut bytes = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            bytes[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            bytes[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    bytes[ip_len..ip_len + 4].copy_from_slice(&(store_host.port() as i32).to_be_bytes());
    bytes[ip_len + 4..ip_len + 12].copy_from_slice(&commit_log_offset.to_be_bytes());
    let raw = &bytes[..ip_len + 12];
    let mut text = [0u8; 56];
    let text = &mut text[..raw.len() * 2];
    hex::encode_to_slice(raw, text).expect("the buffer holds two characters per byte");
    text.make_ascii_uppercase();
    out.push_str(std::str::from_utf8(text).expect("hex digits are ASCII"));
}

/// Decodes an offset message id: 32 hex characters mean IPv4, 56 mean IPv6
/// (`MessageDecoder.decodeMessageId`).
pub fn decode_offset_message_id(id: &str) -> Result<(SocketAddr, i64)> {
    let bad = || Error::BadMessageId(id.chars().take(64).collect());
    let ip_len = match id.len() {
        32 => 4,
        56 => 16,
        _ => return Err(bad()),
    };
    let mut bytes = [0u8; 28];
    for (index, byte) in bytes[..id.len() / 2].iter_mut().enumerate() {
        let pair = id.get(index * 2..index * 2 + 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    let ip: IpAddr = if ip_len == 4 {
        Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..4]).unwrap()).into()
    } else {
        Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).unwrap()).into()
    };
    let port = i32::from_be_bytes(bytes[ip_len..ip_len + 4].try_into().unwrap());
    let offset = i64::from_be_bytes(bytes[ip_len + 4..ip_len + 12].try_into().unwrap());
    Ok((SocketAddr::new(ip, port as u16), offset))
}

/// Table-driven: `format!("{:02X}")` per byte was 14% of the broker's CPU with 128-byte
/// batches, where every message gets an offset id.
fn upper_hex(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// Makes `UNIQ_KEY` values as `MessageClientIDSetter` does: hex of IP, i16 pid, i32 hash, then
/// i32 milliseconds since the start of the current month and an i16 counter.
#[derive(Debug)]
pub struct UniqueIdGenerator {
    prefix: String,
    counter: AtomicU16,
}

impl UniqueIdGenerator {
    /// A generator for this process; `ip` is the producer's address and `hash` stands in for
    /// Java's class-loader hash (any per-instance value).
    pub fn new(ip: IpAddr, hash: i32) -> Self {
        let mut bytes = Vec::with_capacity(22);
        match ip {
            IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
        }
        bytes.extend_from_slice(&(std::process::id() as i16).to_be_bytes());
        bytes.extend_from_slice(&hash.to_be_bytes());
        UniqueIdGenerator {
            prefix: upper_hex(&bytes),
            counter: AtomicU16::new(0),
        }
    }

    /// The next id: 32 hex characters for an IPv4 generator, 56 for IPv6.
    pub fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let since_month = (now - start_of_month_millis(now)) as i32;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = self.prefix.clone();
        let _ = write!(id, "{since_month:08X}{counter:04X}");
        id
    }
}

/// Start of the UTC month holding `millis`. Hand-written (Hinnant's civil-from-days) so a
/// producer helper does not pull in a calendar crate for one subtraction.
fn start_of_month_millis(millis: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let days = millis.div_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_index + 2) / 5; // 0-based
    (days - day_of_month) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_id_round_trips() {
        let host: SocketAddr = "192.168.0.1:10911".parse().unwrap();
        let id = offset_message_id(host, 0x1234);
        assert_eq!(id, "C0A8000100002A9F0000000000001234");
        assert_eq!(decode_offset_message_id(&id).unwrap(), (host, 0x1234));
        let host6: SocketAddr = "[2001:db8::1]:10911".parse().unwrap();
        let id6 = offset_message_id(host6, 77);
        assert_eq!(id6.len(), 56);
        assert_eq!(decode_offset_message_id(&id6).unwrap(), (host6, 77));
        assert!(decode_offset_message_id("XYZ").is_err());
        assert!(decode_offset_message_id(&"G".repeat(32)).is_err());
        assert!(decode_offset_message_id(&"é".repeat(16)).is_err());
    }

    #[test]
    fn unique_ids_are_32_hex_and_distinct() {
        let generator = UniqueIdGenerator::new("10.1.2.3".parse().unwrap(), 42);
        let a = generator.next_id();
        let b = generator.next_id();
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("0A010203"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn month_start() {
        // 2024-03-15T12:00:00Z -> 2024-03-01T00:00:00Z
        assert_eq!(start_of_month_millis(1_710_504_000_000), 1_709_251_200_000);
        // 2024-02-29T23:59:59.999Z -> 2024-02-01
        assert_eq!(start_of_month_millis(1_709_251_199_999), 1_706_745_600_000);
    }
}

//! Lenient serde readers for values Java's fastjson would coerce: numbers or booleans where a
//! string is declared, numeric strings where a number is declared, enum ordinals where a name
//! is declared (the C++ client sends all of these). Use with `#[serde(deserialize_with)]`.
//!
//! These readers are written against serde's data model, but the crate only ever feeds them
//! from `serde_json::from_slice`, which [`ext_fields`] relies on to borrow raw number text.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::command::ExtFields;

/// A string that may have been sent as a number or a boolean.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LenientString(pub String);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;
        impl Visitor<'_> for StringVisitor {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientString(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LenientString(format_float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientString(String::new()))
            }
        }
        deserializer.deserialize_any(StringVisitor)
    }
}

/// Shortest round-trip form; `Debug` switches to exponent notation for huge magnitudes, so
/// `1e300` stays five characters instead of three hundred.
fn format_float(v: f64) -> String {
    format!("{v:?}")
}

/// An integer that may have been sent as a string or an integral float.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LenientI64(pub i64);

impl<'de> Deserialize<'de> for LenientI64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;
        impl Visitor<'_> for IntegerVisitor {
            type Value = LenientI64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a numeric string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientI64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(LenientI64)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                float_to_i64(v)
                    .map(LenientI64)
                    .ok_or_else(|| E::custom("not an integral number"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_i64(v)
                    .map(LenientI64)
                    .ok_or_else(|| E::custom("not an integer string"))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientI64(i64::from(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientI64(0))
            }
        }
        deserializer.deserialize_any(IntegerVisitor)
    }
}

fn float_to_i64(v: f64) -> Option<i64> {
    // 2^63 itself is out of range; `i64::MAX as f64` would round up to it. NaN and the
    // infinities fail `fract() == 0.0` or the range.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v)).then_some(v as i64)
}

/// Parses an integer the way `Long.parseLong` would, plus surrounding whitespace and integral
/// decimal forms such as `"5.0"` that a float-typed sender may produce.
pub fn parse_i64(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().and_then(float_to_i64))
}

/// Parses a boolean the way `Boolean.parseBoolean` would (case-insensitive "true"), but
/// rejects anything that is clearly not a boolean instead of reading it as false.
pub fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Some(false)
    } else {
        None
    }
}

/// A boolean that may have been sent as a string or 0/1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LenientBool(pub bool);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;
        impl Visitor<'_> for BoolVisitor {
            type Value = LenientBool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientBool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientBool(v != 0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientBool(v != 0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_bool(v)
                    .map(LenientBool)
                    .ok_or_else(|| E::custom("not a boolean string"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientBool(false))
            }
        }
        deserializer.deserialize_any(BoolVisitor)
    }
}

pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<LenientString>::deserialize(deserializer)?
        .unwrap_or_default()
        .0)
}

pub fn option_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<LenientString>::deserialize(deserializer)?.map(|s| s.0))
}

pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(Option::<LenientI64>::deserialize(deserializer)?
        .unwrap_or_default()
        .0)
}

pub fn i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let value = i64(deserializer)?;
    i32::try_from(value).map_err(|_| de::Error::custom("integer out of i32 range"))
}

pub fn option_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<LenientI64>::deserialize(deserializer)?.map(|v| v.0))
}

pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<LenientBool>::deserialize(deserializer)?
        .unwrap_or_default()
        .0)
}

pub fn option_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<LenientBool>::deserialize(deserializer)?.map(|v| v.0))
}

/// A JSON array of strings (or numbers); `null` reads as empty.
/// A value that Java may send as `null`: its default then.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let list = Option::<Vec<LenientString>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(list.into_iter().map(|s| s.0).collect())
}

/// A JSON array of integers (or numeric strings); `null` reads as empty.
pub fn i32_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i32>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<i32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of integers")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(LenientI64(v)) = seq.next_element()? {
                // Java's String.hashCode is an int; wider values can only come from a
                // confused sender, so wrap rather than reject the whole heartbeat.
                out.push(v as i32);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(ListVisitor)
}

/// The `extFields` object of a JSON header. Strings are unescaped; numbers, booleans and any
/// other JSON value keep their exact source text (what fastjson stores when it coerces them
/// into a String), so a decoded value is never longer than its encoding. `null` values are
/// dropped, as Java's `makeCustomHeaderToNet` never writes them.
pub fn ext_fields<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ExtFields, D::Error> {
    struct ExtVisitor;
    impl<'de> Visitor<'de> for ExtVisitor {
        type Value = ExtFields;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of header fields")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(ExtFields::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = ExtFields::new();
            while let Some((key, raw)) = map.next_entry::<CompactString, &'de RawValue>()? {
                let text = raw.get();
                if text == "null" {
                    fields.remove(&key);
                    continue;
                }
                let value = if text.starts_with('"') {
                    serde_json::from_str::<CompactString>(text).map_err(de::Error::custom)?
                } else {
                    text.into()
                };
                fields.insert(key, value);
            }
            Ok(fields)
        }
    }
    deserializer.deserialize_any(ExtVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Sample {
        #[serde(default, deserialize_with = "string")]
        name: String,
        #[serde(default, deserialize_with = "i64")]
        count: i64,
        #[serde(default, deserialize_with = "option_bool")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "ext_fields")]
        ext: ExtFields,
    }

    #[test]
    fn coerces_like_fastjson() {
        let sample: Sample = serde_json::from_slice(
            br#"{"name":42,"count":"17","flag":"TRUE","ext":{"a":1,"b":true,"c":"x","d":null,"e":1.50},"other":[1]}"#,
        )
        .unwrap();
        assert_eq!(sample.name, "42");
        assert_eq!(sample.count, 17);
        assert_eq!(sample.flag, Some(true));
        assert_eq!(sample.ext["a"], "1");
        assert_eq!(sample.ext["b"], "true");
        assert_eq!(sample.ext["c"], "x");
        assert_eq!(sample.ext["e"], "1.50");
        assert!(!sample.ext.contains_key("d"));
    }

    #[test]
    fn parse_numbers() {
        assert_eq!(parse_i64(" 12 "), Some(12));
        assert_eq!(parse_i64("5.0"), Some(5));
        assert_eq!(parse_i64("5.5"), None);
        assert_eq!(parse_i64("1e300"), None);
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}

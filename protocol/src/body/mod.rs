//! JSON bodies exchanged with clients, mqadmin and name servers, in fastjson's shape:
//! camelCase property names, null properties omitted, enums by name. (One body is not
//! JSON: the trace topic's records, in [`trace`].)
//!
//! Reading goes through [`from_json`], which first tries strict JSON and then retries after
//! [`fastjson::normalize`] rewrites fastjson's extensions (unquoted keys, single quotes,
//! object keys, stray commas). Every field reader is lenient about numbers in string fields
//! and enum ordinals, because the C++ client sends both.

pub mod admin;
pub mod cluster;
pub mod fastjson;
pub mod heartbeat;
pub mod pulled;
pub mod register;
pub mod route;
pub mod subscription_group;
pub mod trace;

pub use cluster::*;
pub use heartbeat::*;
pub use pulled::decode_pulled_messages;
pub use register::*;
pub use route::*;
pub use subscription_group::SubscriptionGroupConfig;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Reads a body written by fastjson (or by anyone stricter).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(strict_error) => {
            let text = std::str::from_utf8(bytes).map_err(|_| Error::Body(strict_error))?;
            let normalized = fastjson::normalize(text)?;
            serde_json::from_str(&normalized).map_err(Error::Body)
        }
    }
}

/// Writes a body as compact standard JSON with object keys sorted, as fastjson sorts bean
/// properties (the Go client's hand parser needs the compact form).
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let tree = serde_json::to_value(value).expect("body types serialise to JSON");
    serde_json::to_vec(&tree).expect("a JSON value serialises")
}

/// A `name or ordinal` enum as fastjson reads it: written by name, read from the name, from
/// the ordinal as a JSON integer (what the C++ client sends), or from the ordinal as a string.
/// One variant must carry `#[default]`: what an omitted field means.
macro_rules! java_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            const VARIANTS: &'static [$name] = &[$($name::$variant,)*];

            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }

            pub fn from_ordinal(ordinal: i64) -> Option<Self> {
                usize::try_from(ordinal).ok().and_then(|i| Self::VARIANTS.get(i).copied())
            }

            pub fn ordinal(self) -> usize {
                self as usize
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let text = $crate::lenient::string(deserializer)?;
                let trimmed = text.trim();
                $name::from_name(trimmed)
                    .or_else(|| trimmed.parse::<i64>().ok().and_then($name::from_ordinal))
                    .ok_or_else(|| serde::de::Error::custom(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), text)))
            }
        }
    };
}
pub(crate) use java_enum;

#[cfg(test)]
mod body_test;

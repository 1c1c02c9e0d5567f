//! Typed custom headers, flattened into `extFields` on the wire the way Java's
//! `makeCustomHeaderToNet` does: every non-null field becomes `javaFieldName -> toString()`.
//!
//! Each header is declared once through [`custom_header!`], which generates the struct and both
//! directions of the mapping; required fields that are missing produce
//! [`Error::MissingField`] naming the Java field, and numbers are parsed leniently
//! (surrounding whitespace, integral decimals).

mod admin;
mod client;
mod consumer;
mod namesrv;
mod send;

pub use admin::*;
pub use client::*;
pub use consumer::*;
pub use namesrv::*;
pub use send::*;

#[doc(hidden)] // used by `custom_header!`
pub use compact_str::CompactString;
use compact_str::ToCompactString;

use crate::command::ExtFields;
use crate::error::{Error, Result};
use crate::lenient;

/// A typed view of a command's extFields.
pub trait CustomHeader: Sized {
    fn to_ext_fields(&self, ext_fields: &mut ExtFields);
    fn from_ext_fields(ext_fields: &ExtFields) -> Result<Self>;

    fn to_ext_field_map(&self) -> ExtFields {
        let mut ext_fields = ExtFields::new();
        self.to_ext_fields(&mut ext_fields);
        ext_fields
    }
}

/// Requests without a header class (GET_BROKER_CLUSTER_INFO, HEART_BEAT in 4.9.x, ...).
impl CustomHeader for () {
    fn to_ext_fields(&self, _: &mut ExtFields) {}
    fn from_ext_fields(_: &ExtFields) -> Result<Self> {
        Ok(())
    }
}

/// A value that can sit in one extFields slot.
pub trait HeaderValue: Sized {
    fn to_wire(&self) -> CompactString;
    fn from_wire(text: &str) -> Option<Self>;
}

impl HeaderValue for String {
    fn to_wire(&self) -> CompactString {
        self.as_str().into()
    }
    fn from_wire(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl HeaderValue for CompactString {
    fn to_wire(&self) -> CompactString {
        self.clone()
    }
    fn from_wire(text: &str) -> Option<Self> {
        Some(text.into())
    }
}

impl HeaderValue for i64 {
    fn to_wire(&self) -> CompactString {
        self.to_compact_string()
    }
    fn from_wire(text: &str) -> Option<Self> {
        lenient::parse_i64(text)
    }
}

impl HeaderValue for i32 {
    fn to_wire(&self) -> CompactString {
        self.to_compact_string()
    }
    fn from_wire(text: &str) -> Option<Self> {
        lenient::parse_i64(text).and_then(|v| i32::try_from(v).ok())
    }
}

impl HeaderValue for bool {
    fn to_wire(&self) -> CompactString {
        self.to_compact_string()
    }
    fn from_wire(text: &str) -> Option<Self> {
        lenient::parse_bool(text)
    }
}

/// `SEARCH_OFFSET_BY_TIMESTAMP`'s `boundaryType`; Java parses it case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    #[default]
    Lower,
    Upper,
}

impl HeaderValue for BoundaryType {
    fn to_wire(&self) -> CompactString {
        match self {
            BoundaryType::Lower => CompactString::const_new("LOWER"),
            BoundaryType::Upper => CompactString::const_new("UPPER"),
        }
    }
    fn from_wire(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("lower") {
            Some(BoundaryType::Lower)
        } else if text.eq_ignore_ascii_case("upper") {
            Some(BoundaryType::Upper)
        } else {
            None
        }
    }
}

#[doc(hidden)]
pub fn read_required<T: HeaderValue>(ext_fields: &ExtFields, field: &'static str) -> Result<T> {
    let text = ext_fields.get(field).ok_or(Error::MissingField { field })?;
    T::from_wire(text).ok_or_else(|| Error::InvalidField {
        field,
        value: text.to_string(),
    })
}

/// An absent optional field is `None`; so is an empty one for non-string types, because the
/// binary header cannot tell empty from absent and Java would read both as null.
#[doc(hidden)]
pub fn read_optional<T: HeaderValue>(
    ext_fields: &ExtFields,
    field: &'static str,
) -> Result<Option<T>> {
    match ext_fields.get(field) {
        None => Ok(None),
        Some(text) => match T::from_wire(text) {
            Some(value) => Ok(Some(value)),
            None if text.trim().is_empty() => Ok(None),
            None => Err(Error::InvalidField {
                field,
                value: text.to_string(),
            }),
        },
    }
}

/// Declares a custom header once: `required` fields are plain values, `optional` fields are
/// `Option`s left out of extFields when `None`. The string after `=` is the Java field name.
#[macro_export]
macro_rules! custom_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* $kind:ident $field:ident : $ty:ty = $key:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $crate::custom_header!(@type $kind $ty),)*
        }

        impl $name {
            /// The Java field names, in declaration order.
            pub const FIELD_NAMES: &'static [&'static str] = &[$($key,)*];
        }

        impl $crate::header::CustomHeader for $name {
            fn to_ext_fields(&self, ext_fields: &mut $crate::command::ExtFields) {
                $($crate::custom_header!(@put $kind ext_fields, $key, self.$field);)*
            }

            fn from_ext_fields(ext_fields: &$crate::command::ExtFields) -> $crate::error::Result<Self> {
                Ok($name {
                    $($field: $crate::custom_header!(@get $kind ext_fields, $key, $ty),)*
                })
            }
        }
    };
    (@type required $ty:ty) => { $ty };
    (@type optional $ty:ty) => { Option<$ty> };
    (@put required $ext:ident, $key:literal, $value:expr) => {
        $ext.insert(
            $crate::header::CompactString::const_new($key),
            $crate::header::HeaderValue::to_wire(&$value),
        );
    };
    (@put optional $ext:ident, $key:literal, $value:expr) => {
        if let Some(value) = &$value {
            $ext.insert(
                $crate::header::CompactString::const_new($key),
                $crate::header::HeaderValue::to_wire(value),
            );
        }
    };
    (@get required $ext:ident, $key:literal, $ty:ty) => {
        $crate::header::read_required::<$ty>($ext, $key)?
    };
    (@get optional $ext:ident, $key:literal, $ty:ty) => {
        $crate::header::read_optional::<$ty>($ext, $key)?
    };
}

/// Pull request sysFlag bits (`PullSysFlag.java`).
pub mod pull_sys_flag {
    /// Piggy-back commit of `commitOffset`.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// Long polling allowed.
    pub const SUSPEND: i32 = 0x2;
    /// Use the subscription carried in this request instead of the registered one.
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;

    pub const fn build(
        commit_offset: bool,
        suspend: bool,
        subscription: bool,
        class_filter: bool,
    ) -> i32 {
        (if commit_offset { COMMIT_OFFSET } else { 0 })
            | (if suspend { SUSPEND } else { 0 })
            | (if subscription { SUBSCRIPTION } else { 0 })
            | (if class_filter { CLASS_FILTER } else { 0 })
    }

    pub const fn has_commit_offset(flag: i32) -> bool {
        flag & COMMIT_OFFSET != 0
    }
    pub const fn has_suspend(flag: i32) -> bool {
        flag & SUSPEND != 0
    }
    pub const fn has_subscription(flag: i32) -> bool {
        flag & SUBSCRIPTION != 0
    }
    pub const fn has_class_filter(flag: i32) -> bool {
        flag & CLASS_FILTER != 0
    }
    pub const fn has_lite_pull(flag: i32) -> bool {
        flag & LITE_PULL != 0
    }
    pub const fn clear_commit_offset(flag: i32) -> i32 {
        flag & !COMMIT_OFFSET
    }
}

#[cfg(test)]
mod header_test;

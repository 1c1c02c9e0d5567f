//! The in-memory form of one remoting command, independent of how its header is encoded.

use std::collections::BTreeMap;

use bytes::Bytes;
use compact_str::CompactString;

use crate::error::Result;
use crate::header::CustomHeader;
use crate::version;

/// Custom-header fields. Ordered so that encodings are deterministic (fastjson sorts keys too),
/// and a later duplicate key replaces an earlier one as Java's HashMap does. Keys and values
/// are `CompactString`s: field names and most values (numbers, topics, groups) fit in its 24
/// inline bytes, so a header of a dozen fields costs no allocation per field, and the names a
/// header type writes are `&'static str`s it borrows.
pub type ExtFields = BTreeMap<CompactString, CompactString>;

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request expects no response.
pub const FLAG_ONEWAY: i32 = 2;
/// Flag bit 2, Rocketry's own, between brokers only: a follower of a replicated group passed
/// this request on to its leader, and it goes no further. A flag rather than a header field
/// because the ACL signs every header field, and the follower cannot sign for the sender.
pub const FLAG_FORWARDED: i32 = 4;

/// How a header is encoded: the top byte of the header-length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    pub const fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

macro_rules! language_codes {
    ($($variant:ident = $code:literal => $name:literal),* $(,)?) => {
        /// Sender language (`LanguageCode.java`). Unknown binary codes and unknown JSON names are
        /// kept as [`LanguageCode::Unknown`] rather than rejected: the field is informational.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum LanguageCode {
            #[default]
            $($variant,)*
            /// A code this crate does not know; JSON names it cannot map become `Unknown(u8::MAX)`.
            Unknown(u8),
        }

        impl LanguageCode {
            pub const fn code(self) -> u8 {
                match self {
                    $(LanguageCode::$variant => $code,)*
                    LanguageCode::Unknown(code) => code,
                }
            }

            pub const fn from_code(code: u8) -> Self {
                match code {
                    $($code => LanguageCode::$variant,)*
                    other => LanguageCode::Unknown(other),
                }
            }

            /// The Java enum name used by the JSON header. Unknown languages are written as
            /// `OTHER` because older Java peers fail on names they cannot map.
            pub const fn name(self) -> &'static str {
                match self {
                    $(LanguageCode::$variant => $name,)*
                    LanguageCode::Unknown(_) => "OTHER",
                }
            }

            pub fn from_name(name: &str) -> Self {
                match name {
                    $($name => LanguageCode::$variant,)*
                    _ => LanguageCode::Unknown(u8::MAX),
                }
            }
        }
    };
}

language_codes! {
    Java = 0 => "JAVA",
    Cpp = 1 => "CPP",
    Dotnet = 2 => "DOTNET",
    Python = 3 => "PYTHON",
    Delphi = 4 => "DELPHI",
    Erlang = 5 => "ERLANG",
    Ruby = 6 => "RUBY",
    Other = 7 => "OTHER",
    Http = 8 => "HTTP",
    Go = 9 => "GO",
    Php = 10 => "PHP",
    Oms = 11 => "OMS",
    Rust = 12 => "RUST",
    NodeJs = 13 => "NODE_JS",
}

/// One request or response.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotingCommand {
    /// Request code or response code. Kept as i32 although the binary header carries an i16,
    /// because 5.x POP codes (200050...) only travel in JSON headers.
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    /// The encoding the header arrived in, or will be sent in.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request carrying `header` flattened into extFields.
    ///
    /// Language is JAVA even though we are Rust: Java peers before 4.9.7 fail to decode a
    /// header naming a language they do not know and close the connection.
    pub fn request<H: CustomHeader>(code: impl Into<i32>, header: &H) -> Self {
        let mut ext_fields = ExtFields::new();
        header.to_ext_fields(&mut ext_fields);
        RemotingCommand {
            code: code.into(),
            language: LanguageCode::Java,
            version: version::CURRENT,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A response to the request with `opaque`. Always JSON: the C++ client decodes every
    /// response as JSON without looking at the type byte.
    pub fn response(code: impl Into<i32>, opaque: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code: code.into(),
            language: LanguageCode::Java,
            version: version::CURRENT,
            opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// A response answering `request` (same opaque).
    pub fn response_to(
        request: &RemotingCommand,
        code: impl Into<i32>,
        remark: Option<String>,
    ) -> Self {
        Self::response(code, request.opaque, remark)
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Adds a custom header's fields (on top of any already present).
    pub fn with_header<H: CustomHeader>(mut self, header: &H) -> Self {
        header.to_ext_fields(&mut self.ext_fields);
        self
    }

    pub fn with_ext_field(
        mut self,
        key: impl Into<CompactString>,
        value: impl Into<CompactString>,
    ) -> Self {
        self.ext_fields.insert(key.into(), value.into());
        self
    }

    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.serialize_type = serialize_type;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_response(&mut self) {
        self.flag |= FLAG_RESPONSE;
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    pub fn is_forwarded(&self) -> bool {
        self.flag & FLAG_FORWARDED != 0
    }

    pub fn mark_forwarded(&mut self) {
        self.flag |= FLAG_FORWARDED;
    }

    /// Parses the extFields as the custom header `H`.
    pub fn decode_header<H: CustomHeader>(&self) -> Result<H> {
        H::from_ext_fields(&self.ext_fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let mut cmd = RemotingCommand::request(105, &());
        assert!(!cmd.is_response() && !cmd.is_oneway());
        cmd.mark_oneway();
        assert!(cmd.is_oneway());
        cmd.mark_response();
        assert!(cmd.is_response());
        assert!(!cmd.is_forwarded());
        cmd.mark_forwarded();
        assert!(cmd.is_forwarded() && cmd.is_response() && cmd.is_oneway());
        let response = RemotingCommand::response(0, 7, None);
        assert!(response.is_response());
        assert_eq!(response.opaque, 7);
        assert_eq!(response.serialize_type, SerializeType::Json);
    }

    #[test]
    fn language_codes_round_trip() {
        for code in 0..=13u8 {
            let language = LanguageCode::from_code(code);
            assert_eq!(language.code(), code);
            assert_eq!(LanguageCode::from_name(language.name()), language);
        }
        assert_eq!(LanguageCode::from_code(13), LanguageCode::NodeJs);
        assert_eq!(LanguageCode::from_code(99), LanguageCode::Unknown(99));
        assert_eq!(
            LanguageCode::from_name("COBOL"),
            LanguageCode::Unknown(u8::MAX)
        );
    }
}

//! The JSON header, as fastjson writes and reads it.
//!
//! Writing mirrors fastjson's output byte for byte: keys in alphabetical order, compact, every
//! extFields value a JSON string (the C++ client only accepts strings there). Reading is
//! lenient: unknown keys are ignored, `extFields` may be missing or `null`, and its values may
//! be strings, numbers or booleans (the C++ client sends numbers).

use bytes::BufMut;
use serde::{Deserialize, Deserializer};

use crate::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
use crate::error::{Error, Result};
use crate::lenient;

pub fn encode(command: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_size_hint(command));
    write(command, &mut out);
    out
}

/// About how long the header of `command` is, to reserve room for it at once.
pub fn encoded_size_hint(command: &RemotingCommand) -> usize {
    128 + command.ext_fields.len() * 32
}

/// Appends the header of `command` to `out`, allocating nothing else.
pub fn write(command: &RemotingCommand, out: &mut impl BufMut) {
    let mut numbers = itoa::Buffer::new();
    out.put_slice(b"{\"code\":");
    out.put_slice(numbers.format(command.code).as_bytes());
    // Java omits a null map; we do not distinguish null from empty, and an absent map decodes
    // to all-null header fields on the Java side, which is what an empty map means.
    if !command.ext_fields.is_empty() {
        out.put_slice(b",\"extFields\":{");
        for (index, (key, value)) in command.ext_fields.iter().enumerate() {
            if index > 0 {
                out.put_u8(b',');
            }
            write_string(out, key);
            out.put_u8(b':');
            write_string(out, value);
        }
        out.put_u8(b'}');
    }
    out.put_slice(b",\"flag\":");
    out.put_slice(numbers.format(command.flag).as_bytes());
    out.put_slice(b",\"language\":");
    write_string(out, command.language.name());
    out.put_slice(b",\"opaque\":");
    out.put_slice(numbers.format(command.opaque).as_bytes());
    if let Some(remark) = &command.remark {
        out.put_slice(b",\"remark\":");
        write_string(out, remark);
    }
    out.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.put_slice(numbers.format(command.version).as_bytes());
    out.put_u8(b'}');
}

fn write_string(out: &mut impl BufMut, text: &str) {
    // Serialising a &str into a buffer cannot fail.
    serde_json::to_writer(out.writer(), text).expect("string serialisation is infallible");
}

#[derive(Deserialize)]
struct JsonHeader {
    #[serde(default, deserialize_with = "lenient::i32")]
    code: i32,
    #[serde(default, deserialize_with = "language")]
    language: LanguageCode,
    #[serde(default, deserialize_with = "lenient::i32")]
    version: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    opaque: i32,
    #[serde(default, deserialize_with = "lenient::i32")]
    flag: i32,
    #[serde(default, deserialize_with = "lenient::option_string")]
    remark: Option<String>,
    #[serde(
        rename = "extFields",
        default,
        deserialize_with = "lenient::ext_fields"
    )]
    ext_fields: ExtFields,
}

/// Accepts the enum name (what Java and Go send) or its numeric code.
fn language<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LanguageCode, D::Error> {
    let text = lenient::option_string(deserializer)?.unwrap_or_default();
    Ok(match text.parse::<u8>() {
        Ok(code) => LanguageCode::from_code(code),
        Err(_) if text.is_empty() => LanguageCode::Java,
        Err(_) => LanguageCode::from_name(&text),
    })
}

/// Decodes a JSON header. The body is left empty.
pub fn decode(header: &[u8]) -> Result<RemotingCommand> {
    let parsed: JsonHeader = serde_json::from_slice(header).map_err(Error::JsonHeader)?;
    Ok(RemotingCommand {
        code: parsed.code,
        language: parsed.language,
        version: parsed.version,
        opaque: parsed.opaque,
        flag: parsed.flag,
        remark: parsed.remark,
        ext_fields: parsed.ext_fields,
        body: Default::default(),
        serialize_type: SerializeType::Json,
    })
}

//! The JSON header, as fastjson writes and reads it.
//!
//! Writing mirrors fastjson's output byte for byte: keys in alphabetical order, compact, every
//! extFields value a JSON string (the C++ client only accepts strings there). Reading is
//! lenient: unknown keys are ignored, `extFields` may be missing or `null`, and its values may
//! be strings, numbers or booleans (the C++ client sends numbers).

use serde::{Deserialize, Deserializer};

use crate::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
use crate::error::{Error, Result};
use crate::lenient;

pub fn encode(command: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + command.ext_fields.len() * 32);
    out.extend_from_slice(b"{\"code\":");
    out.extend_from_slice(command.code.to_string().as_bytes());
    // Java omits a null map; we do not distinguish null from empty, and an absent map decodes
    // to all-null header fields on the Java side, which is what an empty map means.
    if !command.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (index, (key, value)) in command.ext_fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_string(&mut out, key);
            out.push(b':');
            write_string(&mut out, value);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    out.extend_from_slice(command.flag.to_string().as_bytes());
    out.extend_from_slice(b",\"language\":");
    write_string(&mut out, command.language.name());
    out.extend_from_slice(b",\"opaque\":");
    out.extend_from_slice(command.opaque.to_string().as_bytes());
    if let Some(remark) = &command.remark {
        out.extend_from_slice(b",\"remark\":");
        write_string(&mut out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.extend_from_slice(command.version.to_string().as_bytes());
    out.push(b'}');
    out
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, text).expect("string serialisation is infallible");
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

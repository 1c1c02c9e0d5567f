//! The ROCKETMQ binary header (`RocketMQSerializable`): 21 fixed bytes
//! (code i16, language u8, version i16, opaque i32, flag i32, remark length i32,
//! extFields length i32), the remark, then the extFields entries
//! (key: i16 length + bytes, value: i32 length + bytes).

use bytes::{Buf, BufMut};

use crate::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
use crate::error::{Error, Result};

pub const FIXED_LENGTH: usize = 21;

pub fn encode(command: &RemotingCommand) -> Result<Vec<u8>> {
    let code = i16::try_from(command.code).map_err(|_| Error::FieldOverflow {
        field: "code",
        value: command.code.into(),
    })?;
    let version = i16::try_from(command.version).map_err(|_| Error::FieldOverflow {
        field: "version",
        value: command.version.into(),
    })?;
    let remark = command.remark.as_deref().unwrap_or("").as_bytes();
    let mut ext_length = 0usize;
    for (key, value) in &command.ext_fields {
        if key.len() > i16::MAX as usize {
            return Err(Error::FieldOverflow {
                field: "extFields key",
                value: key.len() as i64,
            });
        }
        ext_length += 2 + key.len() + 4 + value.len();
    }
    let too_long = |field, length: usize| Error::FieldOverflow {
        field,
        value: length as i64,
    };
    let remark_length =
        i32::try_from(remark.len()).map_err(|_| too_long("remark", remark.len()))?;
    let ext_length_word =
        i32::try_from(ext_length).map_err(|_| too_long("extFields", ext_length))?;

    let mut out = Vec::with_capacity(FIXED_LENGTH + remark.len() + ext_length);
    out.put_i16(code);
    out.put_u8(command.language.code());
    out.put_i16(version);
    out.put_i32(command.opaque);
    out.put_i32(command.flag);
    out.put_i32(remark_length);
    out.put_slice(remark);
    out.put_i32(ext_length_word);
    for (key, value) in &command.ext_fields {
        out.put_i16(key.len() as i16);
        out.put_slice(key.as_bytes());
        out.put_i32(value.len() as i32);
        out.put_slice(value.as_bytes());
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    header_length: usize,
}

impl<'a> Reader<'a> {
    fn need(&self, count: usize, field: &'static str) -> Result<()> {
        if self.bytes.remaining() < count {
            return Err(Error::BinaryHeaderTruncated { field });
        }
        Ok(())
    }

    /// A declared length, rejected when negative or larger than the whole header, as
    /// RocketMQSerializable does before allocating.
    fn length(&self, declared: i64, field: &'static str) -> Result<usize> {
        if declared < 0 || declared as u64 > self.header_length as u64 {
            return Err(Error::BinaryHeaderLength {
                field,
                length: declared,
                header_length: self.header_length,
            });
        }
        Ok(declared as usize)
    }

    fn take(&mut self, count: usize, field: &'static str) -> Result<&'a [u8]> {
        self.need(count, field)?;
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    /// A zero-length string is `None`: Java decodes it as null, so an empty value and an
    /// absent one are the same thing on this encoding.
    fn string(&mut self, length: usize, field: &'static str) -> Result<Option<String>> {
        let bytes = self.take(length, field)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        std::str::from_utf8(bytes)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| Error::InvalidUtf8 { field })
    }
}

/// Decodes a binary header. The body is left empty. Bytes after the extFields table are
/// ignored, as Java does.
pub fn decode(header: &[u8]) -> Result<RemotingCommand> {
    let mut reader = Reader {
        bytes: header,
        header_length: header.len(),
    };
    reader.need(FIXED_LENGTH - 4, "fixed fields")?;
    let code = reader.bytes.get_i16();
    let language = LanguageCode::from_code(reader.bytes.get_u8());
    let version = reader.bytes.get_i16();
    let opaque = reader.bytes.get_i32();
    let flag = reader.bytes.get_i32();
    let remark_length = reader.bytes.get_i32();
    let remark_length = reader.length(remark_length.into(), "remark")?;
    let remark = reader.string(remark_length, "remark")?;

    reader.need(4, "extFields length")?;
    let ext_length = reader.bytes.get_i32();
    let ext_length = reader.length(ext_length.into(), "extFields")?;
    let table = reader.take(ext_length, "extFields")?;
    let mut entries = Reader {
        bytes: table,
        header_length: header.len(),
    };
    let mut ext_fields = ExtFields::new();
    while entries.bytes.has_remaining() {
        entries.need(2, "extFields key length")?;
        let key_length = entries.bytes.get_i16();
        let key_length = entries.length(key_length.into(), "extFields key")?;
        let key = entries.string(key_length, "extFields key")?;
        entries.need(4, "extFields value length")?;
        let value_length = entries.bytes.get_i32();
        let value_length = entries.length(value_length.into(), "extFields value")?;
        let value = entries.string(value_length, "extFields value")?;
        // Java keeps the later of duplicate keys, including a later null.
        match (key, value) {
            (Some(key), Some(value)) => {
                ext_fields.insert(key.into(), value.into());
            }
            (Some(key), None) => {
                ext_fields.remove(key.as_str());
            }
            (None, _) => {}
        }
    }

    Ok(RemotingCommand {
        code: code.into(),
        language,
        version: version.into(),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Default::default(),
        serialize_type: SerializeType::RocketMq,
    })
}

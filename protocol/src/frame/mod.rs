//! Frames: `length | type+headerLength | header | body`, all big-endian.
//!
//! `length` counts everything after itself; the body length is implicit
//! (`length - 4 - headerLength`). The top byte of the second word selects the header encoding.

pub mod binary_header;
pub mod json_header;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{RemotingCommand, SerializeType};
use crate::error::{Error, Result};

/// Largest frame accepted or produced, **including** the 4-byte length prefix. Java RocketMQ's
/// `NettyDecoder` uses this value (system property `com.rocketmq.remoting.frameMaxLength`,
/// default 16777216) and both Java clients and servers close the channel on a larger frame, so
/// producing one would break the peer and accepting one would let a peer make us buffer it.
pub const MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// Largest buffer growth made on the strength of a length prefix alone.
const RESERVE_STEP: usize = 64 * 1024;

/// Header lengths travel in the low 24 bits of the header-length word.
const MAX_HEADER_LENGTH: usize = 0x00FF_FFFF;

/// Appends the frame of `command`, encoding its header as `command.serialize_type` says.
pub fn encode(command: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
    encode_as(command, command.serialize_type, dst)
}

fn encode_as(
    command: &RemotingCommand,
    serialize_type: SerializeType,
    dst: &mut BytesMut,
) -> Result<()> {
    dst.reserve(command.body.len());
    encode_head(command, serialize_type, 0, dst)?;
    dst.put_slice(&command.body);
    Ok(())
}

/// Appends the frame of `command` up to its body (the length words and the header, encoded
/// as `serialize_type`), for a writer that sends the body from where it already lies, then
/// `trailing` more bytes of body. On an error, `dst` is left as it was.
fn encode_head(
    command: &RemotingCommand,
    serialize_type: SerializeType,
    trailing: usize,
    dst: &mut BytesMut,
) -> Result<()> {
    let start = dst.len();
    let written = write_head(command, serialize_type, trailing, dst);
    if written.is_err() {
        dst.truncate(start);
    }
    written
}

fn write_head(
    command: &RemotingCommand,
    serialize_type: SerializeType,
    trailing: usize,
    dst: &mut BytesMut,
) -> Result<()> {
    let start = dst.len();
    dst.reserve(8 + json_header::encoded_size_hint(command));
    // The two length words, written once the header's length is known: a JSON header is
    // written in place rather than built apart and copied.
    dst.put_u64(0);
    match serialize_type {
        SerializeType::Json => json_header::write(command, dst),
        SerializeType::RocketMq => dst.put_slice(&binary_header::encode(command)?),
    }
    let header_length = dst.len() - start - 8;
    let length = 4 + header_length + command.body.len() + trailing;
    if header_length > MAX_HEADER_LENGTH {
        return Err(Error::FieldOverflow {
            field: "headerLength",
            value: header_length as i64,
        });
    }
    if length + 4 > MAX_FRAME_LENGTH {
        return Err(Error::FrameTooLarge {
            length: length as u64 + 4,
            max: MAX_FRAME_LENGTH,
        });
    }
    let type_and_length = ((serialize_type.code() as u32) << 24) | header_length as u32;
    dst[start..start + 4].copy_from_slice(&(length as u32).to_be_bytes());
    dst[start + 4..start + 8].copy_from_slice(&type_and_length.to_be_bytes());
    Ok(())
}

/// Encodes one frame into fresh bytes.
pub fn encode_to_bytes(command: &RemotingCommand) -> Result<Bytes> {
    let mut buffer = BytesMut::new();
    encode(command, &mut buffer)?;
    Ok(buffer.freeze())
}

/// Takes one complete frame off the front of `src`, or returns `Ok(None)` (consuming nothing)
/// when more bytes are needed. A length prefix that is out of range is an error right away,
/// before any of the announced bytes arrive.
pub fn decode(src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
    if src.len() < 4 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
    if length < 4 {
        return Err(Error::FrameTooShort {
            length: length.into(),
        });
    }
    let length = length as usize;
    if length + 4 > MAX_FRAME_LENGTH {
        return Err(Error::FrameTooLarge {
            length: length as u64 + 4,
            max: MAX_FRAME_LENGTH,
        });
    }
    if src.len() < length + 4 {
        // Grow toward the announced size in steps rather than at once, so four bytes from a
        // peer cannot make us allocate 16 MiB up front.
        src.reserve((length + 4 - src.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    src.advance(4);
    let frame = src.split_to(length).freeze();
    decode_frame(frame).map(Some)
}

/// Decodes a frame whose 4-byte length prefix has already been removed: the header-length
/// word, the header and the body. The body shares `frame`'s allocation.
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand> {
    if frame.len() < 4 {
        return Err(Error::FrameTooShort {
            length: frame.len() as i64,
        });
    }
    let word = frame.get_u32();
    let type_code = (word >> 24) as u8;
    let header_length = (word & 0x00FF_FFFF) as usize;
    if header_length > frame.len() {
        return Err(Error::HeaderLengthOutOfRange {
            header_length,
            available: frame.len(),
        });
    }
    let header = frame.split_to(header_length);
    let serialize_type =
        SerializeType::from_code(type_code).ok_or(Error::UnknownSerializeType(type_code))?;
    let mut command = match serialize_type {
        SerializeType::Json => json_header::decode(&header)?,
        SerializeType::RocketMq => binary_header::decode(&header)?,
    };
    command.body = frame;
    Ok(command)
}

/// tokio-util codec for a stream of frames. On the encode side, responses are always written
/// with a JSON header whatever their `serialize_type`: the C++ client decodes every response as
/// JSON without looking at the type byte, and Java clients read either.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemotingCodec;

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>> {
        decode(src)
    }
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = Error;

    fn encode(&mut self, item: RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        <Self as Encoder<&RemotingCommand>>::encode(self, &item, dst)
    }
}

impl Encoder<&RemotingCommand> for RemotingCodec {
    type Error = Error;

    fn encode(&mut self, item: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
        encode_as(item, wire_type(item), dst)
    }
}

impl RemotingCodec {
    /// Appends what [`Encoder::encode`] would, up to the body: a server sends the body from
    /// where it lies, with one vectored write, instead of copying it behind the header. The
    /// frame's length counts `trailing` bytes more than the body: parts of the body kept
    /// apart (stored records a pull answers with), which the writer sends after it.
    pub fn encode_head(
        command: &RemotingCommand,
        trailing: usize,
        dst: &mut BytesMut,
    ) -> Result<()> {
        encode_head(command, wire_type(command), trailing, dst)
    }
}

/// The header encoding a command goes out with: its own, except that answers always go out
/// with a JSON header, whatever the request's.
fn wire_type(command: &RemotingCommand) -> SerializeType {
    if command.is_response() {
        SerializeType::Json
    } else {
        command.serialize_type
    }
}

#[cfg(test)]
mod frame_test;

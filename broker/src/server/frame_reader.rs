//! Reads whole frames off one connection within the server's time and size limits: a
//! connection that sends nothing for the idle timeout, a frame that does not complete
//! within the frame timeout, and a large frame from a peer that has not yet sent a request
//! (or, with the ACL on, whose header names no known user) all end the connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::frame::MAX_FRAME_LENGTH;
use protocol::RemotingCommand;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::tls::ReadSide;
use super::{HeaderCheck, Limits};

/// Bytes asked of the socket per read. Small requests arrive many to a read; a large
/// frame grows the buffer toward its announced length as its bytes arrive.
const READ_CHUNK: usize = 8 * 1024;

/// Why a connection's reading ended other than by the peer closing it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("malformed frame: {0}")]
    Malformed(protocol::Error),
    #[error(
        "frame of {length} bytes before the connection's first request (at most {max} until then)"
    )]
    TooLargeBeforeFirstRequest { length: usize, max: usize },
    #[error(
        "frame of {length} bytes whose header is not a known ACL user's (at most {max} without)"
    )]
    TooLargeUnauthenticated { length: usize, max: usize },
    #[error("frame not complete {0:?} after its first bytes")]
    FrameTimeout(Duration),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("read failed: {0}")]
    Io(std::io::Error),
}

pub struct FrameReader {
    socket: ReadSide,
    buffer: BytesMut,
    limits: Limits,
    last_read: Instant,
    /// The connection has sent a request, so the full frame limit applies.
    spoke: bool,
    /// The large frame at the front of the buffer has a request's header.
    front_vetted: bool,
    /// What the header of every large frame must pass, not only the first one's: with the
    /// ACL on, a known user's access key, so that no anonymous peer makes us buffer 16 MiB.
    large_frame_check: Option<HeaderCheck>,
}

impl FrameReader {
    pub fn new(
        socket: ReadSide,
        limits: Limits,
        large_frame_check: Option<HeaderCheck>,
    ) -> FrameReader {
        FrameReader {
            socket,
            buffer: BytesMut::new(),
            limits,
            last_read: Instant::now(),
            spoke: false,
            front_vetted: false,
            large_frame_check,
        }
    }

    /// Resolves once nothing has arrived for the idle timeout; never without one. The
    /// caller waits on it while it is not reading (backpressure), so a connection stuck that
    /// long on a client that reads nothing is closed too.
    pub async fn idle(&self) -> ReadError {
        let Some(timeout) = self.limits.idle_timeout else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.last_read + timeout).await;
        ReadError::Idle(timeout)
    }

    /// The next whole frame, or `Ok(None)` once the peer has closed its side.
    pub async fn next(&mut self) -> Result<Option<RemotingCommand>, ReadError> {
        // Counted from the first wait with part of a frame in hand, not from when those
        // bytes arrived: time spent not reading because of backpressure is ours, not the
        // peer's.
        let mut frame_started = None;
        loop {
            if let Some(command) = self.decode()? {
                return Ok(Some(command));
            }
            let limit = if self.buffer.is_empty() {
                let timeout = self.limits.idle_timeout;
                timeout.map(|timeout| (self.last_read + timeout, ReadError::Idle(timeout)))
            } else {
                let started = *frame_started.get_or_insert_with(Instant::now);
                let timeout = self.limits.frame_timeout;
                timeout.map(|timeout| (started + timeout, ReadError::FrameTimeout(timeout)))
            };
            let read = match limit {
                None => self.read_more().await,
                Some((deadline, expired)) => tokio::time::timeout_at(deadline, self.read_more())
                    .await
                    .map_err(|_| expired)?,
            };
            match read.map_err(ReadError::Io)? {
                // Closed, possibly inside a frame: nothing left to answer either way.
                0 => return Ok(None),
                _ => self.last_read = Instant::now(),
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buffer.is_empty() {
            // An idle connection holds no read buffer: wait for bytes before taking one.
            self.socket.readable().await?;
        }
        if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 2 {
            self.buffer.reserve(READ_CHUNK);
        }
        self.socket.read_buf(&mut self.buffer).await
    }

    fn decode(&mut self) -> Result<Option<RemotingCommand>, ReadError> {
        let vetting = !self.spoke || self.large_frame_check.is_some();
        if vetting && !self.front_vetted && !self.large_frame_allowed()? {
            return Ok(None);
        }
        let Some(mut command) =
            protocol::frame::decode(&mut self.buffer).map_err(ReadError::Malformed)?
        else {
            return Ok(None);
        };
        self.front_vetted = false;
        self.spoke |= !command.is_response();
        // An empty body would still share, and so keep alive, the whole read buffer it was
        // cut from for as long as the request is held (a long-polling PULL: 28 s).
        if command.body.is_empty() {
            command.body = Bytes::new();
        }
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
        }
        Ok(Some(command))
    }

    /// Before the connection's first request, a frame larger than `first_frame_max_bytes`
    /// is read only once its header has arrived and parses as a request: a stranger that
    /// does not speak RocketMQ cannot make us buffer up to 16 MiB, while a producer whose
    /// first request is a large send (Java producers send before their first heartbeat)
    /// is served. With a `large_frame_check`, every large frame's header must pass it too.
    /// `Ok(false)` means the header is not here yet.
    fn large_frame_allowed(&mut self) -> Result<bool, ReadError> {
        let Some(prefix) = self.buffer.get(..4) else {
            return Ok(true);
        };
        let length = i32::from_be_bytes(prefix.try_into().expect("4 bytes")) as i64 + 4;
        let max = self.limits.first_frame_max_bytes;
        // Too short, too long for anyone, or small enough: the codec decides.
        if length < 8 || length as usize > MAX_FRAME_LENGTH || length as usize <= max {
            return Ok(true);
        }
        let length = length as usize;
        let too_large = match self.large_frame_check {
            Some(_) => ReadError::TooLargeUnauthenticated { length, max },
            None => ReadError::TooLargeBeforeFirstRequest { length, max },
        };
        let Some(word) = self.buffer.get(4..8) else {
            return Ok(false);
        };
        let header_end =
            8 + (u32::from_be_bytes(word.try_into().expect("4 bytes")) & 0x00FF_FFFF) as usize;
        if header_end > max {
            return Err(too_large);
        }
        let Some(header) = self.buffer.get(4..header_end) else {
            return Ok(false);
        };
        match protocol::frame::decode_frame(Bytes::copy_from_slice(header)) {
            Ok(command) if !command.is_response() => {
                if self
                    .large_frame_check
                    .as_ref()
                    .is_some_and(|check| !check(&command))
                {
                    return Err(too_large);
                }
                self.front_vetted = true;
                Ok(true)
            }
            // Answers to the broker's own requests (consumer running info) come from
            // clients that have sent requests before; they are not vetted again.
            Ok(_) if self.spoke => {
                self.front_vetted = true;
                Ok(true)
            }
            _ => Err(too_large),
        }
    }
}

#[cfg(test)]
#[path = "frame_reader_test.rs"]
mod frame_reader_test;

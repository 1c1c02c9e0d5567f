//! RocketMQ "remoting" wire protocol: frames, command headers, request/response codes,
//! typed custom headers, JSON bodies, and an async client built on top of them.
//!
//! Everything except [`client`] is plain byte manipulation with no sockets and no runtime, so
//! the broker, the name server, the operator and the bench tool all share one wire format.
//! [`frame::RemotingCodec`] implements tokio-util's `Decoder`/`Encoder`; those traits are
//! socket-free, which is why the codec may live here.
//!
//! Modules: [`command`] (the in-memory command), [`frame`] (framing, JSON and binary headers,
//! the codec), [`code`] (request/response codes), [`version`] (client version ordinals),
//! [`header`] (typed custom headers), [`body`] (JSON bodies and fastjson's dialect),
//! [`lenient`] (coercing serde readers), [`acl`] (request signatures), [`client`] (tokio client), [`error`].

pub mod acl;
pub mod body;
pub mod client;
pub mod code;
pub mod command;
pub mod error;
pub mod frame;
pub mod header;
pub mod lenient;
pub mod version;

pub use client::Client;
pub use code::{RequestCode, ResponseCode};
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use error::{Error, Result};
pub use frame::{RemotingCodec, MAX_FRAME_LENGTH};
pub use header::CustomHeader;

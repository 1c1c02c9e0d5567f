//! Async client.
pub struct Client;

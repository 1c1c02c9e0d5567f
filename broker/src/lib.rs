//! Rocketry's broker and name server.

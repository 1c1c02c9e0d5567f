//! RocketMQ messages and their stored layout.

//! Load generator over the protocol client (not built yet).

//! `MQVersion.Version` ordinals that the protocol branches on. The Java enum is append-only,
//! so these numbers are stable across 4.5.1, 4.9.7 and 5.x.

pub const V3_0_11: i32 = 37;
pub const V3_4_9: i32 = 121;
pub const V4_1_0_SNAPSHOT: i32 = 232;
pub const V4_2_0: i32 = 253;
pub const V4_5_1: i32 = 315;
/// What the Go client sends.
pub const V4_5_2: i32 = 317;
/// What the C++ core (and the Python client on it) sends.
pub const V4_6_0: i32 = 333;
/// From this version on the name server writes standard JSON for routes.
pub const V4_9_4: i32 = 401;
pub const V4_9_7: i32 = 407;
pub const V5_0_0: i32 = 413;
pub const V5_1_0: i32 = 433;
pub const V5_2_0: i32 = 453;
pub const V5_3_0: i32 = 473;
pub const V5_3_1: i32 = 475;
pub const V5_3_3: i32 = 479;

/// The version Rocketry puts in every command it sends. Java clients remember the broker's
/// heartbeat-response version and refuse SQL92 pulls below V4_1_0_SNAPSHOT, so it must be
/// modern; it matches the newest Java client the reference was read from.
pub const CURRENT: i32 = V5_3_3;

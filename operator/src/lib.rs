//! The Rocketry operator: CRD types, controllers and resource builders (not built yet).

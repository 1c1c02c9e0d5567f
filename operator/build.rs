//! Generates the KEDA external scaler's gRPC server and client from its proto. The proto is
//! parsed by protox (pure Rust), so a build needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/externalscaler.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

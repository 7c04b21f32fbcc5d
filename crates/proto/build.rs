//! Compiles the .proto files with protox (pure Rust), so a fresh machine needs no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/goldmane.proto", "proto/caracal.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .extern_path(".goldmane.PolicyMatch", "crate::policy_match::PolicyMatch")
        .compile_fds(descriptors)?;
    Ok(())
}

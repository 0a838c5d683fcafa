//! Generates the tonic client and server for `proto/ingest.proto` with the protoc shipped in
//! `protoc-bin-vendored`, so building needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/ingest.proto"],
        &["proto"],
    )?;
    Ok(())
}

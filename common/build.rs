//! Compiles the protocol in `proto/ferry/v1` into Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("ferry_descriptor.bin"))
        .compile_protos(
            &[
                "../proto/ferry/v1/jobs.proto",
                "../proto/ferry/v1/worker.proto",
                "../proto/ferry/v1/store.proto",
                "../proto/ferry/v1/plan.proto",
            ],
            &["../proto"],
        )?;
    // serde for the protobuf JSON mapping (`ferry … --output json`), with the
    // proto's snake_case field names and every field present, so scripts can
    // read any field without knowing proto3's default-omission rules.
    let descriptors = std::fs::read(out.join("ferry_descriptor.bin"))?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".ferry.v1"])?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}

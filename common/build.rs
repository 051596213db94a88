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
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}

//! Compiles every `.proto` under `crm/` with protox (no system `protoc` needed) and generates the
//! prost messages and tonic clients/servers. The descriptor set, with its doc comments, is kept for
//! server reflection and for the contract checks in `tests/`.

use std::path::{Path, PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut protos = Vec::new();
    collect_protos(&root.join("crm"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=crm");

    let relative: Vec<PathBuf> = protos
        .iter()
        .map(|p| p.strip_prefix(&root).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    let descriptors = protox::compile(&relative, [&root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("crm_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        // Bad input decodes to INVALID_ARGUMENT naming the field, not INTERNAL (see codec.rs).
        .codec_path("crate::codec::CrmCodec")
        .include_file("crm.rs")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
    Ok(())
}

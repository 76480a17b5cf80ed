//! Regenerates the gRPC code from `protos/grpc_predict_v2.proto` and checks it against the
//! checked-in `src/proto/gen/inference.rs`, so normal builds need neither protoc nor a build
//! script (the linkerd2-proxy-api approach). protox is a pure-Rust protobuf compiler.
//!
//! After changing the proto or the generator settings, run
//! `TENSORGATE_BLESS=1 cargo test -p tensorgate-core --test proto_bootstrap` to rewrite the file.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs, process};

type TestResult = Result<(), Box<dyn Error>>;

const PROTO: &str = "grpc_predict_v2.proto";
const GENERATED: &str = "src/proto/gen/inference.rs";
const BLESS: &str = "TENSORGATE_BLESS";

#[test]
fn generated_code_is_up_to_date() -> TestResult {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let protos = manifest.join("../../protos");
    let checked_in = manifest.join(GENERATED);

    let out_dir = scratch_dir()?;
    let generated = generate(&protos, &out_dir);
    let cleanup = fs::remove_dir_all(&out_dir);
    let generated = generated?;
    cleanup?;

    let current = fs::read_to_string(&checked_in).unwrap_or_default();
    if current == generated {
        return Ok(());
    }
    if env::var_os(BLESS).is_some_and(|value| value == "1") {
        fs::write(&checked_in, generated)?;
        return Ok(());
    }
    Err(format!(
        "{} is out of date with protos/{PROTO}; regenerate it with \
         `{BLESS}=1 cargo test -p tensorgate-core --test proto_bootstrap` and commit the result",
        checked_in.display()
    )
    .into())
}

/// Runs protox and tonic-prost-build into `out_dir` and returns the generated module.
fn generate(protos: &Path, out_dir: &Path) -> Result<String, Box<dyn Error>> {
    let fds = protox::compile([PROTO], [protos])?;
    tonic_prost_build::configure()
        // Bytes fields (raw_input_contents, bytes_contents) become `bytes::Bytes`: decoding
        // from a `Bytes` buffer then slices it instead of copying.
        .bytes(".")
        // Maps become BTreeMap so encoded messages are byte-for-byte deterministic.
        .btree_map(".")
        // Raw tensor contents are copied into frames around a slow `memcpy` path (`copy`).
        .codec_path("crate::proto::AliasSafeProstCodec")
        .build_server(true)
        .build_client(true)
        // No tonic transport: the crate uses tonic only for codegen; the server and channel
        // live in the crates that own the network.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_fds(fds)?;
    Ok(fs::read_to_string(out_dir.join("inference.rs"))?)
}

/// A fresh directory under the system temp dir, unique to this process.
fn scratch_dir() -> Result<PathBuf, Box<dyn Error>> {
    let dir = env::temp_dir().join(format!("tensorgate-proto-bootstrap-{}", process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

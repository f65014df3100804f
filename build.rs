//! Generates the gRPC server and client code from etcd's API definitions in
//! `proto/` (and oxcd's own raft log entry format in `proto/oxcdpb/`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.split_whitespace().nth(1).unwrap_or("unknown").to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=OXCD_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Keys and values arrive as slices of the request buffer; Bytes
        // keeps them shared instead of copied on the way to the log.
        .bytes(".")
        // Small per-stream buffers (see src/codec.rs).
        .codec_path("crate::codec::EtcdCodec")
        .compile_protos(
            &[
                "proto/etcdserverpb/rpc.proto",
                "proto/v3lockpb/v3lock.proto",
                "proto/v3electionpb/v3election.proto",
                "proto/oxcdpb/raft_internal.proto",
                "proto/oxcdpb/peer.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}

//! Generates the gRPC code from `transmissor/v1/*.proto` with the protoc
//! binary shipped in the `protoc-bin-vendored` crate (nothing is downloaded
//! and no system protoc is needed). A `PROTOC` set in the environment wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY-free: build scripts are single-threaded here.
        unsafe_set_protoc(&protoc);
    }
    println!("cargo:rerun-if-changed=transmissor/v1");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".transmissor.v1.PutBatchRequest.data")
        .compile_protos(
            &[
                "transmissor/v1/transmission.proto",
                "transmissor/v1/agent.proto",
            ],
            &["."],
        )?;
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // SAFETY: the build script has no other threads reading the environment.
    unsafe { std::env::set_var("PROTOC", path) };
}

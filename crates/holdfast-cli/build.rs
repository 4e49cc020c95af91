//! Links the `holdfast` binary with `-Wl,--wrap=pthread_getattr_np`
//! (Linux, glibc): std's start-up then skips reading `/proc/self/maps`
//! (see `src/main.rs`, "Start-up cost", and the library's `fast-start`
//! feature, which provides the wrapper).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=holdfast=-Wl,--wrap=pthread_getattr_np");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

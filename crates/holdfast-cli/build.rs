//! Links the `holdfast` binary (Linux, glibc) with
//!
//! - `-Wl,--wrap=pthread_getattr_np`: std's start-up then skips reading
//!   `/proc/self/maps` (see `src/main.rs`, "Start-up cost", and the
//!   library's `fast-start` feature, which provides the wrapper);
//! - `-z pack-relative-relocs` (DT_RELR): the binary's ~13,000 relative
//!   relocations in a compact table the loader walks faster (start-up
//!   CPU about 0.5 ms less in 3 of 4 interleaved rounds on the loaded
//!   development VM; see BENCHMARKS.md). Needs glibc ≥ 2.36 where the
//!   binary runs; GNU ld before 2.38 ignores the option with a warning.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=holdfast=-Wl,--wrap=pthread_getattr_np");
        println!("cargo:rustc-link-arg-bin=holdfast=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

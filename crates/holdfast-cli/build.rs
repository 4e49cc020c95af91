//! Links the `holdfast` binary (Linux, glibc) with
//!
//! - `-Wl,--wrap=pthread_getattr_np`: std's start-up then skips reading
//!   `/proc/self/maps` (see `src/main.rs`, "Start-up cost", and the
//!   library's `fast-start` feature, which provides the wrapper);
//! - `-z pack-relative-relocs` (DT_RELR): a compact table of relative
//!   relocations, for a position-independent build (see below). Needs
//!   glibc ≥ 2.36 where the binary runs; GNU ld before 2.38 ignores the
//!   option with a warning.
//! - `-no-pie` (after rustc's own `-pie`, which it overrides): a
//!   position-dependent executable, loaded at its link address, so the
//!   loader has none of the ~13,000 relative relocations of the 10 MB
//!   binary to apply and the ~50 pages of `.data.rel.ro` and `.got` they
//!   would write are never copied: start-up of `holdfast flock LOCK true`
//!   went from 588 k to 423 k user instructions (callgrind) and from 202
//!   to 157 page faults (BENCHMARKS.md, CLI section). The code is still
//!   compiled position-independent; only the executable's own address is
//!   fixed. The cost is ASLR of the binary's image (its code, data and
//!   GOT sit at known addresses; shared libraries, stack, heap and mmaps
//!   stay randomized), which makes return-oriented exploitation of a
//!   memory-safety bug easier. The binary is a short-lived command whose
//!   code is Rust without `unsafe` over a library whose `unsafe` is a few
//!   audited system calls, which is why the start-up cost was judged
//!   worth more here. Set `HOLDFAST_PIE=1` when building to keep a PIE.
//!   With `+crt-static` the same flag makes a static non-PIE executable
//!   (`-static`: rustc's default static-pie relocates itself at start).
//! - libgcc's unwinder linked in statically (`libgcc_eh.a`, as `gcc
//!   -static-libgcc` does) instead of loading `libgcc_s.so.1`: one shared
//!   library fewer to map, relocate and search for every symbol (about
//!   36 k instructions and 6-9 page faults less per start). Panics still
//!   unwind (the exit-101 contract). Done by putting a linker script
//!   named `libgcc_s.so` that reads `INPUT(/path/libgcc_eh.a)` first on
//!   this binary's search path, since std asks for `-lgcc_s` itself;
//!   skipped if the compiler driver does not know `libgcc_eh.a`, and when
//!   cross-compiling (the driver found is the host's).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HOLDFAST_PIE");
    println!("cargo:rerun-if-env-changed=CC");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    let arg = |a: &str| println!("cargo:rustc-link-arg-bin=holdfast={a}");
    arg("-Wl,--wrap=pthread_getattr_np");
    arg("-Wl,-z,pack-relative-relocs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let crt_static = features.split(',').any(|f| f == "crt-static");
    if std::env::var_os("HOLDFAST_PIE").is_none_or(|v| v.is_empty() || v == "0") {
        arg("-no-pie");
        if crt_static {
            arg("-static");
        }
    }
    // Only for a native build: `cc` is the host's compiler, whose
    // libgcc_eh.a would not link into a cross-compiled binary.
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    if !crt_static
        && native
        && let Some(dir) = static_unwinder()
    {
        arg(&format!("-L{}", dir.display()));
    }
}

/// A directory holding a `libgcc_s.so` linker script that links
/// `libgcc_eh.a` instead, or `None` if the driver does not find the
/// archive.
fn static_unwinder() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = std::process::Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !out.status.success() || !path.is_absolute() || !path.exists() {
        return None;
    }
    let dir = PathBuf::from(std::env::var_os("OUT_DIR")?).join("static-libgcc");
    std::fs::create_dir_all(&dir).ok()?;
    let script = format!("INPUT(\"{}\")\n", path.display());
    std::fs::write(dir.join("libgcc_s.so"), script).ok()?;
    Some(dir)
}

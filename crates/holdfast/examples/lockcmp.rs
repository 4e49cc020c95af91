//! Uncontended lock + unlock, interleaved: each round runs every variant
//! for `N` cycles, in turn, and the medians over the rounds are printed as
//! ratios to raw `flock(2)` measured in the same rounds. On a shared,
//! noisy machine this compares better than separate runs. Time is the
//! thread's CPU time (user + system), so time spent descheduled by other
//! load on the machine does not count.
//!
//! Besides holdfast and std, it measures what `sys/linux/hot.rs` and
//! `sys/linux/pathwatch.rs` are built on: the cost of a `ret` after a
//! system call (the same `flock`s made from a function, with and without
//! the return-stack refill), and the candidates for the path check after
//! the lock (`statx`, `ioctl(FIONREAD)` and `epoll_wait` on an inotify
//! descriptor, and `getppid` as the floor). `ONLY=i` runs variant `i`
//! alone, for `perf record` or `strace -c`.
//!
//! `cargo run --release -p holdfast --example lockcmp -- [PATH] [N] [ROUNDS]`
#![cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(unused_imports)
)]

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    eprintln!("lockcmp measures x86-64 Linux system calls");
}

use std::fs::OpenOptions;
use std::hint::black_box;

use rustix::fs::FlockOperation;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() -> Result<(), holdfast::Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/lockcmp.lock".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(15);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("open the lock file");
    let bare = holdfast::Lock::options()
        .holder_record(false)
        .verify_path(false)
        .open(&path)?;
    let norecord = holdfast::Lock::options().holder_record(false).open(&path)?;
    let recorded = holdfast::Lock::open(&path)?;
    type Run<'a> = Box<dyn Fn(u32) + 'a>;
    let variants: Vec<(&str, Run)> = vec![
        (
            "raw flock(2) EX+UN",
            Box::new(|n| {
                for _ in 0..n {
                    rustix::fs::flock(&file, FlockOperation::LockExclusive).unwrap();
                    rustix::fs::flock(&file, FlockOperation::Unlock).unwrap();
                }
            }),
        ),
        (
            "raw flock in an #[inline(never)] fn",
            Box::new(|n| {
                for _ in 0..n {
                    outlined(&file, FlockOperation::LockExclusive);
                    outlined(&file, FlockOperation::Unlock);
                }
            }),
        ),
        (
            "asm flock + RSB refill, in an #[inline(never)] fn, 2 deep",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                for _ in 0..n {
                    stuffed2(fd, libc::LOCK_EX);
                    stuffed2(fd, libc::LOCK_UN);
                }
            }),
        ),
        (
            "asm flock, no refill, in an #[inline(never)] fn, 2 deep",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                for _ in 0..n {
                    plain2(fd, libc::LOCK_EX);
                    plain2(fd, libc::LOCK_UN);
                }
            }),
        ),
        (
            "asm flock + refill, + asm statx + refill",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                let mut buf = [0u64; 32];
                for _ in 0..n {
                    stuffed2(fd, libc::LOCK_EX);
                    sys3(
                        libc::SYS_statx,
                        fd as usize,
                        c"".as_ptr() as usize,
                        libc::AT_EMPTY_PATH as usize,
                        libc::STATX_NLINK as usize,
                        buf.as_mut_ptr() as usize,
                    );
                    stuffed2(fd, libc::LOCK_UN);
                }
            }),
        ),
        (
            "asm flock + refill, + asm FIONREAD(inotify) + refill",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                // SAFETY: plain calls.
                let ino = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
                let mut avail: libc::c_int = 0;
                for _ in 0..n {
                    stuffed2(fd, libc::LOCK_EX);
                    sys3(
                        libc::SYS_ioctl,
                        ino as usize,
                        libc::FIONREAD as usize,
                        &mut avail as *mut _ as usize,
                        0,
                        0,
                    );
                    stuffed2(fd, libc::LOCK_UN);
                }
                // SAFETY: ours.
                unsafe { libc::close(ino) };
            }),
        ),
        (
            "asm flock + refill, + asm epoll_wait(inotify, 0) + refill",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                // SAFETY: plain calls.
                let ino = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
                // SAFETY: plain calls.
                let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: 0,
                };
                // SAFETY: plain calls.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ino, &mut ev) };
                for _ in 0..n {
                    stuffed2(fd, libc::LOCK_EX);
                    sys3(
                        libc::SYS_epoll_wait,
                        ep as usize,
                        &mut ev as *mut _ as usize,
                        1,
                        0,
                        0,
                    );
                    stuffed2(fd, libc::LOCK_UN);
                }
                // SAFETY: ours.
                unsafe {
                    libc::close(ino);
                    libc::close(ep)
                };
            }),
        ),
        (
            "asm flock + refill, + asm getppid + refill",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                for _ in 0..n {
                    stuffed2(fd, libc::LOCK_EX);
                    sys3(libc::SYS_getppid, 0, 0, 0, 0, 0);
                    stuffed2(fd, libc::LOCK_UN);
                }
            }),
        ),
        (
            "std File::lock+unlock",
            Box::new(|n| {
                for _ in 0..n {
                    file.lock().unwrap();
                    file.unlock().unwrap();
                }
            }),
        ),
        (
            "libc::flock EX+UN",
            Box::new(|n| {
                use std::os::fd::AsRawFd;
                let fd = file.as_raw_fd();
                for _ in 0..n {
                    // SAFETY: fd is open for the loop.
                    unsafe {
                        assert_eq!(libc::flock(fd, libc::LOCK_EX), 0);
                        assert_eq!(libc::flock(fd, libc::LOCK_UN), 0);
                    }
                }
            }),
        ),
        (
            "raw flock + statx",
            Box::new(|n| {
                for _ in 0..n {
                    use rustix::fs::{AtFlags, StatxFlags};
                    rustix::fs::flock(&file, FlockOperation::LockExclusive).unwrap();
                    let st = rustix::fs::statx(&file, c"", AtFlags::EMPTY_PATH, StatxFlags::NLINK)
                        .unwrap();
                    black_box(st.stx_nlink);
                    rustix::fs::flock(&file, FlockOperation::Unlock).unwrap();
                }
            }),
        ),
        (
            "holdfast, no record, no path check",
            Box::new(|n| {
                for _ in 0..n {
                    drop(black_box(bare.lock().unwrap()));
                }
            }),
        ),
        (
            "holdfast, no record",
            Box::new(|n| {
                for _ in 0..n {
                    drop(black_box(norecord.lock().unwrap()));
                }
            }),
        ),
        (
            "holdfast lock_shared, no record",
            Box::new(|n| {
                for _ in 0..n {
                    drop(black_box(norecord.lock_shared().unwrap()));
                }
            }),
        ),
        (
            "holdfast, defaults (record + path check)",
            Box::new(|n| {
                for _ in 0..n {
                    drop(black_box(recorded.lock().unwrap()));
                }
            }),
        ),
    ];
    if let Ok(only) = std::env::var("ONLY") {
        // One variant alone, for `perf stat` / `strace -c`.
        let i: usize = only.parse().expect("ONLY=index");
        (variants[i].1)(n * rounds as u32);
        return Ok(());
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for (_, run) in &variants {
        run(n / 10); // warm up
    }
    for _ in 0..rounds {
        for (i, (_, run)) in variants.iter().enumerate() {
            let t = cpu_ns();
            run(n);
            times[i].push((cpu_ns() - t) as f64 / f64::from(n));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!("| variant | median ns | vs raw flock |\n|---|---|---|");
    for ((name, _), m) in variants.iter().zip(&medians) {
        println!("| {name} | {m:.0} | {:.2}× |", m / medians[0]);
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn outlined(file: &std::fs::File, op: FlockOperation) {
    rustix::fs::flock(file, op).unwrap();
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn stuffed(fd: i32, op: i32) -> isize {
    let ret: isize;
    // SAFETY: flock(2) on a caller's descriptor; the calls push and the
    // add pops 16 return addresses.
    unsafe {
        std::arch::asm!(
            "syscall",
            "sub rsp, 128",
            ".rept 16",
            "call 2f",
            "3: pause",
            "lfence",
            "jmp 3b",
            "2:",
            ".endr",
            "add rsp, 256",
            inlateout("rax") 73isize => ret,
            in("rdi") fd,
            in("rsi") op,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    ret
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn stuffed2(fd: i32, op: i32) -> isize {
    black_box(stuffed(black_box(fd), op))
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn plain(fd: i32, op: i32) -> isize {
    let ret: isize;
    // SAFETY: flock(2) on a caller's descriptor.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 73isize => ret,
            in("rdi") fd,
            in("rsi") op,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    ret
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn plain2(fd: i32, op: i32) -> isize {
    black_box(plain(black_box(fd), op))
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn sys3(n: libc::c_long, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    // SAFETY: a measurement of harmless calls.
    unsafe {
        std::arch::asm!(
            "syscall",
            "sub rsp, 128",
            ".rept 16",
            "call 2f",
            "3: pause",
            "lfence",
            "jmp 3b",
            "2:",
            ".endr",
            "add rsp, 256",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    ret
}

/// This thread's CPU time (user + system), in nanoseconds.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

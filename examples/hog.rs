//! hog: a memory allocator for trying guard (and for its tests).
//!
//!     hog alloc MB [--rate MB_PER_SEC] [--exit]
//!                                    allocate MB mebibytes (touching every page), optionally paced,
//!                                    then sleep until killed (or exit 0 with --exit)
//!     hog burst MB [--threads N]     map MB mebibytes populated (MAP_POPULATE), split over N
//!                                    threads that start together, then sleep until killed
//!     hog thrash FILE MB             write FILE (MB mebibytes), then read its pages through mmap
//!                                    in a scrambled order, again and again: under a cap smaller
//!                                    than FILE the kernel keeps evicting pages it reads back
//!     hog spawn N ARGS...            run N copies of `hog ARGS...` as children and wait for them
//!     hog sleep SECS                 sleep (a process that uses no memory)
//!     hog raise SIGNUM               die of signal SIGNUM (its default action restored first)
//!
//! Example: a grandchild that allocates past a 64 MiB cap:
//!     guard --memory 64M -- target/debug/examples/hog spawn 1 spawn 1 alloc 200

use std::io::Write;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: hog alloc MB [--rate MB_PER_SEC] [--exit] | hog burst MB [--threads N] | hog thrash FILE MB | hog spawn N ARGS... | hog sleep SECS | hog raise SIGNUM"
    );
    std::process::exit(2)
}

fn num(s: Option<&String>) -> u64 {
    s.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
}

/// `hog thrash FILE MB`: a job stalled at its cap, re-reading its own file pages.
fn thrash(args: &[String]) {
    let path = args.get(1).unwrap_or_else(|| usage());
    let mb = num(args.get(2));
    let len = (mb as usize) << 20;
    {
        let mut f = std::fs::File::create(path).unwrap_or_else(|e| {
            eprintln!("hog: {path}: {e}");
            std::process::exit(1)
        });
        let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for _ in 0..mb {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("fsync");
    }
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: a read-only shared mapping of a file of `len` bytes that this process made.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    println!("thrashing over {mb} MiB");
    let _ = std::io::stdout().flush();
    // Pages in a scrambled order, again and again: a working set that does not fit, read the way
    // a program's code and heap are (no readahead helps), so each page the kernel evicted is a
    // major fault when it comes round again.
    let pages = len / 4096;
    let mut sum = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for _ in 0..pages {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let off = ((x >> 33) as usize % pages) * 4096;
            // SAFETY: `off` is within the mapping.
            sum = sum.wrapping_add(u64::from(unsafe {
                std::ptr::read_volatile(p.cast::<u8>().add(off))
            }));
        }
        std::hint::black_box(sum);
    }
}

/// `hog alloc MB [--rate MB_PER_SEC] [--exit]`.
fn alloc(args: &[String]) {
    let mb = num(args.get(1));
    let rate = args
        .iter()
        .position(|a| a == "--rate")
        .map(|i| num(args.get(i + 1)));
    let exit = args.iter().any(|a| a == "--exit");
    // Paced: one MiB per period on a schedule, never caught up in a burst after a stall (a
    // loaded machine's): the leak stays a steady one, a little slower.
    let period = rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(1.0 / r as f64));
    let mut next = Instant::now();
    let mut keep: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mb {
        let mut chunk = vec![0u8; 1 << 20];
        for p in (0..chunk.len()).step_by(4096) {
            chunk[p] = 1;
        }
        keep.push(chunk);
        if let Some(period) = period {
            next += period;
            let now = Instant::now();
            match next.checked_duration_since(now) {
                Some(wait) => std::thread::sleep(wait),
                None => next = now,
            }
        }
    }
    println!("allocated {mb} MiB");
    let _ = std::io::stdout().flush();
    if exit {
        std::hint::black_box(&keep);
        return;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        std::hint::black_box(&keep);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("alloc") => alloc(&args),
        Some("thrash") => thrash(&args),
        Some("burst") => {
            let total = (num(args.get(1)) as usize) << 20;
            let threads = args
                .iter()
                .position(|a| a == "--threads")
                .map_or(1, |i| num(args.get(i + 1)).max(1) as usize);
            let each = total / threads;
            // All threads map at once: each may charge a batch past memory.high before the
            // kernel throttles it, so together they can pass memory.max.
            let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
                        let p = unsafe {
                            libc::mmap(
                                std::ptr::null_mut(),
                                each,
                                libc::PROT_READ | libc::PROT_WRITE,
                                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                                -1,
                                0,
                            )
                        };
                        p != libc::MAP_FAILED
                    })
                })
                .collect();
            let failed = workers
                .into_iter()
                .map(|w| w.join().unwrap_or(false))
                .filter(|ok| !ok)
                .count();
            if failed > 0 {
                eprintln!("hog: {failed} of {threads} mappings failed");
                std::process::exit(1)
            }
            println!("burst of {} MiB mapped", total >> 20);
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Some("spawn") => {
            let n = num(args.get(1));
            let exe = std::env::current_exe().unwrap_or_else(|_| usage());
            let mut kids = Vec::new();
            for _ in 0..n {
                match std::process::Command::new(&exe).args(&args[2..]).spawn() {
                    Ok(c) => kids.push(c),
                    Err(e) => {
                        eprintln!("hog: spawn failed: {e}");
                        std::process::exit(1)
                    }
                }
            }
            let mut worst = 0;
            for mut k in kids {
                if let Ok(st) = k.wait() {
                    if !st.success() {
                        worst = 1;
                    }
                }
            }
            std::process::exit(worst)
        }
        Some("sleep") => std::thread::sleep(Duration::from_secs(num(args.get(1)))),
        Some("raise") => {
            let sig = num(args.get(1)) as i32;
            // SAFETY: restoring the default action and raising a signal have no memory effects.
            unsafe {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            std::thread::sleep(Duration::from_secs(1));
            eprintln!("hog: signal {sig} did not end the process");
            std::process::exit(1)
        }
        _ => usage(),
    }
}

//! Collectors: outside tools run against the held job, each bounded in time and reported in the
//! manifest as ok / failed / skipped (and why) / timeout. `py-spy dump --nonblocking` for Python
//! processes (plain `py-spy dump` and gdb hang on a held task; the non-blocking mode reads the
//! interpreter's memory without stopping it), and `gcore` for `--core`.

use super::bundle::{BundleWriter, DirFd};
use crate::format::{CollectorResult, Status};
use crate::os::runner::{Env, Helper, Ran, locate, run_bounded};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

/// py-spy's bound at the cap (the job is held; a stack is worth waiting for) and at a warning
/// (the job runs, and guard watches nothing else meanwhile).
pub const PYSPY_TIMEOUT: Duration = Duration::from_secs(10);
pub const PYSPY_WARNING_TIMEOUT: Duration = Duration::from_secs(2);
pub const GCORE_TIMEOUT: Duration = Duration::from_secs(120);
/// At most this many Python processes get a stack dump (the largest first).
pub const MAX_PYSPY: usize = 8;

/// Whether `pid` runs a Python interpreter (by the executable's name).
pub fn is_python(proc: &Path, pid: i32) -> bool {
    let exe = std::fs::read_link(proc.join(pid.to_string()).join("exe")).ok();
    let comm = std::fs::read_to_string(proc.join(pid.to_string()).join("comm")).unwrap_or_default();
    let exe_name = exe
        .as_ref()
        .and_then(|e| e.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    exe_name.starts_with("python") || comm.trim().starts_with("python")
}

/// The Python processes among `pids`, in their order, at most MAX_PYSPY: those py-spy and the
/// heap census read.
pub fn python_pids(proc: &Path, pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|&p| is_python(proc, p))
        .take(MAX_PYSPY)
        .collect()
}

/// `py-spy dump --nonblocking` for each Python process among `pids` (largest first), into
/// `processes/<pid>/pyspy.txt`. One result per process, or one `skipped` result.
/// How py-spy is run: the program (--pyspy; None: looked for), --locals, the bound.
#[derive(Debug, Clone, Copy)]
pub struct PySpy<'a> {
    pub program: Option<&'a Path>,
    pub locals: bool,
    pub timeout: Duration,
}

pub fn pyspy(
    proc: &Path,
    pids: &[i32],
    w: &BundleWriter,
    how: PySpy<'_>,
) -> std::io::Result<Vec<CollectorResult>> {
    let PySpy {
        program,
        locals,
        timeout,
    } = how;
    let python = python_pids(proc, pids);
    if python.is_empty() {
        return Ok(vec![CollectorResult::skipped(
            "py-spy",
            "no Python process in the job",
        )]);
    }
    let found = match program {
        Some(p) => Ok(p.to_path_buf()),
        None => locate("py-spy"),
    };
    let bin = match found {
        Ok(b) => b,
        Err(e) => {
            return Ok(vec![CollectorResult::skipped(
                "py-spy",
                format!(
                    "{e} ({} Python process(es) in the job; install it with 'pip install py-spy', or name it with --pyspy PATH)",
                    python.len()
                ),
            )]);
        }
    };
    // All at once: each dump takes tens of milliseconds, mostly py-spy starting up.
    let started: Vec<(i32, Result<Helper, Ran>)> = python
        .iter()
        .map(|&pid| {
            let mut args = vec![
                "dump".to_string(),
                "--nonblocking".into(),
                "--pid".into(),
                pid.to_string(),
            ];
            if locals {
                args.push("--locals".into());
            }
            (pid, Helper::start(&bin, &args, Env::Inherit(&[]), timeout))
        })
        .collect();
    let mut out = Vec::new();
    for (pid, h) in started {
        let r = match h {
            Ok(h) => h.finish(),
            Err(ran) => ran,
        };
        if !r.stdout.is_empty() {
            w.write(&format!("processes/{pid}/pyspy.txt"), &r.stdout)?;
        }
        out.push(CollectorResult {
            name: format!("py-spy:{pid}"),
            status: r.status,
            duration_ms: r.ms,
            detail: r.detail,
        });
    }
    Ok(out)
}

/// What eu-stack may take to print one process's stacks (measured: ~60 ms for a small C
/// program; a process with thousands of threads or huge debug data takes longer).
pub const NATIVE_STACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The user-space stacks of `pid`'s threads at the freeze, by elfutils' `eu-stack` (ptrace:
/// the caller has stopped the process; a frozen task cannot be attached to), into
/// `processes/<pid>/native-stack.txt`. The detail names the innermost frames of the first
/// thread, past the C library's own (`decode_frame ← main`).
pub fn native_stack(pid: i32, w: &BundleWriter) -> std::io::Result<CollectorResult> {
    let name = format!("native-stack:{pid}");
    let bin = match locate("eu-stack") {
        Ok(b) => b,
        Err(e) => {
            return Ok(CollectorResult::skipped(
                &name,
                format!("{e} (install elfutils)"),
            ));
        }
    };
    // eu-stack parses the job's binaries and reads its memory: as root it would do so for a job
    // that is not root, whose ELF and DWARF its author controls. It runs as the process's own
    // user (ptrace then needs only the same uid).
    let env = match (nix::unistd::geteuid().is_root(), owner_of(pid)) {
        (true, Some((uid, gid))) if uid != 0 => Env::As { uid, gid },
        _ => Env::Inherit(&[]),
    };
    let r = run_bounded(&bin, &["-p", &pid.to_string()], env, NATIVE_STACK_TIMEOUT);
    if !r.stdout.is_empty() {
        w.write(&format!("processes/{pid}/native-stack.txt"), &r.stdout)?;
    }
    let frames = innermost_frames(&String::from_utf8_lossy(&r.stdout), 4);
    let ok = r.status == Status::Ok && !frames.is_empty();
    Ok(CollectorResult {
        name,
        status: if ok || r.status != Status::Ok {
            r.status
        } else {
            Status::Failed
        },
        duration_ms: r.ms,
        detail: if ok {
            format!(
                "processes/{pid}/native-stack.txt: {}",
                frames.join(" \u{2190} ")
            )
        } else if r.status == Status::Ok {
            "eu-stack printed no frame".into()
        } else {
            r.detail
        },
    })
}

/// A frame's name without a Rust symbol's hash (`hog::alloc::hd402b1c540a33b99` → `hog::alloc`).
fn demangled(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            path.to_string()
        }
        _ => name.to_string(),
    }
}

/// The effective uid and gid of `pid` (/proc/PID/status).
fn owner_of(pid: i32) -> Option<(u32, u32)> {
    let st = procfs::process::Process::new(pid).ok()?.status().ok()?;
    Some((st.euid, st.egid))
}

/// The first thread's innermost `n` frames of an eu-stack text, leaving out the C library's
/// and the kernel interface's own (memset, clock_nanosleep, malloc's internals): what the
/// program was doing, not how libc does it.
pub fn innermost_frames(text: &str, n: usize) -> Vec<String> {
    let libc = |f: &str| {
        f.starts_with("__")
            || f.starts_with("_int_")
            || f.contains('@')
            || [
                "malloc",
                "calloc",
                "realloc",
                "free",
                "memset",
                "memcpy",
                "usleep",
                "nanosleep",
            ]
            .contains(&f)
    };
    let frames: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("TID "))
        .skip(1)
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2).map(demangled))
        .collect();
    frames.into_iter().filter(|f| !libc(f)).take(n).collect()
}

/// `gcore` of `pid` into `processes/<pid>/core.<pid>`. The caller has already made the process
/// stoppable (a frozen or OOM-waiting task cannot be attached to). gcore writes the core itself,
/// so it is given a path through guard's descriptor of the bundle, not through the evidence
/// directory's name.
pub fn gcore(pid: i32, w: &BundleWriter) -> std::io::Result<CollectorResult> {
    let bin = match locate("gcore") {
        Ok(b) => b,
        Err(e) => {
            return Ok(CollectorResult::skipped(
                "core",
                format!("{e} (install gdb)"),
            ));
        }
    };
    let dir = format!("processes/{pid}");
    w.mkdir(&dir)?;
    let prefix = w.helper_path(&format!("{dir}/core"));
    let r = run_bounded(
        &bin,
        &[
            OsStr::new("-o"),
            prefix.as_os_str(),
            OsStr::new(&pid.to_string()),
        ],
        Env::Inherit(&[]),
        GCORE_TIMEOUT,
    );
    let core = format!("{dir}/core.{pid}");
    let size = w.dir().file_len(&core);
    let ok = r.status == Status::Ok && size.is_some();
    if w.exists(&core) {
        let _ = w.dir().make_private(&core);
        if !ok {
            let _ = w.dir().remove(&core);
        }
    }
    Ok(CollectorResult {
        name: "core".into(),
        status: match r.status {
            Status::Ok if ok => Status::Ok,
            Status::Ok => Status::Failed,
            other => other,
        },
        duration_ms: r.ms,
        detail: if ok {
            format!(
                "{core} ({})",
                crate::config::units::format_size(size.unwrap_or(0))
            )
        } else if r.detail.is_empty() {
            "gcore wrote no core file".into()
        } else {
            r.detail
        },
    })
}

/// Compress `rel` in `dir` to `<rel>.zst` (zstd level 3, 0600) and remove the original. Returns
/// the sizes before and after. On error the original stays and no `.zst` is left.
pub fn compress_zstd(dir: &DirFd, rel: &str) -> std::io::Result<(u64, u64)> {
    let dest = format!("{rel}.zst");
    let run = || -> std::io::Result<(u64, u64)> {
        let mut input = dir.open_read(rel)?;
        let out = dir.create_new(&dest)?;
        let mut enc = zstd::stream::Encoder::new(out, 3)?;
        let n = std::io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?;
        out.sync_all()?;
        Ok((n, out.metadata()?.len()))
    };
    match run() {
        Ok(sizes) => {
            dir.remove(rel)?;
            Ok(sizes)
        }
        Err(e) => {
            let _ = dir.remove(&dest);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_frames_are_the_programs_not_libcs() {
        let text = "PID 7 - process\nTID 7:\n\
            #0  0x00007f94c6a42503 __memset_avx2_unaligned_erms\n\
            #1  0x00005557e892c1a8 decode_frame\n\
            #2  0x00005557e892c1c0 main\n\
            #3  0x00007f94c699a24a __libc_start_call_main\n\
            #4  0x00007f94c699a305 __libc_start_main@@GLIBC_2.34\n\
            TID 8:\n#0  0x00007f94c6a42503 clock_nanosleep@GLIBC_2.2.5\n";
        assert_eq!(innermost_frames(text, 4), ["decode_frame", "main"]);
        assert_eq!(innermost_frames(text, 1), ["decode_frame"]);
        let rust =
            "TID 9:\n#0  0x1 hog::alloc::hd402b1c540a33b99\n#1  0x2 hog::main::h8bf415f71bf1b434\n";
        assert_eq!(innermost_frames(rust, 4), ["hog::alloc", "hog::main"]);
        assert!(innermost_frames("no stacks", 4).is_empty());
    }

    #[test]
    fn zstd_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let ev = super::super::bundle::EvidenceDir::open(d.path()).unwrap();
        let w = BundleWriter::create(&ev, "b".into(), Default::default()).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 7) as u8).collect();
        w.write_raw("processes/1/core.1", &data).unwrap();
        let (a, b) = compress_zstd(w.dir(), "processes/1/core.1").unwrap();
        assert_eq!(a, data.len() as u64);
        assert!(b < a / 10);
        assert!(!w.exists("processes/1/core.1"));
        let z = std::fs::read(w.path().join("processes/1/core.1.zst")).unwrap();
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
    }
}

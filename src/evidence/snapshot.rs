//! The snapshot of a held job: raw copies of each process's /proc files, the cgroup's memory
//! files and the system's memory state, written into a bundle, plus the parsed figures the
//! manifest and the report need (RSS, PSS, swap, largest mappings). A process that exits while it
//! is read is recorded as vanished, not an error; only failures to *write* the bundle are errors.
//! Reads go through [`ProcReader`], which bounds each one: a file that does not answer in time is
//! noted in the process's `not-read.txt` and the capture goes on.

use super::bundle::BundleWriter;
use crate::format::{Mapping, MappingKind, ProcessEntry};
use procfs::FromBufRead;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Per-process files copied as the kernel shows them.
const PROC_FILES: &[&str] = &[
    "status",
    "smaps_rollup",
    "maps",
    "stat",
    "statm",
    "limits",
    "io",
    "cmdline",
    "wchan",
    "stack",
    "oom_score",
    "oom_score_adj",
];
/// Processes (largest by RSS first) whose full `smaps` is copied and parsed for the largest
/// mappings: reading smaps costs ~10 µs per MB of RSS.
pub const SMAPS_FOR: usize = 4;
/// Mappings listed per process in the manifest.
const TOP_MAPPINGS: usize = 5;

fn read_proc(proc: &Path, pid: i32, file: &str) -> io::Result<Vec<u8>> {
    std::fs::read(proc.join(pid.to_string()).join(file))
}

/// Files whose read takes the process's memory-map lock (mmap_lock).
const MAP_LOCKED: &[&str] = &["smaps_rollup", "smaps", "maps", "cmdline", "environ"];

/// The reader thread's ends: paths to read go in, contents come out.
type Worker = (Sender<PathBuf>, Receiver<io::Result<Vec<u8>>>);

/// Reads /proc files of the job on a thread of its own, each read within a time bound. Reading
/// `smaps`, `maps`, `cmdline` or `environ` takes the process's memory-map lock, and a task asleep
/// in the kernel can hold it for seconds — a thread throttled at `memory.high` in the middle of a
/// page fault holds it, and a thread waiting to map memory then queues every reader behind it
/// (measured in the v2 guest: a 128-thread allocator stalled an unbounded capture for 27-42 s).
/// A read that does not answer in time is given up (its thread is left to finish on its own once
/// the job is killed), the process's other map-locked files are skipped, and the capture goes on.
pub struct ProcReader {
    proc: PathBuf,
    worker: Option<Worker>,
    /// Per read.
    bound: Duration,
    /// For all the reads of one capture that time out together.
    budget_until: Instant,
    stuck: HashSet<i32>,
    /// pid -> files given up, in order.
    pub not_read: HashMap<i32, Vec<String>>,
}

impl ProcReader {
    /// Reads under `proc`, each bounded by `bound`, all waits together by `budget`.
    pub fn new(proc: &Path, bound: Duration, budget: Duration) -> ProcReader {
        ProcReader {
            proc: proc.to_path_buf(),
            worker: None,
            bound,
            budget_until: Instant::now() + budget,
            stuck: HashSet::new(),
            not_read: HashMap::new(),
        }
    }

    /// The content of /proc/`pid`/`file`; `ErrorKind::TimedOut` when it did not answer in time
    /// (or the process already had a read time out and `file` takes the same lock).
    pub fn read(&mut self, pid: i32, file: &str) -> io::Result<Vec<u8>> {
        let locked = MAP_LOCKED.contains(&file);
        if locked && self.stuck.contains(&pid) {
            return Err(self.gave_up(pid, file));
        }
        let path = self.proc.join(pid.to_string()).join(file);
        let wait = self
            .bound
            .min(self.budget_until.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(20));
        let Some((tx, rx)) = self.worker() else {
            return std::fs::read(&path); // no thread to be had: read unbounded
        };
        if tx.send(path).is_err() {
            self.worker = None;
            return Err(io::Error::other("the /proc reader thread is gone"));
        }
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                // That thread stays blocked in the kernel: the next read gets a new one.
                self.worker = None;
                self.stuck.insert(pid);
                log::warn!(
                    "/proc/{pid}/{file} did not answer within {} ms (the process holds its \
                     memory map in the kernel); its map files are left out of the bundle",
                    wait.as_millis()
                );
                Err(self.gave_up(pid, file))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.worker = None;
                Err(io::Error::other("the /proc reader thread is gone"))
            }
        }
    }

    fn gave_up(&mut self, pid: i32, file: &str) -> io::Error {
        self.not_read.entry(pid).or_default().push(file.to_string());
        io::Error::new(io::ErrorKind::TimedOut, "did not answer in time")
    }

    fn worker(&mut self) -> Option<&Worker> {
        if self.worker.is_none() {
            let (req_tx, req_rx) = channel::<PathBuf>();
            let (resp_tx, resp_rx) = channel();
            let spawned = std::thread::Builder::new()
                .name("proc-reader".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    for path in req_rx {
                        if resp_tx.send(std::fs::read(path)).is_err() {
                            break;
                        }
                    }
                });
            if spawned.is_err() {
                return None;
            }
            self.worker = Some((req_tx, resp_rx));
        }
        self.worker.as_ref()
    }

    /// What `not-read.txt` says for `pid`, if anything was given up.
    pub fn not_read_note(&self, pid: i32) -> Option<String> {
        self.not_read.get(&pid).map(|files| {
            format!(
                "not read: {} (the read did not answer in time: the process held its memory map \
                 lock in the kernel)\n",
                files.join(", ")
            )
        })
    }
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// RSS in bytes from /proc/PID/status, or None when the process is gone (for ordering).
pub fn rss_of(proc: &Path, pid: i32) -> Option<u64> {
    let raw = read_proc(proc, pid, "status").ok()?;
    let st = procfs::process::Status::from_buf_read(&raw[..]).ok()?;
    Some(st.vmrss.unwrap_or(0) * 1024)
}

/// The command line as one string (arguments joined by spaces).
pub fn cmdline_text(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Copy one process into `processes/<pid>/` and return its manifest entry. `environ` is the
/// already-read environ block (None: not readable, or `--no-environ`).
pub fn process(
    reader: &mut ProcReader,
    pid: i32,
    w: &BundleWriter,
    environ: Option<&str>,
    with_smaps: bool,
) -> io::Result<ProcessEntry> {
    let proc = reader.proc.clone();
    let proc = proc.as_path();
    let dir = format!("processes/{pid}");
    w.mkdir(&dir)?;
    let mut e = ProcessEntry {
        pid,
        ..Default::default()
    };
    let mut raw: HashMap<&str, Vec<u8>> = HashMap::new();
    for &f in PROC_FILES {
        match reader.read(pid, f) {
            Ok(data) => {
                // The command line with options named like secrets masked, in the file too.
                let data = if f == "cmdline" {
                    w.scrub.cmdline(&data)
                } else {
                    data
                };
                w.write(&format!("{dir}/{f}"), &data)?;
                raw.insert(f, data);
            }
            Err(err) if gone(&err) && f == "status" => {
                e.vanished = true;
                w.write(
                    &format!("{dir}/vanished"),
                    b"the process exited before it could be read\n",
                )?;
                return Ok(e);
            }
            // Permission (stack without CAP_SYS_ADMIN, io of another user) or gone mid-read.
            Err(_) => {}
        }
    }
    if let Some(env) = environ {
        w.write(&format!("{dir}/environ.redacted"), env.as_bytes())?;
    }
    w.write(&format!("{dir}/fds.txt"), fds(proc, pid).as_bytes())?;

    if let Some(st) = raw
        .get("status")
        .and_then(|b| procfs::process::Status::from_buf_read(&b[..]).ok())
    {
        e.comm = st.name;
        e.ppid = st.ppid;
        e.rss_bytes = st.vmrss.unwrap_or(0) * 1024;
        e.swap_bytes = st.vmswap.map(|k| k * 1024);
        e.anon_bytes = st.rssanon.map(|k| k * 1024);
        e.file_bytes = match (st.rssfile, st.rssshmem) {
            (Some(f), s) => Some((f + s.unwrap_or(0)) * 1024),
            _ => None,
        };
        e.shmem_bytes = st.rssshmem.map(|k| k * 1024);
        e.threads = Some(st.threads);
        e.state = st.state.split_whitespace().next().map(str::to_string);
    }
    if let Some(r) = raw
        .get("smaps_rollup")
        .and_then(|b| procfs::process::SmapsRollup::from_buf_read(&b[..]).ok())
    {
        if let Some(m) = r.memory_map_rollup.0.first() {
            e.pss_bytes = m.extension.map.get("Pss").copied();
            if e.swap_bytes.is_none() {
                e.swap_bytes = m.extension.map.get("Swap").copied();
            }
        }
    }
    e.cmdline = w.scrub.scrub_str(&cmdline_text(
        raw.get("cmdline").map(|v| &v[..]).unwrap_or(b""),
    ));
    if with_smaps {
        if let Ok(data) = reader.read(pid, "smaps") {
            w.write(&format!("{dir}/smaps"), &data)?;
            e.largest_mappings = largest_mappings(&data, TOP_MAPPINGS);
            e.memory_by_kind = memory_by_kind(&data);
        }
    }
    if let Some(note) = reader.not_read_note(pid) {
        w.write(&format!("{dir}/not-read.txt"), note.as_bytes())?;
    }
    Ok(e)
}

/// A manifest entry without copying files (light bundles): status, smaps_rollup and cmdline.
pub fn summary(
    reader: &mut ProcReader,
    pid: i32,
    scrub: &crate::evidence::redact::Scrubber,
) -> ProcessEntry {
    let mut e = ProcessEntry {
        pid,
        ..Default::default()
    };
    let Some(st) = reader
        .read(pid, "status")
        .ok()
        .and_then(|b| procfs::process::Status::from_buf_read(&b[..]).ok())
    else {
        e.vanished = true;
        return e;
    };
    e.comm = st.name;
    e.ppid = st.ppid;
    e.rss_bytes = st.vmrss.unwrap_or(0) * 1024;
    e.swap_bytes = st.vmswap.map(|k| k * 1024);
    e.anon_bytes = st.rssanon.map(|k| k * 1024);
    e.threads = Some(st.threads);
    e.state = st.state.split_whitespace().next().map(str::to_string);
    if let Some(r) = reader
        .read(pid, "smaps_rollup")
        .ok()
        .and_then(|b| procfs::process::SmapsRollup::from_buf_read(&b[..]).ok())
    {
        e.pss_bytes = r
            .memory_map_rollup
            .0
            .first()
            .and_then(|m| m.extension.map.get("Pss").copied());
    }
    e.cmdline = scrub.scrub_str(&cmdline_text(
        &scrub.cmdline(&reader.read(pid, "cmdline").unwrap_or_default()),
    ));
    e
}

/// `fd -> target` for every open file descriptor.
fn fds(proc: &Path, pid: i32) -> String {
    let dir = proc.join(pid.to_string()).join("fd");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return "(not readable)\n".into();
    };
    let mut v: Vec<(u32, String)> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            let t = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Some((n, t))
        })
        .collect();
    v.sort();
    v.iter().map(|(n, t)| format!("{n} -> {t}\n")).collect()
}

/// The largest mappings by RSS from an smaps text, merged by name (a heap split in many VMAs, a
/// library's segments, anonymous regions counted together as `[anon]`).
pub fn largest_mappings(smaps: &[u8], n: usize) -> Vec<Mapping> {
    use procfs::process::MMapPath;
    let Ok(maps) = procfs::process::MemoryMaps::from_buf_read(smaps) else {
        return Vec::new();
    };
    let mut merged: BTreeMap<(String, MappingKind), (u64, u64)> = BTreeMap::new();
    for m in maps.0 {
        let rss = m.extension.map.get("Rss").copied().unwrap_or(0);
        let size = m.address.1.saturating_sub(m.address.0);
        let (name, kind) = match &m.pathname {
            MMapPath::Heap => ("[heap]".to_string(), MappingKind::Heap),
            MMapPath::Anonymous => ("[anon]".to_string(), MappingKind::Anonymous),
            MMapPath::Stack | MMapPath::TStack(_) => ("[stack]".to_string(), MappingKind::Stack),
            MMapPath::Path(p) => (p.display().to_string(), MappingKind::File),
            MMapPath::Vsys(_) => ("[shm]".to_string(), MappingKind::Shared),
            MMapPath::Other(o) => (o.clone(), MappingKind::Other),
            _ => continue,
        };
        let ent = merged.entry((name, kind)).or_default();
        ent.0 += rss;
        ent.1 += size;
    }
    let mut v: Vec<Mapping> = merged
        .into_iter()
        .map(|((name, kind), (rss, size))| Mapping {
            name,
            kind,
            rss_bytes: rss,
            size_bytes: size,
        })
        .filter(|m| m.rss_bytes > 0)
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.rss_bytes));
    v.truncate(n);
    v
}

/// Resident memory by kind over every mapping of an smaps text. A thread's stack is an
/// anonymous private mapping right above a no-access guard mapping (how glibc and musl make
/// them); the main thread's is `[stack]`. Shared anonymous memory and SysV segments count as
/// shared memory. None: not an smaps text.
pub fn memory_by_kind(smaps: &[u8]) -> Option<crate::format::MemoryByKind> {
    use procfs::process::{MMPermissions, MMapPath};
    let maps = procfs::process::MemoryMaps::from_buf_read(smaps).ok()?;
    let mut k = crate::format::MemoryByKind::default();
    let mut guard_ends_at: Option<u64> = None;
    for m in maps.0 {
        let rss = m.extension.map.get("Rss").copied().unwrap_or(0);
        let perms = m.perms;
        let shared = perms.contains(MMPermissions::SHARED);
        let after_guard = guard_ends_at == Some(m.address.0);
        guard_ends_at = (perms.bits()
            & (MMPermissions::READ | MMPermissions::WRITE | MMPermissions::EXECUTE).bits()
            == 0)
            .then_some(m.address.1);
        let slot = match &m.pathname {
            MMapPath::Heap => &mut k.heap_bytes,
            MMapPath::Stack | MMapPath::TStack(_) => &mut k.stack_bytes,
            MMapPath::Anonymous if shared => &mut k.shmem_bytes,
            MMapPath::Anonymous if after_guard => &mut k.stack_bytes,
            MMapPath::Anonymous => &mut k.anonymous_bytes,
            MMapPath::Vsys(_) => &mut k.shmem_bytes,
            MMapPath::Path(p)
                if p.starts_with("/dev/shm")
                    || p.starts_with("/memfd:")
                    || shared && p.starts_with("/SYSV") =>
            {
                &mut k.shmem_bytes
            }
            MMapPath::Path(_) => &mut k.file_bytes,
            _ => continue,
        };
        *slot = slot.saturating_add(rss);
    }
    Some(k)
}

/// `tree.txt`: the job's processes as a tree (by parent pid) with RSS and PSS.
pub fn tree(entries: &[ProcessEntry]) -> String {
    use crate::config::units::format_size;
    let pids: std::collections::HashSet<i32> = entries.iter().map(|e| e.pid).collect();
    let mut out = String::from("PID      RSS        PSS        COMMAND\n");
    fn walk(
        out: &mut String,
        entries: &[ProcessEntry],
        e: &ProcessEntry,
        depth: usize,
        seen: &mut std::collections::HashSet<i32>,
    ) {
        if !seen.insert(e.pid) {
            return;
        }
        let line = if e.vanished {
            format!("{:<8} (exited while being read)\n", e.pid)
        } else {
            format!(
                "{:<8} {:<10} {:<10} {}{} {}\n",
                e.pid,
                format_size(e.rss_bytes),
                e.pss_bytes.map(format_size).unwrap_or_else(|| "?".into()),
                "  ".repeat(depth),
                e.comm,
                e.cmdline
            )
        };
        out.push_str(&line);
        for c in entries.iter().filter(|c| c.ppid == e.pid && c.pid != e.pid) {
            walk(out, entries, c, depth + 1, seen);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for e in entries.iter().filter(|e| !pids.contains(&e.ppid)) {
        walk(&mut out, entries, e, 0, &mut seen);
    }
    for e in entries {
        walk(&mut out, entries, e, 0, &mut seen);
    }
    out
}

/// Copy the job's cgroup files into `cgroup/` as the kernel shows them (memory leaf first; the
/// freezer leaf adds `freezer.*`).
pub fn cgroup(dirs: &[std::path::PathBuf], w: &BundleWriter) -> io::Result<()> {
    w.mkdir("cgroup")?;
    for (i, d) in dirs.iter().enumerate() {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| crate::cgroup::worth_keeping(n))
            .collect();
        names.sort();
        for n in names {
            let rel = format!("cgroup/{n}");
            if i > 0 && w.exists(&rel) {
                continue;
            }
            let Ok(data) = std::fs::read(d.join(&n)) else {
                continue;
            };
            w.write_raw(&rel, &data)?;
        }
    }
    Ok(())
}

/// Copy the system's memory state into `system/`.
pub fn system(proc: &Path, w: &BundleWriter) -> io::Result<()> {
    w.mkdir("system")?;
    for f in ["meminfo", "vmstat", "loadavg", "swaps", "buddyinfo"] {
        if let Ok(data) = std::fs::read(proc.join(f)) {
            w.write_raw(&format!("system/{f}"), &data)?;
        }
    }
    if let Ok(u) = nix::sys::utsname::uname() {
        let text = format!(
            "{} {} {} {} {}\n",
            u.sysname().to_string_lossy(),
            u.nodename().to_string_lossy(),
            u.release().to_string_lossy(),
            u.version().to_string_lossy(),
            u.machine().to_string_lossy()
        );
        w.write_raw("system/uname", text.as_bytes())?;
    }
    for f in ["memory", "cpu", "io"] {
        if let Ok(data) = std::fs::read(proc.join("pressure").join(f)) {
            w.write_raw(&format!("system/pressure/{f}"), &data)?;
        }
    }
    Ok(())
}

/// The `oom_kill` count in /proc/vmstat (the kernel's global OOM kills since boot).
pub fn vmstat_oom_kills(proc: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc.join("vmstat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c8000000 rw-p 00000000 00:00 0                          [heap]
Size:             131072 kB
Rss:              100000 kB
Pss:              100000 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0 
Size:             262144 kB
Rss:              200000 kB
Pss:              200000 kB
7f0020000000-7f0020100000 r-xp 00000000 08:01 1234                       /usr/lib/libc.so.6
Size:               1024 kB
Rss:                 800 kB
Pss:                 100 kB
7f0020100000-7f0020200000 r--p 00100000 08:01 1234                       /usr/lib/libc.so.6
Size:               1024 kB
Rss:                 200 kB
Pss:                  50 kB
";

    #[test]
    fn mappings_merged_and_ranked() {
        let m = largest_mappings(SMAPS.as_bytes(), 5);
        assert_eq!(m[0].name, "[anon]");
        assert_eq!(m[0].rss_bytes, 200000 * 1024);
        assert_eq!(m[1].kind, MappingKind::Heap);
        assert_eq!(m[2].name, "/usr/lib/libc.so.6");
        assert_eq!(m[2].rss_bytes, 1000 * 1024, "segments of one file merged");
    }

    #[test]
    fn memory_by_kind_finds_thread_stacks_and_shared_memory() {
        let extra = "\
7f0030000000-7f0030001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
7f0030001000-7f0030801000 rw-p 00000000 00:00 0 
Size:               8192 kB
Rss:                  64 kB
7f0040000000-7f0041000000 rw-s 00000000 00:01 77                         /dev/shm/cache
Size:              16384 kB
Rss:                4096 kB
7f0050000000-7f0050100000 rw-s 00000000 00:01 78                         /SYSV00000000 (deleted)
Size:               1024 kB
Rss:                1024 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  32 kB
";
        let text = format!("{SMAPS}{extra}");
        let k = memory_by_kind(text.as_bytes()).unwrap();
        assert_eq!(k.heap_bytes, 100000 * 1024);
        assert_eq!(
            k.anonymous_bytes,
            200000 * 1024,
            "the guard-less anonymous map"
        );
        assert_eq!(
            k.stack_bytes,
            (64 + 32) * 1024,
            "a thread's stack and the main one"
        );
        assert_eq!(k.file_bytes, 1000 * 1024);
        assert_eq!(k.shmem_bytes, (4096 + 1024) * 1024);
        assert_eq!(k.native(), 300000 * 1024);
        assert!(memory_by_kind(b"not smaps").is_none_or(|k| k.total() == 0));
    }

    #[test]
    fn tree_nests_children() {
        let e = |pid, ppid, comm: &str| ProcessEntry {
            pid,
            ppid,
            comm: comm.into(),
            rss_bytes: 1 << 20,
            ..Default::default()
        };
        let t = tree(&[
            e(10, 1, "sh"),
            e(12, 11, "grandchild"),
            e(11, 10, "python3"),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains(" sh"));
        assert!(lines[2].contains("   python3"));
        assert!(lines[3].contains("     grandchild"));
    }

    #[test]
    fn live_process_snapshot_and_vanished_pid() {
        let d = tempfile::tempdir().unwrap();
        let w = BundleWriter::create(
            &super::super::bundle::EvidenceDir::open(d.path()).unwrap(),
            "x".into(),
            Default::default(),
        )
        .unwrap();
        let me = std::process::id() as i32;
        let mut r = ProcReader::new(
            Path::new("/proc"),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let e = process(&mut r, me, &w, Some("A=b\n"), true).unwrap();
        assert!(!e.vanished);
        assert!(e.rss_bytes > 0);
        assert!(e.pss_bytes.is_some());
        assert!(!e.largest_mappings.is_empty());
        for f in [
            "status",
            "maps",
            "smaps_rollup",
            "fds.txt",
            "environ.redacted",
            "smaps",
        ] {
            assert!(w.path().join(format!("processes/{me}/{f}")).exists(), "{f}");
        }
        let gone = process(&mut r, i32::MAX, &w, None, false).unwrap();
        assert!(gone.vanished);
        assert!(r.not_read.is_empty());
    }

    /// A /proc file that never answers (here a FIFO without a writer, as a map file behind a
    /// held mmap_lock): the read gives up within its bound, the process's other map files are
    /// skipped at once, its other files are still read, and the bundle says what is missing.
    #[test]
    fn a_read_that_does_not_answer_is_given_up_in_time() {
        let proc = tempfile::tempdir().unwrap();
        let pdir = proc.path().join("42");
        std::fs::create_dir(&pdir).unwrap();
        // A real status (the parser wants every field), renamed.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let status: String = status
            .lines()
            .map(|l| match l.split_once(':') {
                Some(("Name", _)) => "Name:\thog\n".to_string(),
                Some(("Threads", _)) => "Threads:\t128\n".to_string(),
                _ => format!("{l}\n"),
            })
            .collect();
        std::fs::write(pdir.join("status"), status).unwrap();
        let fifo = pdir.join("smaps_rollup");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let d = tempfile::tempdir().unwrap();
        let w = BundleWriter::create(
            &super::super::bundle::EvidenceDir::open(d.path()).unwrap(),
            "x".into(),
            Default::default(),
        )
        .unwrap();
        let mut r = ProcReader::new(
            proc.path(),
            Duration::from_millis(200),
            Duration::from_secs(2),
        );
        let t0 = Instant::now();
        let e = process(&mut r, 42, &w, None, true).unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(!e.vanished);
        assert_eq!(e.comm, "hog");
        assert_eq!(e.threads, Some(128));
        // smaps_rollup timed out; maps, cmdline and smaps were skipped without waiting.
        assert_eq!(
            r.not_read[&42],
            ["smaps_rollup", "maps", "cmdline", "smaps"]
        );
        let note = std::fs::read_to_string(w.path().join("processes/42/not-read.txt")).unwrap();
        assert!(
            note.starts_with("not read: smaps_rollup, maps, cmdline, smaps"),
            "{note}"
        );
        // The next read of another file gets a fresh thread.
        assert!(r.read(42, "status").is_ok());
        // Let the abandoned thread finish.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
}

//! The guard(1) man page, rendered from the clap definition plus the sections clap does not know
//! (exit status from `exit::TABLE`, enforcement modes, environment, signals). `man/guard.1` is this
//! output, committed; `tests/docs.rs` fails when it is stale (regenerate: `GUARD_REGEN_MAN=1 cargo test --test docs`).

use crate::exit;
use clap_mangen::roff::{Roff, bold, italic, roman};

fn section(title: &str, paragraphs: &[&str]) -> Roff {
    let mut r = Roff::new();
    r.control("SH", [title]);
    for (i, p) in paragraphs.iter().enumerate() {
        if i > 0 {
            r.control("PP", []);
        }
        r.text([roman(*p)]);
    }
    r
}

fn tagged(title: &str, rows: &[(&str, &str)]) -> Roff {
    let mut r = Roff::new();
    r.control("SH", [title]);
    for (tag, text) in rows {
        r.control("TP", []);
        r.text([bold(*tag)]);
        r.text([roman(*text)]);
    }
    r
}

/// Render the whole page.
pub fn render() -> String {
    let cmd = crate::cli::command();
    let man = clap_mangen::Man::new(cmd)
        .date("2026-11-27")
        .manual("guard manual");
    let mut out: Vec<u8> = Vec::new();
    let w = |r: std::io::Result<()>| r.expect("rendering to a Vec cannot fail");
    w(man.render_title(&mut out));
    w(man.render_name_section(&mut out));
    w(man.render_synopsis_section(&mut out));
    w(man.render_description_section(&mut out));
    w(man.render_options_section(&mut out));

    let mut extra = String::new();
    extra.push_str(
        &tagged(
            "COMMANDS",
            &[
                ("guard [OPTIONS] -- COMMAND [ARGS]...", "Run COMMAND under guard (wrap mode)."),
                ("guard run [OPTIONS] -- COMMAND [ARGS]...", "The same, spelled as a subcommand."),
                ("guard doctor [--json]", "Print the kernel, the cgroup layout, the enforcement mode guard would use here and why, and for each missing capability what would fix it. It creates and removes a probe cgroup where that touches no other process."),
            ],
        )
        .to_roff(),
    );
    extra.push_str(
        &section(
            "SIZES AND DURATIONS",
            &[
                "SIZE is an integer with an optional suffix. K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB are powers of 1000; no suffix or B means bytes; suffixes are case-insensitive. N% is a percentage of the memory available to guard: its own cgroup's limit if it has one, else MemTotal.",
                "DUR is 500ms, 30s, 5m, 1h, or plain seconds.",
            ],
        )
        .to_roff(),
    );
    extra.push_str(
        &tagged(
            "ENFORCEMENT MODES",
            &[
                ("cgroup-v1", "The memory controller is on cgroup v1 (hybrid or legacy layout). The job runs in guard-NAME-PID, a child of guard's own memory cgroup, with memory.limit_in_bytes (and memory.memsw.limit_in_bytes = memory + swap when swap accounting exists), and in a leaf of the same name in the v1 freezer hierarchy. The kernel's OOM killer is disabled for the job (memory.oom_control = 1): at the limit its tasks wait instead of one being killed, an eventfd wakes guard, guard freezes the job (holding it) and kills it whole."),
                ("cgroup-v2", "Pure cgroup v2. As root in the root cgroup or a non-delegated one, the job runs in /sys/fs/cgroup/guard/NAME-PID. In a delegated cgroup (systemd Delegate=yes), or at the root of a container's cgroup namespace, guard moves the cgroup's members into a 'supervisor' leaf (the no-internal-process rule) and runs the job in a sibling leaf. The cap is memory.high (above it the kernel throttles the job and never kills); memory.max sits max(5%, 16 MiB) higher; memory.oom.group=1. When memory.events reports the job at memory.high after reclaim, guard freezes it (cgroup.freeze) and kills it (cgroup.kill). A burst through memory.max is a kernel OOM kill of the whole job, confirmed by oom_kill in memory.events.local."),
                ("poll", "No cgroup can be written (unprivileged, read-only cgroupfs). The job's memory is the sum of its processes' resident sets, sampled from /proc every 100ms; above the cap the process tree is stopped and killed. A warning says enforcement is best-effort and why; --require-cgroup makes this an error (exit 125)."),
            ],
        )
        .to_roff(),
    );
    extra.push_str(
        &section(
            "SIGNALS",
            &[
                "SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT and SIGTSTP sent to guard are forwarded to COMMAND. COMMAND stays in guard's process group, so keys typed at a terminal (Ctrl-C, Ctrl-\\, Ctrl-Z) reach it directly from the kernel and are not forwarded a second time. When COMMAND stops for job control, guard stops too, so the shell sees the job stopped; fg continues both.",
                "After a forwarded SIGINT, SIGTERM, SIGHUP or SIGQUIT, if COMMAND has not exited within --kill-after, the whole job is killed. When COMMAND exits, processes it left in the job get SIGTERM, and SIGKILL after --kill-after. When guard exits, no process of the job survives and its cgroup is removed; if guard itself is killed, COMMAND gets SIGKILL (parent-death signal) and a small sentinel process kills the rest and removes the cgroup. Cgroups left by a guard whose pid is gone are removed by the next run.",
            ],
        )
        .to_roff(),
    );
    let mut exit_rows: Vec<(&str, &str)> =
        exit::TABLE.iter().map(|r| (r.status, r.meaning)).collect();
    exit_rows.sort_by_key(|(s, _)| {
        if s.starts_with(char::is_numeric) && s.len() == 3 {
            1
        } else {
            0
        }
    });
    extra.push_str(&tagged("EXIT STATUS", &exit_rows).to_roff());
    extra.push_str(
        &section(
            "MEMORY KILLS",
            &["When the job is killed for exceeding --memory, guard prints exactly one line to stderr: 'guard: NAME (pid N) exceeded its memory limit LIMIT (peak PEAK); killed', and exits 137. The decision comes from the cgroup's own counters, never from a SIGKILL alone. guard writes nothing to stdout in wrap mode."],
        )
        .to_roff(),
    );
    extra.push_str(
        &tagged(
            "ENVIRONMENT",
            &[
                ("GUARD_MEMORY, GUARD_SWAP, GUARD_NAME, GUARD_KILL_AFTER, GUARD_REQUIRE_CGROUP, GUARD_QUIET", "Defaults for the options of the same name; the command line wins. Boolean variables accept 1/true/yes/on and 0/false/no/off."),
                ("GUARD_VERBOSE", "0, 1 or 2: the same as no -v, -v or -vv."),
            ],
        )
        .to_roff(),
    );
    let mut ex = Roff::new();
    ex.control("SH", ["EXAMPLES"]);
    ex.text([roman("Cap a maintenance script at 2 GiB:")]);
    ex.control("PP", []);
    ex.control("RS", ["4"]);
    ex.text([italic("guard --memory 2G -- python manage.py fix_images")]);
    ex.control("RE", []);
    ex.control("PP", []);
    ex.text([roman("See which enforcement mode this machine allows:")]);
    ex.control("PP", []);
    ex.control("RS", ["4"]);
    ex.text([italic("guard doctor")]);
    ex.control("RE", []);
    extra.push_str(&ex.to_roff());
    let mut s = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    s.push_str(&extra);
    let mut tail = Vec::new();
    w(man.render_version_section(&mut tail));
    s.push_str(&String::from_utf8_lossy(&tail));
    s
}

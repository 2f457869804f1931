//! The man pages, rendered from the code: guard(1) from the CLI definition (built from the option
//! table) plus the sections clap does not know (exit status from `exit::TABLE`, enforcement modes,
//! the environment from the option table, signals), and guard.toml(5) from the option table's
//! config keys. `man/guard.1` and `man/guard.toml.5` are this output, committed; `tests/docs.rs`
//! fails when they are stale (regenerate: `GUARD_REGEN_MAN=1 cargo test --test docs`). This lives
//! with the tests, not in guard: clap_mangen is a dev-dependency, and the runtime binary carries no
//! man-page code.

use clap_mangen::roff::{Roff, bold, italic, roman};
use guard::config::exit;

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

/// guard.toml(5), rendered from `config::file::KEYS`.
pub fn render_toml5() -> String {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "guard.toml",
            "5",
            "2026-11-27",
            &format!("guard {}", env!("CARGO_PKG_VERSION")),
            "guard manual",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman("guard.toml - configuration file for guard(1)")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([roman("/etc/guard/guard.toml, $XDG_CONFIG_HOME/guard/guard.toml (~/.config/guard/guard.toml), or the file given by --config FILE / GUARD_CONFIG.")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman("A TOML file with a [defaults] table and [jobs.NAME] tables. Every wrap option of guard(1) has a key of the same name with '-' written '_'. A job's table applies when guard runs with --name NAME (or GUARD_NAME=NAME).")]);
    r.control("PP", []);
    r.text([roman("Precedence, first found wins: the command line, the GUARD_* environment variables, the job's table, [defaults], guard's built-in defaults. Without --config guard reads the system file and the user's file, the user's winning; a job's table in either file beats [defaults] in both. --config FILE reads FILE alone; --config /dev/null reads no configuration at all.")]);
    r.control("PP", []);
    r.text([roman("An unknown key, a value of the wrong type, a bad value (a size that does not parse, a warning threshold above the cap) or a file that cannot be read is one line 'guard: error: FILE:LINE:COLUMN: ...' and exit status 125 before anything runs. guard config check [FILE] validates the file and prints the effective settings of [defaults] and of every job, each with the place it comes from.")]);
    r.control("PP", []);
    r.text([roman("As root, guard reads a configuration file only when it and every directory above it (symlinks resolved) are root's and writable by root alone (a directory others may write needs the sticky bit, as /tmp has) — sshd's StrictModes rule: a file another user could change would choose the programs root runs. The same holds for every program a configuration names (an exec hook, pyspy). Otherwise guard exits 125 with one line naming the file, its owner and mode. This covers the user's file too: sudo keeps HOME, so root could otherwise read another user's ~/.config/guard/guard.toml.")]);
    r.control("SH", ["KEYS"]);
    for o in guard::config::options::file_keys() {
        r.control("TP", []);
        r.text([bold(o.key), roman(" = "), italic(o.file_type())]);
        r.text([roman(format!("{}.", o.help))]);
    }
    r.control("SH", ["ALERTS"]);
    r.text([roman("Each [[alerts]] table is one sink (see ALERTS in guard(1)); they apply to every job. Without --config the alerts of the user's file replace the system's (the lists are not merged). --alert on the command line adds to them.")]);
    for (key, ty, meaning) in [
        (
            "kind",
            "STRING",
            "webhook, slack, alertmanager, exec or log.",
        ),
        (
            "url",
            "STRING",
            "For webhook and slack the URL to post to; for alertmanager its base URL (guard posts to URL/api/v2/alerts). May be env:NAME or file:/path.",
        ),
        (
            "command",
            "ARRAY",
            "For exec: an absolute program path and its arguments, run without a shell.",
        ),
        (
            "target",
            "STRING",
            "For log: stderr (the default), syslog or journal.",
        ),
        (
            "events",
            "ARRAY",
            "The events this sink gets: memory-limit, warning, kernel-oom, failed, timeout, drill (default: all but failed).",
        ),
        (
            "headers",
            "TABLE",
            "Extra HTTP headers, e.g. { Authorization = \"env:HOOK_TOKEN\" }; values may be env:NAME or file:/path.",
        ),
        ("timeout", "DUR", "Per attempt (default \"5s\")."),
        (
            "pass_env",
            "ARRAY",
            "For exec: names of guard's environment variables the hook also gets, e.g. [\"AWS_REGION\"]. Otherwise a hook gets the event's GUARD_* variables and PATH, HOME, LANG, LC_ALL and TZ only: never guard's own secrets (AWS_SECRET_ACCESS_KEY, PGPASSWORD) or its GUARD_* settings.",
        ),
        (
            "labels",
            "TABLE",
            "For alertmanager: labels added to guard's own, e.g. { team = \"data\", tier = \"batch\" }, for Alertmanager's routes and silences. Names follow Prometheus' rule (letters, digits and _, not starting with a digit or __) and may not be guard's own (alertname, job, instance, severity).",
        ),
        (
            "to",
            "STRING",
            "For email: the addresses, separated by commas (or env:NAME / file:/path).",
        ),
        (
            "url (email)",
            "URL",
            "For email: the mail server, smtp://HOST[:PORT] (STARTTLS, required; port 587) or smtps://HOST[:PORT] (TLS from the first byte; 465). Without it: the local MTA, localhost:25, no TLS. For pagerduty: the Events API v2 endpoint instead of https://events.pagerduty.com/v2/enqueue.",
        ),
        (
            "tls",
            "STRING",
            "For email: starttls, tls or none; none only to a server on this machine (localhost, 127.0.0.1, ::1): a message and a password are not sent in the clear across a network.",
        ),
        (
            "username, password",
            "STRING",
            "For email: AUTH after TLS, both or neither; each may be env:NAME or file:/path (a password never in the file itself).",
        ),
        (
            "from",
            "STRING",
            "For email: the sender (default guard@HOSTNAME).",
        ),
        (
            "routing_key",
            "STRING",
            "For pagerduty: the integration's routing key, env:NAME or file:/path.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(key), roman(" = "), italic(ty)]);
        r.text([roman(meaning)]);
    }
    r.control("SH", ["VALUES"]);
    r.text([roman("SIZE (and SIZE|PCT): a string with the units of guard(1) (\"512M\", \"2G\", \"1GiB\", \"500MB\", \"50%\") or an integer number of bytes. DUR: a string (\"500ms\", \"1.5s\", \"5m\", \"1h30m\", \"2d\"; the grammar of guard(1)) or an integer number of seconds. PCT: a string (\"95%\") or an integer. BOOL: true or false (a flag given on the command line or in the environment wins). N, and 0|1|2: a non-negative integer. WORDS: a list of strings ([\"TOKEN\", \"PASS\"]) or one comma-separated string. PATH and URL: a string (a URL may be env:NAME or file:/path). Where the meaning of a key refers to an option (--memory), it is the key of the same name.")]);
    r.control("SH", ["EXAMPLE"]);
    r.control("nf", []);
    r.text([roman(include_str!("../../examples/guard.toml"))]);
    r.control("fi", []);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("guard(1)")]);
    r.to_roff()
}

/// Render the whole page: clap_mangen's title, name, synopsis, description and options (from
/// the CLI definition, which is built from the option table), then the sections clap does not
/// know.
pub fn render() -> String {
    let cmd = guard::config::cli::command_built();
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
    let mut s = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    for part in [
        commands(),
        sizes_and_durations(),
        enforcement_modes(),
        signals(),
        exit_status(),
        memory_kills(),
        evidence(),
        python_heap_census(),
        node_heap_census(),
        upload(),
        holding_a_job(),
        drill(),
        container_entrypoint(),
        cron(),
        alerts(),
        metrics(),
        environment(),
        files(),
        examples(),
        see_also(),
    ] {
        s.push_str(&part);
    }
    let mut tail = Vec::new();
    w(man.render_version_section(&mut tail));
    s.push_str(&String::from_utf8_lossy(&tail));
    s
}

fn commands() -> String {
    tagged(
            "COMMANDS",
            &[
                ("guard [OPTIONS] -- COMMAND [ARGS]...", "Run COMMAND under guard (wrap mode)."),
                ("guard run [OPTIONS] -- COMMAND [ARGS]...", "The same, spelled as a subcommand."),
                ("guard report [BUNDLE_DIR | s3://BUCKET/KEY | --latest] [--json | --html FILE] [--evidence-dir DIR]", "Explain an evidence bundle on one screen: job, command, when, limit, warning threshold, usage at the trigger and peak; how fast memory grew (MB/s overall and over the last 10 s before the trigger) and how long it took to get there, and its shape: steady growth (a straight line fits it: a leak's shape), a burst (the trigger came within 2 s of the start, or half of the growth in the last tenth of the run) or growth in steps; a warning's bundle also gives the time to the cap at that rate; processes by PSS with their largest mappings (heap, anonymous, file); the Python stacks py-spy captured; each collector's status; the names of redacted variables. --json prints the same as JSON; --html FILE writes one self-contained page with an SVG plot of memory over time (round ticks, the warning and cap lines) and the report's text, wrapped; the file is written 0600 like a bundle's, and never through a symlink. --latest takes the newest kill or timeout bundle in the evidence directory by captured time (a warning's bundle only when there is nothing else: it usually comes just before the kill it warned of). guard list and --latest count only bundles guard wrote: a directory (not a symlink) owned by root or the user running guard, whose manifest.json is in guard's format and at most 8 MiB and whose name is the one guard gives it from that manifest (CAPTURED-JOB-PID, .warning, .N). Control characters in anything guard prints (a report, a list row, an error line) are shown escaped (\\x1b)."),
                ("guard list [s3://BUCKET/PREFIX] [--json] [--evidence-dir DIR]", "List bundles, newest first: capture time, job, trigger, capture kind, peak, path; with --upload, an UPLOAD column too (uploaded, pending, -). With s3://BUCKET/PREFIX, the bundles shipped there (see UPLOAD): capture time, host, job, trigger, peak, and the archive's s3:// URI, which guard report takes. Jobs held now (--hold-for) come first, as guard held lists them."),
                ("guard held [--json]", "List the jobs the guards of this user (root: root's) hold frozen now (--hold-for): job, its pid, the guard's pid, when the hold began and ends at the latest (UTC), and the bundle. See HOLDING A JOB."),
                ("guard kill NAME|PID", "End a --hold-for hold now: the held job named NAME (its --name), or whose pid or whose guard's pid is PID, is killed at once and its guard exits 137. guard kill prints one line when the guard has ended the hold (it waits up to 10 s for that); a name two held jobs share is refused (name one by pid), and nothing held by that name or pid is one error line and exit 125."),
                ("guard config check [FILE]", "Validate the configuration (FILE, or the files guard would read) and print the effective settings of [defaults] and of every [jobs.NAME], each with the FILE:LINE:COLUMN it comes from (or built-in); then whether it would work here and now, without sending anything: every alert sink's env:NAME and file:/path secrets resolve (present; the values are never printed) to URLs that parse with an http or https scheme, header values resolve, exec hooks are absolute paths to files guard can execute, log:syslog and log:journal have their sockets, the ping's URL resolves, and the metrics file's and the evidence directory's directories are writable (an evidence directory by the rules a run applies) with at least 64 MiB free. Exit 125 with one line naming the place when the configuration is invalid; 1 when it is valid but a check failed; 0 otherwise. See guard.toml(5)."),
                ("guard drill [--name JOB] [--config FILE] [--memory SIZE] [--json]", "Rehearse the failure path: see DRILL."),
                ("guard upload [BUNDLE_DIR... | --pending] [--evidence-dir DIR] [--config FILE] [--json]", "Ship bundles to S3-compatible storage now, each with the upload settings of its own job ([jobs.NAME] of the configuration, else [defaults], and the GUARD_UPLOAD* variables): the bundles named, or with --pending every bundle of the evidence directory whose upload.json says pending, oldest first. One line per bundle — uploaded BUNDLE → URL, or pending BUNDLE: why (attempt N) — or --json; exit 0 when every one is up, 1 when one stays pending, 125 for a usage mistake (no such bundle, a job without an upload target). See UPLOAD."),
                ("guard doctor [--json]", "Print the kernel, the cgroup layout, the enforcement mode guard would use here and why, and for each missing capability what would fix it; then where evidence bundles would go (and whether guard can write there) and where py-spy and gcore are; then the configuration (GUARD_CONFIG, else the files guard reads) checked as guard config check checks it. It creates and removes a probe cgroup where that touches no other process. Exit status: 0 ready (a hard cap, and every configuration check passed); 1 a configuration check failed (guard would cap, but lose what the check names: an alert, the evidence, the metrics); 2 no hard cap here (poll mode, best effort). A deploy can gate on it: guard doctor >/dev/null || exit 1."),
            ],
        )
        .to_roff()
}

fn sizes_and_durations() -> String {
    section(
            "SIZES AND DURATIONS",
            &[
                "SIZE is an integer with an optional suffix. K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB are powers of 1000; no suffix or B means bytes; suffixes are case-insensitive. N% is a percentage of the memory available to guard: its own cgroup's limit if it has one, else MemTotal. A SIZE is at most 1 EiB.",
                "DUR is one or more NUMBER UNIT terms, summed, or a plain NUMBER of seconds, as timeout(1) and systemd.time(7) take them: 500ms, 30s, 1.5s, 5m, 1min, 1h30m, 2h 15min, 2d. A NUMBER is digits with an optional decimal part; UNIT is ms (msec), s (sec, second, seconds), m (min, minute, minutes; never months), h (hr, hour, hours), d (day, days) or w (week, weeks); spaces between terms are allowed. At most 366 days.",
                "Everything is checked before COMMAND starts, and a mistake is one line 'guard: error: ...' naming the value (control characters shown escaped) with exit status 125: URLs must parse (scheme http or https, a host, a port up to 65535), header names are HTTP tokens and header values hold no line break, --warn is more than 0, --metrics-file ends in .prom (node_exporter reads nothing else), and a config file is a regular file of at most 1 MiB (/dev/null reads as empty; a FIFO or a device is refused rather than read). URLs and header values given as env:NAME or file:/path are checked when they are read, at delivery.",
            ],
        )
        .to_roff()
}

fn enforcement_modes() -> String {
    tagged(
            "ENFORCEMENT MODES",
            &[
                ("cgroup-v1", "The memory controller is on cgroup v1 (hybrid or legacy layout). The job runs in guard-NAME-PID, a child of guard's own memory cgroup, with memory.limit_in_bytes (and memory.memsw.limit_in_bytes = memory + swap when swap accounting exists), and, from 20 ms into the job (or at a hold that comes sooner), in a leaf of the same name in the v1 freezer hierarchy. The kernel's OOM killer is disabled for the job (memory.oom_control = 1): at the limit its tasks wait instead of one being killed, an eventfd wakes guard, guard freezes the job (holding it) and kills it whole."),
                ("cgroup-v2", "Pure cgroup v2. On a machine systemd runs (/run/systemd/system), when guard's own cgroup is not delegated (a login shell, cron, a service without Delegate=yes), guard asks the manager over its private socket (/run/systemd/private as root, $XDG_RUNTIME_DIR/systemd/private for the user's own manager otherwise) for a transient scope guard-NAME-PID.scope with Delegate=yes and a description naming the command, in --slice (default: the manager's default for transient units, system.slice or app.slice, where systemd-run puts them), moves itself into it and takes the delegated path below; systemctl status, systemd-cgtop and the slice's accounting then see the job, and an unprivileged user gets a real cap. The scope goes when its last process does, also when guard is SIGKILLed. A manager that does not answer within 5 s costs one warning, and guard goes on without it; --no-systemd never asks. Without systemd, as root in the root cgroup or a non-delegated one, the job runs in /sys/fs/cgroup/guard/NAME-PID. In a delegated cgroup (systemd Delegate=yes), or at the root of a container's cgroup namespace, guard moves the cgroup's members into a 'supervisor' leaf (the no-internal-process rule) and runs the job in a sibling leaf. The cap is memory.high (above it the kernel throttles the job and never kills); memory.max sits max(5%, 16 MiB) higher; memory.oom.group=1. When memory.events reports the job at memory.high after reclaim, guard freezes it (cgroup.freeze) and kills it (cgroup.kill). A burst through memory.max is a kernel OOM kill of the whole job, confirmed by oom_kill in memory.events.local."),
                ("poll", "No cgroup can be written (unprivileged, read-only cgroupfs). The job's memory is the sum of its processes' resident sets, sampled from /proc every --sample-interval (100ms); above the cap the process tree is stopped (SIGSTOP), read, and killed. A warning says enforcement is best-effort and why; --require-cgroup makes this an error (exit 125)."),
                ("thrashing", "In cgroup-v1 and cgroup-v2 a job can sit at its cap without the kernel holding it there: reclaiming its own file pages keeps succeeding (no OOM, under_oom 0 on v1; usage back under memory.high after each reclaim on v2) while it spends its time reading them back — a service hung at its limit. guard reads the cgroup's memory.stat every second: when usage stays within 2 % (at least 2 MiB) of the cap and the job takes at least 5 major page faults and 100 workingset refaults a second (pages the kernel had just evicted from it, read back), for --thrash-after (default 30s; a couple of quiet seconds do not reset the count), the job is treated as reaching its cap — held, captured and killed, exit 137 — and the line, the bundle (manifest thrashing) and the alert say it exceeded its memory limit, 'thrashing at its memory limit for DUR (N major faults/s, M pages refaulted/s)' — a job that grows into its cap can thrash there too before the kernel gives up reclaiming (seen: a Python leak on a loaded machine, 30 s at its cap at 345 major faults/s), and is then told apart from one the kernel held. A job streaming a file larger than its cap through it is not thrashing: cat and sort read() (no page faults) and read each page once, so their refaults come without major faults (sort's temporary files) or the other way round (a first read through mmap). A job meant to read a memory-mapped data set larger than its cap at random (a search index) does thrash by this measure: give it --thrash-after off, or a longer DUR. --thrash-after off turns the check off; poll mode has no cgroup counters and no such check."),
            ],
        )
        .to_roff()
}

fn signals() -> String {
    section(
            "SIGNALS",
            &[
                "Every signal a process sends guard (kill, sigqueue: numbers 1 to 31 but SIGKILL and SIGSTOP, which no process can catch) is forwarded to COMMAND — with --pgroup to COMMAND's whole process group — and none of them kills guard, SIGSEGV, SIGBUS, SIGABRT or SIGPWR (LXC's shutdown request to a container's init) included, as dumb-init does. Not forwarded: SIGCHLD (guard reaps); a signal guard itself was started with ignored (nohup, a shell's background job: COMMAND inherits it ignored, as without guard); and what the kernel sends guard about guard (its own SIGPIPE, a real fault, which stays fatal to guard). Real-time signals (32 and up) are not taken. Without --pgroup COMMAND stays in guard's process group, so what a terminal sends its foreground group (Ctrl-C, Ctrl-\\, Ctrl-Z, a resize) reaches COMMAND straight from the kernel and is not forwarded a second time; a hangup that the kernel sends guard alone as a session's leader (setsid guard, a container's PID 1 with a terminal) is passed on.",
                "Job control. When COMMAND stops (SIGTSTP, SIGTTIN, SIGTTOU, forwarded or from the terminal) guard stops itself too, so the shell sees the job stopped; fg or bg sends SIGCONT to both. dumb-init instead stops itself on receiving such a signal whether or not the child stops, and by default rewrites them to SIGSTOP; guard follows what the job does. With --pgroup at a terminal COMMAND's process group takes the terminal's foreground before COMMAND runs, again each time guard is continued in the foreground, and guard takes it back when COMMAND ends — as dumb-init and tini -g do — so a job that reads the terminal (docker run -it, an interactive shell) is not stopped by SIGTTIN, and its keys (Ctrl-C, Ctrl-Z) go to it from the kernel.",
                "COMMAND starts with the signal state guard was started with: dispositions guard was given as ignored stay ignored (SIGPIPE: yes | head ends the same way under guard as without it) and the blocked-signal mask is passed on, as tini does; handlers, which exec resets anyway, start at their defaults.",
                "A graceful shutdown is not cut short: after a forwarded SIGINT, SIGTERM, SIGHUP or SIGQUIT guard waits for COMMAND as long as it takes, as tini and dumb-init do — whoever sent the signal owns the escalation (docker stop's -t, Kubernetes' terminationGracePeriodSeconds, systemd's TimeoutStopSec all send SIGKILL themselves when their grace ends, and a SIGKILL of guard takes the whole job with it, see below). Only when --kill-after is given is the whole job killed that long after such a signal. When COMMAND exits, processes it left in the job get SIGTERM, and SIGKILL 0.5 s later (--kill-after DUR when given), so guard exits within about a second of COMMAND and leaves nothing behind. When guard exits, no process of the job survives and its cgroup is removed, with any cgroups the job made below it (they are frozen, killed and removed with it); once guard has killed the job it kills again every second (a kill thaws every frozen cgroup below the job's leaf, so a task the job froze itself dies too) and waits at most 10 s for it to end, the cgroup's removal included, however loaded the machine — no second grace for what is left — and a process stuck in the kernel does not hang guard, which then says so and exits, leaving the cgroup to the next run; if guard itself is killed, at any moment from before COMMAND starts, COMMAND gets SIGKILL (parent-death signal) and a small sentinel process, started before COMMAND and holding nothing of the job's, kills the rest (the cgroups below the job's included) and removes the cgroup, saying so on stderr. Cgroups left by a guard that is gone are removed by the next run. A leaf's name carries its guard's pid and, outside the host's PID namespace, that namespace (guard-NAME-1.4026532190 for PID 1 of a container), so guards that are PID 1 of different containers never share one; a guard takes a cgroup for stale only when it can see its owner is gone — its pid gone from its own namespace, or (from the host) no process left in the owner's namespace — never the host's from inside a container.",
            ],
        )
        .to_roff()
}

fn exit_status() -> String {
    let mut exit_rows: Vec<(&str, &str)> =
        exit::TABLE.iter().map(|r| (r.status, r.meaning)).collect();
    exit_rows.sort_by_key(|(s, _)| {
        if s.starts_with(char::is_numeric) && s.len() == 3 {
            1
        } else {
            0
        }
    });
    tagged("EXIT STATUS", &exit_rows).to_roff()
}

fn memory_kills() -> String {
    section(
            "MEMORY KILLS",
            &["When the job is killed for exceeding --memory, guard prints exactly one line to stderr: 'guard: NAME (pid N) exceeded its memory limit LIMIT (peak PEAK); killed; evidence: BUNDLE' (or 'no evidence: WHY'), and exits 137. The decision comes from the cgroup's own counters, never from a SIGKILL alone. guard writes nothing to stdout in wrap mode.",
              "When the kernel's OOM killer kills COMMAND (no --memory, an ancestor's limit, or the host short of memory), guard says so in one line with a post-mortem bundle and exits 137 (128 + 9).",
              "A root job can leave its cgroup by writing its pid into another cgroup's cgroup.procs (v1: any cgroup; v2: the root, or one without controllers enabled below it), and so escape the cap. guard re-reads the job's members every fifth sample, at a capture and at the end; a member gone from the cgroup but still running gets one warning line ('NAME: process PID (COMM) left the job's cgroup for CGROUP'), an entry in the manifest's escaped list, and is killed with the job through a pidfd. A process that leaves before guard first lists it, or what it starts afterwards, is not seen. On cgroup v2 a cgroup namespace rooted at the job's leaf (unshare --cgroup, a container runtime) on a cgroup2 mount with nsdelegate (systemd's default) makes the kernel refuse such migrations; a job that is root in the host's namespaces can undo any containment."],
        )
        .to_roff()
}

fn evidence() -> String {
    section(
            "EVIDENCE",
            &[
                "At the cap guard holds the job (v1: freezer, with the tasks already waiting in the memory-limit wait; v2: cgroup.freeze; poll: SIGSTOP), reads it, then kills it. The bundle is a directory EVIDENCE_DIR/UTC-NAME-PID (UTC as yyyymmddThhmmssZ), created as .tmp-GUARDPID-... and renamed only when complete; directories 0700, files 0600. Warning bundles end in .warning; a second bundle of one job in the same second gets .2, .3, ...",
                "Contents: manifest.json (format guard-evidence/1: job, command, pid, started_at, captured_at, ended_at, trigger, capture pre-kill or post-mortem, limit_bytes, usage_at_trigger_bytes, peak_bytes, cgroup, processes, exit, collectors, timings trigger_to_frozen_ms and capture_ms, redacted_env_keys, escaped (pid, comm, cgroup of each process that left the job's cgroup; absent when none did), growth (bytes_per_second over window_ms, the last 10 s of samples; time_to_limit_ms at that rate, absent without a cap or growth; shape steady, burst or steps; absent before enough samples), hold (--hold-for; see HOLDING A JOB), thrashing (duration_ms, major_faults_per_s, refaults_per_s: the job reached its cap by thrashing at it, see --thrash-after; absent otherwise); trigger_to_frozen_ms runs from the memory event or re-check that finds the job at its cap (v1: the OOM event; v2: usage at or above memory.high twice, 3 ms apart) to the confirmed hold, capture_ms from the hold to the end of the collectors, before the kill); summary.txt (what guard report prints); timeline.csv (t_ms,cgroup_bytes,pid,rss_bytes: one row per process per sample, the largest 8 processes); tree.txt; processes/PID/ with status, smaps_rollup, maps, stat, statm, limits, io, cmdline, wchan, stack (when readable), oom_score, oom_score_adj, environ.redacted, fds.txt, smaps (the 4 largest processes), pyspy.txt (Python processes), native-stack.txt (eu-stack of the process holding the most memory when most of it is native: the malloc heap and anonymous maps; at most 5 s), pyheap.json (the Python heap census; see PYTHON HEAP CENSUS), jsheap.json (the Node.js heap census; see NODE.JS HEAP CENSUS), core.PID.zst (--core), not-read.txt (files whose read did not answer within 500 ms — a process asleep in the kernel can hold its memory-map lock — and were left out; every read of a capture is bounded, 2 s in all) and vanished (the process exited before it could be read); cgroup/ with the job cgroup's memory.* files; system/ with meminfo, vmstat, loadavg, swaps, buddyinfo, uname and pressure/.",
                "The timeline is sampled every --sample-interval from cheap files (the cgroup's usage, /proc/PID/statm) and kept in bounded memory: past 2048 samples the older half is thinned to every other sample. --warn (default 80% of --memory) writes a light bundle (manifest, timeline, tree, stacks; trigger warning) once per upward crossing of the threshold by the job's working set (usage minus inactive page cache), re-armed when usage falls below 90% of it; the job keeps running. The warning line, its alert's summary and its bundle carry the growth rate over the last 10 s (a least-squares slope of the samples) and the time to the cap at that rate, as in 'growing 12.3 MB/s over the last 10 s; the cap in ~2 min' ('not growing' below 64 KiB/s); the alert of a kill names the shape of the growth.",
                "Collectors run against the held job, each bounded in time, each with its status (ok, failed, skipped and why, timeout) in the manifest: py-spy dump --nonblocking for each Python process (at most 8; the py-spy guard runs is --pyspy PATH, else the first on PATH, else one in /usr/local/bin, /usr/bin, /usr/local/sbin, /usr/sbin or ~/.local/bin that root or guard's user owns and nobody else may write — cron's PATH is /usr/bin:/bin; gcore is looked for the same way; --pyspy-locals adds local variables; a report without stacks says why and how to get them), and with --core a core dump of the largest process by gcore (gdb): guard queues SIGSTOP to the job's processes, raises the limit by 16 MiB so a task waiting at the limit can finish its allocation and stop, thaws, and runs gcore (gcore hangs on a frozen task); after the kill the core is compressed to core.PID.zst (zstd; unpack with 'zstd -d'). Processes larger than --core-max are skipped.",
                "Environment variables whose names contain PASS, SECRET, TOKEN, KEY, CREDENTIAL, AUTH, COOKIE, SESSION, PRIVATE, DSN, DATABASE_URL or CONN, or end in _PWD or _PAT (case-insensitive; --redact replaces the list: WORD matches anywhere in a name, *WORD at its end, WORD* at its start) have their values replaced by <redacted> in environ.redacted and everywhere else guard writes or sends text: the bundle's command lines, stacks, fd targets, output.tail, manifest and summary, and the alert bodies, exec hooks' GUARD_SUMMARY, ping bodies and log lines; the password of a secret URL is replaced on its own too; their names are listed in redacted_env_keys. Credentials in any URL (scheme://user:password@host) are masked wherever they appear, named like a secret or not (the password; a user part of 16 characters or more with no password, as a token used as the user). In command lines the value of an option named like a secret (--password=x, --api-token x) is masked. Not caught: a secret in a variable named like none of the words, printed on its own or passed as a positional argument; a value of fewer than 4 characters outside its own variable; anything in a core (--core) or in Python locals (--pyspy-locals). --no-environ writes no environ files. Cores are opt-in because they hold secrets.",
                "Retention: after each bundle the oldest bundles are removed until at most --keep remain and the directory stays under --max-evidence-size; the bundle just written is never removed, and nothing that is not a bundle guard wrote (see guard report) is counted or removed. Temporary bundles left by a guard that died are removed by the next run.",
                "If the evidence directory cannot be created or written, guard says so once at start and the cap is still enforced; the kill line then ends with 'no evidence:' and the reason. A bundle that cannot be completed (disk full) is removed: no partial bundle is left under a final name.",
                "guard writes bundles as root next to jobs that misbehave, so it refuses an evidence directory another user could redirect: one that is a symlink, one owned by a user other than root or guard's own, or one group- or world-writable without the sticky bit (the checks of sshd's StrictModes and logrotate); the cap still applies and the kill line says 'no evidence:' and why. Inside it nothing is reached by name: the directory is opened once without following a symlink, the bundle is made with mkdirat and filled with openat and O_NOFOLLOW, and moved into place with renameat2(RENAME_NOREPLACE), so a name that is taken — by an earlier bundle of the same second, or by a symlink planted there — gets the next suffix (.2, .3, ...) and no symlink below the evidence directory is ever followed. gcore writes the core through guard's descriptor (/proc/GUARDPID/fd/N/...). guard doctor applies the same checks to an existing evidence directory.",
            ],
        )
        .to_roff()
}

fn python_heap_census() -> String {
    section(
        "PYTHON HEAP CENSUS",
        &[
            "For each Python process of the job (at most 8, the largest first) a bundle says what holds the memory: the types of the live objects by total size and by count, and for the largest types a retention path from sampled instances up to a root, for example: bytearray \u{d7}774 (189 MiB) \u{2190} Image.data \u{2190} list[774] \u{2190} QuerySet._result_cache \u{2190} local 'qs' in fix_images (leak.py:47). Each step names the object that holds the one before it and how: Type.attr (an attribute), list[N] (a list of N items, also tuple, set, deque), dict['key'] (dict[key 8] for a number key), local 'name' in FUNCTION (FILE:LINE) (a live frame's local, outermost frame first), local 'name' in suspended FUNCTION (a generator's), global 'name' in module M, class attribute C.name. 'k of n sampled instances held this way' says how many of the sampled instances (two per type) took that path; '(no referrer guard can see)' ends a path held from C code or cut by the deadline; '(a cycle nothing else refers to: garbage)' ends one that came round to where it had been with nothing else holding it — unreachable, kept only because the collector has not freed it — and then a 'gc:' line gives the collector's state (on or off: gc.disable(), its thresholds and counts, gc.garbage; the census records it as gc in pyheap.json) and what to do (gc.enable(), gc.collect() where the cycles are made, or break them with weakref). The census finds garbage by walking, never by collecting: a collection would run the program's finalizers and weakref callbacks. guard report's first screen leads with the process that holds the most memory (PSS), whatever it runs: its census when it has one, else its share of the job's memory and why it has no census (not a Python process — its largest mappings follow in the process table — or its census failed, and why); the other censuses follow one line each, then the processes. Each census is set against its process's memory: 'Python objects: N of the process's M anonymous memory (P %); besides: file-backed F, shared memory S'; when the objects explain less than half of the anonymous memory the screen first says 'N of M is outside Python objects: native memory' — allocated in C (an extension's buffers, the interpreter's own) or freed by Python and kept by the allocator — and what would show it (memray, heaptrack, --core), and a type holding under 5 % of the process's memory gets no retention path in the headline. Under the paths, each root they reach gets an estimate of what it retains — the bytes of the types whose sampled instances it holds, in the share of samples that agree ('local 'qs' in fix_images (leak.py:47) retains ~190.5 MiB (estimate), 95 % of the process'), said to be an estimate — and, where the path has a known shape, what to do ('fix: ...'): a Django QuerySet's result cache (.iterator()), an unbounded functools.lru_cache (a maxsize, cache_clear()), a module-level dict used as a cache (bound or clear it), a list built in a loop in a live function (a generator, batches), a class attribute used as a registry (weakref collections), reference cycles the collector does not free; the alerts' finding carries the fix too. With tracemalloc on in the process (--tracemalloc FRAMES, key tracemalloc, which sets PYTHONTRACEMALLOC=FRAMES for the job unless it sets its own; or the job's own PYTHONTRACEMALLOC) the census at the cap also takes one tracemalloc snapshot, after the paths and only when about twice tracemalloc's own memory fits in what is left of its budget, and the first screen adds 'who allocated (tracemalloc, N frame(s), SIZE traced): FILE:LINE SIZE in N block(s) · ...' — the lines holding the most live bytes — beside who holds them (pyheap.json allocated); --json has them as pyheap, the HTML page as a list and a table, and the alerts' summary carries that first finding.",
            "How: by default, when the job has a cap or a warning threshold (without either no census can happen, and the job's environment is left exactly as given), guard puts a directory of its own first on the job's PYTHONPATH (/run/guard/pyhook-HASH as root, readable by all so that a job that drops its privileges still loads it; otherwise $XDG_RUNTIME_DIR/guard/pyhook-HASH or /tmp/guard-UID/pyhook-HASH, 0700; each directory opened without following symlinks and refused when another user owns it or may write it) and sets GUARD_PYHEAP. Its sitecustomize.py runs the sitecustomize it shadows (Debian's, a virtualenv's; the next one on sys.path, so two guards nested each run theirs once) and registers a handler for one real-time signal (SIGRTMAX-6, 58 on Linux) when nothing handles that signal yet; it costs nothing more until guard asks: Python's start-up grows by 0.3-0.6 ms (bench/pyheap). Its module _guard_hook.py is imported with bytecode caching on even under PYTHONDONTWRITEBYTECODE, so its .pyc is written once into the hook's own __pycache__, never into the program's directories; guard makes that __pycache__ itself (only guard's user may write it) and, at every run, checks every entry of the hook's directory — a file guard cannot vouch for (another owner, writable by others, a symlink) turns the census off for the run with one warning naming it, and nothing is loaded from it. The hook keeps its own _guard_hook.py open (close-on-exec) to announce itself: guard sends the signal only to Python processes whose /proc/PID/status shows the handler and whose descriptors include that file, so a program started with python -E, or one with a handler of its own for that signal, is never sent it. The handler counts the objects the collector tracks (gc.get_objects()) and those it does not — str, int, float, bytes, bytearray, and the small dicts and tuples of plain values that database rows, JSON records and CSV rows are made of — reached through the objects that hold them (a list or dict is walked in place, never copied), each object once (one held in a single place is counted as it is met; a shared one is remembered, at most 65,536 of them), down to 6 levels of such dicts and tuples. Sizes are shallow, each object's own (sys.getsizeof; a __sizeof__ written in Python, such as pandas' deep one, is replaced by the object's own size, as the arrays it would count are counted themselves). The census's own memory is 8 bytes per tracked object (the list gc.get_objects returns) plus what it samples; between slices of work it compares the process's resident memory with what it had at the start and stops, sending what it has, once the growth passes its budget — the headroom at the cap (see When). It then walks up from sampled instances with gc.get_referrers (all samples of a step in one call: each call reads the whole heap), and sends the result as JSON to guard's abstract unix socket (its peer's pid checked, 4 MiB at most, bounded in time). It holds the GIL while it counts and never raises into the program. Python 3.6 and later; Python 2 and earlier 3.x programs start as before, without a census. A process started with python -E, -I or -S, or with a PYTHONPATH of its own, has no hook; its collector line says so.",
            "When: at the warning threshold, while the job runs, and at the cap, after the snapshot, py-spy and the core. Each hooked process connects to guard when its census begins and guard tells it how to run: at the cap the held job is let run for at most --pyheap-window (default 2s) with --pyheap-headroom more memory (default 5% of --memory, at least 32 MiB; the cgroup's limit is raised by that much, and in poll mode guard kills as soon as the job's memory passes cap + headroom) — only the processes asked run meanwhile, each stopped again once it has answered, so that none spends the headroom another census needs — and the census may use that headroom; then the job is killed as always. At the warning the job runs on, and the census may use half of the room left below the cap (never more than the headroom): it never brings the kill forward. There it lets the job's other threads have the GIL between slices of work (each under 50 ms; the retention paths, whose every step is one read of the whole heap, are left to the census at the cap when that read would take longer — estimated from the counting, about 15 ms per million references — and the one listing of the tracked objects takes about 15 ms per million of them), counts what the whole process adds meanwhile against its budget (and so stops early rather than late), and, when guard gives up on it — the job reached its cap, or the window ended — stops at its next check, within 50 ms, keeping nothing; guard waits up to 150 ms for it to go before it freezes the job, so that stacks read at the cap do not show it, and a census asked while another is still stopping runs once that one has. A census that does not answer in time is a timeout in the collector's line (pyheap:PID) and the kill goes ahead; the status also carries the census's own time and memory (objects counted, milliseconds, the growth of the process's peak RSS). A census of a process with a million live objects takes about 1 s (bench/pyheap); past its deadline (80% of the window) a census sends what it has, marked incomplete.",
            "Files: processes/PID/pyheap.json (format guard-pyheap/1: pid, python, implementation, objects, untracked, total_bytes, by_size and by_count (type, count, bytes), paths (type, samples, agree, path, root local, global or class, others), complete, notes, error, duration_ms, phases_ms, rss_before_bytes, rss_after_bytes, hwm_growth_bytes). guard checks what the process sent and writes its own copy: at most 50 types per list, 10 paths of 64 steps, 300 characters per name, control characters escaped. The census reads names, never values: no attribute's or variable's content leaves the process.",
            "--no-pyheap (no_pyheap = true, GUARD_NO_PYHEAP=1) turns it off: no directory is written, and PYTHONPATH and the environment reach the job as given. Without a census guard report says how to get one.",
        ],
    )
    .to_roff()
}

fn node_heap_census() -> String {
    section(
        "NODE.JS HEAP CENSUS",
        &[
            "For each Node.js process of the job (at most 8; a process whose executable is node or nodejs) a bundle says where its memory is and what holds it, at the warning and at the cap, as for Python (see PYTHON HEAP CENSUS for when, the window and the headroom): V8's figures — the JS heap used and reserved, external memory and ArrayBuffers (Buffers' data lives there, outside the JS heap), RSS, each heap space — and which side holds most of the process; the constructors whose instances hold the most (their own bytes plus the ArrayBuffer data they own) and, for the largest three, how one instance of each (of the most common size) is held, up to the first variable of a closure or module: Buffer \u{d7}4,644 (290 MiB) \u{2190} Object.profile \u{2190} Map 'sessions' (sessions.js). Each step names the holder of the one before and how: Type.prop (a property), Array[N] (an element), Map (an entry of a Map), and the last one the variable ('Map 'sessions'': the variable sessions holds that Map). With a fix where the shape is known: a Map, a Set, an array or an object that only grows. From the first census on (normally the warning's), V8's sampling heap profiler runs in the process (one sample per 32 KiB allocated on the JS heap, kept while the object lives) and each later census adds which functions allocated what still lives, with their callers ('allocated by'); a function named is where it starts (FILE:LINE), as V8 reports it. V8's CPU profiler starts with it (a sample every 100 ms, from the warning to the cap) and each later census adds what ran meanwhile: the JS stacks sampled most, innermost first, with their share of the samples and how much of the time the event loop idled ('running'; '(garbage collector)' leading the list is a heap near its limit). These are the program's stacks: the census's own listener, which runs on the event loop, sees only itself.",
            "A heap snapshot, from which the holders come, costs the process about 16 times its used JS heap (V8's graph of it; measured: 35 MiB for a 3 MiB heap, 228 MiB for 14 MiB), so it is taken only when that fits the census's budget; when a Node.js process is asked the headroom at the cap is at least 128 MiB unless --pyheap-headroom says otherwise. A service whose data sits in Buffers has a small JS heap and gets its holders; a JS heap of hundreds of MiB gets V8's figures and the allocation sites, and a note that says why there is no snapshot. The snapshot is read from the in-process inspector session (no port is opened: Node's SIGUSR1 inspector listens on a TCP port any local user can reach, and guard never sends it) and summarised as it streams: the nodes and edges in typed arrays, only the strings the summary names kept; nothing is written to disk. The census reads names, never values.",
            "How: by default, when the job has a cap or a warning threshold, guard writes its hook (/run/guard/nodehook-HASH/guard_hook.cjs as root; else under $XDG_RUNTIME_DIR/guard or /tmp/guard-UID; checked as the Python hook's directory is) and puts --require \"HOOK\" first in the job's NODE_OPTIONS, the job's own options after it, and sets GUARD_NODEHEAP (SOCKET:SIGPWR:window_ms; SOCKET is a socket file guard makes beside the hook's directory for the run, /run/guard/guard-census-PID-RANDOM.sock as root, writable by all so that a job that drops its privileges can answer — guard checks the pid of whoever connects — and removed when the run ends). The hook listens for SIGPWR only when the program does not — and steps aside (its listener removed, its file closed) when the program starts listening for it later — keeps its own file open to announce itself, and costs nothing more until asked. guard sends SIGPWR only to a Node.js process whose /proc/PID/status shows the handler and whose descriptors include the hook's file. The listener runs on Node's event loop: a program busy in a synchronous loop answers only when it returns to the loop — past the window its collector line (jsheap:PID) says timeout and the kill goes ahead; its native stack (see native-stack.txt) still shows where it is. Node.js 18 and later: tested with 18.20 (Debian 12 ships 18), 20.20, 22.23 and 24.22.",
            "Files: processes/PID/jsheap.json (format guard-jsheap/1: pid, node, live, budget_bytes, rss_bytes, rss_after_bytes, heap_total_bytes, heap_used_bytes, external_bytes, array_buffers_bytes, spaces (name, size_bytes, used_bytes), snapshot (nodes, edges, self_bytes; absent without one), by_size (name, count, bytes), paths (name, path, root), allocated (stack, bytes), complete, notes, error, duration_ms); guard checks what the process sent and writes its own copy: at most 20 rows per list, 5 paths of 40 steps, 300 characters per name, control characters escaped.",
            "--no-nodeheap (no_nodeheap = true, GUARD_NO_NODEHEAP=1) turns it off: no hook is written, and NODE_OPTIONS and the environment reach the job as given.",
        ],
    )
    .to_roff()
}

fn upload() -> String {
    section(
        "UPLOAD",
        &[
            "--upload s3://BUCKET/PREFIX (upload = \"s3://...\", GUARD_UPLOAD) ships the evidence off the host, where a replaced instance, a restarted container or a drained node cannot take it: once the job is over — after the kill, never delaying it, and after the alerts — every bundle the run wrote (the kill's, a timeout's, a post-mortem's, each warning's) goes to S3-compatible storage (AWS S3, SeaweedFS, MinIO, Ceph RGW, Cloudflare R2, Garage ...). All of the run's uploads together are bounded by --upload-timeout (default 2m); guard then exits with the job's status, whatever the upload did.",
            "What goes up, for each bundle: one archive, PREFIX/HOST/JOB/BUNDLE.tar.zst (the bundle's directory as a tar stream compressed with zstd; tar --zstd -xf gives it back), and beside it BUNDLE.manifest.json: the bundle's manifest.json with an archive object (key, url, bytes, sha256 of the archive, uploaded_at), so that bundles can be listed and read without downloading them. HOST, JOB and BUNDLE keep letters, digits, '.', '_' and '-'; anything else becomes '_'. The archive is made as it is sent, in parts of 6 MiB (S3's multipart upload; one PUT for a smaller bundle): guard holds one part at a time, so a 1 GiB core costs it a part and zstd's window, not the core. Requests are signed with AWS Signature Version 4 (presigned, valid 15 minutes); TLS is verified against Mozilla's roots and the system's; no redirect is followed.",
            "Nothing is lost. Each bundle is marked pending in its upload.json (state, target, key, url, attempts, error, at; left out of the archive) before its upload starts, and uploaded once both objects are up (with the archive's sha256 and size). A failure — no server, a reset, a 5xx, a server slower than --upload-timeout, wrong credentials (SignatureDoesNotMatch, InvalidAccessKeyId), a missing bucket (NoSuchBucket) — leaves the bundle on disk, pending, and says so in one line on stderr naming the bundle, the target and the server's answer (a failure that may pass — a 5xx, a throttle, a reset or refused connection — is first tried 3 times, 0.5 s and 1 s apart, within --upload-timeout); the job's exit status is unchanged. A successful upload is one info line (-v): evidence uploaded: URL. The next run of a job with --upload ships what earlier runs left pending for the same target, on a thread of its own while its job runs (within --upload-timeout, joined when the run is over; info lines); guard upload --pending does it by hand. Read back from anywhere with the same credentials (the AWS variables, GUARD_UPLOAD_*, or guard.toml's [defaults]): guard list s3://BUCKET/PREFIX lists the bundles under PREFIX (a host's: PREFIX/HOST, a job's: PREFIX/HOST/JOB), newest first, from the manifests beside the archives (the newest 200); guard report s3://BUCKET/KEY (the archive, or its manifest) downloads the archive, unpacks it into a new private directory under $TMPDIR (plain files and directories only, only under the bundle's name, a file over 64 MiB such as a core left out, 1 GiB in all at most), explains it as it would on the host (--json, --html too) and removes it. Retention (--keep, --max-evidence-size) keeps a pending bundle past --keep — it is the only copy — and removes one only when the evidence directory would otherwise stay over --max-evidence-size, after every other bundle, with a warning naming it.",
            "Where: the endpoint is --upload-endpoint, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS's endpoint for the region (https://s3.REGION.amazonaws.com); https, or plain http only to this machine (localhost, 127.0.0.0/8, ::1) unless --upload-allow-http. The region is --upload-region, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. --upload-addressing path (ENDPOINT/BUCKET/KEY, what S3-compatible servers expect; the default with an endpoint of your own) or virtual (BUCKET.ENDPOINT/KEY, AWS's default).",
            "Credentials, in the order the AWS tools use: guard's own --upload-access-key-id and --upload-secret-access-key (and --upload-session-token), each env:NAME or file:/path, or the value itself in a configuration file — never on the command line, which every user can read (that is a usage error); else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; else the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials; the profile AWS_PROFILE, default 'default'), which as root must be root's and writable by nobody else. They are resolved when the upload happens (a rotated key is used) and never written anywhere: not in a bundle, a log line or an alert.",
        ],
    )
    .to_roff()
}

fn drill() -> String {
    section(
        "DRILL",
        &[
            "guard drill [--name JOB] [--config FILE] [--memory SIZE] [--json] runs guard itself with the job's real settings — its [jobs.JOB] table and [defaults], its alert sinks, ping, metrics file and evidence directory — on guard's own allocator (a hidden mode of the same binary) instead of the job's command, and checks every link of a real kill, printing a checklist with \u{2713} or \u{2717} and the time of each step: the configuration; its readiness (as guard config check); the cap enforced (the allocator killed at the cap, exit 137); the capture before the kill (held, read); a complete bundle that guard report reads; each alert sink's acknowledgement; the ping; the metrics file. It exits 0 only when every check passed, 1 when one failed, 125 when its own options are wrong. --memory SIZE rehearses with a smaller cap than the job's (the allocator goes up to the cap); a job with no memory is a failed check, rehearsed at 64 MiB. --json prints {job, ok, steps: [{check, ok, ms, detail}], bundle}.",
            "With --upload (the job's upload key, or GUARD_UPLOAD), the readiness checks include the upload — the credentials found and the bucket there for them (a HEAD of the bucket; guard doctor and guard config check make the same check, without shipping anything) — and two more checks end the list: upload: a test object (a small object written under PREFIX/HOST/guard-drill/, read back, compared and deleted) and upload: the drill's bundle (its upload.json says uploaded, with the archive's URL, size and sha256).",
            "A drill is marked as one everywhere: every sink gets the event drill, whatever its events say (alertname GuardDrill, severity warning, ending by itself in Alertmanager; GUARD_EVENT=drill for exec hooks; a summary that starts 'guard drill for JOB: a rehearsal, not a failure of the job'); its bundle's trigger is drill (guard report --latest passes drills by); its ping goes to healthchecks' URL/log, which records an event without changing the check's state; its metrics are guard_drill_last_run_timestamp_seconds and, when every check passed, guard_drill_last_success_timestamp_seconds, never the job's series. There is no hold (--hold-for), no warning, and the run ends within 2 minutes. A drill never takes the job's --lock (the real run is never refused because a drill is running) and its retention (--keep, --max-evidence-size) removes only drills' bundles, never real evidence.",
            "Run it after each change to the configuration, and on a schedule: systemctl enable --now guard-drill@JOB.timer (Mondays, 09:17; packaging/systemd), or a crontab line such as 17 9 * * 1 /usr/bin/guard drill --name JOB > /var/tmp/guard-drill.txt || cat /var/tmp/guard-drill.txt (cron mails the checklist only when a check failed). Alert on a drill that stopped passing: time() - guard_drill_last_success_timestamp_seconds > 8 * 86400.",
        ],
    )
    .to_roff()
}

fn holding_a_job() -> String {
    section(
        "HOLDING A JOB",
        &[
            "With --hold-for DUR guard does not kill the job at once after the capture at the cap: it keeps it frozen for DUR (v1 and v2: the cgroup freezer, the memory still capped by the kernel; poll: SIGSTOP), so that a person can look at the processes while they still exist. The bundle is written when the hold begins, and guard says so in one line: 'guard: warning: NAME (pid N) is held frozen at its memory limit LIMIT (peak PEAK) until TIME (--hold-for DUR), then killed; end the hold now: guard kill NAME; evidence: BUNDLE'. The memory-limit alert goes out then too, saying that the job is held, until when (held_until in the webhook body, an annotation in Alertmanager, GUARD_HELD_UNTIL for exec hooks and the journal) and how to end the hold; no second alert comes at the kill.",
            "The hold ends when DUR has passed, when guard kill NAME|PID is run, when guard gets SIGTERM, SIGINT, SIGHUP or SIGQUIT (sent to it or typed at its terminal), when the job ends (killed from outside), or when a held job's memory grows by more than 16 MiB (poll mode's SIGSTOP can be undone by another process's SIGCONT). Then the job is killed as at any cap: the kill line says how long it was held and what ended the hold ('held 30.0 s (guard kill (pid 4711, uid 0)), then killed'), the bundle's manifest gains the job's exit and hold (requested_ms, since, until, ended_at, ended_by: expired, guard-kill, signal, job-ended or grew, and detail), and guard exits 137 either way. --timeout does not run during a hold; a job that got a terminating signal before its cap is killed at once, not held. If guard itself is killed during a hold, its sentinel kills the job and removes its cgroup, as at any time.",
            "While a job is held: /proc/PID/* of its processes is readable (status, smaps, maps, stack, wchan, environ), and so is its cgroup's memory.stat; py-spy dump --nonblocking --pid PID reads a frozen Python process (default py-spy dump, py-spy --native, gdb, gcore and strace attach with ptrace and wait for a stop the frozen task never makes: they need the job thawed — v2: echo 0 > cgroup.freeze; v1: echo THAWED > freezer.state in the job's freezer cgroup — and a thawed job at its cap is throttled (v2) or waits at the limit (v1), and the kernel may kill it). For a core of the held state use --core, which guard takes at the capture. guard held lists the holds; a hold is registered in held/ of guard's runtime directory (/run/guard/held as root, else $XDG_RUNTIME_DIR/guard/held or /tmp/guard-UID/held; 0700, a file per guard naming the guard by pid and start time, so that a pid reused after a guard's death is never signalled). guard kill sends that guard SIGTERM through a pidfd.",
        ],
    )
    .to_roff()
}

fn container_entrypoint() -> String {
    section(
            "CONTAINER ENTRYPOINT",
            &[
                "As a container's PID 1 (or anywhere: guard always makes itself a child subreaper) guard reaps every zombie, including orphans re-parented to it, forwards signals to COMMAND and exits with COMMAND's status once it exits, giving the processes COMMAND left behind 0.5 s (--kill-after when given) before killing them. The grace periods combine as follows: docker stop (or Kubernetes) sends guard SIGTERM and, after its own grace (docker stop -t, 10 s by default; terminationGracePeriodSeconds, 30 s), SIGKILL; guard forwards the SIGTERM and waits for COMMAND's shutdown as long as it takes, and the runtime's SIGKILL then ends guard and, through the parent-death signal and guard's sentinel, the whole job. So the runtime's grace is the job's grace; give --kill-after only to make guard's own bound shorter than the runtime's. --subreaper makes a failure to become a subreaper an error (exit 125) instead of a debug note. --pgroup runs COMMAND in a process group of its own and forwards signals to the whole group (as tini -g does); with a terminal, keys then reach guard, which forwards them.",
                "In a container whose cgroupfs is read-only guard cannot make a cgroup of its own: it enforces --memory in poll mode (SIGSTOP hold, then kill), and in observe mode reads the container's own cgroup (guard's) — its limit and usage — and when usage reaches --capture-at (default 95%) of that limit it stops the job, writes a full bundle (trigger warning), lets it run again and says so in one line, so the evidence exists before the runtime's OOM killer acts; a kernel OOM kill that follows gets its own post-mortem bundle. Keep --memory below the container's limit so that guard, not the runtime, ends the job. Bundles should go to a mounted volume; guard's lines reach docker logs / kubectl logs.",
                "The tests run guard as PID 1 of a new PID namespace (unshare --pid --fork --mount-proc): 1000 orphans are reaped, and the same signal scenario (SIGUSR1, SIGUSR2, SIGHUP, SIGINT, SIGWINCH, SIGTERM to PID 1) gives the same result under guard, guard --pgroup, tini and dumb-init.",
            ],
        )
        .to_roff()
}

fn cron() -> String {
    section(
            "CRON",
            &[
                "--timeout DUR: when the job has run for DUR, guard holds it, writes a bundle (trigger timeout: the stacks of a hung job), lets it run again, sends COMMAND SIGTERM (--signal SIG: another signal, by name or number, as timeout(1)'s -s) and kills the whole job --kill-after (default 10s) later; one line 'NAME (pid N) exceeded its time limit DUR; terminated; evidence: BUNDLE'; exit 124 (--preserve-status: COMMAND's own status, 128+N when a signal ended it, as timeout(1)'s); the timeout alert event. DUR is guard's (1h30m, 500ms) or timeout(1)'s: a floating-point number with an optional s, m, h or d (2.5, 1e-3, 0.5m, 400d); 0 and inf mean no limit, as in timeout(1). timeout(1)'s --foreground has no counterpart because nothing needs it: guard never moves COMMAND out of its own process group (unless --pgroup), so a COMMAND run from a terminal already reads it and gets its keys, and guard always kills the whole job at the end, children included — the two things --foreground trades away.",
                "--quiet: the job's stdout and stderr go to pipes guard reads — of each it keeps the first 2 MiB and the last 2 MiB, in memory, whatever the job writes (guard's memory is outside the job's cap), and a line 'guard: --quiet dropped N of the job's stderr here ...' marks what was dropped between them (for stdout, which carries only the job's bytes, that line goes to stderr) — and they are printed — stdout to stdout, stderr to stderr — only if the job failed (non-zero exit, signal, memory kill, timeout), before guard's own line, as chronic(1) does; cron then mails only failures. The last 64 KiB of both, in arrival order, go into the bundle (output.tail) and the alerts. Without --quiet the output reaches guard's stdout and stderr as it is written; where those are pipes already (cron, a container runtime), guard passes it through a pipe of its own — the job still sees a pipe, and still gets SIGPIPE when the reader goes away — to keep the same 64 KiB tail. A terminal or a file is left to the job directly. (-q, --brief is something else: fewer of guard's own messages.)",
                "--ping URL: healthchecks-compatible pings — URL/start when the job starts (on a thread of its own: a slow endpoint never delays the job), URL when it succeeds, URL/STATUS when it fails — healthchecks' exit-status endpoint, with guard's exit status: URL/2, URL/124 after --timeout, URL/137 after a memory kill — with guard's line (the kill or timeout line, or 'guard: NAME exited with status 2') and the last 9000 characters of the job's output (with --quiet) as the body. The end ping is sent only once the start ping was answered or gave up (runitor's order: an end that overtook its start would leave the check showing a start that never ended); after a start ping that failed every attempt the end ping is tried once, so a dead endpoint delays guard's exit by what is left of the start ping's bound and one attempt (a job that ends at once: 16.5 s and 5 s), while the alerts go out without waiting. A COMMAND that cannot run still reaches the check: URL/start, then URL/127 (not found) or URL/126 (not executable) with guard's error line as the body. The start and the end carry one run id (?rid=UUID, added to any query URL has), so healthchecks pairs them and measures the run's duration. Each ping is bounded (5 s) and retried like the alert sinks; a failed ping is one warning line and never changes the exit status. URL may be env:NAME or file:/path.",
                "examples/crontab shows the intended lines.",
                "--lock FILE: guard takes an exclusive flock on FILE (created if missing; it records the holder's pid) before anything else; if another run holds it, one line names the lock and the holder and guard exits 75 (EX_TEMPFAIL) without starting COMMAND. --lock-wait DUR waits for the lock up to DUR first. FILE is opened without following a symlink and must be a regular file of guard's user (created if missing); as root its directory must be root's and writable by root alone — where another user may create files (/tmp, /run/lock, both sticky and world-writable), that user could create and hold the lock first and keep the job from ever running. Root's locks belong in /run/lock/guard (the packages' tmpfiles.d entry makes it at boot, and guard makes it, 0755, when it is missing). Otherwise guard exits 125 with one line saying why.",
            ],
        )
        .to_roff()
}

fn alerts() -> String {
    section(
            "ALERTS",
            &[
                "Events: memory-limit (guard killed the job at its cap), warning (the early-warning threshold), kernel-oom (the kernel's OOM killer killed the job), failed (a non-zero exit or a signal; opt-in), timeout and drill (later). Each event goes to every sink that wants it: --alert KIND:TARGET (repeatable; GUARD_ALERT takes several separated by spaces) and the [[alerts]] tables of the config file (guard.toml(5)). A sink wants every event but failed unless its events say otherwise.",
                "webhook:URL posts a JSON body: event, job, host, pid, command, limit_bytes, peak_bytes, trigger, capture, bundle, summary (one paragraph), exit_code, guard_version, time. slack:URL posts an incoming-webhook message (text and blocks). alertmanager:URL posts to URL/api/v2/alerts with the labels alertname (GuardMemoryLimit, GuardMemoryWarning, GuardKernelOOM, GuardJobFailed, GuardTimeout, GuardDrill), job, instance (the host name) and severity (critical, or warning for warnings and drills, which end by themselves after 15 minutes), plus the labels its [[alerts]] table names (labels, guard.toml(5)), and the annotations summary, bundle, held_until (a --hold-for hold) and runbook_url (the job's --runbook when it is a URL; runbook when it is text). exec:/abs/program runs the program without a shell with GUARD_EVENT, GUARD_JOB, GUARD_PID, GUARD_BUNDLE, GUARD_LIMIT_BYTES, GUARD_PEAK_BYTES, GUARD_HOST, GUARD_SUMMARY, and when they apply GUARD_HELD_UNTIL and GUARD_RUNBOOK in its environment (besides those, only PATH, HOME, LANG, LC_ALL, TZ and what its pass_env key names), in a process group of its own: at its timeout the whole group gets SIGKILL (what it started in the background too), and its result is the hook's own exit status. log:stderr writes one logfmt line 'guard: alert event=... job=... ...' to stderr, log:syslog the same to /dev/log (RFC 3164, facility user, priority crit or warning), email:ADDRESS[,ADDRESS] sends one plain-text message (Subject '[guard] JOB exceeded its memory limit and was killed on HOST', '[guard drill] …' for a drill; Auto-Submitted: auto-generated) with the summary, the facts one per line (event, job, host, pid, command, limit, peak, evidence, runbook, time) and the end of the output, through the local MTA (localhost:25) or the server its [[alerts]] table names (url, tls, username, password, from; guard.toml(5)): STARTTLS is required, not opportunistic, AUTH goes only over TLS, transient failures (4xx, timeouts, refused connections) are retried and permanent ones (5xx: a refused recipient, bad credentials) are final. pagerduty:ROUTING_KEY posts to PagerDuty's Events API v2: trigger, with one dedup_key per job and host (guard/HOST/JOB), so a warning opens an incident, the kill that follows escalates the same one (severity warning, then critical), and a warning whose run then ended well is resolved; a drill triggers its own incident (guard/HOST/JOB/drill) at severity info and resolves it at once; the runbook is a link; custom_details carry pid, command, limit, peak, bundle, exit code and what holds the memory. log:journal a native journal entry (the journal's documented protocol over /run/systemd/journal/socket; a sealed memfd when it is too large for a datagram) with MESSAGE (the summary), PRIORITY, SYSLOG_IDENTIFIER=guard, GUARD_EVENT, GUARD_JOB, GUARD_PID, GUARD_BUNDLE, GUARD_LIMIT_BYTES, GUARD_PEAK_BYTES, GUARD_HOST and a MESSAGE_ID per event: 8a1f4be3c6d54f0e9b2a7c1d5e6f7a01 memory-limit, …a02 warning, …a03 kernel-oom, …a04 failed, …a05 timeout, …a06 drill (so 'journalctl GUARD_EVENT=memory-limit' lists every kill on the machine). When nothing listens at the socket the delivery fails and says so. When guard's own stderr is the journal (systemd sets JOURNAL_STREAM to its device and inode, as for a service's output), guard's lines go to the journal as native entries with PRIORITY, SYSLOG_IDENTIFIER=guard, GUARD_JOB and GUARD_PID, and the line that says how the run ended also with GUARD_EVENT, GUARD_BUNDLE, GUARD_LIMIT_BYTES, GUARD_PEAK_BYTES and the event's MESSAGE_ID; if the journal cannot be reached they go to stderr.",
                "URLs and header values may be written env:NAME or file:/path: they are read when an alert is sent and never printed (messages show a URL's scheme, host and port only). HTTPS trusts Mozilla's root certificates (built in, so it works in a container without a CA store) and the system's (/etc/ssl/certs, or SSL_CERT_FILE and SSL_CERT_DIR for an internal CA). Delivery happens after the kill (warnings: on a thread of their own while the job runs): it never delays enforcement. All sinks and the --ping end ping are tried in parallel (the --metrics-file is written before any of them); each attempt is bounded by the sink's timeout (default 5s); connection errors, timeouts, HTTP 429 and 5xx are retried after 0.5 s and 1 s, at most 3 attempts; exec and log are tried once. Each delivery as a whole has one bound — its attempts' timeouts, the backoff and 1 s (17.5 s with the defaults) — whatever the endpoint does (a mail server sending a byte a second never trips a per-read timeout): guard stops waiting there, says so ('no answer within 17.5s ...: guard stopped waiting'), records the delivery as timeout, and exits with the job's status. So guard exits at most about 17.5 s after the job however many endpoints hang. A redirect (HTTP 3xx) is never followed, for alerts and pings alike: it would send the alert's headers to another address and turn the POST into a GET without its body; it is a failed delivery that names the Location (without its query): configure the URL it points to. Each result (sink, status, attempts, ms, detail) goes into the bundle's manifest (alerts) and summary; a failed delivery is one warning line and never changes the exit status.",
            ],
        )
        .to_roff()
}

fn metrics() -> String {
    section(
            "METRICS",
            &["--metrics-file PATH writes the job's outcome in the node_exporter textfile format (point node_exporter's --collector.textfile.directory at PATH's directory; PATH must end in .prom): guard_job_last_run_timestamp_seconds, guard_job_last_exit_code (guard's exit status), guard_job_duration_seconds, guard_job_peak_memory_bytes, guard_job_memory_limit_bytes (when capped), the counter guard_job_memory_kills_total and guard_job_last_success_timestamp_seconds (when the last run that exited 0 ended; absent until one has), each with one label, guard_job, the job's --name. Not job: Prometheus sets job to the scrape job (node_exporter's) and would rename guard's to exported_job; and no host label: the scrape's instance names the machine. A file written with the earlier job and host labels is read, its kill counter kept, and rewritten with guard_job. Alert on a job that stopped succeeding with, say, time() - guard_job_last_success_timestamp_seconds{guard_job=\"nightly\"} > 26 * 3600. The file is replaced atomically (a temporary file, then rename) under a lock on PATH.lock, so several jobs can share it: each run rewrites its own series and keeps the others', and the kill counter carries over between runs. PATH's directory is checked as the evidence directory is: opened once, without following a symlink, and refused when it is owned by another user than root or guard's (node_exporter only reads it: chown root it) or may be written by others without the sticky bit — such a user could otherwise redirect root's writes. Its files are made relative to that directory without following a symlink (a symlink at PATH is replaced, never written through); PATH.lock must be a regular file of root or guard's user, and guard waits at most 5 s for it. At most the first 8 MiB of an existing file are read and lines that are not UTF-8 dropped, keeping every series guard can read (one warning says what was dropped). A metrics file that cannot be written is one warning line; the job's exit status never changes because of it."],
        )
        .to_roff()
}

fn files() -> String {
    tagged(
        "FILES",
        &[
            ("/etc/guard/guard.toml", "The system's configuration (guard.toml(5)); read unless --config names another file."),
            ("$XDG_CONFIG_HOME/guard/guard.toml", "The user's configuration (~/.config/guard/guard.toml); wins over the system's. As root, a configuration file another user could change is refused (guard.toml(5))."),
            ("/var/lib/guard/evidence", "Evidence bundles of root's guards (0700; the packages' tmpfiles.d entry makes it). Other users': $XDG_STATE_HOME/guard/evidence (~/.local/state/guard/evidence)."),
            ("/run/guard", "guard's runtime directory as root (another user's: $XDG_RUNTIME_DIR/guard, else /tmp/guard-UID): pyhook-HASH, the Python hook put on the job's PYTHONPATH; held/, the register of --hold-for holds that guard held and guard kill read."),
            ("/sys/fs/cgroup/.../guard-NAME-PID", "The job's cgroup while it runs (cgroup v1: in the memory and freezer hierarchies; under systemd inside guard-NAME-PID.scope); removed when guard ends, or by the next run when guard was killed."),
            ("/usr/lib/systemd/system/guard@.service, guard@.timer", "A service template that runs /etc/guard/jobs/NAME under guard, and its nightly timer (packaging/systemd)."),
        ],
    )
    .to_roff()
}

fn see_also() -> String {
    section(
        "SEE ALSO",
        &["guard.toml(5), systemd-run(1), systemd.resource-control(5), cgroups(7), timeout(1), systemd.time(7), chronic(1), tini(1), py-spy(1), gdb(1), journalctl(1); the README's examples and the packaging/ directory of guard's sources."],
    )
    .to_roff()
}

fn environment() -> String {
    let env_names = guard::config::options::OPTIONS
        .iter()
        .filter(|o| o.kind != guard::config::options::Kind::Level)
        .map(|o| o.env)
        .collect::<Vec<_>>()
        .join(", ");
    tagged(
            "ENVIRONMENT",
            &[
                (env_names.as_str(), "Defaults for the options of the same name; the command line wins, and these win over the configuration files (guard.toml(5)). Boolean variables accept 1/true/yes/on and 0/false/no/off. GUARD_ALERT takes several KIND:TARGET separated by spaces."),
                ("GUARD_VERBOSE", "0, 1 or 2: the same as no -v, -v or -vv."),
            ],
        )
        .to_roff()
}

fn examples() -> String {
    let mut ex = Roff::new();
    ex.control("SH", ["EXAMPLES"]);
    ex.text([roman("Cap a maintenance script at 2 GiB:")]);
    ex.control("PP", []);
    ex.control("RS", ["4"]);
    ex.text([italic("guard --memory 2G -- python manage.py fix_images")]);
    ex.control("RE", []);
    ex.control("PP", []);
    ex.text([roman(
        "Explain the newest bundle, or make a page with a memory plot:",
    )]);
    ex.control("PP", []);
    ex.control("RS", ["4"]);
    ex.text([italic("guard report --latest")]);
    ex.control("br", []);
    ex.text([italic("guard report --latest --html /tmp/oom.html")]);
    ex.control("RE", []);
    ex.control("PP", []);
    ex.text([roman("See which enforcement mode this machine allows:")]);
    ex.control("PP", []);
    ex.control("RS", ["4"]);
    ex.text([italic("guard doctor")]);
    ex.control("RE", []);
    ex.to_roff()
}

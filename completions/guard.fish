# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_guard_global_optspecs
    string join \n config= m/memory= swap= name= kill-after= warn= evidence-dir= no-evidence core core-max= sample-interval= keep= max-evidence-size= redact= no-environ pyspy= pyspy-locals no-native-stacks no-pyheap no-nodeheap pyheap-window= pyheap-headroom= tracemalloc= hold-for= thrash-after= timeout= signal= preserve-status lock= lock-wait= ping= subreaper pgroup capture-at= alert= runbook= metrics-file= require-cgroup slice= no-systemd v/verbose q/brief quiet drill h/help V/version
end

function __fish_guard_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_guard_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_guard_using_subcommand
    set -l cmd (__fish_guard_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c guard -n "__fish_guard_needs_command" -l config -d 'Read settings from this TOML file instead of /etc/guard/guard.toml and ~/.config/guard/guard.toml ([defaults] and [jobs.NAME] tables; see guard.toml(5))' -r -F
complete -c guard -n "__fish_guard_needs_command" -s m -l memory -d 'Hard memory cap for COMMAND and all its descendants (SIZE: 512M, 2G, 1GiB, 500MB, 50%). Without it guard only monitors' -r
complete -c guard -n "__fish_guard_needs_command" -l swap -d 'Swap allowed on top of --memory (cgroup v1 with swap accounting, or v2) [default: 0]' -r
complete -c guard -n "__fish_guard_needs_command" -l name -d 'Job name used in cgroup names and messages [default: basename of COMMAND]' -r
complete -c guard -n "__fish_guard_needs_command" -l kill-after -d 'How long the job gets after --timeout\'s signal before the whole job is killed [default: 10s]. Given, it also bounds a shutdown: after a forwarded SIGTERM, SIGINT, SIGHUP or SIGQUIT the job is killed DUR later (not given, whoever sent the signal owns the escalation: docker stop, Kubernetes, systemd), and processes COMMAND left behind get DUR instead of 0.5s' -r
complete -c guard -n "__fish_guard_needs_command" -l warn -d 'Early-warning threshold: a light evidence bundle (timeline, tree, stacks) once per upward crossing; the job keeps running. SIZE or a percentage of --memory; \'off\' disables it [default: 80%]' -r
complete -c guard -n "__fish_guard_needs_command" -l evidence-dir -d 'Where evidence bundles go [default: /var/lib/guard/evidence as root, else $XDG_STATE_HOME/guard/evidence or ~/.local/state/guard/evidence]' -r -F
complete -c guard -n "__fish_guard_needs_command" -l core-max -d 'Largest process size (RSS) for which --core writes a core; larger ones are skipped [default: 4G]' -r
complete -c guard -n "__fish_guard_needs_command" -l sample-interval -d 'How often the memory timeline is sampled [default: 100ms]' -r
complete -c guard -n "__fish_guard_needs_command" -l keep -d 'Keep at most N bundles in the evidence directory; the oldest go first [default: 50]' -r
complete -c guard -n "__fish_guard_needs_command" -l max-evidence-size -d 'Keep the evidence directory under SIZE; the oldest bundles go first (never the one just written) [default: 1GiB]' -r
complete -c guard -n "__fish_guard_needs_command" -l redact -d 'Environment variables whose names contain one of these words (comma-separated, case-insensitive; *WORD: at the end, WORD*: at the start) have their values replaced by <redacted> in bundles, alerts, pings and log lines [default: PASS,SECRET,TOKEN,KEY,CREDENTIAL,AUTH,COOKIE,SESSION,PRIVATE,DSN,DATABASE_URL,CONN,*_PWD,*_PAT]' -r
complete -c guard -n "__fish_guard_needs_command" -l pyspy -d 'The py-spy program for Python stacks in bundles [default: py-spy on PATH, else in /usr/local/bin, /usr/bin or ~/.local/bin when owned by root or you and writable by nobody else]' -r -F
complete -c guard -n "__fish_guard_needs_command" -l pyheap-window -d 'How long a Python heap census may take; at the cap the held job runs this long at most, within --pyheap-headroom, and is then killed [default: 2s]' -r
complete -c guard -n "__fish_guard_needs_command" -l pyheap-headroom -d 'Memory a job at its cap gets on top of --memory while its Python heap census runs; it never gets more [default: 5% of --memory, at least 32M]' -r
complete -c guard -n "__fish_guard_needs_command" -l tracemalloc -d 'Run the job\'s Python processes under tracemalloc (PYTHONTRACEMALLOC=FRAMES; 1 frame names the line), so that the Python heap census also says which lines allocated the memory still held; it costs the job memory and time (every allocation is recorded), and a job\'s own PYTHONTRACEMALLOC is left as given [default: off]' -r
complete -c guard -n "__fish_guard_needs_command" -l hold-for -d 'After the capture at the cap, keep the job frozen for DUR instead of killing it at once (its memory stays capped, its CPU stopped) so that a person can look at it: py-spy dump --nonblocking, /proc. \'guard kill NAME\' or SIGTERM to guard ends the hold sooner; then the job is killed and guard exits 137 [default: kill at once]' -r
complete -c guard -n "__fish_guard_needs_command" -l thrash-after -d 'A job stalled at its --memory cap — usage pinned at the cap while it keeps faulting back the pages the kernel just evicted (at least 5 major faults and 100 workingset refaults a second) — for DUR is treated as reaching the cap: held, captured and killed as \'thrashing at its memory limit\' (exit 137). Needs a cgroup; \'off\' disables it [default: 30s]' -r
complete -c guard -n "__fish_guard_needs_command" -l timeout -d 'Time limit: past DUR the job gets SIGTERM (--signal; after its evidence is captured), and the whole job is killed --kill-after later; guard exits 124. DUR as timeout(1) takes it too (1e-3, 2.5m; 0 or inf: no limit)' -r
complete -c guard -n "__fish_guard_needs_command" -l signal -d 'The signal --timeout sends first, as timeout(1)\'s --signal: a name (TERM, SIGINT, kill) or a number [default: TERM]' -r
complete -c guard -n "__fish_guard_needs_command" -l lock -d 'Run only if no other guard holds FILE (flock); a second run exits 75 with one line' -r -F
complete -c guard -n "__fish_guard_needs_command" -l lock-wait -d 'With --lock: wait up to DUR for the lock instead of exiting 75 at once' -r
complete -c guard -n "__fish_guard_needs_command" -l ping -d 'healthchecks-compatible pings: URL/start when the job starts, URL when it succeeds, URL/STATUS (healthchecks\' exit-status endpoint: URL/2, URL/124 after --timeout, URL/137 after a memory kill; with guard\'s line and the end of the output) when it fails; one run id (rid=UUID) on both; bounded and retried, never failing the job. URL may be env:NAME or file:/path' -r
complete -c guard -n "__fish_guard_needs_command" -l capture-at -d 'Observe mode (no writable cgroup, e.g. a container\'s read-only cgroupfs): capture a bundle when the container\'s own cgroup reaches PCT of its memory limit, before the runtime\'s OOM killer [default: 95%]' -r
complete -c guard -n "__fish_guard_needs_command" -l alert -d 'Send an alert for each event to KIND:TARGET — webhook:URL, slack:URL, alertmanager:URL (base URL), exec:/abs/program, log:stderr, log:syslog, log:journal, email:ADDRESS[,ADDRESS] (through the local MTA; a mail server with TLS and AUTH in guard.toml) or pagerduty:ROUTING_KEY; URLs and keys may be env:NAME or file:/path. Repeatable; added to the [[alerts]] of the config file [env: GUARD_ALERT, space-separated]' -r
complete -c guard -n "__fish_guard_needs_command" -l runbook -d 'The job\'s runbook — a URL (your disaster checklist) or one line of text — sent in every alert: Alertmanager\'s runbook_url annotation, a line of Slack\'s message, the webhook\'s runbook, GUARD_RUNBOOK for exec hooks and the journal, the summary everywhere' -r
complete -c guard -n "__fish_guard_needs_command" -l metrics-file -d 'Write the job\'s outcome (last run, last success, exit code, duration, peak, limit, memory kills; label guard_job) to PATH in the node_exporter textfile format; several jobs can share one file. PATH must end in .prom' -r -F
complete -c guard -n "__fish_guard_needs_command" -l slice -d 'On a machine systemd runs: put the job\'s transient scope (guard-JOB-PID.scope) in slice NAME, e.g. batch.slice [default: the manager\'s own default for transient units, as systemd-run: system.slice as root, app.slice in a user manager]' -r
complete -c guard -n "__fish_guard_needs_command" -l no-evidence -d 'Enforce only: write no evidence bundle [env: GUARD_NO_EVIDENCE=1]'
complete -c guard -n "__fish_guard_needs_command" -l core -d 'Also write a core dump of the largest process into the bundle (needs gdb\'s gcore; cores contain secrets) [env: GUARD_CORE=1]'
complete -c guard -n "__fish_guard_needs_command" -l no-environ -d 'Write no environ files into bundles [env: GUARD_NO_ENVIRON=1]'
complete -c guard -n "__fish_guard_needs_command" -l pyspy-locals -d 'Include local variables in Python stacks (py-spy --locals; they may contain secrets) [env: GUARD_PYSPY_LOCALS=1]'
complete -c guard -n "__fish_guard_needs_command" -l no-native-stacks -d 'Do not read the native (C, C++, Rust) stacks of a process whose memory is mostly native heap at the cap (eu-stack on the stopped process, up to 5 s, as the job\'s user); by default guard reads them when eu-stack is installed [env: GUARD_NO_NATIVE_STACKS=1]'
complete -c guard -n "__fish_guard_needs_command" -l no-pyheap -d 'Do not load guard\'s Python hook into the job: no Python heap census, and PYTHONPATH and the environment reach the job as given (by default guard\'s directory goes first on PYTHONPATH and GUARD_PYHEAP is set) [env: GUARD_NO_PYHEAP=1]'
complete -c guard -n "__fish_guard_needs_command" -l no-nodeheap -d 'Do not load guard\'s Node.js hook into the job: no Node.js heap census, and NODE_OPTIONS and the environment reach the job as given (by default guard\'s hook goes first in NODE_OPTIONS, --require\'d, and GUARD_NODEHEAP is set) [env: GUARD_NO_NODEHEAP=1]'
complete -c guard -n "__fish_guard_needs_command" -l preserve-status -d 'After --timeout, exit with COMMAND\'s own status (128+N when a signal ended it), as timeout(1)\'s --preserve-status, instead of 124 [env: GUARD_PRESERVE_STATUS=1]'
complete -c guard -n "__fish_guard_needs_command" -l subreaper -d 'Insist on reaping orphans: fail (exit 125) if guard cannot become a child subreaper (guard always tries; as PID 1 it reaps them anyway) [env: GUARD_SUBREAPER=1]'
complete -c guard -n "__fish_guard_needs_command" -l pgroup -d 'Run the job in a process group of its own and forward signals to the whole group (for containers; with a terminal, keys then reach guard, which forwards them) [env: GUARD_PGROUP=1]'
complete -c guard -n "__fish_guard_needs_command" -l require-cgroup -d 'Fail (exit 125) instead of falling back to best-effort poll mode when no cgroup can be created [env: GUARD_REQUIRE_CGROUP=1]'
complete -c guard -n "__fish_guard_needs_command" -l no-systemd -d 'Do not ask systemd for a transient scope when guard\'s own cgroup is not delegated: create the job\'s cgroup directly (as root: under /sys/fs/cgroup/guard, outside every unit) or fall back to poll mode [env: GUARD_NO_SYSTEMD=1]'
complete -c guard -n "__fish_guard_needs_command" -s v -l verbose -d 'More of guard\'s own messages on stderr (-v: mode and cgroup at start; -vv: debug) [env: GUARD_VERBOSE=0|1|2]'
complete -c guard -n "__fish_guard_needs_command" -s q -l brief -d 'Less of guard\'s own messages: errors and the final line (memory kill, timeout) only [env: GUARD_BRIEF=1]'
complete -c guard -n "__fish_guard_needs_command" -l quiet -d 'Cron mode: collect the job\'s stdout and stderr and print them only if it fails (non-zero exit, signal, memory kill, timeout), as chronic does; the last 64 KiB also go into the bundle (output.tail) and the alerts [env: GUARD_QUIET=1]'
complete -c guard -n "__fish_guard_needs_command" -l drill
complete -c guard -n "__fish_guard_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c guard -n "__fish_guard_needs_command" -s V -l version -d 'Print version'
complete -c guard -n "__fish_guard_needs_command" -a "run" -d 'Run COMMAND under guard (the same as \'guard [OPTIONS] -- COMMAND\')'
complete -c guard -n "__fish_guard_needs_command" -a "report" -d 'Explain an evidence bundle on one screen (or as JSON, or as an HTML page with a memory plot)'
complete -c guard -n "__fish_guard_needs_command" -a "list" -d 'List evidence bundles, newest first (and the jobs held now)'
complete -c guard -n "__fish_guard_needs_command" -a "held" -d 'List the jobs held frozen now (--hold-for), with when each hold ends'
complete -c guard -n "__fish_guard_needs_command" -a "kill" -d 'End a --hold-for hold now: the held job is killed, its guard exits 137'
complete -c guard -n "__fish_guard_needs_command" -a "drill" -d 'Rehearse the failure path with a job\'s settings: cap, capture, bundle, every alert sink, ping, metrics — a checklist; exit 0 only when all pass'
complete -c guard -n "__fish_guard_needs_command" -a "doctor" -d 'Show which enforcement mode guard would use here, and why'
complete -c guard -n "__fish_guard_needs_command" -a "config" -d 'Check configuration files'
complete -c guard -n "__fish_guard_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c guard -n "__fish_guard_using_subcommand run" -l config -d 'Read settings from this TOML file instead of /etc/guard/guard.toml and ~/.config/guard/guard.toml ([defaults] and [jobs.NAME] tables; see guard.toml(5))' -r -F
complete -c guard -n "__fish_guard_using_subcommand run" -s m -l memory -d 'Hard memory cap for COMMAND and all its descendants (SIZE: 512M, 2G, 1GiB, 500MB, 50%). Without it guard only monitors' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l swap -d 'Swap allowed on top of --memory (cgroup v1 with swap accounting, or v2) [default: 0]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l name -d 'Job name used in cgroup names and messages [default: basename of COMMAND]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l kill-after -d 'How long the job gets after --timeout\'s signal before the whole job is killed [default: 10s]. Given, it also bounds a shutdown: after a forwarded SIGTERM, SIGINT, SIGHUP or SIGQUIT the job is killed DUR later (not given, whoever sent the signal owns the escalation: docker stop, Kubernetes, systemd), and processes COMMAND left behind get DUR instead of 0.5s' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l warn -d 'Early-warning threshold: a light evidence bundle (timeline, tree, stacks) once per upward crossing; the job keeps running. SIZE or a percentage of --memory; \'off\' disables it [default: 80%]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l evidence-dir -d 'Where evidence bundles go [default: /var/lib/guard/evidence as root, else $XDG_STATE_HOME/guard/evidence or ~/.local/state/guard/evidence]' -r -F
complete -c guard -n "__fish_guard_using_subcommand run" -l core-max -d 'Largest process size (RSS) for which --core writes a core; larger ones are skipped [default: 4G]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l sample-interval -d 'How often the memory timeline is sampled [default: 100ms]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l keep -d 'Keep at most N bundles in the evidence directory; the oldest go first [default: 50]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l max-evidence-size -d 'Keep the evidence directory under SIZE; the oldest bundles go first (never the one just written) [default: 1GiB]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l redact -d 'Environment variables whose names contain one of these words (comma-separated, case-insensitive; *WORD: at the end, WORD*: at the start) have their values replaced by <redacted> in bundles, alerts, pings and log lines [default: PASS,SECRET,TOKEN,KEY,CREDENTIAL,AUTH,COOKIE,SESSION,PRIVATE,DSN,DATABASE_URL,CONN,*_PWD,*_PAT]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l pyspy -d 'The py-spy program for Python stacks in bundles [default: py-spy on PATH, else in /usr/local/bin, /usr/bin or ~/.local/bin when owned by root or you and writable by nobody else]' -r -F
complete -c guard -n "__fish_guard_using_subcommand run" -l pyheap-window -d 'How long a Python heap census may take; at the cap the held job runs this long at most, within --pyheap-headroom, and is then killed [default: 2s]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l pyheap-headroom -d 'Memory a job at its cap gets on top of --memory while its Python heap census runs; it never gets more [default: 5% of --memory, at least 32M]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l tracemalloc -d 'Run the job\'s Python processes under tracemalloc (PYTHONTRACEMALLOC=FRAMES; 1 frame names the line), so that the Python heap census also says which lines allocated the memory still held; it costs the job memory and time (every allocation is recorded), and a job\'s own PYTHONTRACEMALLOC is left as given [default: off]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l hold-for -d 'After the capture at the cap, keep the job frozen for DUR instead of killing it at once (its memory stays capped, its CPU stopped) so that a person can look at it: py-spy dump --nonblocking, /proc. \'guard kill NAME\' or SIGTERM to guard ends the hold sooner; then the job is killed and guard exits 137 [default: kill at once]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l thrash-after -d 'A job stalled at its --memory cap — usage pinned at the cap while it keeps faulting back the pages the kernel just evicted (at least 5 major faults and 100 workingset refaults a second) — for DUR is treated as reaching the cap: held, captured and killed as \'thrashing at its memory limit\' (exit 137). Needs a cgroup; \'off\' disables it [default: 30s]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l timeout -d 'Time limit: past DUR the job gets SIGTERM (--signal; after its evidence is captured), and the whole job is killed --kill-after later; guard exits 124. DUR as timeout(1) takes it too (1e-3, 2.5m; 0 or inf: no limit)' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l signal -d 'The signal --timeout sends first, as timeout(1)\'s --signal: a name (TERM, SIGINT, kill) or a number [default: TERM]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l lock -d 'Run only if no other guard holds FILE (flock); a second run exits 75 with one line' -r -F
complete -c guard -n "__fish_guard_using_subcommand run" -l lock-wait -d 'With --lock: wait up to DUR for the lock instead of exiting 75 at once' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l ping -d 'healthchecks-compatible pings: URL/start when the job starts, URL when it succeeds, URL/STATUS (healthchecks\' exit-status endpoint: URL/2, URL/124 after --timeout, URL/137 after a memory kill; with guard\'s line and the end of the output) when it fails; one run id (rid=UUID) on both; bounded and retried, never failing the job. URL may be env:NAME or file:/path' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l capture-at -d 'Observe mode (no writable cgroup, e.g. a container\'s read-only cgroupfs): capture a bundle when the container\'s own cgroup reaches PCT of its memory limit, before the runtime\'s OOM killer [default: 95%]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l alert -d 'Send an alert for each event to KIND:TARGET — webhook:URL, slack:URL, alertmanager:URL (base URL), exec:/abs/program, log:stderr, log:syslog, log:journal, email:ADDRESS[,ADDRESS] (through the local MTA; a mail server with TLS and AUTH in guard.toml) or pagerduty:ROUTING_KEY; URLs and keys may be env:NAME or file:/path. Repeatable; added to the [[alerts]] of the config file [env: GUARD_ALERT, space-separated]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l runbook -d 'The job\'s runbook — a URL (your disaster checklist) or one line of text — sent in every alert: Alertmanager\'s runbook_url annotation, a line of Slack\'s message, the webhook\'s runbook, GUARD_RUNBOOK for exec hooks and the journal, the summary everywhere' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l metrics-file -d 'Write the job\'s outcome (last run, last success, exit code, duration, peak, limit, memory kills; label guard_job) to PATH in the node_exporter textfile format; several jobs can share one file. PATH must end in .prom' -r -F
complete -c guard -n "__fish_guard_using_subcommand run" -l slice -d 'On a machine systemd runs: put the job\'s transient scope (guard-JOB-PID.scope) in slice NAME, e.g. batch.slice [default: the manager\'s own default for transient units, as systemd-run: system.slice as root, app.slice in a user manager]' -r
complete -c guard -n "__fish_guard_using_subcommand run" -l no-evidence -d 'Enforce only: write no evidence bundle [env: GUARD_NO_EVIDENCE=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l core -d 'Also write a core dump of the largest process into the bundle (needs gdb\'s gcore; cores contain secrets) [env: GUARD_CORE=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l no-environ -d 'Write no environ files into bundles [env: GUARD_NO_ENVIRON=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l pyspy-locals -d 'Include local variables in Python stacks (py-spy --locals; they may contain secrets) [env: GUARD_PYSPY_LOCALS=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l no-native-stacks -d 'Do not read the native (C, C++, Rust) stacks of a process whose memory is mostly native heap at the cap (eu-stack on the stopped process, up to 5 s, as the job\'s user); by default guard reads them when eu-stack is installed [env: GUARD_NO_NATIVE_STACKS=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l no-pyheap -d 'Do not load guard\'s Python hook into the job: no Python heap census, and PYTHONPATH and the environment reach the job as given (by default guard\'s directory goes first on PYTHONPATH and GUARD_PYHEAP is set) [env: GUARD_NO_PYHEAP=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l no-nodeheap -d 'Do not load guard\'s Node.js hook into the job: no Node.js heap census, and NODE_OPTIONS and the environment reach the job as given (by default guard\'s hook goes first in NODE_OPTIONS, --require\'d, and GUARD_NODEHEAP is set) [env: GUARD_NO_NODEHEAP=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l preserve-status -d 'After --timeout, exit with COMMAND\'s own status (128+N when a signal ended it), as timeout(1)\'s --preserve-status, instead of 124 [env: GUARD_PRESERVE_STATUS=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l subreaper -d 'Insist on reaping orphans: fail (exit 125) if guard cannot become a child subreaper (guard always tries; as PID 1 it reaps them anyway) [env: GUARD_SUBREAPER=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l pgroup -d 'Run the job in a process group of its own and forward signals to the whole group (for containers; with a terminal, keys then reach guard, which forwards them) [env: GUARD_PGROUP=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l require-cgroup -d 'Fail (exit 125) instead of falling back to best-effort poll mode when no cgroup can be created [env: GUARD_REQUIRE_CGROUP=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l no-systemd -d 'Do not ask systemd for a transient scope when guard\'s own cgroup is not delegated: create the job\'s cgroup directly (as root: under /sys/fs/cgroup/guard, outside every unit) or fall back to poll mode [env: GUARD_NO_SYSTEMD=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -s v -l verbose -d 'More of guard\'s own messages on stderr (-v: mode and cgroup at start; -vv: debug) [env: GUARD_VERBOSE=0|1|2]'
complete -c guard -n "__fish_guard_using_subcommand run" -s q -l brief -d 'Less of guard\'s own messages: errors and the final line (memory kill, timeout) only [env: GUARD_BRIEF=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l quiet -d 'Cron mode: collect the job\'s stdout and stderr and print them only if it fails (non-zero exit, signal, memory kill, timeout), as chronic does; the last 64 KiB also go into the bundle (output.tail) and the alerts [env: GUARD_QUIET=1]'
complete -c guard -n "__fish_guard_using_subcommand run" -l drill
complete -c guard -n "__fish_guard_using_subcommand run" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand report" -l html -d 'Write a self-contained HTML page (with an SVG plot of memory over time) to FILE' -r -F
complete -c guard -n "__fish_guard_using_subcommand report" -l evidence-dir -d 'The evidence directory (for --latest)' -r -F
complete -c guard -n "__fish_guard_using_subcommand report" -l latest -d 'Explain the newest bundle in the evidence directory'
complete -c guard -n "__fish_guard_using_subcommand report" -l json -d 'Print the report as JSON'
complete -c guard -n "__fish_guard_using_subcommand report" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand list" -l evidence-dir -d 'The evidence directory to list' -r -F
complete -c guard -n "__fish_guard_using_subcommand list" -l json -d 'Print the list as JSON'
complete -c guard -n "__fish_guard_using_subcommand list" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand held" -l json -d 'Print the held jobs as JSON'
complete -c guard -n "__fish_guard_using_subcommand held" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand kill" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand drill" -l name -d 'The job whose settings are rehearsed ([jobs.NAME] of the configuration) [default: the [defaults], as job \'drill\']' -r
complete -c guard -n "__fish_guard_using_subcommand drill" -l config -d 'The configuration file [default: the files guard reads]' -r -F
complete -c guard -n "__fish_guard_using_subcommand drill" -l memory -d 'A smaller cap for the rehearsal than the job\'s (its allocator goes up to the cap)' -r
complete -c guard -n "__fish_guard_using_subcommand drill" -l json -d 'Print the checks as JSON'
complete -c guard -n "__fish_guard_using_subcommand drill" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand doctor" -l json -d 'Print the findings as JSON'
complete -c guard -n "__fish_guard_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate the configuration (FILE, or the files guard would read) and print the effective settings of [defaults] and of every [jobs.NAME], with where each value comes from'
complete -c guard -n "__fish_guard_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c guard -n "__fish_guard_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c guard -n "__fish_guard_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the configuration (FILE, or the files guard would read) and print the effective settings of [defaults] and of every [jobs.NAME], with where each value comes from'
complete -c guard -n "__fish_guard_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "run" -d 'Run COMMAND under guard (the same as \'guard [OPTIONS] -- COMMAND\')'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "report" -d 'Explain an evidence bundle on one screen (or as JSON, or as an HTML page with a memory plot)'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "list" -d 'List evidence bundles, newest first (and the jobs held now)'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "held" -d 'List the jobs held frozen now (--hold-for), with when each hold ends'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "kill" -d 'End a --hold-for hold now: the held job is killed, its guard exits 137'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "drill" -d 'Rehearse the failure path with a job\'s settings: cap, capture, bundle, every alert sink, ping, metrics — a checklist; exit 0 only when all pass'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "doctor" -d 'Show which enforcement mode guard would use here, and why'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "config" -d 'Check configuration files'
complete -c guard -n "__fish_guard_using_subcommand help; and not __fish_seen_subcommand_from run report list held kill drill doctor config help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

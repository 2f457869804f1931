# leak: a shell pipeline — a small Python producer feeding awk(1), which keeps every line in an
# array (what `sort` does too; sort reads into a buffer it has just allocated, and on cgroup v1 a
# read into memory that must be charged at the cap fails with EFAULT instead of waiting — "sort:
# read failed: Bad address" — so the fixture uses awk, which copies each line in user space)
# guard: --memory 200M
# run: sh {fixture} {python}
# expect-lead: awk) holds
# expect: not a Python process
"$1" -c '
import sys
i = 0
while True:
    sys.stdout.write("%020d some payload to keep on line %d\n" % ((i * 7919) % 1000003, i))
    i += 1
' | awk '{ seen[NR] = $0 } END { print NR }' > /dev/null

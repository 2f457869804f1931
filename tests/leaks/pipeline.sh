# leak: a shell pipeline — a small Python producer feeding sort(1), which holds every line
# guard: --memory 200M
# run: sh {fixture} {python}
# expect-lead: sort
# expect: not a Python process
"$1" -c '
import sys
i = 0
while True:
    sys.stdout.write("%020d some payload to sort on line %d\n" % ((i * 7919) % 1000003, i))
    i += 1
' | sort -S 1G > /dev/null

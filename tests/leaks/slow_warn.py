# leak: a worker leaking slowly, watched with --warn: warned (with a census) long before the kill
# guard: --memory 200M --warn 50%
# expect-stderr: warning
# expect: global 'SESSIONS'
import time

SESSIONS = {}

n = 0
while True:
    SESSIONS["session-%d" % n] = bytearray(100_000)  # the leak: sessions never expire
    n += 1
    time.sleep(0.002)

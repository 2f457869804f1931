# leak: one worker of a multiprocessing.Pool keeps every payload it handles in a module-level
# list; the other worker and the parent (waiting for results) stay small. (The payload is made
# in user space: a system call that fills memory at the cap, os.urandom(200_000) say, fails with
# EFAULT under cgroup v1's hold instead of waiting, and the job dies of the exception first.)
# guard: --memory 250M
# expect-lead-not: pid {pid} 
# expect: global 'SEEN' in module
# expect: fix: a module-level list
import multiprocessing
import os
import time

SEEN = []
WORKER = None


def init(counter):
    global WORKER
    with counter.get_lock():
        WORKER = counter.value
        counter.value += 1


def work(i):
    if WORKER == 0:
        SEEN.append(os.urandom(16) * 12_500)  # the leak: only the first worker's
    time.sleep(0.001)
    return i


if __name__ == "__main__":
    counter = multiprocessing.Value("i", 0)
    with multiprocessing.Pool(2, initializer=init, initargs=(counter,)) as pool:
        for _ in pool.imap_unordered(work, range(10_000_000), chunksize=1):
            pass

/* bench/alloc.c — the allocator bench/capture runs under guard.
 *
 *   alloc MB RATE CHILDREN
 *     MB        mebibytes to allocate in total (every page touched), then sleep until killed
 *     RATE      MB per second in total, 0 = as fast as possible
 *     CHILDREN  0: this process allocates; N > 0: N children allocate MB/N each at RATE/N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void allocate(long mb, double rate) {
    double start = now();
    for (long i = 0; i < mb; i++) {
        char *p = malloc(1 << 20);
        if (!p) { perror("malloc"); exit(1); }
        memset(p, 1, 1 << 20);
        if (rate > 0) {
            double due = start + (i + 1) / rate, d = due - now();
            if (d > 0) usleep((useconds_t)(d * 1e6));
        }
    }
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: alloc MB RATE CHILDREN\n"); return 2; }
    long mb = atol(argv[1]), n = atol(argv[3]);
    double rate = atof(argv[2]);
    if (n <= 0) allocate(mb, rate);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) allocate(mb / n, rate / n);
        if (p < 0) { perror("fork"); return 1; }
    }
    while (wait(NULL) > 0) {}
    return 0;
}

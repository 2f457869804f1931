/* bench/pairs: median wall time of commands run alternately, for machines without Python (the
 * systemd guest). usage: pairs RUNS NAME CMD [ARGS...] [:: NAME CMD [ARGS...]]...
 * Runs every command once per round, RUNS rounds, each command's stdout/stderr to /dev/null;
 * prints each command's median and its ratio to the first. Every command must exit 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXC 8

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: pairs RUNS NAME CMD [ARGS...] [:: NAME CMD ...]...\n");
        return 2;
    }
    int runs = atoi(argv[1]), n = 0;
    char *names[MAXC];
    char **cmds[MAXC];
    for (int i = 2; i < argc && n < MAXC;) {
        names[n] = argv[i];
        cmds[n] = &argv[i + 1];
        int j = i + 1;
        while (j < argc && strcmp(argv[j], "::") != 0) j++;
        if (j < argc) argv[j] = NULL;
        n++;
        i = j + 1;
    }
    double *t = calloc((size_t)runs * n, sizeof(double));
    if (!t || runs < 1) return 2;
    int devnull = open("/dev/null", O_WRONLY);
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < n; k++) {
            int c = (r % 2) ? n - 1 - k : k; /* alternate the order every round */
            double t0 = now();
            pid_t p = fork();
            if (p == 0) {
                dup2(devnull, 1);
                dup2(devnull, 2);
                execv(cmds[c][0], cmds[c]);
                _exit(127);
            }
            int st = 0;
            waitpid(p, &st, 0);
            t[c * runs + r] = now() - t0;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "pairs: %s failed (status %d)\n", names[c], st);
                return 1;
            }
        }
    }
    double base = 0;
    for (int c = 0; c < n; c++) {
        qsort(&t[c * runs], runs, sizeof(double), cmp);
        double med = t[c * runs + runs / 2];
        if (c == 0) base = med;
        printf("%-12s median %8.2f ms  x%.2f  (%d runs)\n", names[c], med * 1e3, med / base, runs);
    }
    return 0;
}

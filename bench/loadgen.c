/*
 * loadgen.c - the project's load generator (make bench, scripts/bench).
 *
 *   loadgen --url URL --workload NAME [options]
 *
 * Drives one workload (lg_work.h) against URL over keep-alive
 * connections (lg_engine.h), bounded by time and optionally by count,
 * with a progress line on stderr, then prints a one-line summary and,
 * with --json, writes the result as a JSON object: throughput, p50, p99,
 * p99.9 and max latency, every status code, non-2xx and errors.
 *
 * Tokens are minted here with the cluster's JWT secret (--var DIR reads
 * DIR/cluster.env, else MESSENGER_JWT_SECRET). The delta and mix
 * workloads first fetch every user's sync token (not measured).
 * --on-start CMD and --on-end CMD run a shell command right before and
 * right after the measured phase (after the token fetch): scripts/bench
 * reads the services' CPU time there, so the figures cover that phase
 * alone. The result also gives this process's own CPU time in the phase.
 * Exit status: 0 when the run completed, 1 on bad usage or set-up
 * failure. Non-2xx answers do not change the exit status; the caller
 * reads them from the result.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lg_engine.h"
#include "lg_work.h"

/* Hard bounds of any run. */
#define SECONDS_MAX 3600.0
#define CONNECTIONS_MAX 4096
#define THREADS_MAX 64
#define USERS_MAX 1000000
/* Default first user: far above the ids tests pick (they draw from
 * 10^9 up at random, so a clash is improbable rather than impossible;
 * --base-user moves the range). */
#define BASE_USER_DEFAULT 8000000000000000LL
/* Lifetime of the minted tokens, s. */
#define TOKEN_TTL_S 7200
/* Preparation runs (token fetch) are bounded by this, s. */
#define PREP_SECONDS 60.0

typedef struct options {
    const char *url;
    const char *workload;
    const char *var;
    const char *json;
    const char *label;
    const char *on_start;
    const char *on_end;
    double seconds;
    uint64_t count;
    double rate;
    int connections;
    int threads;
    int users;
    int64_t base_user;
    int seed_rounds;
    int content_bytes;
    bool is_quiet;
} options;

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --url URL --workload "
            "send|seed|conversations|messages|delta|mix|get\n"
            "  [--seconds S (10)] [--requests N] [--rate R]\n"
            "  [--connections C (64)] [--threads T (1)]\n"
            "  [--users U (1000)] [--base-user B] [--seed-rounds K (20)]\n"
            "  [--content-bytes N (54)] [--var DIR] [--json FILE]\n"
            "  [--label NAME] [--quiet] [--on-start CMD] [--on-end CMD]\n");
    exit(1);
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.seconds = 10,
                   .connections = 64,
                   .threads = 1,
                   .users = 1000,
                   .base_user = BASE_USER_DEFAULT,
                   .seed_rounds = 20,
                   .content_bytes = 54};
    static const struct option longs[] = {
        {"url", 1, 0, 'u'},           {"workload", 1, 0, 'w'},
        {"seconds", 1, 0, 's'},       {"requests", 1, 0, 'n'},
        {"rate", 1, 0, 'r'},          {"connections", 1, 0, 'c'},
        {"threads", 1, 0, 't'},       {"users", 1, 0, 'U'},
        {"base-user", 1, 0, 'b'},     {"seed-rounds", 1, 0, 'k'},
        {"content-bytes", 1, 0, 'B'}, {"var", 1, 0, 'v'},
        {"json", 1, 0, 'j'},          {"label", 1, 0, 'l'},
        {"quiet", 0, 0, 'q'},         {"on-start", 1, 0, 'S'},
        {"on-end", 1, 0, 'E'},        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (opt) {
        case 'u':
            o->url = optarg;
            break;
        case 'w':
            o->workload = optarg;
            break;
        case 's':
            o->seconds = atof(optarg);
            break;
        case 'n':
            o->count = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'c':
            o->connections = atoi(optarg);
            break;
        case 't':
            o->threads = atoi(optarg);
            break;
        case 'U':
            o->users = atoi(optarg);
            break;
        case 'b':
            o->base_user = strtoll(optarg, NULL, 10);
            break;
        case 'k':
            o->seed_rounds = atoi(optarg);
            break;
        case 'B':
            o->content_bytes = atoi(optarg);
            break;
        case 'v':
            o->var = optarg;
            break;
        case 'j':
            o->json = optarg;
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'q':
            o->is_quiet = true;
            break;
        case 'S':
            o->on_start = optarg;
            break;
        case 'E':
            o->on_end = optarg;
            break;
        default:
            return -1;
        }
    }
    if (!o->url || !o->workload || optind != argc || o->seconds <= 0 ||
        o->seconds > SECONDS_MAX || o->connections < 1 ||
        o->connections > CONNECTIONS_MAX || o->threads < 1 ||
        o->threads > THREADS_MAX || o->threads > o->connections ||
        o->users < 2 || o->users > USERS_MAX || o->base_user < 0 ||
        o->base_user + o->users > 9007199254740991LL || o->rate < 0 ||
        o->seed_rounds < 1 || o->content_bytes < 1 ||
        o->content_bytes > LG_CONTENT_MAX)
        return -1;
    if (!o->label)
        o->label = o->workload;
    return 0;
}

/* MESSENGER_JWT_SECRET from DIR/cluster.env, else the environment. The
 * result is owned by the caller. */
static char *read_secret(const char *var)
{
    if (var) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cluster.env", var);
        FILE *f = fopen(path, "r");
        if (f) {
            char line[1024];
            const char *key = "MESSENGER_JWT_SECRET=";
            while (fgets(line, sizeof line, f)) {
                if (strncmp(line, key, strlen(key)) != 0)
                    continue;
                line[strcspn(line, "\r\n")] = '\0';
                fclose(f);
                return strdup(line + strlen(key));
            }
            fclose(f);
        }
    }
    const char *env = getenv("MESSENGER_JWT_SECRET");
    return env && *env ? strdup(env) : NULL;
}

typedef struct progress_state {
    const char *label;
    double last_print;
    uint64_t last_done;
    bool is_tty;
    bool is_quiet;
} progress_state;

static void print_progress(const lg_run *r, double elapsed, void *arg)
{
    progress_state *p = arg;
    double every = p->is_tty ? 1.0 : 5.0;
    if (p->is_quiet || elapsed - p->last_print < every)
        return;
    uint64_t done = __atomic_load_n(&r->done, __ATOMIC_RELAXED);
    double rate = (double)(done - p->last_done) / (elapsed - p->last_print);
    fprintf(stderr,
            "%s[%s] %5.1fs done %" PRIu64 " rate %.0f/s non-2xx %" PRIu64
            " errors %" PRIu64 "%s",
            p->is_tty ? "\r" : "", p->label, elapsed, done, rate,
            __atomic_load_n(&r->non_2xx, __ATOMIC_RELAXED),
            __atomic_load_n(&r->errors, __ATOMIC_RELAXED),
            p->is_tty ? "   " : "\n");
    p->last_print = elapsed;
    p->last_done = done;
}

static int run_phase(lg_work *w, const options *o, lg_run *r, double seconds,
                     uint64_t count, const char *label)
{
    memset(r, 0, sizeof *r);
    r->work = w;
    r->threads = o->threads;
    r->connections = o->connections;
    r->seconds = seconds;
    r->count = count;
    r->rate = w->kind == LG_TOKENS ? 0 : o->rate;
    r->keep_bodies = w->kind == LG_TOKENS;
    progress_state p = {.label = label,
                        .is_tty = isatty(STDERR_FILENO) == 1,
                        .is_quiet = o->is_quiet};
    int rc = lg_run_go(r, print_progress, &p);
    if (p.is_tty && !o->is_quiet)
        fputc('\n', stderr);
    return rc;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

/* This process's CPU time (user and system), ms. */
static double cpu_ms(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

/* Runs a hook; 0 when it exited with status 0 (or there is none). */
static int run_hook(const char *what, const char *cmd)
{
    if (cmd == NULL)
        return 0;
    fflush(stdout);
    int status = system(cmd);
    if (status == 0)
        return 0;
    fprintf(stderr, "loadgen: %s command failed (status %d)\n", what, status);
    return -1;
}

static void report(const options *o, const lg_run *r, double own_cpu_ms)
{
    double tput = r->elapsed_s > 0 ? (double)r->done / r->elapsed_s : 0;
    printf("%-14s %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms"
           "  n %" PRIu64 "  non-2xx %" PRIu64 "  errors %" PRIu64 "\n",
           o->label, tput, ms(lg_hist_quantile(&r->hist, 0.50)),
           ms(lg_hist_quantile(&r->hist, 0.99)),
           ms(lg_hist_quantile(&r->hist, 0.999)), r->done, r->non_2xx,
           r->errors);
    if (!o->json)
        return;
    FILE *f = fopen(o->json, "w");
    if (!f) {
        perror(o->json);
        return;
    }
    fprintf(f,
            "{\"label\":\"%s\",\"workload\":\"%s\",\"connections\":%d,"
            "\"threads\":%d,\"rate_target\":%.1f,\"seconds\":%.3f,"
            "\"requests\":%" PRIu64 ",\"throughput\":%.1f,"
            "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
            "\"max_ms\":%.3f,\"non_2xx\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"cpu_ms\":%.1f,\"content_bytes\":%d,\"status\":{",
            o->label, o->workload, o->connections, o->threads, o->rate,
            r->elapsed_s, r->done, tput, ms(lg_hist_quantile(&r->hist, 0.50)),
            ms(lg_hist_quantile(&r->hist, 0.99)),
            ms(lg_hist_quantile(&r->hist, 0.999)), ms(r->hist.max_us),
            r->non_2xx, r->errors, own_cpu_ms, o->content_bytes);
    const char *sep = "";
    for (int s = 0; s <= LG_STATUS_MAX; s++) {
        if (r->status[s]) {
            fprintf(f, "%s\"%d\":%" PRIu64, sep, s, r->status[s]);
            sep = ",";
        }
    }
    fprintf(f, "}}\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o) != 0)
        usage();
    lg_work w = {.users = o.users,
                 .base_user = o.base_user,
                 .content_bytes = o.content_bytes};
    char errbuf[128];
    if (lg_kind_parse(o.workload, &w.kind) != 0) {
        fprintf(stderr, "loadgen: unknown workload %s\n", o.workload);
        usage();
    }
    if (lg_url_parse(o.url, &w.url, errbuf, sizeof errbuf) != 0) {
        fprintf(stderr, "loadgen: --url: %s\n", errbuf);
        usage();
    }
    snprintf(w.nonce, sizeof w.nonce, "%lx%x", (unsigned long)time(NULL),
             (unsigned)getpid());
    char *secret = read_secret(o.var);
    if (!secret && w.kind != LG_GET) {
        fprintf(stderr, "loadgen: no JWT secret (--var DIR or "
                        "MESSENGER_JWT_SECRET)\n");
        return 1;
    }
    int rc = 1;
    if (lg_work_init(&w, secret ? secret : "unused", TOKEN_TTL_S) != 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto done;
    }
    static lg_run r; /* the histogram is large: not on the stack */
    lg_kind kind = w.kind;
    if (kind == LG_DELTA || kind == LG_MIX) {
        w.kind = LG_TOKENS;
        if (run_phase(&w, &o, &r, PREP_SECONDS, lg_work_count(&w, 0),
                      "tokens") != 0)
            goto done;
        w.kind = kind;
    }
    uint64_t count = o.count ? o.count : lg_work_count(&w, o.seed_rounds);
    if (run_hook("--on-start", o.on_start) != 0)
        goto done;
    double cpu0 = cpu_ms();
    if (run_phase(&w, &o, &r, o.seconds, count, o.label) != 0) {
        fprintf(stderr, "loadgen: cannot start threads\n");
        goto done;
    }
    double own_cpu_ms = cpu_ms() - cpu0;
    if (run_hook("--on-end", o.on_end) != 0)
        goto done;
    report(&o, &r, own_cpu_ms);
    rc = 0;
done:
    lg_work_destroy(&w);
    free(secret);
    return rc;
}

/*
 * stress_host.c: a C host that leans on the bridge from many threads at once, for the sanitizer and
 * valgrind runs (tests/c_safety.rs) and by hand:
 *   - dispatcher threads: Dispatch a Pre hook, check the driver's header is in the answer, free it;
 *     every few calls a malformed Object (must fail cleanly) and Dispatch(&m, &m) in place;
 *   - an event thread: DispatchEvent (every driver re-raises it), TykTriggerEvent, CoProcessNextEvent;
 *   - a swapper thread: installs log and event handlers with a malloc'd user_data, replaces them and
 *     frees the old user_data at once (the bridge promises the old handler is done by then);
 *   - a reloader thread: replaces the driver file by rename (a fresh copy) and calls Reload().
 * It prints its counts and exits 0 only when no call failed unexpectedly.
 *
 * Usage: stress_host DRIVER.so [MILLISECONDS [THREADS]]   (defaults: 2000 ms, 4 dispatchers)
 * DRIVER.so is examples/c_driver (it sets "X-Coprocess-Driver: c" on Pre hooks).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"

/* hook_type = Pre, hook_name = "Stress", request { method "GET", url "/s" }, spec { APIID: "s" }. */
static const unsigned char object[] = {
    0x08, 0x01,                                          /* 1 hook_type = Pre            */
    0x12, 0x06, 'S', 't', 'r', 'e', 's', 's',            /* 2 hook_name = "Stress"       */
    0x1a, 0x09, 0x5a, 0x03, 'G', 'E', 'T', 0x2a, 0x02, '/', 's', /* 3 request        */
    0x32, 0x0a, 0x0a, 0x05, 'A', 'P', 'I', 'I', 'D', 0x12, 0x01, 's'}; /* 6 spec entry */

static const char header[] = "X-Coprocess-Driver";

static atomic_int stop;
static atomic_ulong calls, failures, refusals, events, swaps, reloads, handler_calls, late_calls;
static char driver_copy[512], staging[512];
static const char *driver_source;

static int contains(const void *hay, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp((const char *)hay + i, needle, m) == 0) return 1;
  return 0;
}

static void fail(const char *what) {
  atomic_fetch_add(&failures, 1);
  fprintf(stderr, "FAILED: %s: %s\n", what, CoProcessLastError());
}

static void fail_errno(const char *what) {
  atomic_fetch_add(&failures, 1);
  fprintf(stderr, "FAILED: %s: %s\n", what, strerror(errno));
}

static void *dispatcher(void *arg) {
  (void)arg;
  unsigned long n = 0;
  while (!atomic_load(&stop)) {
    n++;
    struct CoProcessMessage in = {(void *)object, (int)sizeof object}, out = {NULL, 0};
    if (Dispatch(&in, &out) != 0)
      fail("Dispatch");
    else if (!contains(out.p_data, (size_t)out.length, header))
      fail("the answer lacks the driver's header");
    CoProcessMessageFree(&out);
    if (n % 16 == 0) {
      static const unsigned char garbage[] = {0xff, 0xff, 0xff};
      struct CoProcessMessage bad = {(void *)garbage, 3};
      if (Dispatch(&bad, &out) != COPROCESS_ERR_INVALID_OBJECT || out.p_data != NULL)
        fail("a malformed Object was not refused cleanly");
      else if (strstr(CoProcessLastError(), "not a well-formed") == NULL)
        fail("the refusal's message");
      atomic_fetch_add(&refusals, 1);
    }
    if (n % 16 == 8) {
      unsigned char *mine = malloc(sizeof object);
      memcpy(mine, object, sizeof object);
      struct CoProcessMessage m = {mine, (int)sizeof object};
      if (Dispatch(&m, &m) != 0 || !contains(m.p_data, (size_t)m.length, header)) fail("Dispatch(&m, &m)");
      CoProcessMessageFree(&m);
      free(mine);
    }
    atomic_fetch_add(&calls, 1);
  }
  return NULL;
}

static void *eventer(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    DispatchEvent("{\"message\": {\"n\": 1}, \"handler_name\": \"stress\", \"spec\": {\"APIID\": \"s\"}}");
    TykTriggerEvent((char *)"StressEvent", (char *)"{}");
    char *name, *payload;
    while (CoProcessNextEvent(&name, &payload) == 0) {
      CoProcessFree(name);
      CoProcessFree(payload);
    }
    atomic_fetch_add(&events, 1);
  }
  return NULL;
}

#define ALIVE 0xC0FFEEu
struct owned {
  atomic_uint alive;
};

static void handler(const char *a, const char *b, void *user_data) {
  (void)a;
  (void)b;
  struct owned *o = user_data;
  if (atomic_load(&o->alive) != ALIVE) atomic_fetch_add(&late_calls, 1);
  atomic_fetch_add(&handler_calls, 1);
}

static void *swapper(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    struct owned *o = malloc(sizeof *o);
    atomic_init(&o->alive, ALIVE);
    CoProcessSetEventHandler(handler, o);
    CoProcessSetLogHandler(handler, o);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
    CoProcessSetEventHandler(NULL, NULL);
    CoProcessSetLogHandler(NULL, NULL);
    atomic_store(&o->alive, 0);
    free(o);
    atomic_fetch_add(&swaps, 1);
  }
  return NULL;
}

/* Copies the driver to the staging name, then renames it over the loaded file. */
static int replace_driver(void) {
  FILE *src = fopen(driver_source, "rb"), *dst = fopen(staging, "wb");
  int ok = src && dst;
  char buf[65536];
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, src)) > 0) ok = fwrite(buf, 1, n, dst) == n;
  if (src) fclose(src);
  if (dst && fclose(dst) != 0) ok = 0;
  return ok && rename(staging, driver_copy) == 0;
}

static void *reloader(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    if (!replace_driver()) fail_errno("replacing the driver file");
    Reload();
    atomic_fetch_add(&reloads, 1);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DRIVER.so [MILLISECONDS [THREADS]]\n", argv[0]);
    return 2;
  }
  driver_source = argv[1];
  long ms = argc > 2 ? atol(argv[2]) : 2000;
  int threads = argc > 3 ? atoi(argv[3]) : 4;
  if (threads < 1 || threads > 64) threads = 4;

  char dir[] = "/tmp/stress_host-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 2;
  }
  snprintf(driver_copy, sizeof driver_copy, "%s/driver.so", dir);
  snprintf(staging, sizeof staging, "%s/driver.so.new", dir);
  if (!replace_driver()) {
    fprintf(stderr, "cannot copy %s\n", driver_source);
    return 2;
  }
  if (CoProcessInit("{\"event_queue_capacity\": 64}") != 0 ||
      CoProcessLoadDriver("native", driver_copy, NULL) != 0) {
    fprintf(stderr, "setup failed: %s\n", CoProcessLastError());
    return 2;
  }

  pthread_t t[64 + 3];
  int started = 0;
  for (int i = 0; i < threads; i++) pthread_create(&t[started++], NULL, dispatcher, NULL);
  pthread_create(&t[started++], NULL, eventer, NULL);
  pthread_create(&t[started++], NULL, swapper, NULL);
  pthread_create(&t[started++], NULL, reloader, NULL);
  struct timespec run = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&run, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < started; i++) pthread_join(t[i], NULL);

  CoProcessShutdown();
  unlink(driver_copy);
  unlink(staging);
  rmdir(dir);
  printf("calls=%lu refusals=%lu events=%lu swaps=%lu reloads=%lu handler_calls=%lu late_calls=%lu "
         "failures=%lu\n",
         atomic_load(&calls), atomic_load(&refusals), atomic_load(&events), atomic_load(&swaps),
         atomic_load(&reloads), atomic_load(&handler_calls), atomic_load(&late_calls),
         atomic_load(&failures));
  int ok = atomic_load(&failures) == 0 && atomic_load(&late_calls) == 0 && atomic_load(&calls) > 0 &&
           atomic_load(&reloads) > 0;
  printf("%s\n", ok ? "stress: all good" : "stress: FAILED");
  return ok ? 0 : 1;
}

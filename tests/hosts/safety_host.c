/*
 * safety_host.c: a C host that does what hosts do and drivers should not, for the failure-mode tests
 * (tests/c_safety.rs). Each mode prints what it saw and exits 0 only when every check held; run it
 * plainly, under AddressSanitizer/UBSan, and under valgrind.
 *
 *   safety_host inplace DRIVER           Dispatch(&m, &m) and DispatchWithDriver(d, &m, &m) dispatch m's
 *                                        Object (DRIVER: tests/drivers/test_driver.c)
 *   safety_host return-input DRIVER      a driver answering `*out = *in` gets an error, and the host's
 *                                        malloc'd input is freed exactly once, by the host
 *                                        (DRIVER: hostile_driver.c -DRETURN_INPUT)
 *   safety_host reentrant-reload DRIVER  the driver's reload hook calls Reload(): no deadlock
 *                                        (DRIVER: hostile_driver.c -DREENTRANT_RELOAD)
 *   safety_host swap-free [SWAPS]        threads log and raise events while the main thread swaps
 *                                        handlers and frees each old user_data at once (400 swaps)
 *   safety_host exiting-thread           CoProcessLastError from a thread-exit destructor
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"

static int failures;

static void check(int ok, const char *what) {
  printf("%s %s\n", ok ? "[ok]    " : "[FAILED]", what);
  if (!ok) failures++;
}

/* hook_type = Pre (2), hook_name = "Safety", request { url "/x" }: a small well-formed Object. */
static const unsigned char object[] = {0x08, 0x02, 0x12, 0x06, 'S', 'a', 'f', 'e', 't', 'y',
                                       0x1a, 0x04, 0x2a, 0x02, '/', 'x'};

static unsigned char *malloc_object(void) {
  unsigned char *p = malloc(sizeof object);
  if (p) memcpy(p, object, sizeof object);
  return p;
}

static int load(const char *name, const char *path) {
  int rc = CoProcessLoadDriver(name, path, NULL);
  if (rc != 0) printf("load %s: %d %s\n", path, rc, CoProcessLastError());
  return rc == 0;
}

static int starts_with_object(const struct CoProcessMessage *m) {
  return m->p_data && m->length > (int)sizeof object && memcmp(m->p_data, object, sizeof object) == 0;
}

static int inplace(const char *driver) {
  if (!load("inplace", driver)) return 1;
  unsigned char *input = malloc_object();
  struct CoProcessMessage m = {input, (int)sizeof object};
  int rc = Dispatch(&m, &m);
  check(rc == 0, "Dispatch(&m, &m) returned 0");
  check(m.p_data != input, "m now holds the driver's output");
  check(starts_with_object(&m), "the driver answered the Object m held (not an empty one)");
  CoProcessMessageFree(&m);

  m.p_data = input;
  m.length = (int)sizeof object;
  rc = DispatchWithDriver("inplace", &m, &m);
  check(rc == 0, "DispatchWithDriver(d, &m, &m) returned 0");
  check(starts_with_object(&m), "and answered the Object m held");
  CoProcessMessageFree(&m);
  free(input);
  CoProcessShutdown();
  return 0;
}

static int return_input(const char *driver) {
  if (!load("echo-pointer", driver)) return 1;
  for (int i = 0; i < 100; i++) {
    unsigned char *input = malloc_object();
    struct CoProcessMessage in = {input, (int)sizeof object}, out = {NULL, 0};
    int rc = Dispatch(&in, &out);
    if (i == 0) {
      check(rc == COPROCESS_ERR_DRIVER_BAD_OUTPUT, "the driver's answer is refused");
      printf("CoProcessLastError: %s\n", CoProcessLastError());
      check(strstr(CoProcessLastError(), "returned its input buffer as output") != NULL,
            "the message says why");
      check(out.p_data == NULL && out.length == 0, "out is {NULL, 0}");
      check(memcmp(input, object, sizeof object) == 0, "the input is intact");
    }
    free(input); /* a double free if the bridge had freed it, or handed it back as out */
  }
  CoProcessShutdown();
  return 0;
}

static void alarm_handler(int sig) {
  (void)sig;
  static const char msg[] = "[FAILED] deadlock: Reload() did not return within 20 s\n";
  ssize_t ignored = write(1, msg, sizeof msg - 1);
  (void)ignored;
  _exit(3);
}

static atomic_int nested_warnings;

static void count_nested(const char *message, const char *level, void *user_data) {
  (void)user_data;
  printf("log %s: %s\n", level, message);
  if (strstr(message, "called from a driver's reload hook")) atomic_fetch_add(&nested_warnings, 1);
}

static int reentrant_reload(const char *driver) {
  CoProcessSetLogHandler(count_nested, NULL);
  if (!load("reentrant", driver)) return 1;
  signal(SIGALRM, alarm_handler);
  alarm(20);
  Reload();
  Reload();
  alarm(0);
  check(1, "Reload() returned although the driver's reload hook calls Reload()");
  char *n = TykGetData((char *)"hostile:reloads");
  check(n && strcmp(n, "2") == 0, "the reload hook ran once per Reload()");
  CoProcessFree(n);
  check(atomic_load(&nested_warnings) == 2, "each nested call was logged as ignored");
  CoProcessSetLogHandler(NULL, NULL);
  CoProcessShutdown();
  return 0;
}

/* ---- swap-free ---- */

#define ALIVE 0x5AFE5AFEu

struct owned {
  atomic_uint alive;
  atomic_ulong calls;
};

static atomic_int stop;
static atomic_ulong late_calls, handled;

static void use_owned(const char *a, const char *b, void *user_data) {
  (void)a;
  (void)b;
  struct owned *o = user_data;
  if (atomic_load(&o->alive) != ALIVE) atomic_fetch_add(&late_calls, 1);
  atomic_fetch_add(&o->calls, 1);
  atomic_fetch_add(&handled, 1);
}

static void *raise_events_and_logs(void *arg) {
  long t = (long)arg;
  while (!atomic_load(&stop)) {
    if (t % 2)
      TykTriggerEvent((char *)"SwapEvent", (char *)"{}");
    else
      CoProcessLog((char *)"swap log line", (char *)"error");
  }
  return NULL;
}

static int swap_free(int swaps) {
  enum { THREADS = 4 };
  pthread_t threads[THREADS];
  CoProcessInit("{\"event_queue_capacity\": 16}");
  for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, raise_events_and_logs, (void *)i);
  for (int i = 0; i < swaps; i++) {
    struct owned *o = malloc(sizeof *o);
    atomic_init(&o->alive, ALIVE);
    atomic_init(&o->calls, 0);
    CoProcessSetEventHandler(use_owned, o);
    CoProcessSetLogHandler(use_owned, o);
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
    /* Replace, then free at once: the bridge promises the old handler is done. */
    CoProcessSetEventHandler(i % 2 ? NULL : use_owned, i % 2 ? NULL : o);
    CoProcessSetLogHandler(NULL, NULL);
    CoProcessSetEventHandler(NULL, NULL);
    atomic_store(&o->alive, 0);
    free(o);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  char *name, *payload;
  while (CoProcessNextEvent(&name, &payload) == 0) {
    CoProcessFree(name);
    CoProcessFree(payload);
  }
  printf("handler calls: %lu, late calls: %lu\n", atomic_load(&handled), atomic_load(&late_calls));
  check(atomic_load(&handled) > 0, "handlers were called");
  check(atomic_load(&late_calls) == 0, "no handler ran after it was replaced");
  CoProcessShutdown();
  return 0;
}

/* ---- exiting-thread ---- */

static pthread_key_t key;
static char at_exit[256];

static void on_thread_exit(void *value) {
  (void)value;
  int rc = Dispatch(NULL, NULL);
  snprintf(at_exit, sizeof at_exit, "%d: %s", rc, CoProcessLastError());
}

static void *exiting(void *arg) {
  (void)arg;
  /* A failure first, so this thread has a last-error message to destroy on exit. */
  Dispatch(NULL, NULL);
  pthread_setspecific(key, (void *)1);
  return NULL;
}

static int exiting_thread(void) {
  pthread_t t;
  pthread_key_create(&key, on_thread_exit);
  pthread_create(&t, NULL, exiting, NULL);
  pthread_join(t, NULL);
  printf("from the exit destructor: %s\n", at_exit);
  check(at_exit[0] == '1' && strlen(at_exit) > 3, "CoProcessLastError answered on an exiting thread");
  pthread_key_delete(key);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODE [DRIVER]\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1], *driver = argc > 2 ? argv[2] : NULL;
  int rc;
  if (strcmp(mode, "inplace") == 0 && driver)
    rc = inplace(driver);
  else if (strcmp(mode, "return-input") == 0 && driver)
    rc = return_input(driver);
  else if (strcmp(mode, "reentrant-reload") == 0 && driver)
    rc = reentrant_reload(driver);
  else if (strcmp(mode, "swap-free") == 0)
    rc = swap_free(argc > 2 ? atoi(argv[2]) : 400);
  else if (strcmp(mode, "exiting-thread") == 0)
    rc = exiting_thread();
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return rc != 0 || failures != 0;
}

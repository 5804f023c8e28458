/*
 * test_driver.c: the driver the integration tests load. One source file; the behaviour is picked
 * at compile time with -D macros (tests/common/mod.rs: build_c_driver(path, &["FAULT_GARBAGE"])).
 *
 * Default: Dispatch returns a malloc'd copy of its input followed by one more top-level field,
 *   request { set_headers { "X-Test-Driver": VERSION_TAG } }
 * which any protobuf parser merges into the Object's request, so tests can tell which build (and,
 * after a reload, which version) answered.
 *
 *   -DVERSION_TAG='"v2"'       the tag, a C string literal (default "v1")
 *   -DSLOW_MS=N                sleep N ms in Dispatch before answering (reload-while-in-flight)
 *   -DWITH_OPTIONAL            also export CoProcessDriverLoadBundle and CoProcessDriverShutdown
 *   -DWITH_PATCH               also export CoProcessDriverDispatchPatch: it answers the same header as
 *                              a patch alone (no copy of the input) and counts its calls in the store
 *                              under "test_driver:patch_calls:<TAG>"
 * Faults of CoProcessDriverDispatchPatch (with WITH_PATCH), one at a time:
 *   -DPATCH_GARBAGE            returns 0 with the malloc'd bytes ff ff ff ff
 *   -DPATCH_TRUNCATED          returns 0 with the patch less its last byte
 *   -DPATCH_ALIAS              returns 0 with out pointing into the input (`*out = *in`)
 *   -DPATCH_FAILS              returns 3 with "patch backend unavailable" (malloc'd, no NUL)
 *   -DPATCH_WHOLE              returns COPROCESS_DRIVER_WHOLE_OBJECT with what Dispatch returns
 *   -DPATCH_EMPTY              returns 0 with an empty patch (NULL, 0): the input unchanged
 * Faults, one at a time:
 *   -DFAULT_NO_VERSION         no CoProcessDriverAbiVersion symbol
 *   -DFAULT_WRONG_VERSION      CoProcessDriverAbiVersion returns 99
 *   -DFAULT_NO_INIT            no CoProcessDriverInit symbol
 *   -DFAULT_INIT_FAILS         CoProcessDriverInit returns 7
 *   -DFAULT_NO_DISPATCH        no CoProcessDriverDispatch symbol
 *   -DFAULT_DISPATCH_FAILS     Dispatch returns 3 with "backend unavailable" (malloc'd, no NUL)
 *   -DFAULT_GARBAGE            Dispatch returns 0 with the malloc'd bytes ff ff ff ff
 *   -DFAULT_NEGATIVE_LENGTH    Dispatch returns 0 with a malloc'd p_data and length -5
 *   -DFAULT_NULL_WITH_LENGTH   Dispatch returns 0 with p_data NULL and length 10
 *
 * Side effects the tests observe through the host API:
 *   Init           store "test_driver:config" = config_json
 *   DispatchEvent  trigger "TestDriverEvent" (payload: the event JSON), log at "warning"
 *   Reload         store "test_driver:reload:<TAG>" = number of reloads of this instance
 *   LoadBundle     store "test_driver:bundle" = bundle_path              (WITH_OPTIONAL)
 *   Shutdown       store "test_driver:shutdown" = "1", free the instance (WITH_OPTIONAL)
 * Without WITH_OPTIONAL there is no Shutdown symbol, so the bridge cannot release the instance; such
 * builds keep their instances on a static list so leak checkers see them as reachable, not lost.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coprocess_driver.h"

#ifndef VERSION_TAG
#define VERSION_TAG "v1"
#endif

#define HEADER_NAME "X-Test-Driver"

/* Which helpers this build needs (unused static functions would trip -Werror). */
#if defined(FAULT_DISPATCH_FAILS) || defined(FAULT_GARBAGE) || defined(FAULT_NEGATIVE_LENGTH) || \
    defined(PATCH_GARBAGE) || defined(PATCH_FAILS)
#define FAULTY_DISPATCH_COPIES 1
#endif
#if defined(FAULT_DISPATCH_FAILS) || defined(FAULT_GARBAGE) || defined(FAULT_NEGATIVE_LENGTH)
#elif !defined(FAULT_NO_DISPATCH) && !defined(FAULT_NULL_WITH_LENGTH)
#define PASS_THROUGH_DISPATCH 1
#endif

struct test_driver {
  const struct CoProcessHostApi *host;
  struct test_driver *next; /* the list of unreleasable instances (builds without Shutdown) */
  atomic_uint reloads;
  atomic_ulong dispatches;
  atomic_ulong events;
  atomic_ulong patch_calls;
};

#ifdef FAULTY_DISPATCH_COPIES
static void *copy_bytes(const void *src, size_t n) {
  void *p = malloc(n);
  if (p) memcpy(p, src, n);
  return p;
}
#endif

#ifndef FAULT_NO_VERSION
uint32_t CoProcessDriverAbiVersion(void) {
#ifdef FAULT_WRONG_VERSION
  return 99;
#else
  return COPROCESS_DRIVER_ABI_VERSION;
#endif
}
#endif

#ifndef FAULT_NO_INIT
int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  if (!host || !instance) return 1;
#ifdef FAULT_INIT_FAILS
  (void)config_json;
  return 7;
#else
  struct test_driver *d = calloc(1, sizeof *d);
  if (!d) return 2;
  d->host = host;
  atomic_init(&d->reloads, 0);
  atomic_init(&d->dispatches, 0);
  atomic_init(&d->events, 0);
  atomic_init(&d->patch_calls, 0);
  host->store_data("test_driver:config", config_json ? config_json : "", 0);
#ifndef WITH_OPTIONAL
  static _Atomic(struct test_driver *) unreleased = NULL;
  d->next = atomic_load(&unreleased);
  while (!atomic_compare_exchange_weak(&unreleased, &d->next, d)) {
  }
#endif
  *instance = d;
  return 0;
#endif
}
#endif

#ifdef PASS_THROUGH_DISPATCH
/* Appends a length-delimited field header (tag + length) to p. */
static uint8_t *put_len_header(uint8_t *p, unsigned field, size_t len) {
  uint64_t tag = ((uint64_t)field << 3) | 2;
  for (uint64_t v = tag;; v >>= 7) {
    if (v < 0x80) {
      *p++ = (uint8_t)v;
      break;
    }
    *p++ = (uint8_t)(v | 0x80);
  }
  for (uint64_t v = len;; v >>= 7) {
    if (v < 0x80) {
      *p++ = (uint8_t)v;
      break;
    }
    *p++ = (uint8_t)(v | 0x80);
  }
  return p;
}

/* The answer's change: request { set_headers { HEADER_NAME: VERSION_TAG } } as top-level Object fields.
 * Field sizes: each length here is < 128, so every length varint is one byte. */
static size_t header_patch_len(void) {
  size_t entry = 2 + (sizeof HEADER_NAME - 1) + 2 + (sizeof VERSION_TAG - 1); /* map entry { key = 1; value = 2 } */
  size_t request = 2 + entry; /* MiniRequestObject { set_headers = 2 } */
  return 2 + request;         /* Object { request = 3 } */
}

static void write_header_patch(uint8_t *p) {
  static const char name[] = HEADER_NAME, tag[] = VERSION_TAG;
  size_t name_len = sizeof name - 1, tag_len = sizeof tag - 1;
  _Static_assert(sizeof VERSION_TAG - 1 + sizeof HEADER_NAME - 1 + 10 < 128, "VERSION_TAG too long");
  size_t entry = 2 + name_len + 2 + tag_len;
  p = put_len_header(p, 3, 2 + entry);
  p = put_len_header(p, 2, entry);
  p = put_len_header(p, 1, name_len);
  memcpy(p, name, name_len);
  p = put_len_header(p + name_len, 2, tag_len);
  memcpy(p, tag, tag_len);
}
#endif

#ifdef SLOW_MS
static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}
#endif

#ifndef FAULT_NO_DISPATCH
int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  struct test_driver *d = instance;
  if (!d || !in || !out) return 1;
  atomic_fetch_add(&d->dispatches, 1);
#ifdef SLOW_MS
  sleep_ms(SLOW_MS);
#endif
#if defined(FAULT_DISPATCH_FAILS)
  static const char msg[] = "backend unavailable";
  out->p_data = copy_bytes(msg, sizeof msg - 1); /* deliberately without the NUL */
  out->length = out->p_data ? (int)(sizeof msg - 1) : 0;
  return 3;
#elif defined(FAULT_GARBAGE)
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
  out->p_data = copy_bytes(garbage, sizeof garbage);
  out->length = out->p_data ? (int)sizeof garbage : 0;
  return 0;
#elif defined(FAULT_NEGATIVE_LENGTH)
  out->p_data = copy_bytes("bogus", 5);
  out->length = -5;
  return 0;
#elif defined(FAULT_NULL_WITH_LENGTH)
  out->p_data = NULL;
  out->length = 10;
  return 0;
#else
  if (in->length < 0 || (in->length > 0 && !in->p_data)) return 2;
  size_t len = (size_t)in->length, patch = header_patch_len();
  if (len > (size_t)INT_MAX - patch) return 4;
  uint8_t *buf = malloc(len + patch);
  if (!buf) return 5;
  if (len) memcpy(buf, in->p_data, len);
  write_header_patch(buf + len);
  out->p_data = buf;
  out->length = (int)(len + patch);
  return 0;
#endif
}
#endif

#ifdef WITH_PATCH
int CoProcessDriverDispatchPatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  struct test_driver *d = instance;
  if (!d || !in || !out) return 1;
  atomic_fetch_add(&d->dispatches, 1);
  unsigned long n = atomic_fetch_add(&d->patch_calls, 1) + 1;
  char count[24];
  snprintf(count, sizeof count, "%lu", n);
  d->host->store_data("test_driver:patch_calls:" VERSION_TAG, count, 0);
#if defined(PATCH_GARBAGE)
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
  out->p_data = copy_bytes(garbage, sizeof garbage);
  out->length = out->p_data ? (int)sizeof garbage : 0;
  return 0;
#elif defined(PATCH_ALIAS)
  *out = *in;
  return 0;
#elif defined(PATCH_FAILS)
  static const char msg[] = "patch backend unavailable";
  out->p_data = copy_bytes(msg, sizeof msg - 1); /* deliberately without the NUL */
  out->length = out->p_data ? (int)(sizeof msg - 1) : 0;
  return 3;
#elif defined(PATCH_WHOLE)
  int rc = CoProcessDriverDispatch(instance, in, out);
  atomic_fetch_sub(&d->dispatches, 1); /* one call of the hook */
  return rc == 0 ? COPROCESS_DRIVER_WHOLE_OBJECT : rc;
#elif defined(PATCH_EMPTY)
  return 0;
#else
  size_t patch = header_patch_len();
  uint8_t *buf = malloc(patch);
  if (!buf) return 5;
  write_header_patch(buf);
  out->p_data = buf;
#if defined(PATCH_TRUNCATED)
  out->length = (int)patch - 1;
#else
  out->length = (int)patch;
#endif
  return 0;
#endif
}
#endif

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  struct test_driver *d = instance;
  if (!d) return;
  unsigned long n = atomic_fetch_add(&d->events, 1) + 1;
  char line[96];
  snprintf(line, sizeof line, "test_driver %s: event #%lu", VERSION_TAG, n);
  d->host->trigger_event("TestDriverEvent", event_json ? event_json : "");
  d->host->log(line, "warning");
}

void CoProcessDriverReload(void *instance) {
  struct test_driver *d = instance;
  if (!d) return;
  unsigned n = atomic_fetch_add(&d->reloads, 1) + 1;
  char count[16];
  snprintf(count, sizeof count, "%u", n);
  d->host->store_data("test_driver:reload:" VERSION_TAG, count, 0);
}

#ifdef WITH_OPTIONAL
int CoProcessDriverLoadBundle(void *instance, const char *bundle_path) {
  struct test_driver *d = instance;
  if (!d || !bundle_path) return 1;
  d->host->store_data("test_driver:bundle", bundle_path, 0);
  return 0;
}

void CoProcessDriverShutdown(void *instance) {
  struct test_driver *d = instance;
  if (!d) return;
  d->host->store_data("test_driver:shutdown", "1", 0);
  free(d);
}
#endif

/*
 * c_host.c: the coprocess-bridge demo. A tiny "gateway" written in C that
 *   1. starts the bridge and installs log and event handlers,
 *   2. loads a driver (examples/c_driver) under the name "native",
 *   3. dispatches a Pre hook and finds the header the driver added,
 *   4. sends an event and watches it come back through the event handler,
 *   5. uses the store and hot reload,
 *   6. shows how an error is reported,
 *   7. frees everything and shuts the bridge down.
 * It exits with 0 only if every check passed.
 *
 * Usage: c_host DRIVER.so [CONFIG_JSON [HEADER_NAME HEADER_VALUE]]
 *   CONFIG_JSON                is handed to the driver ("{}" by default);
 *   HEADER_NAME HEADER_VALUE   is the header the driver is expected to add
 *                              (default "X-Coprocess-Driver: c", c_driver's default).
 *
 * Build (or just `make demo`):
 *   cargo build --release
 *   cc -O2 -Wall -Wextra -Werror -std=c11 -I . -I include examples/c_host/c_host.c -o c_host \
 *      -L target/release -lcoprocess_bridge -Wl,-rpath,$PWD/target/release
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h" /* -I . in the repository; pkg-config --cflags coprocess-bridge when installed */

/* ------------------------------------------------------------------------------------------- */
/* Checks: every step prints "[ok]" or "[FAILED]" and the exit code sums them up. */

static int checks_passed, checks_failed;

static int check(int ok, const char *what) {
  printf("   %s %s\n", ok ? "[ok]    " : "[FAILED]", what);
  if (ok)
    checks_passed++;
  else
    checks_failed++;
  return ok;
}

static void section(const char *title) { printf("\n%s\n", title); }

/* ------------------------------------------------------------------------------------------- */
/* Handlers. The bridge may call them from any thread, so the event handler keeps what it saw
 * under a mutex; the main thread reads it after DispatchEvent. */

static void on_log(const char *message, const char *level, void *user_data) {
  (void)user_data;
  printf("   | log %-7s %s\n", level, message);
}

struct seen_event {
  pthread_mutex_t lock;
  int count;
  char name[64];
  char payload[512];
};

static void on_event(const char *event_name, const char *payload, void *user_data) {
  struct seen_event *seen = user_data;
  pthread_mutex_lock(&seen->lock);
  seen->count++;
  snprintf(seen->name, sizeof seen->name, "%s", event_name);
  snprintf(seen->payload, sizeof seen->payload, "%s", payload);
  pthread_mutex_unlock(&seen->lock);
}

/* ------------------------------------------------------------------------------------------- */
/* The Object we send: a serialized coprocess.Object, written out by hand so you can see the wire
 * format. Each field is a tag byte ((field_number << 3) | wire_type) and, for strings and
 * messages (wire type 2), a length byte before the content. Adjacent string literals are
 * concatenated by the compiler; they are split after each "\x.." escape because a hex escape would
 * otherwise swallow the letters that follow it. */
static const char demo_object[] =
    "\x08\x01"                         /* 1 hook_type = 1 (Pre)                        */
    "\x12\x09" "MyPreHook"             /* 2 hook_name = "MyPreHook"                    */
    "\x1a\x2d"                         /* 3 request {                      (45 bytes) */
      "\x0a\x13"                       /*   1 headers entry {              (19 bytes) */
        "\x0a\x04" "Host"              /*     key   = "Host"                           */
        "\x12\x0b" "example.com"       /*     value = "example.com" }                  */
      "\x52\x0b"                       /*  10 return_overrides {           (11 bytes) */
        "\x08\xff\xff\xff\xff\xff"     /*     1 response_code = -1 ("no override"):    */
        "\xff\xff\xff\xff\x01"         /*       negative int32s take 10 bytes }        */
      "\x5a\x03" "GET"                 /*  11 method = "GET"                           */
      "\x2a\x04" "/get"                /*   5 url = "/get" }                           */
    "\x32\x0f"                         /* 6 spec entry {                   (15 bytes) */
      "\x0a\x05" "APIID"               /*   key   = "APIID"                            */
      "\x12\x06" "my-api"              /*   value = "my-api" }                         */
    "\x32\x0f"                         /* 6 spec entry {                   (15 bytes) */
      "\x0a\x05" "OrgID"               /*   key   = "OrgID"                            */
      "\x12\x06" "my-org";             /*   value = "my-org" }                         */
#define DEMO_OBJECT_LEN ((int)sizeof demo_object - 1) /* without the literal's closing NUL */

/* ------------------------------------------------------------------------------------------- */
/* Reading the answer: a minimal protobuf reader, just enough to list request.set_headers. The
 * driver may send `request` more than once (protobuf merges repeated messages), so we visit every
 * occurrence; for a repeated key the last value wins, as in any protobuf parser. */

struct span {
  const unsigned char *p, *end;
};

static int read_varint(struct span *s, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && s->p < s->end; shift += 7) {
    unsigned char b = *s->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* Reads one field: its number, and for wire type 2 its content in *body. Other wire types are
 * skipped. Returns 0, or -1 on malformed input. */
static int next_field(struct span *s, uint64_t *field, int *wire, struct span *body) {
  uint64_t tag, n;
  if (read_varint(s, &tag) != 0) return -1;
  *field = tag >> 3;
  *wire = (int)(tag & 7);
  switch (*wire) {
    case 0: return read_varint(s, &n);
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
      if (read_varint(s, &n) != 0) return -1;
      break;
    default: return -1; /* groups never appear in coprocess messages */
  }
  if (n > (uint64_t)(s->end - s->p)) return -1;
  body->p = s->p;
  body->end = s->p + n;
  s->p += n;
  return 0;
}

static int span_equals(struct span s, const char *text) {
  size_t n = strlen(text);
  return (size_t)(s.end - s.p) == n && memcmp(s.p, text, n) == 0;
}

/* Prints every request.set_headers entry of `object` and returns 1 when the last value set for
 * `name` equals `value`. Returns -1 when the bytes do not parse. */
static int show_set_headers(const void *object, int length, const char *name, const char *value) {
  struct span top = {object, (const unsigned char *)object + length}, request, entry, kv, key, val;
  uint64_t field;
  int wire, found = 0, any = 0;
  while (top.p < top.end) {
    if (next_field(&top, &field, &wire, &request) != 0) return -1;
    if (field != 3 || wire != 2) continue; /* 3 = Object.request */
    while (request.p < request.end) {
      if (next_field(&request, &field, &wire, &entry) != 0) return -1;
      if (field != 2 || wire != 2) continue; /* 2 = MiniRequestObject.set_headers */
      key.p = key.end = val.p = val.end = NULL;
      while (entry.p < entry.end) {
        if (next_field(&entry, &field, &wire, &kv) != 0) return -1;
        if (wire == 2 && field == 1) key = kv;
        if (wire == 2 && field == 2) val = kv;
      }
      printf("           request.set_headers[\"%.*s\"] = \"%.*s\"\n", (int)(key.end - key.p),
             (const char *)key.p, (int)(val.end - val.p), (const char *)val.p);
      any = 1;
      if (span_equals(key, name)) found = span_equals(val, value);
    }
  }
  if (!any) printf("           (no request.set_headers in the answer)\n");
  return found;
}

/* ------------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc < 2 || argc == 4 || argc > 5) {
    fprintf(stderr, "usage: %s DRIVER.so [CONFIG_JSON [HEADER_NAME HEADER_VALUE]]\n", argv[0]);
    return 2;
  }
  const char *driver_path = argv[1];
  const char *config = argc > 2 ? argv[2] : "{}";
  const char *want_name = argc > 4 ? argv[3] : "X-Coprocess-Driver";
  const char *want_value = argc > 4 ? argv[4] : "c";
  struct seen_event seen = {.count = 0};
  pthread_mutex_init(&seen.lock, NULL);
  char line[768];

  printf("coprocess-bridge demo: a C host and a C driver\n");
  printf("==============================================\n");

  section("1. Start the bridge");
  check(CoProcessInit(NULL) == 0, "CoProcessInit(NULL) returned 0");
  CoProcessSetLogHandler(on_log, NULL);
  CoProcessSetEventHandler(on_event, &seen);
  printf("   log and event handlers installed: lines starting with '|' come from the log handler\n");

  section("2. Load the driver");
  printf("   CoProcessLoadDriver(\"native\", \"%s\", %s)\n", driver_path, config);
  int loaded = CoProcessLoadDriver("native", driver_path, config) == 0;
  if (!loaded) printf("   error: %s\n", CoProcessLastError());
  check(loaded, "driver loaded as \"native\"");

  section("3. Dispatch a Pre hook");
  printf("   in:  coprocess.Object, %d bytes: hook_type=Pre, hook_name=\"MyPreHook\",\n",
         DEMO_OBJECT_LEN);
  printf("        GET /get (Host: example.com), spec APIID=my-api OrgID=my-org\n");
  struct CoProcessMessage in = {(void *)demo_object, DEMO_OBJECT_LEN};
  struct CoProcessMessage out = {NULL, 0};
  int rc = Dispatch(&in, &out);
  if (rc != 0) printf("   error: %s\n", CoProcessLastError());
  snprintf(line, sizeof line, "Dispatch returned %d", rc);
  check(rc == 0, line);
  if (rc == 0) {
    printf("   out: coprocess.Object, %d bytes (%+d)\n", out.length, out.length - DEMO_OBJECT_LEN);
    int found = show_set_headers(out.p_data, out.length, want_name, want_value);
    if (found < 0) printf("   the answer does not parse as protobuf\n");
    snprintf(line, sizeof line, "the driver set the header \"%s: %s\"", want_name, want_value);
    check(found == 1, line);
  }
  CoProcessMessageFree(&out); /* frees out.p_data and sets it to NULL, length 0 */
  check(out.p_data == NULL && out.length == 0, "CoProcessMessageFree(&out) reset the message");

  section("4. Events");
  const char *event_json = "{\"message\": {\"greeting\": \"hello\"}, \"handler_name\": \"demo\", "
                           "\"spec\": {\"APIID\": \"my-api\", \"OrgID\": \"my-org\"}}";
  printf("   DispatchEvent(%s)\n", event_json);
  DispatchEvent(event_json);
  /* Handlers run on the thread that raised the event; wait briefly in case a driver raises it
   * from a thread of its own. */
  int count = 0;
  for (int waited_ms = 0; waited_ms <= 1000; waited_ms += 10) {
    pthread_mutex_lock(&seen.lock);
    count = seen.count;
    pthread_mutex_unlock(&seen.lock);
    if (count > 0) break;
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    nanosleep(&ten_ms, NULL);
  }
  pthread_mutex_lock(&seen.lock);
  if (count > 0) printf("   event handler got: %s  payload=%s\n", seen.name, seen.payload);
  int event_ok = count > 0 && strcmp(seen.name, "CDriverEvent") == 0 &&
                 strcmp(seen.payload, event_json) == 0;
  pthread_mutex_unlock(&seen.lock);
  check(event_ok, "the driver re-raised the event as \"CDriverEvent\" with the same payload");

  section("5. The store and hot reload");
  /* Tyk's own signatures take char*, not const char*: hand them writable arrays. */
  char greeting_key[] = "demo:greeting", greeting[] = "hello from the host";
  char reloads_key[] = "c_driver:reloads";
  TykStoreData(greeting_key, greeting, 60);
  char *stored = TykGetData(greeting_key);
  printf("   TykStoreData(\"%s\", \"%s\", 60), then TykGetData -> \"%s\"\n", greeting_key, greeting,
         stored ? stored : "(NULL)");
  check(stored && strcmp(stored, greeting) == 0, "the store gave the value back");
  CoProcessFree(stored);

  printf("   Reload()\n");
  Reload();
  char *reloads = TykGetData(reloads_key);
  printf("   TykGetData(\"%s\") -> \"%s\"\n", reloads_key, reloads ? reloads : "(NULL)");
  check(reloads && strcmp(reloads, "1") == 0, "the driver counted one reload in the store");
  CoProcessFree(reloads);

  section("6. An error, handled");
  struct CoProcessMessage err_out = {NULL, 0};
  rc = Dispatch(NULL, &err_out);
  const char *message = CoProcessLastError();
  printf("   Dispatch(NULL, &out) returned %d\n", rc);
  printf("   CoProcessLastError() = \"%s\"\n", message ? message : "(NULL)");
  check(rc != 0 && message && message[0] != '\0', "a NULL input is refused with a message");
  check(err_out.p_data == NULL, "and nothing was allocated for the failed call");
  CoProcessMessageFree(&err_out);

  section("7. Clean up");
  CoProcessShutdown();
  printf("   CoProcessShutdown(): drivers shut down and unloaded\n");
  pthread_mutex_destroy(&seen.lock);

  printf("\n%s: %d of %d checks passed\n", checks_failed ? "FAILED" : "All good", checks_passed,
         checks_passed + checks_failed);
  return checks_failed ? 1 : 0;
}

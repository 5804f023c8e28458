// shim.c: the C side of the Go package (see shim.h).
#define _POSIX_C_SOURCE 200809L

#include "shim.h"

#include <pthread.h>
#include <string.h>

#include "_cgo_export.h"

static cpgo_status status_of(int code) {
  cpgo_status s = {code, NULL};
  if (code != 0) s.message = strdup(CoProcessLastError());
  return s;
}

/* For the void calls: a message appearing in CoProcessLastError (cleared before the call) is the
 * call's failure. */
static cpgo_status status_after_clear(int code_if_failed) {
  const char *message = CoProcessLastError();
  cpgo_status s = {0, NULL};
  if (message[0] != '\0') {
    s.code = code_if_failed;
    s.message = strdup(message);
  }
  return s;
}

cpgo_status cpgo_init(const char *config_json) { return status_of(CoProcessInit(config_json)); }

cpgo_status cpgo_load_driver(const char *name, const char *path, const char *config_json) {
  return status_of(CoProcessLoadDriver(name, path, config_json));
}

cpgo_status cpgo_load_api(const char *definition_json) {
  return status_of(CoProcessLoadApi(definition_json));
}

cpgo_status cpgo_unload_api(const char *api_id) { return status_of(CoProcessUnloadApi(api_id)); }

cpgo_status cpgo_load_bundle(const char *driver, const char *path) {
  return status_of(CoProcessLoadBundle(driver, path));
}

cpgo_dispatch_result cpgo_dispatch(const char *driver, int driver_len, const void *data, int length,
                                   void *buf, int cap) {
  cpgo_dispatch_result r = {{0, NULL}, 0, {NULL, 0}};
  /* The name arrives as Go string bytes (no NUL): copied here, so Go needs no C.CString + free
   * (two more cgo crossings) per call. Go has refused names with a NUL byte. */
  char short_name[128];
  char *name = NULL;
  if (driver != NULL) {
    name = (size_t)driver_len < sizeof short_name ? short_name : malloc((size_t)driver_len + 1);
    if (name == NULL) {
      r.status.code = COPROCESS_ERR_UNKNOWN_DRIVER;
      r.status.message = strdup("out of memory copying the driver name");
      return r;
    }
    memcpy(name, driver, (size_t)driver_len);
    name[driver_len] = '\0';
  }
  CoProcessMessage in = {(void *)data, length};
  CoProcessMessage out = {NULL, 0};
  int rc = name ? DispatchWithDriver(name, &in, &out) : Dispatch(&in, &out);
  if (name != NULL && name != short_name) free(name);
  r.status = status_of(rc);
  if (rc != 0) return r;
  r.answer_len = out.length;
  if (out.length <= cap) {
    /* The common case: the answer lands in Go's buffer and is freed here (no second crossing). */
    if (out.length > 0) memcpy(buf, out.p_data, (size_t)out.length);
    CoProcessMessageFree(&out);
  } else {
    r.spill = out;
  }
  return r;
}

cpgo_status cpgo_dispatch_event(const char *event_json) {
  CoProcessClearLastError();
  DispatchEvent(event_json);
  return status_after_clear(COPROCESS_ERR_INVALID_JSON);
}

cpgo_status cpgo_store_data(char *key, char *value, int ttl) {
  CoProcessClearLastError();
  TykStoreData(key, value, ttl);
  return status_after_clear(COPROCESS_ERR_STORE);
}

cpgo_status cpgo_get_data(char *key, char **value) {
  CoProcessClearLastError();
  *value = TykGetData(key);
  if (*value == NULL) {
    cpgo_status s = {COPROCESS_ERR_NULL_ARGUMENT, strdup("TykGetData returned NULL")};
    return s;
  }
  cpgo_status s = status_after_clear(COPROCESS_ERR_STORE);
  if (s.code != 0) {
    CoProcessFree(*value);
    *value = NULL;
  }
  return s;
}

/* The bridge's handler types take const strings; Go's exported functions take plain char*. */
static void event_trampoline(const char *name, const char *payload, void *user_data) {
  coprocessGoEvent((char *)name, (char *)payload, (uintptr_t)user_data);
}

static void log_trampoline(const char *message, const char *level, void *user_data) {
  coprocessGoLog((char *)message, (char *)level, (uintptr_t)user_data);
}

void cpgo_set_event_handler(uintptr_t handle) {
  CoProcessSetEventHandler(event_trampoline, (void *)handle);
}

void cpgo_set_log_handler(uintptr_t handle) {
  CoProcessSetLogHandler(log_trampoline, (void *)handle);
}

void cpgo_clear_event_handler(void) { CoProcessSetEventHandler(NULL, NULL); }

void cpgo_clear_log_handler(void) { CoProcessSetLogHandler(NULL, NULL); }

struct trigger_args {
  char *name, *payload;
};

static void *trigger(void *arg) {
  struct trigger_args *a = arg;
  TykTriggerEvent(a->name, a->payload);
  return NULL;
}

int cpgo_trigger_event_from_new_thread(char *name, char *payload) {
  struct trigger_args args = {name, payload};
  pthread_t thread;
  if (pthread_create(&thread, NULL, trigger, &args) != 0) return -1;
  return pthread_join(thread, NULL);
}

int cpgo_dispatch_loop(const char *driver, const void *data, int length, long iterations) {
  CoProcessMessage in = {(void *)data, length};
  for (long i = 0; i < iterations; i++) {
    CoProcessMessage out = {NULL, 0};
    int rc = DispatchWithDriver(driver, &in, &out);
    if (rc != 0) return rc;
    CoProcessMessageFree(&out);
  }
  return 0;
}

/* shim.h: C helpers of the Go package. Each wrapper makes one bridge call and, when it fails, copies
 * CoProcessLastError() (a per-thread message) before returning: between two cgo calls a goroutine
 * may move to another OS thread, so Go must never read the message in a separate call. */
#ifndef COPROCESS_GO_SHIM_H
#define COPROCESS_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>

#include "api.h"

/* A failure: the status code and a malloc'd copy of the message (NULL on success). */
typedef struct {
  int code;
  char *message;
} cpgo_status;

cpgo_status cpgo_init(const char *config_json);
cpgo_status cpgo_load_driver(const char *name, const char *path, const char *config_json);
cpgo_status cpgo_load_api(const char *definition_json);
cpgo_status cpgo_unload_api(const char *api_id);
cpgo_status cpgo_load_bundle(const char *driver, const char *path);
/* What cpgo_dispatch returns (by value: locals whose address Go passes to C escape to its heap). */
typedef struct {
  cpgo_status status;
  int answer_len;         /* the answer's length, also when it is in spill */
  CoProcessMessage spill; /* an answer longer than cap, for the caller to copy and free */
} cpgo_dispatch_result;

/* driver NULL: Dispatch; otherwise DispatchWithDriver on the driver_len bytes at driver (no NUL
 * needed). An answer of at most cap bytes is copied into buf and freed. */
cpgo_dispatch_result cpgo_dispatch(const char *driver, int driver_len, const void *data, int length,
                                   void *buf, int cap);
/* Calls that report failure only through CoProcessLastError: cleared first, checked after. */
cpgo_status cpgo_dispatch_event(const char *event_json);
cpgo_status cpgo_store_data(char *key, char *value, int ttl);
cpgo_status cpgo_get_data(char *key, char **value);

/* Handlers: `handle` is a cgo.Handle passed through user_data. */
void cpgo_set_event_handler(uintptr_t handle);
void cpgo_set_log_handler(uintptr_t handle);
void cpgo_clear_event_handler(void);
void cpgo_clear_log_handler(void);

/* For the package's tests and benchmarks. */
int cpgo_trigger_event_from_new_thread(char *name, char *payload);
int cpgo_dispatch_loop(const char *driver, const void *data, int length, long iterations);

#endif

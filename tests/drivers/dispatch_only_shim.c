/*
 * dispatch_only_shim.c: a driver that forwards every call to another driver library, named at compile
 * time (-DINNER_DRIVER='"/path/to/driver.so"'), and exports every symbol of the driver ABI but
 * CoProcessDriverDispatchPatch. Loaded beside the inner library itself, it runs the same driver code
 * through the entry point a driver without CoProcessDriverDispatchPatch has, so tests/patch_entry.rs
 * can compare the answers of the two paths byte for byte.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

#include "coprocess_driver.h"

#ifndef INNER_DRIVER
#error "define INNER_DRIVER as the path of the driver library to forward to"
#endif

typedef uint32_t (*abi_version_fn)(void);
typedef int (*init_fn)(const struct CoProcessHostApi *, const char *, void **);
typedef int (*dispatch_fn)(void *, const struct CoProcessMessage *, struct CoProcessMessage *);
typedef void (*event_fn)(void *, const char *);
typedef void (*instance_fn)(void *);
typedef int (*bundle_fn)(void *, const char *);

static struct {
  abi_version_fn abi_version;
  init_fn init;
  dispatch_fn dispatch;
  event_fn dispatch_event;
  instance_fn reload;
  bundle_fn load_bundle;
  instance_fn shutdown;
} inner;

/* Resolves the inner driver's symbols once; the bridge calls CoProcessDriverAbiVersion first, on one
 * thread, before anything else. Returns 0 when every required one is there. */
static int open_inner(void) {
  if (inner.dispatch) return 0;
  void *lib = dlopen(INNER_DRIVER, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return 1;
  /* POSIX: a dlsym result converts to a function pointer. */
  inner.abi_version = (abi_version_fn)dlsym(lib, "CoProcessDriverAbiVersion");
  inner.init = (init_fn)dlsym(lib, "CoProcessDriverInit");
  inner.dispatch_event = (event_fn)dlsym(lib, "CoProcessDriverDispatchEvent");
  inner.reload = (instance_fn)dlsym(lib, "CoProcessDriverReload");
  inner.load_bundle = (bundle_fn)dlsym(lib, "CoProcessDriverLoadBundle");
  inner.shutdown = (instance_fn)dlsym(lib, "CoProcessDriverShutdown");
  inner.dispatch = (dispatch_fn)dlsym(lib, "CoProcessDriverDispatch");
  return inner.abi_version && inner.init && inner.dispatch_event && inner.reload && inner.dispatch ? 0 : 1;
}

uint32_t CoProcessDriverAbiVersion(void) { return open_inner() == 0 ? inner.abi_version() : 0; }

int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  return open_inner() == 0 ? inner.init(host, config_json, instance) : 1;
}

int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  return inner.dispatch(instance, in, out);
}

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  inner.dispatch_event(instance, event_json);
}

void CoProcessDriverReload(void *instance) { inner.reload(instance); }

int CoProcessDriverLoadBundle(void *instance, const char *bundle_path) {
  return inner.load_bundle ? inner.load_bundle(instance, bundle_path) : 1;
}

void CoProcessDriverShutdown(void *instance) {
  if (inner.shutdown) inner.shutdown(instance);
}

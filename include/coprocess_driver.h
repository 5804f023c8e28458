/*
 * coprocess_driver.h — the driver ABI of coprocess-bridge.
 *
 * A driver is a shared library that the bridge loads at run time (CoProcessLoadDriver) and calls for
 * every hook. This header is the single source of truth for that contract: the bridge's Rust bindings
 * are generated from it with bindgen, and C drivers include it directly. It depends on nothing but
 * <stdint.h>.
 *
 * Direction and ownership at a glance:
 *   - Functions named CoProcessDriver* are implemented BY THE DRIVER and called by the bridge.
 *   - struct CoProcessHostApi holds callbacks implemented BY THE BRIDGE and called by the driver.
 *   - Bytes handed to a driver are borrowed for the duration of the call only, and read-only: a driver
 *     must not write through in->p_data (it may be the host's own buffer).
 *   - Bytes a driver hands back (out->p_data) are allocated with malloc(); the bridge takes them over
 *     and releases them with free(), or passes the same buffer on to the host. Handing back the input
 *     (`*out = *in`) is refused: a pass-through driver returns a malloc'd copy.
 *
 * Threads: the bridge calls CoProcessDriverDispatch (or CoProcessDriverDispatchPatch) and
 * CoProcessDriverDispatchEvent concurrently from any number of host threads, for the same instance. A
 * driver must be thread-safe (or serialise internally). CoProcessDriverInit and CoProcessDriverShutdown are never concurrent with any other call
 * on the same instance. CoProcessDriverReload may run while dispatches are in flight.
 *
 * Loading: the bridge opens the library with dlopen(RTLD_NOW | RTLD_LOCAL): every symbol the library
 * uses must resolve when it is loaded (a library calling a function nothing defines is refused, with
 * the linker's message naming the symbol), and its symbols are not visible to other libraries. It then
 * calls CoProcessDriverAbiVersion and refuses a library whose version it does not know, then resolves
 * every required symbol below; a missing one is an error naming the file and the symbol. The same file
 * may be loaded under several names: each load gets its own instance.
 *
 * Unloading: after CoProcessDriverShutdown of its last instance returns (at CoProcessShutdown, or once
 * a reload replaced the library and its last call returned) the bridge may dlclose the library. By then
 * a driver must have stopped every thread it started and must leave no callback into its code behind
 * (atexit handlers, pthread key destructors). Thread-local destructors registered the usual way (C++
 * thread_local, Rust thread_local!) are safe: glibc keeps the library mapped until they have run. A
 * driver that cannot be unloaded (an embedded interpreter) keeps itself loaded (RTLD_NODELETE).
 */
#ifndef COPROCESS_DRIVER_H
#define COPROCESS_DRIVER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The version of this ABI. A driver returns it from CoProcessDriverAbiVersion(). */
#define COPROCESS_DRIVER_ABI_VERSION 1

#ifndef COPROCESS_MESSAGE_DEFINED
#define COPROCESS_MESSAGE_DEFINED
/**
 * A serialized coprocess.Object (Tyk's protobuf wire format): `length` bytes at `p_data`.
 * Identical to the struct of the same name in Tyk's api.h and in the bridge's api.h.
 */
struct CoProcessMessage {
  void *p_data;
  int length;
};
#endif

/**
 * Services the bridge offers to a driver, handed over in CoProcessDriverInit. Every pointer in this
 * struct stays valid until CoProcessDriverShutdown returns, and every callback may be called from any
 * thread at any time in between. Strings passed to callbacks are borrowed: the bridge copies what it keeps.
 */
struct CoProcessHostApi {
  /** The bridge's COPROCESS_DRIVER_ABI_VERSION. */
  uint32_t abi_version;
  /** Raise a Tyk event; it reaches the host's event handler (or the bridge's event queue). */
  void (*trigger_event)(const char *event_name, const char *payload);
  /** Store a value under a key; ttl in seconds, 0 = no expiry. */
  void (*store_data)(const char *key, const char *value, int ttl);
  /** Read a value: a malloc'd, NUL-terminated copy ("" when absent), released with free_data. Never NULL
   *  unless the key itself is NULL or memory is exhausted. */
  char *(*get_data)(const char *key);
  /** Log a message; level is "debug", "info", "warning" or "error". */
  void (*log)(const char *message, const char *level);
  /** Free memory the bridge handed to the driver (get_data results). */
  void (*free_data)(void *p);
};

/**
 * Required. Returns COPROCESS_DRIVER_ABI_VERSION as the driver was compiled. Called first, before any
 * other symbol is used.
 */
uint32_t CoProcessDriverAbiVersion(void);

/**
 * Required. Creates one driver instance.
 *   host:        services of the bridge; valid until CoProcessDriverShutdown for this instance returns.
 *   config_json: the JSON text given to CoProcessLoadDriver ("{}" when none); borrowed for the call.
 *   instance:    out; an opaque pointer the bridge passes back on every later call (may be NULL).
 * Returns 0 on success. On failure, returns non-zero and the instance is not used again.
 */
int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance);

/**
 * Required. Runs a hook.
 *   in:  a well-formed serialized coprocess.Object; borrowed, read-only, valid only during the call
 *        (p_data is NULL when length is 0).
 *   out: zeroed by the bridge. On success the driver sets p_data to a malloc'd serialized
 *        coprocess.Object and length to its size (p_data NULL with length 0 means an empty Object).
 *        out->p_data must be a fresh malloc'd buffer: output pointing into in->p_data (`*out = *in`) is
 *        refused with COPROCESS_ERR_DRIVER_BAD_OUTPUT and never freed by the bridge.
 * Returns 0 on success. On failure returns non-zero and MAY put a malloc'd UTF-8 message (not
 * necessarily NUL-terminated) in out->p_data / out->length saying why; the bridge copies it into
 * CoProcessLastError, prefixed with the driver's name, and frees it.
 * The bridge checks that what a successful call returned is a well-formed Object.
 */
int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out);

/**
 * Returned by CoProcessDriverDispatchPatch when out holds a whole Object rather than a patch.
 */
#define COPROCESS_DRIVER_WHOLE_OBJECT 0x4F424A /* "OBJ" */

/**
 * Optional. Runs a hook, as CoProcessDriverDispatch does, but answers with only what changes: when a
 * driver exports it, the bridge calls it instead of CoProcessDriverDispatch for every hook.
 *   in:  as for CoProcessDriverDispatch.
 *   out: zeroed by the bridge. On success (returning 0) the driver sets p_data to a malloc'd buffer of
 *        serialized coprocess.Object fields that, appended to in, form its answer (protobuf merges
 *        them: the last value of a scalar wins, map entries are set per key, repeated fields and
 *        messages merge). p_data NULL with length 0 is an empty patch: the answer is in, unchanged.
 *        out->p_data must not point into in->p_data.
 * Returns 0 with a patch; COPROCESS_DRIVER_WHOLE_OBJECT when out holds a whole serialized Object
 * instead, exactly as CoProcessDriverDispatch would return it (for answers a patch cannot state: a
 * removed map entry, a cleared field); any other value is a failure, with an optional message in out
 * as for CoProcessDriverDispatch.
 * The bridge checks a patch as strictly as a whole answer: its fields must be well-formed Object
 * fields (and the merged Object no larger than an int can count), or the call fails with
 * COPROCESS_ERR_DRIVER_BAD_OUTPUT. To the host nothing changes: it gets the whole merged Object.
 * Why: the bridge appends the patch to the input itself, where it needs the whole Object, and in a hook
 * chain reads the changes straight from the patch; the driver no longer copies the Object into its
 * answer, nor the bridge compares that copy with the input (about 10% of a chained hook's instructions).
 * ABI version 1 is unchanged by it: a driver without it is called as before, and the loader resolves
 * it when present, as it does CoProcessDriverLoadBundle.
 */
int CoProcessDriverDispatchPatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out);

/**
 * Required. Delivers a Tyk event, as JSON:
 *   {"message": {...}, "handler_name": "...", "spec": {"APIID": "...", "OrgID": "..."}}
 * event_json is borrowed for the call.
 */
void CoProcessDriverDispatchEvent(void *instance, const char *event_json);

/**
 * Required. Hot reload: re-read scripts, bundles or configuration. May run while dispatches are in flight.
 * A call to the host's Reload() from here is ignored (logged), not a deadlock.
 */
void CoProcessDriverReload(void *instance);

/**
 * Optional. Loads a plugin bundle (a directory) at run time. bundle_path is borrowed for the call.
 * Returns 0 on success.
 */
int CoProcessDriverLoadBundle(void *instance, const char *bundle_path);

/** Optional. Releases the instance. Nothing is called on the instance afterwards. */
void CoProcessDriverShutdown(void *instance);

#ifdef __cplusplus
}
#endif

#endif /* COPROCESS_DRIVER_H */

/*
 * hostile_driver.c: drivers that break the driver ABI the ways real ones have, for the failure-mode
 * tests (tests/safety.rs, tests/hosts/safety_host.c). Exactly one mode is picked with -D:
 *
 *   -DUNRESOLVED         Dispatch calls a function no loaded object defines. Opened lazily, such a
 *                        library loads and the dynamic linker kills the process on the first call; the
 *                        bridge must refuse it at load time.
 *   -DRETURN_INPUT       Dispatch hands back the host's own buffer (`*out = *in`) and returns 0.
 *   -DRETURN_INPUT_FAIL  The same, returning 1 (the failure path also frees what out holds).
 *   -DRETURN_INPUT_TAIL  out->p_data points into the middle of the input.
 *   -DREENTRANT_RELOAD   The reload hook calls the host's Reload() (api.h) again and counts its calls
 *                        in the store under "hostile:reloads". Needs the bridge in the global scope
 *                        (a C host linked with -lcoprocess_bridge).
 * Every mode otherwise answers Dispatch with a malloc'd copy of its input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coprocess_driver.h"

#if defined(UNRESOLVED)
/* Declared, defined nowhere. */
extern int coprocess_test_function_defined_nowhere(int);
#endif
#if defined(REENTRANT_RELOAD)
void Reload(void); /* the bridge's export (api.h) */
#endif

static const struct CoProcessHostApi *host_api;

uint32_t CoProcessDriverAbiVersion(void) { return COPROCESS_DRIVER_ABI_VERSION; }

int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  (void)config_json;
  host_api = host;
  *instance = NULL;
  return 0;
}

int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  (void)instance;
#if defined(UNRESOLVED)
  if (coprocess_test_function_defined_nowhere(in->length) < 0) return 1;
#endif
#if defined(RETURN_INPUT) || defined(RETURN_INPUT_FAIL)
  *out = *in;
#if defined(RETURN_INPUT_FAIL)
  return 1;
#else
  return 0;
#endif
#elif defined(RETURN_INPUT_TAIL)
  out->p_data = (char *)in->p_data + (in->length > 1 ? 1 : 0);
  out->length = in->length > 1 ? in->length - 1 : in->length;
  return 0;
#else
  if (in->length == 0) return 0;
  out->p_data = malloc((size_t)in->length);
  if (!out->p_data) return 2;
  memcpy(out->p_data, in->p_data, (size_t)in->length);
  out->length = in->length;
  return 0;
#endif
}

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  (void)instance;
  (void)event_json;
}

void CoProcessDriverReload(void *instance) {
  (void)instance;
#if defined(REENTRANT_RELOAD)
  static int reloads;
  char count[16];
  snprintf(count, sizeof count, "%d", ++reloads);
  host_api->store_data("hostile:reloads", count, 0);
  Reload();
#endif
}

/* The cheapest possible driver: hands back a malloc'd copy of its input. It measures what the bridge
 * adds around a driver call, in benches/dispatch.rs. */
#include <stdlib.h>
#include <string.h>

#include "coprocess_driver.h"

uint32_t CoProcessDriverAbiVersion(void) { return COPROCESS_DRIVER_ABI_VERSION; }

int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  (void)host;
  (void)config_json;
  *instance = NULL;
  return 0;
}

int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  (void)instance;
  size_t n = in->length > 0 ? (size_t)in->length : 0;
  void *copy = malloc(n ? n : 1);
  if (copy == NULL) return 1;
  if (n) memcpy(copy, in->p_data, n);
  out->p_data = copy;
  out->length = (int)n;
  return 0;
}

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  (void)instance;
  (void)event_json;
}

void CoProcessDriverReload(void *instance) { (void)instance; }

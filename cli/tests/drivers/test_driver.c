/*
 * test_driver.c: small drivers for the `coprocess` CLI tests, one source, chosen by defines.
 *
 *   (none)            pass-through: hands every Object back byte for byte; re-raises each event as
 *                     "TestEvent" (payload: the event JSON).
 *   FAIL              Dispatch fails with the message "test driver refuses on purpose".
 *   GARBAGE           Dispatch answers bytes that are not an Object.
 *   ABI_VERSION=N     reports ABI version N.
 *   NOT_A_DRIVER      exports none of the driver symbols.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coprocess_driver.h"

#ifdef NOT_A_DRIVER

int coprocess_cli_test_not_a_driver = 1;

#else

#ifndef ABI_VERSION
#define ABI_VERSION COPROCESS_DRIVER_ABI_VERSION
#endif

static const struct CoProcessHostApi *g_host;

uint32_t CoProcessDriverAbiVersion(void) { return ABI_VERSION; }

int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  (void)config_json;
  g_host = host;
  *instance = NULL;
  return 0;
}

static int answer(struct CoProcessMessage *out, const void *bytes, size_t len) {
  void *p = malloc(len ? len : 1);
  if (p == NULL) return 1;
  if (len) memcpy(p, bytes, len);
  out->p_data = p;
  out->length = (int)len;
  return 0;
}

int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  (void)instance;
#if defined(FAIL)
  (void)in;
  static const char msg[] = "test driver refuses on purpose";
  answer(out, msg, sizeof msg - 1);
  return 1;
#elif defined(GARBAGE)
  (void)in;
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  return answer(out, junk, sizeof junk);
#else
  return answer(out, in->p_data, (size_t)in->length);
#endif
}

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  (void)instance;
  g_host->trigger_event("TestEvent", event_json);
}

void CoProcessDriverReload(void *instance) { (void)instance; }

#endif

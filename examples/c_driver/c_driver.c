/*
 * c_driver.c: an example coprocess-bridge driver in plain C (C11 + libc, no protobuf library).
 *
 * What it does
 *   Pre hooks     adds one request header through request.set_headers, so the gateway sets it
 *                 before proxying. Default "X-Coprocess-Driver: c".
 *   other hooks   hands the Object back unchanged.
 *   events        re-raises every Tyk event as "CDriverEvent" (payload: the event JSON).
 *   reload        counts reloads and publishes the count in the store as "c_driver:reloads".
 *
 * Config (the JSON text given to CoProcessLoadDriver; both keys optional):
 *   {"header_name": "X-Coprocess-Driver", "header_value": "c"}
 * Every load gets its own instance, so one file loaded twice with two configs adds two different
 * headers.
 *
 * Why no protobuf library is needed
 *   Protobuf parsers MERGE a singular embedded message that occurs twice (the later occurrence is
 *   merged into the earlier one), and map entries merge per key, the last value winning. So
 *       <input bytes> + request { set_headers { key: NAME, value: VALUE } }
 *   is a valid Object meaning "the input, with that header set": we copy the input and append a few
 *   pre-encoded bytes. We still walk the top-level fields properly, to read hook_type and to refuse
 *   bytes we cannot parse.
 *
 * Build (the bridge's Makefile and tests do the same):
 *   cc -shared -fPIC -O2 -Wall -Wextra -Werror -std=c11 -I include \
 *      -o c_driver.so examples/c_driver/c_driver.c
 *
 * Threads: the bridge calls Dispatch and DispatchEvent concurrently. Everything Dispatch reads is
 * immutable after Init; the only mutable state, the reload counter, is a C11 atomic.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coprocess_driver.h"

/* Field numbers and wire types we need (see DESIGN.md section 5). */
enum {
  OBJECT_HOOK_TYPE = 1,          /* Object.hook_type (enum HookType, varint)             */
  OBJECT_REQUEST = 3,            /* Object.request (MiniRequestObject)                   */
  REQUEST_SET_HEADERS = 2,       /* MiniRequestObject.set_headers (map<string,string>)   */
  MAP_KEY = 1,                   /* every map entry: key = 1, value = 2                  */
  MAP_VALUE = 2,
  HOOK_PRE = 1,                  /* HookType.Pre                                         */
};
enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_SGROUP = 3, WIRE_EGROUP = 4, WIRE_I32 = 5 };

/* Upper bounds that keep the arithmetic below trivially safe. */
#define MAX_HEADER_LEN 8192
#define MAX_GROUP_DEPTH 64
#define MAX_JSON_DEPTH 64

struct c_driver {
  const struct CoProcessHostApi *host;
  char *header_name;    /* NUL-terminated, validated at Init */
  char *header_value;
  uint8_t *patch;       /* encoded `request { set_headers { header_name: header_value } }` */
  size_t patch_len;
  atomic_uint reloads;  /* the only state that changes after Init */
};

/* ------------------------------------------------------------------------------------------- */
/* Protobuf wire format: just enough to walk an Object's top-level fields and to encode a patch. */

struct reader {
  const uint8_t *start, *p, *end;
};

/* Reads a base-128 varint (at most 10 bytes). Returns 0, or -1 when truncated or too long. */
static int read_varint(struct reader *r, uint64_t *out) {
  uint64_t value = 0;
  for (unsigned shift = 0; shift < 70; shift += 7) {
    if (r->p == r->end) return -1;
    uint8_t byte = *r->p++;
    if (shift < 64) value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *out = value;
      return 0;
    }
  }
  return -1;
}

/* Reads a tag and splits it. Field number 0 and numbers above 2^29-1 are invalid in protobuf. */
static int read_tag(struct reader *r, uint32_t *field, uint32_t *wire) {
  uint64_t tag;
  if (read_varint(r, &tag) != 0) return -1;
  if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
  *field = (uint32_t)(tag >> 3);
  *wire = (uint32_t)(tag & 7);
  return 0;
}

/* Skips the value of a field whose tag was just read. Returns 0, or -1 on malformed input. */
static int skip_value(struct reader *r, uint32_t field, uint32_t wire, int depth) {
  uint64_t n;
  switch (wire) {
    case WIRE_VARINT:
      return read_varint(r, &n);
    case WIRE_I64:
    case WIRE_I32: {
      size_t size = wire == WIRE_I64 ? 8 : 4;
      if ((size_t)(r->end - r->p) < size) return -1;
      r->p += size;
      return 0;
    }
    case WIRE_LEN:
      if (read_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p)) return -1;
      r->p += n;
      return 0;
    case WIRE_SGROUP: {
      /* Deprecated groups: skip fields until the matching end-group tag. The depth limit keeps
       * hostile input from exhausting the stack. */
      if (depth >= MAX_GROUP_DEPTH) return -1;
      for (;;) {
        uint32_t f, w;
        if (read_tag(r, &f, &w) != 0) return -1;
        if (w == WIRE_EGROUP) return f == field ? 0 : -1;
        if (skip_value(r, f, w, depth + 1) != 0) return -1;
      }
    }
    default: /* a stray end-group, or wire types 6 and 7, which do not exist */
      return -1;
  }
}

/*
 * Walks the top-level fields of an Object and returns its hook_type (0 = Unknown when absent; the
 * last occurrence wins, as in every protobuf parser). Returns 0, or -1 with the offset of the bad
 * field in *bad_offset.
 */
static int read_hook_type(const uint8_t *data, size_t len, int32_t *hook_type, size_t *bad_offset) {
  struct reader r = {data, data, data + len};
  *hook_type = 0;
  while (r.p < r.end) {
    const uint8_t *field_start = r.p;
    uint32_t field, wire;
    int failed = read_tag(&r, &field, &wire) != 0;
    if (!failed && field == OBJECT_HOOK_TYPE) {
      uint64_t v;
      /* A singular enum with any other wire type is a parse error. Enums are int32: negative
       * values arrive sign-extended to 64 bits, so keep the low 32 bits. */
      failed = wire != WIRE_VARINT || read_varint(&r, &v) != 0;
      if (!failed) *hook_type = (int32_t)(uint32_t)v;
    } else if (!failed) {
      failed = skip_value(&r, field, wire, 0) != 0;
    }
    if (failed) {
      *bad_offset = (size_t)(field_start - r.start);
      return -1;
    }
  }
  return 0;
}

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* Writes the tag and length of a length-delimited field; the caller writes `len` bytes after it. */
static uint8_t *put_len_header(uint8_t *p, uint32_t field, size_t len) {
  p = put_varint(p, ((uint64_t)field << 3) | WIRE_LEN);
  return put_varint(p, len);
}

static size_t len_field_size(size_t payload) { return 1 + varint_size(payload) + payload; }

/* Encodes `request { set_headers { key: name, value: value } }` as a top-level Object field. */
static uint8_t *encode_patch(const char *name, const char *value, size_t *out_len) {
  size_t name_len = strlen(name), value_len = strlen(value);
  size_t entry = len_field_size(name_len) + len_field_size(value_len);
  size_t request = len_field_size(entry);
  size_t total = len_field_size(request);
  uint8_t *buf = malloc(total), *p = buf;
  if (!buf) return NULL;
  p = put_len_header(p, OBJECT_REQUEST, request);
  p = put_len_header(p, REQUEST_SET_HEADERS, entry);
  p = put_len_header(p, MAP_KEY, name_len);
  memcpy(p, name, name_len);
  p += name_len;
  p = put_len_header(p, MAP_VALUE, value_len);
  memcpy(p, value, value_len);
  *out_len = total;
  return buf;
}

/* ------------------------------------------------------------------------------------------- */
/* Config: a deliberately tiny JSON reader.
 *
 * It understands one top-level JSON object and takes "header_name" / "header_value" from it when
 * they are strings. Other members are skipped without being interpreted, with these limits:
 *   - numbers and literals (true/false/null) are skipped as runs of [A-Za-z0-9+-.], not validated;
 *   - \uXXXX escapes must be in the Basic Multilingual Plane (no surrogate pairs) and not \u0000;
 *   - nesting deeper than MAX_JSON_DEPTH is refused;
 *   - a duplicated key: the last one wins.
 * Anything it cannot read fails Init with a message rather than guessing. */

static void skip_ws(const char **s) {
  while (**s == ' ' || **s == '\t' || **s == '\n' || **s == '\r') (*s)++;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Finds the end of the JSON string starting at s (the opening quote). Returns a pointer to the
 * closing quote, or NULL when the string is unterminated or holds raw control characters. */
static const char *json_string_end(const char *s) {
  for (s++; *s != '"'; s++) {
    if (*s == '\0' || (unsigned char)*s < 0x20) return NULL;
    if (*s == '\\' && *++s == '\0') return NULL;
  }
  return s;
}

/* Decodes the JSON string body [s, end) into w, which has room for end - s bytes (decoded text is
 * never longer than its escaped form). Returns the end of the output, or NULL on a bad escape. */
static char *json_unescape(const char *s, const char *end, char *w) {
  for (; s < end; s++) {
    if (*s != '\\') {
      *w++ = *s;
      continue;
    }
    switch (*++s) {
      case '"': case '\\': case '/': *w++ = *s; break;
      case 'b': *w++ = '\b'; break;
      case 'f': *w++ = '\f'; break;
      case 'n': *w++ = '\n'; break;
      case 'r': *w++ = '\r'; break;
      case 't': *w++ = '\t'; break;
      case 'u': {
        unsigned cp = 0;
        for (int i = 1; i <= 4; i++) {
          int digit = s + i < end ? hex_digit(s[i]) : -1;
          if (digit < 0) return NULL;
          cp = cp * 16 + (unsigned)digit;
        }
        s += 4;
        if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff)) return NULL; /* see the limits above */
        if (cp < 0x80) {
          *w++ = (char)cp;
        } else if (cp < 0x800) {
          *w++ = (char)(0xc0 | (cp >> 6));
          *w++ = (char)(0x80 | (cp & 0x3f));
        } else {
          *w++ = (char)(0xe0 | (cp >> 12));
          *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
          *w++ = (char)(0x80 | (cp & 0x3f));
        }
        break;
      }
      default:
        return NULL;
    }
  }
  return w;
}

/* Reads the JSON string at *s (the opening quote) and moves *s past it. With out != NULL the text
 * is decoded into a malloc'd, NUL-terminated UTF-8 string. Returns 0, or -1 on malformed input. */
static int json_string(const char **s, char **out) {
  const char *close = json_string_end(*s);
  if (!close) return -1;
  if (out) {
    char *buf = malloc((size_t)(close - *s)), *w;
    if (!buf) return -1;
    if (!(w = json_unescape(*s + 1, close, buf))) {
      free(buf);
      return -1;
    }
    *w = '\0';
    *out = buf;
  }
  *s = close + 1;
  return 0;
}

/* Skips any JSON value at *s. Returns 0, or -1 on malformed input. */
static int json_skip(const char **s, int depth) {
  skip_ws(s);
  if (**s == '"') return json_string(s, NULL);
  if (**s == '{' || **s == '[') {
    char close = **s == '{' ? '}' : ']';
    if (depth >= MAX_JSON_DEPTH) return -1;
    (*s)++;
    skip_ws(s);
    if (**s == close) {
      (*s)++;
      return 0;
    }
    for (;;) {
      if (close == '}') {
        skip_ws(s);
        if (**s != '"' || json_string(s, NULL) != 0) return -1;
        skip_ws(s);
        if (*(*s)++ != ':') return -1;
      }
      if (json_skip(s, depth + 1) != 0) return -1;
      skip_ws(s);
      if (**s == close) {
        (*s)++;
        return 0;
      }
      if (*(*s)++ != ',') return -1;
    }
  }
  const char *start = *s;
  while ((**s >= 'a' && **s <= 'z') || (**s >= 'A' && **s <= 'Z') || (**s >= '0' && **s <= '9') ||
         **s == '+' || **s == '-' || **s == '.')
    (*s)++;
  return *s > start ? 0 : -1;
}

/* Reads the top-level object. On success *name / *value are malloc'd when the key was present
 * (left untouched otherwise). Returns 0, or -1 with a reason in *why. */
static int read_config(const char *json, char **name, char **value, const char **why) {
  const char *s = json;
  skip_ws(&s);
  if (*s == '\0') return 0; /* an empty config means defaults */
  if (*s++ != '{') goto malformed;
  skip_ws(&s);
  if (*s == '}') {
    s++;
    goto trailing;
  }
  for (;;) {
    char *key = NULL;
    skip_ws(&s);
    if (*s != '"' || json_string(&s, &key) != 0) goto malformed;
    char **target = strcmp(key, "header_name") == 0    ? name
                    : strcmp(key, "header_value") == 0 ? value
                                                       : NULL;
    free(key);
    skip_ws(&s);
    if (*s++ != ':') goto malformed;
    skip_ws(&s);
    if (target) {
      char *text = NULL;
      if (*s != '"') {
        *why = "\"header_name\" and \"header_value\" must be JSON strings";
        return -1;
      }
      if (json_string(&s, &text) != 0) goto malformed;
      free(*target); /* a repeated key: the last one wins */
      *target = text;
    } else if (json_skip(&s, 1) != 0) {
      goto malformed;
    }
    skip_ws(&s);
    if (*s == '}') {
      s++;
      break;
    }
    if (*s++ != ',') goto malformed;
  }
trailing:
  skip_ws(&s);
  if (*s == '\0') return 0;
malformed:
  *why = "the config is not a JSON object this driver can read";
  return -1;
}

/* HTTP header names are RFC 9110 tokens. */
static int valid_header_name(const char *s) {
  if (*s == '\0' || strlen(s) > MAX_HEADER_LEN) return 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          strchr("!#$%&'*+-.^_`|~", c)))
      return 0;
  }
  return 1;
}

/* Header values: no control characters (CR/LF would allow header injection) and valid UTF-8,
 * because protobuf string fields must be UTF-8 and the bridge checks what we return. */
static int valid_header_value(const char *s) {
  if (strlen(s) > MAX_HEADER_LEN) return 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p, extra, cp;
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
      p++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    for (unsigned i = 1; i <= extra; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* overlong 3/4-byte forms, UTF-16 surrogates, beyond U+10FFFF */
    if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return 0;
    p += extra + 1;
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------- */
/* The driver ABI. */

static void driver_free(struct c_driver *d) {
  if (!d) return;
  free(d->header_name);
  free(d->header_value);
  free(d->patch);
  free(d);
}

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

/* Puts a malloc'd message (not NUL-terminated) in out, as the ABI allows on failure, and returns
 * the error code. If even that allocation fails, out stays empty and the code alone remains. */
static int fail(struct CoProcessMessage *out, int code, const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) return code;
  if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
  void *msg = malloc((size_t)n > 0 ? (size_t)n : 1);
  if (msg) {
    memcpy(msg, text, (size_t)n);
    out->p_data = msg;
    out->length = n;
  }
  return code;
}

uint32_t CoProcessDriverAbiVersion(void) { return COPROCESS_DRIVER_ABI_VERSION; }

int CoProcessDriverInit(const struct CoProcessHostApi *host, const char *config_json, void **instance) {
  if (!host || !instance || !host->log || !host->store_data || !host->trigger_event) return 1;
  *instance = NULL;

  struct c_driver *d = calloc(1, sizeof *d);
  if (!d) return 2;
  d->host = host;
  atomic_init(&d->reloads, 0);

  const char *why = NULL;
  if (read_config(config_json ? config_json : "{}", &d->header_name, &d->header_value, &why) != 0)
    goto failed;
  if (!d->header_name) d->header_name = copy_string("X-Coprocess-Driver");
  if (!d->header_value) d->header_value = copy_string("c");
  if (!d->header_name || !d->header_value) {
    why = "out of memory";
    goto failed;
  }
  if (!valid_header_name(d->header_name)) {
    why = "\"header_name\" must be a non-empty HTTP token (letters, digits, !#$%&'*+-.^_`|~)";
    goto failed;
  }
  if (!valid_header_value(d->header_value)) {
    why = "\"header_value\" must be UTF-8 without control characters";
    goto failed;
  }
  /* Encode the patch once: Dispatch then only copies bytes, and shares nothing mutable. */
  d->patch = encode_patch(d->header_name, d->header_value, &d->patch_len);
  if (!d->patch) {
    why = "out of memory";
    goto failed;
  }

  char line[MAX_HEADER_LEN * 2 + 64];
  snprintf(line, sizeof line, "c_driver: Pre hooks get \"%s: %s\"", d->header_name, d->header_value);
  host->log("c_driver ready", "info");
  host->log(line, "debug");
  *instance = d;
  return 0;

failed:;
  char msg[256];
  snprintf(msg, sizeof msg, "c_driver: bad config: %s", why);
  host->log(msg, "error");
  driver_free(d);
  return 3;
}

int CoProcessDriverDispatch(void *instance, const struct CoProcessMessage *in, struct CoProcessMessage *out) {
  const struct c_driver *d = instance;
  if (!d || !in || !out) return 1;
  out->p_data = NULL;
  out->length = 0;
  if (in->length < 0 || (in->length > 0 && !in->p_data))
    return fail(out, 2, "invalid message: p_data=%p, length=%d", in->p_data, in->length);

  const uint8_t *data = in->p_data;
  size_t len = (size_t)in->length;
  int32_t hook_type;
  size_t bad_offset;
  if (read_hook_type(data, len, &hook_type, &bad_offset) != 0)
    return fail(out, 2, "input is not a valid coprocess.Object (malformed field at byte %zu of %zu)",
                bad_offset, len);

  size_t extra = hook_type == HOOK_PRE ? d->patch_len : 0;
  if (len + extra > (size_t)INT_MAX) return fail(out, 4, "the Object would be too large");
  if (len + extra == 0) return 0; /* an empty Object: p_data NULL, length 0 */

  uint8_t *copy = malloc(len + extra);
  if (!copy) return fail(out, 5, "out of memory");
  if (len) memcpy(copy, data, len);
  if (extra) memcpy(copy + len, d->patch, extra); /* merged into `request` by any protobuf parser */
  out->p_data = copy;
  out->length = (int)(len + extra);
  return 0;
}

void CoProcessDriverDispatchEvent(void *instance, const char *event_json) {
  const struct c_driver *d = instance;
  if (!d) return;
  d->host->trigger_event("CDriverEvent", event_json ? event_json : "");
}

void CoProcessDriverReload(void *instance) {
  struct c_driver *d = instance;
  if (!d) return;
  /* May run while dispatches are in flight: they never read the counter, and it is atomic. */
  unsigned n = atomic_fetch_add(&d->reloads, 1) + 1;
  char count[16], line[64];
  snprintf(count, sizeof count, "%u", n);
  snprintf(line, sizeof line, "c_driver reloaded (%u so far)", n);
  d->host->store_data("c_driver:reloads", count, 0);
  d->host->log(line, "info");
}

void CoProcessDriverShutdown(void *instance) { driver_free(instance); }

//! The C side of the project, for real: both headers compile as strict C and C++, the example C
//! driver and C host build with `-Wall -Wextra -Werror` and run, cleanly under valgrind, and one
//! driver file loaded twice with two configs gives two independent instances.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

// ---------------------------------------------------------------------------------------------
// Header checks

/// Every export of api.h assigned to a pointer of the type the contract names: a different
/// signature is a compile error (C++) or an incompatible-pointer warning turned into an error (C).
const API_H_CONTRACT: &str = r#"
void api_h_contract(void);
void api_h_contract(void) {
  struct CoProcessMessage message = {0, 0};
  void **data = &message.p_data;
  int *length = &message.length;
  void (*store_data)(char *, char *, int) = TykStoreData;
  char *(*get_data)(char *) = TykGetData;
  void (*trigger_event)(char *, char *) = TykTriggerEvent;
  void (*log)(char *, char *) = CoProcessLog;
  int (*init)(const char *) = CoProcessInit;
  int (*load_driver)(const char *, const char *, const char *) = CoProcessLoadDriver;
  int (*dispatch)(const struct CoProcessMessage *, struct CoProcessMessage *) = Dispatch;
  int (*dispatch_with_driver)(const char *, const struct CoProcessMessage *,
                              struct CoProcessMessage *) = DispatchWithDriver;
  void (*dispatch_event)(const char *) = DispatchEvent;
  void (*reload)(void) = Reload;
  void (*message_free)(struct CoProcessMessage *) = CoProcessMessageFree;
  void (*free_fn)(void *) = CoProcessFree;
  const char *(*last_error)(void) = CoProcessLastError;
  void (*set_event_handler)(void (*)(const char *, const char *, void *), void *) =
      CoProcessSetEventHandler;
  void (*set_log_handler)(void (*)(const char *, const char *, void *), void *) =
      CoProcessSetLogHandler;
  int (*next_event)(char **, char **) = CoProcessNextEvent;
  void (*shutdown)(void) = CoProcessShutdown;
  (void)data; (void)length; (void)store_data; (void)get_data; (void)trigger_event; (void)log;
  (void)init; (void)load_driver; (void)dispatch; (void)dispatch_with_driver; (void)dispatch_event;
  (void)reload; (void)message_free; (void)free_fn; (void)last_error; (void)set_event_handler;
  (void)set_log_handler; (void)next_event; (void)shutdown;
}
"#;

/// The same for the driver ABI.
const DRIVER_H_CONTRACT: &str = r#"
void driver_h_contract(void);
void driver_h_contract(void) {
  struct CoProcessMessage message = {0, 0};
  struct CoProcessHostApi host;
  uint32_t *abi = &host.abi_version;
  void (**trigger_event)(const char *, const char *) = &host.trigger_event;
  void (**store_data)(const char *, const char *, int) = &host.store_data;
  char *(**get_data)(const char *) = &host.get_data;
  void (**log)(const char *, const char *) = &host.log;
  void (**free_data)(void *) = &host.free_data;
  uint32_t (*version)(void) = CoProcessDriverAbiVersion;
  int (*init)(const struct CoProcessHostApi *, const char *, void **) = CoProcessDriverInit;
  int (*dispatch)(void *, const struct CoProcessMessage *, struct CoProcessMessage *) =
      CoProcessDriverDispatch;
  void (*dispatch_event)(void *, const char *) = CoProcessDriverDispatchEvent;
  void (*reload)(void *) = CoProcessDriverReload;
  int (*load_bundle)(void *, const char *) = CoProcessDriverLoadBundle;
  void (*shutdown)(void *) = CoProcessDriverShutdown;
  int abi_version[COPROCESS_DRIVER_ABI_VERSION == 1 ? 1 : -1];
  (void)message; (void)abi; (void)trigger_event; (void)store_data; (void)get_data; (void)log;
  (void)free_data; (void)version; (void)init; (void)dispatch; (void)dispatch_event; (void)reload;
  (void)load_bundle; (void)shutdown; (void)abi_version;
}
"#;

#[derive(Clone, Copy)]
enum Lang {
    C99,
    Cxx11,
}

/// Compiles `source` with `-fsyntax-only` as strict C99 (gcc) or C++11 (g++), with the repository
/// root and `include/` on the include path. Returns false when the compiler is not installed.
fn syntax_check(lang: Lang, name: &str, source: &str) -> bool {
    let (compiler, flags): (&str, &[&str]) = match lang {
        Lang::C99 => ("gcc", &["-std=c99", "-x", "c"]),
        Lang::Cxx11 => ("g++", &["-std=c++11", "-x", "c++"]),
    };
    if skip_without(compiler) {
        return false;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join(name);
    std::fs::write(&file, source).expect("writing the translation unit");
    let root = repo_root();
    let output = run(Command::new(compiler)
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .args(flags)
        .arg("-I")
        .arg(&root)
        .arg("-I")
        .arg(root.join("include"))
        .arg(&file));
    assert!(
        output.status.success(),
        "{compiler} rejected {name}:\n{source}\n{}",
        describe(&output)
    );
    true
}

fn check_both_languages(name: &str, source: &str) {
    syntax_check(Lang::C99, &format!("{name}.c"), source);
    syntax_check(Lang::Cxx11, &format!("{name}.cpp"), source);
}

#[test]
fn api_h_compiles_as_c99_and_cxx11() {
    let source = format!("#include \"api.h\"\n{API_H_CONTRACT}");
    check_both_languages("api_h", &source);
}

#[test]
fn driver_header_compiles_as_c99_and_cxx11() {
    let source = format!("#include \"coprocess_driver.h\"\n{DRIVER_H_CONTRACT}");
    check_both_languages("driver_h", &source);
}

#[test]
fn both_headers_compile_in_one_translation_unit_in_either_order() {
    let contracts = format!("{API_H_CONTRACT}{DRIVER_H_CONTRACT}");
    let api_first = format!("#include \"api.h\"\n#include \"coprocess_driver.h\"\n{contracts}");
    let driver_first = format!("#include \"coprocess_driver.h\"\n#include \"api.h\"\n{contracts}");
    check_both_languages("api_then_driver", &api_first);
    check_both_languages("driver_then_api", &driver_first);
}

/// `-fsyntax-only` cannot see C++ name mangling: link a C++ program against the bridge, which
/// fails if api.h's declarations lack `extern "C"`, and run it.
#[test]
fn api_h_links_from_cxx() {
    skip_unless_tool!("g++");
    let source = write_c_source(
        "cxx_host.cpp",
        "#include \"api.h\"\n\
         int main() {\n\
           if (CoProcessInit(nullptr) != 0) return 1;\n\
           CoProcessShutdown();\n\
           return 0;\n\
         }\n",
    );
    let lib_dir = bridge_cdylib().parent().unwrap().to_path_buf();
    let exe = c_artifacts_dir().join(format!("cxx_host-{}", std::process::id()));
    let output = run(Command::new("g++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(repo_root())
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lcoprocess_bridge")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display())));
    assert!(
        output.status.success(),
        "g++ could not link against the bridge:\n{}",
        describe(&output)
    );
    let ran = run(&mut Command::new(&exe));
    let _ = std::fs::remove_file(&exe);
    assert!(
        ran.status.success(),
        "the C++ host failed:\n{}",
        describe(&ran)
    );
}

// ---------------------------------------------------------------------------------------------
// The demo: examples/c_host + examples/c_driver

fn c_driver() -> PathBuf {
    build_c_driver(Path::new("examples/c_driver/c_driver.c"), &[])
}

fn c_host() -> PathBuf {
    build_c_host(Path::new("examples/c_host/c_host.c"), &[])
}

/// What the demo prints when everything works.
const DEMO_LINES: &[&str] = &[
    "[ok]     CoProcessInit(NULL) returned 0",
    "c_driver ready",
    "[ok]     driver loaded as \"native\"",
    "[ok]     Dispatch returned 0",
    "request.set_headers[\"X-Coprocess-Driver\"] = \"c\"",
    "[ok]     the driver set the header \"X-Coprocess-Driver: c\"",
    "event handler got: CDriverEvent",
    "[ok]     the driver re-raised the event as \"CDriverEvent\" with the same payload",
    "[ok]     the store gave the value back",
    "TykGetData(\"c_driver:reloads\") -> \"1\"",
    "[ok]     a NULL input is refused with a message",
    "All good: 10 of 10 checks passed",
];

fn assert_demo_output(stdout: &str, full: &str) {
    for line in DEMO_LINES {
        assert!(
            stdout.contains(line),
            "the demo did not print {line:?}:\n{full}"
        );
    }
    assert!(!stdout.contains("[FAILED]"), "a demo check failed:\n{full}");
}

#[test]
fn c_host_demo_runs() {
    let (driver, host) = (c_driver(), c_host());
    let output = run(Command::new(&host).arg(&driver));
    let full = describe(&output);
    assert!(output.status.success(), "the demo failed:\n{full}");
    assert_demo_output(&String::from_utf8_lossy(&output.stdout), &full);
}

#[test]
fn c_host_demo_honours_driver_config_and_fails_when_a_check_fails() {
    let (driver, host) = (c_driver(), c_host());

    let custom = run(Command::new(&host).arg(&driver).args([
        r#"{"header_name": "X-Custom", "header_value": "caf\u00e9"}"#,
        "X-Custom",
        "café",
    ]));
    let full = describe(&custom);
    assert!(custom.status.success(), "custom header config:\n{full}");
    assert!(
        String::from_utf8_lossy(&custom.stdout)
            .contains("request.set_headers[\"X-Custom\"] = \"café\""),
        "{full}"
    );

    // The host's checks really check: expecting a header the driver does not add must fail.
    let wrong = run(Command::new(&host)
        .arg(&driver)
        .args(["{}", "X-Absent", "x"]));
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    assert!(
        stdout.contains("[FAILED] the driver set the header \"X-Absent: x\""),
        "{}",
        describe(&wrong)
    );

    // A config the driver refuses: the load fails, the driver's reason reaches the log handler.
    let refused = run(Command::new(&host)
        .arg(&driver)
        .arg(r#"{"header_name": "not a token"}"#));
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        stdout.contains("[FAILED] driver loaded as \"native\""),
        "{}",
        describe(&refused)
    );
    assert!(
        stdout.contains("c_driver: bad config"),
        "{}",
        describe(&refused)
    );
}

fn valgrind(args: &[&Path]) -> std::process::Output {
    run(Command::new("valgrind")
        .args(["--leak-check=full", "--error-exitcode=1", "--quiet"])
        .args(args))
}

#[test]
fn c_host_demo_is_clean_under_valgrind() {
    skip_unless_tool!("valgrind");
    let (driver, host) = (c_driver(), c_host());
    let output = valgrind(&[&host, &driver]);
    let full = describe(&output);
    assert!(
        output.status.success(),
        "valgrind found a problem (or the demo failed):\n{full}"
    );
    assert_demo_output(&String::from_utf8_lossy(&output.stdout), &full);
}

// ---------------------------------------------------------------------------------------------
// One driver file, several loads

/// Loads c_driver three times with different configs and checks each instance adds its own
/// header, also when dispatched from several threads at once; a reload counts per instance.
const PER_LOAD_PROGRAM: &str = r#"
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"

static const char pre_object[] = "\x08\x01" "\x12\x04" "test";  /* hook_type=Pre, hook_name */
static const char post_object[] = "\x08\x02" "\x12\x04" "test"; /* hook_type=Post */
static int failures;

#define EXPECT(cond, ...)                                     \
  do {                                                        \
    int ok_ = (cond);                                         \
    printf(ok_ ? "ok:     " : "FAILED: ");                    \
    printf(__VA_ARGS__);                                      \
    printf("\n");                                             \
    if (!ok_) failures++;                                     \
  } while (0)

/* Whether the message holds the encoded map entry {1: name, 2: value}. */
static int has_entry(const struct CoProcessMessage *m, const char *name, const char *value) {
  unsigned char needle[128];
  size_t n = 0, nl = strlen(name), vl = strlen(value);
  needle[n++] = 0x0a; needle[n++] = (unsigned char)nl; memcpy(needle + n, name, nl); n += nl;
  needle[n++] = 0x12; needle[n++] = (unsigned char)vl; memcpy(needle + n, value, vl); n += vl;
  for (int i = 0; m->p_data && i + (int)n <= m->length; i++)
    if (memcmp((const char *)m->p_data + i, needle, n) == 0) return 1;
  return 0;
}

struct load { const char *name, *config, *header, *value; };
static const struct load loads[] = {
  {"first", "{\"header_name\": \"X-First\", \"header_value\": \"1\"}", "X-First", "1"},
  {"second", "{\"header_name\": \"X-Second\", \"header_value\": \"2\"}", "X-Second", "2"},
  {"plain", NULL, "X-Coprocess-Driver", "c"},
};
#define LOADS (int)(sizeof loads / sizeof loads[0])

/* Dispatches a Pre object to `load` and returns 1 when only that load's header is in the answer. */
static int dispatch_to(int load, char *why, size_t why_len) {
  struct CoProcessMessage in = {(void *)pre_object, (int)sizeof pre_object - 1}, out = {NULL, 0};
  int rc = DispatchWithDriver(loads[load].name, &in, &out), ok = rc == 0;
  if (!ok) snprintf(why, why_len, "rc=%d: %s", rc, CoProcessLastError());
  for (int other = 0; ok && other < LOADS; other++) {
    if (has_entry(&out, loads[other].header, loads[other].value) != (other == load)) {
      snprintf(why, why_len, "%s header %s", other == load ? "missing" : "foreign",
               loads[other].header);
      ok = 0;
    }
  }
  CoProcessMessageFree(&out);
  return ok;
}

#define THREADS 4
#define ROUNDS 100
static void *hammer(void *arg) {
  long failed = 0;
  char why[256];
  for (int i = 0; i < ROUNDS; i++)
    if (!dispatch_to((int)(((long)arg + i) % LOADS), why, sizeof why)) failed++;
  return (void *)failed;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  char why[512] = "";
  EXPECT(CoProcessInit(NULL) == 0, "CoProcessInit");
  for (int i = 0; i < LOADS; i++) {
    int rc = CoProcessLoadDriver(loads[i].name, argv[1], loads[i].config);
    EXPECT(rc == 0, "load %s with config %s (%s)", loads[i].name,
           loads[i].config ? loads[i].config : "NULL", rc ? CoProcessLastError() : "");
  }
  for (int i = 0; i < LOADS; i++) {
    why[0] = '\0';
    EXPECT(dispatch_to(i, why, sizeof why), "%s adds only %s: %s", loads[i].name,
           loads[i].header, why);
  }

  struct CoProcessMessage in = {(void *)post_object, (int)sizeof post_object - 1}, out = {NULL, 0};
  int rc = DispatchWithDriver("first", &in, &out);
  EXPECT(rc == 0 && !has_entry(&out, "X-First", "1"), "a Post hook passes through (rc=%d)", rc);
  CoProcessMessageFree(&out);

  pthread_t threads[THREADS];
  long failed = 0;
  for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, hammer, (void *)t);
  for (int t = 0; t < THREADS; t++) {
    void *result;
    pthread_join(threads[t], &result);
    failed += (long)result;
  }
  EXPECT(failed == 0, "%d threads x %d dispatches to alternating instances: %ld wrong", THREADS,
         ROUNDS, failed);

  Reload();
  char key[] = "c_driver:reloads";
  char *reloads = TykGetData(key);
  EXPECT(reloads && strcmp(reloads, "1") == 0,
         "each instance counts its own reloads: c_driver:reloads = \"%s\"", reloads ? reloads : "(NULL)");
  CoProcessFree(reloads);

  in.p_data = (void *)pre_object;
  in.length = (int)sizeof pre_object - 1;
  rc = Dispatch(&in, &out);
  EXPECT(rc != 0 && CoProcessLastError()[0] != '\0',
         "Dispatch with several drivers and no API definition is refused: rc=%d, \"%s\"", rc,
         CoProcessLastError());
  CoProcessMessageFree(&out);
  rc = DispatchWithDriver("no-such-driver", &in, &out);
  EXPECT(rc != 0 && CoProcessLastError()[0] != '\0', "an unknown driver is refused: \"%s\"",
         CoProcessLastError());
  CoProcessMessageFree(&out);

  CoProcessShutdown();
  printf("%s\n", failures ? "SOME CHECKS FAILED" : "ALL CHECKS PASSED");
  return failures ? 1 : 0;
}
"#;

fn per_load_host() -> PathBuf {
    build_c_host(&write_c_source("per_load_host.c", PER_LOAD_PROGRAM), &[])
}

#[test]
fn c_driver_loads_are_independent_instances() {
    let (driver, host) = (c_driver(), per_load_host());
    let output = run(Command::new(&host).arg(&driver));
    let full = describe(&output);
    assert!(output.status.success(), "{full}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ALL CHECKS PASSED"),
        "{full}"
    );
}

#[test]
fn c_driver_loads_are_clean_under_valgrind() {
    skip_unless_tool!("valgrind");
    let (driver, host) = (c_driver(), per_load_host());
    let output = valgrind(&[&host, &driver]);
    let full = describe(&output);
    assert!(
        output.status.success(),
        "valgrind found a problem (or a check failed):\n{full}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ALL CHECKS PASSED"),
        "{full}"
    );
}

// ---------------------------------------------------------------------------------------------
// tests/drivers/test_driver.c: every variant the loader tests rely on builds, with the symbols
// its macro promises.

#[test]
fn test_driver_variants_build_with_the_promised_symbols() {
    const REQUIRED: &[&str] = &[
        "CoProcessDriverAbiVersion",
        "CoProcessDriverInit",
        "CoProcessDriverDispatch",
        "CoProcessDriverDispatchEvent",
        "CoProcessDriverReload",
    ];
    const OPTIONAL: &[&str] = &["CoProcessDriverLoadBundle", "CoProcessDriverShutdown"];
    let variants: &[(&[&str], Option<&str>, bool)] = &[
        (&[], None, false),
        (
            &["FAULT_NO_VERSION"],
            Some("CoProcessDriverAbiVersion"),
            false,
        ),
        (&["FAULT_WRONG_VERSION"], None, false),
        (
            &["FAULT_NO_DISPATCH"],
            Some("CoProcessDriverDispatch"),
            false,
        ),
        (&["FAULT_NO_INIT"], Some("CoProcessDriverInit"), false),
        (&["FAULT_INIT_FAILS"], None, false),
        (&["FAULT_DISPATCH_FAILS"], None, false),
        (&["FAULT_GARBAGE"], None, false),
        (&["FAULT_NEGATIVE_LENGTH"], None, false),
        (&["FAULT_NULL_WITH_LENGTH"], None, false),
        (&["SLOW_MS=20"], None, false),
        (&["WITH_OPTIONAL"], None, true),
        (
            &["VERSION_TAG=\"v2\"", "WITH_OPTIONAL", "SLOW_MS=5"],
            None,
            true,
        ),
    ];
    let nm = tool_available("nm");
    if !nm {
        report_skip("nm"); // the builds are still checked below, the symbol lists are not
    }
    for (defines, missing, optional) in variants {
        let lib = build_c_driver(Path::new("tests/drivers/test_driver.c"), defines);
        if !nm {
            continue;
        }
        let output = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
        assert!(output.status.success(), "{}", describe(&output));
        let listing = String::from_utf8_lossy(&output.stdout);
        let exported = |sym: &str| {
            listing
                .lines()
                .any(|l| l.split_whitespace().last() == Some(sym))
        };
        for sym in REQUIRED {
            assert_eq!(
                exported(sym),
                Some(*sym) != *missing,
                "{defines:?}: {sym}\n{listing}"
            );
        }
        for sym in OPTIONAL {
            assert_eq!(exported(sym), *optional, "{defines:?}: {sym}\n{listing}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Makefile parses and its demo target builds the two examples (dry run: no release build here).

#[test]
fn makefile_demo_target_is_wired() {
    skip_unless_tool!("make");
    let output = run(Command::new("make")
        .args(["-n", "-B", "demo", "valgrind-demo", "test"])
        .current_dir(repo_root()));
    let full = describe(&output);
    assert!(output.status.success(), "{full}");
    let plan = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "cargo build --release",
        "examples/c_driver/c_driver.c",
        "examples/c_host/c_host.c",
        "-Wall -Wextra -Werror",
        "valgrind --leak-check=full --error-exitcode=1",
        "cargo test --workspace",
    ] {
        assert!(
            plan.contains(needle),
            "`make -n` does not mention {needle:?}:\n{full}"
        );
    }
}

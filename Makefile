# coprocess-bridge: convenience targets around cargo.
#
#   make demo            build the bridge (release), the example C driver and C host, run the demo
#   make valgrind-demo   the same demo under valgrind's leak checker
#   make test            cargo test --workspace
#   make install         build (release) and install like a C library (see "Install" below)
#   make uninstall       remove what `make install` put there
#   make fuzz            build the fuzz targets (fuzz/) and run each for FUZZ_SECONDS (default 60)
#
# Variables: CC (default cc), CARGO (default cargo), CARGO_TARGET_DIR (default target).

CC ?= cc
CARGO ?= cargo
CARGO_TARGET_DIR ?= target
RELEASE_DIR := $(CARGO_TARGET_DIR)/release

WARNINGS := -Wall -Wextra -Werror
CFLAGS_DEMO := -O2 -g -std=c11 $(WARNINGS)

C_DRIVER := $(RELEASE_DIR)/c_driver.so
C_HOST := $(RELEASE_DIR)/c_host
BRIDGE := $(RELEASE_DIR)/libcoprocess_bridge.so

VALGRIND ?= valgrind
VALGRIND_FLAGS := --leak-check=full --error-exitcode=1

FUZZ_SECONDS ?= 60

.PHONY: demo valgrind-demo test fuzz bridge c-examples clean-c-examples install install-only uninstall \
	install-build

demo: c-examples
	$(C_HOST) $(C_DRIVER)

valgrind-demo: c-examples
	$(VALGRIND) $(VALGRIND_FLAGS) $(C_HOST) $(C_DRIVER)

test:
	$(CARGO) test --workspace

# Coverage-guided fuzzing on the stable toolchain (libFuzzer via libfuzzer-sys; see fuzz/run.sh).
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

# cargo decides what is stale; always ask it.
bridge:
	$(CARGO) build --release

c-examples: $(C_DRIVER) $(C_HOST)

$(BRIDGE): bridge

$(C_DRIVER): examples/c_driver/c_driver.c include/coprocess_driver.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_DEMO) -shared -fPIC -I include -o $@ $<

# The host is linked against the freshly built bridge; the rpath lets it run from anywhere.
$(C_HOST): examples/c_host/c_host.c api.h $(BRIDGE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_DEMO) -I . -I include -o $@ $< \
		-L $(RELEASE_DIR) -lcoprocess_bridge -Wl,-rpath,$(abspath $(RELEASE_DIR)) -pthread

clean-c-examples:
	rm -f $(C_DRIVER) $(C_HOST)

# ---------------------------------------------------------------------------------------------
# Install, as a C library is installed:
#   $(LIBDIR)/libcoprocess_bridge.so.$(VERSION)   the library (SONAME libcoprocess_bridge.so.$(SOVERSION),
#   $(LIBDIR)/libcoprocess_bridge.so.$(SOVERSION)   set by build.rs), with the usual two links
#   $(LIBDIR)/libcoprocess_bridge.so, libcoprocess_bridge.a
#   $(INCLUDEDIR)/coprocess/api.h, coprocess_driver.h
#   $(PKGCONFIGDIR)/coprocess-bridge.pc (hosts), coprocess-driver.pc (driver authors)
#   $(DRIVERDIR)/lib<driver>.so                  the drivers listed in DRIVERS
#
#   make install PREFIX=/usr/local               (DESTDIR=/tmp/stage for packaging)
#   make install-only ...                        the same, without running cargo first
# CARGO_PROFILE picks the build (release by default; `dev` installs target/debug); BRIDGE_BUILD_DIR
# and DRIVER_BUILD_DIR override where the built files are taken from.
# DRIVERS lists cargo-package:library-name pairs ("" installs none).

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
LIBDIR ?= $(EXEC_PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DRIVERDIR ?= $(LIBDIR)/coprocess
DESTDIR ?=
CARGO_PROFILE ?= release
DRIVERS ?= coprocess-grpc-driver:coprocess_grpc coprocess-python-driver:coprocess_python
INSTALL ?= install

PROFILE_DIR := $(CARGO_TARGET_DIR)/$(if $(filter dev test,$(CARGO_PROFILE)),debug,$(CARGO_PROFILE))
VERSION := $(shell sed -n 's/^version = "\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
DRIVER_ABI_VERSION := $(shell sed -n 's/^\#define COPROCESS_DRIVER_ABI_VERSION \([0-9]*\).*/\1/p' \
	include/coprocess_driver.h)
# What a static link of the bridge needs besides libcoprocess_bridge.a on Linux (glibc), as
# `rustc --print native-static-libs` reports it.
LIBS_PRIVATE ?= -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
LIB := libcoprocess_bridge
BRIDGE_BUILD_DIR ?= $(PROFILE_DIR)
DRIVER_BUILD_DIR ?= $(PROFILE_DIR)
DRIVER_PACKAGES := $(foreach d,$(DRIVERS),$(firstword $(subst :, ,$(d))))
DRIVER_LIBS := $(foreach d,$(DRIVERS),lib$(lastword $(subst :, ,$(d))).so)

define SUBST_PC
sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@EXEC_PREFIX@|$(EXEC_PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@DRIVERDIR@|$(DRIVERDIR)|g' \
    -e 's|@VERSION@|$(VERSION)|g' -e 's|@DRIVER_ABI_VERSION@|$(DRIVER_ABI_VERSION)|g' \
    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g'
endef

install: install-build
	$(MAKE) install-only

install-build:
	$(CARGO) build --profile $(CARGO_PROFILE) -p coprocess-bridge $(addprefix -p ,$(DRIVER_PACKAGES))

install-only:
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/coprocess $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(BRIDGE_BUILD_DIR)/$(LIB).so $(DESTDIR)$(LIBDIR)/$(LIB).so.$(VERSION)
	ln -sf $(LIB).so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIB).so.$(SOVERSION)
	ln -sf $(LIB).so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/$(LIB).so
	$(INSTALL) -m 644 $(BRIDGE_BUILD_DIR)/$(LIB).a $(DESTDIR)$(LIBDIR)/$(LIB).a
	$(INSTALL) -m 644 api.h include/coprocess_driver.h $(DESTDIR)$(INCLUDEDIR)/coprocess/
	$(SUBST_PC) pkgconfig/coprocess-bridge.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/coprocess-bridge.pc
	$(SUBST_PC) pkgconfig/coprocess-driver.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/coprocess-driver.pc
	$(INSTALL) -d $(DESTDIR)$(DRIVERDIR)
	$(foreach l,$(DRIVER_LIBS),$(INSTALL) -m 755 $(DRIVER_BUILD_DIR)/$(l) $(DESTDIR)$(DRIVERDIR)/$(l) &&) true

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(LIB).so $(DESTDIR)$(LIBDIR)/$(LIB).so.$(SOVERSION) \
	      $(DESTDIR)$(LIBDIR)/$(LIB).so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIB).a \
	      $(DESTDIR)$(INCLUDEDIR)/coprocess/api.h $(DESTDIR)$(INCLUDEDIR)/coprocess/coprocess_driver.h \
	      $(DESTDIR)$(PKGCONFIGDIR)/coprocess-bridge.pc $(DESTDIR)$(PKGCONFIGDIR)/coprocess-driver.pc \
	      $(addprefix $(DESTDIR)$(DRIVERDIR)/,$(DRIVER_LIBS))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/coprocess $(DESTDIR)$(DRIVERDIR) 2>/dev/null

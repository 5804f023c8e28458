# coprocess-bridge: convenience targets around cargo.
#
#   make demo            build the bridge (release), the example C driver and C host, run the demo
#   make valgrind-demo   the same demo under valgrind's leak checker
#   make test            cargo test --workspace
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

.PHONY: demo valgrind-demo test bridge c-examples clean-c-examples

demo: c-examples
	$(C_HOST) $(C_DRIVER)

valgrind-demo: c-examples
	$(VALGRIND) $(VALGRIND_FLAGS) $(C_HOST) $(C_DRIVER)

test:
	$(CARGO) test --workspace

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
	$(CC) $(CFLAGS_DEMO) -I include -o $@ $< \
		-L $(RELEASE_DIR) -lcoprocess_bridge -Wl,-rpath,$(abspath $(RELEASE_DIR)) -pthread

clean-c-examples:
	rm -f $(C_DRIVER) $(C_HOST)

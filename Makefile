# Messenger: one entry point for deps, build, run, test, bench, fuzz, fmt.
#
#   make run    install what is missing, build, start the local cluster
#   make test   install what is missing, build with sanitizers, run every test
#
# Builds go to build/$(MODE): MODE=release (optimised) or MODE=asan
# (-fsanitize=address,undefined, what the tests run).

MODE ?= release
BUILD := build/$(MODE)
CC ?= cc

PKGS := libmicrohttpd jansson hiredis libpq libcurl openssl
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_COMMON := -std=c17 -D_GNU_SOURCE -g $(WARN) -Icommon $(PKG_CFLAGS) -pthread
# The release services allocate through jemalloc: on glibc's allocator a
# cache node spent about a tenth of its CPU in malloc and free under its
# thread per connection (docs/performance.md). The sanitizer build keeps
# the allocator ASan brings, and the load generator keeps glibc's, so the
# ceilings it measures stay comparable.
ifeq ($(MODE),asan)
  CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS_MODE := -fsanitize=address,undefined
  SERVICE_LIBS :=
else
  CFLAGS_MODE := -O2
  LDFLAGS_MODE :=
  SERVICE_LIBS := -ljemalloc
endif
CFLAGS_ALL = $(CFLAGS_COMMON) $(CFLAGS_MODE) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
SERVICES := gateway router cache storage
SERVICE_BINS := $(SERVICES:%=$(BUILD)/bin/%)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all build deps run test test-unit test-integration test-e2e \
        bench fuzz chaos fmt lint clean

all: build

build: $(SERVICE_BINS) $(BUILD)/bin/loadgen

deps:
	@scripts/install-deps

$(BUILD)/%.o: %.c $(wildcard common/*.h) $(wildcard services/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS_ALL) -c $< -o $@

# The gateway embeds the web client (services/gateway/static.c).
$(BUILD)/services/gateway/static.o: $(wildcard web/*)

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@
	@ar rcs $@ $^

# One link rule per service: its own objects plus libcommon.
define service_rule
# (The Makefile is a prerequisite: a change of the libraries relinks.)
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard services/$(1)/*.c)) $(BUILD)/libcommon.a Makefile
	@mkdir -p $$(dir $$@)
	@echo "  LD $$@"
	@$$(CC) $(LDFLAGS_MODE) -o $$@ $$(filter-out Makefile,$$^) $$(LDLIBS_ALL) $(SERVICE_LIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

# The load generator of make bench (bench/*.c, plus libcommon for JWTs).
$(BUILD)/bench/%.o: bench/%.c $(wildcard bench/*.h) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/bin/loadgen: $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/*.c)) $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	@echo "  LD $@"
	@$(CC) $(LDFLAGS_MODE) -o $@ $^ $(LDLIBS_ALL)

# Unit tests see file-local helpers: TESTABLE is empty there. Some
# include a service's source file, so every service source is a
# prerequisite: an edit there rebuilds them.
UNIT_DEPS := $(wildcard services/*/*.c services/*/*.h common/*.h)
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libcommon.a $(UNIT_DEPS)
	@mkdir -p $(dir $@)
	@echo "  TEST $@"
	@$(CC) $(CFLAGS_ALL) -DUNIT_TEST $(shell pkg-config --cflags check) -o $@ \
	  $< $(BUILD)/libcommon.a \
	  $(LDFLAGS_MODE) $(shell pkg-config --libs check) $(LDLIBS_ALL)

run: deps
	$(MAKE) MODE=release build
	scripts/cluster run

test: deps
	$(MAKE) MODE=asan build unit-bins
	scripts/run-tests

unit-bins: $(UNIT_BINS)

test-unit: unit-bins
	scripts/run-tests unit

test-integration: build
	scripts/run-tests integration

test-e2e: build
	scripts/run-tests e2e

fuzz: deps
	scripts/fuzz $${FUZZ_SECONDS:-60}

bench: deps
	$(MAKE) MODE=release build
	scripts/bench

# The full fault schedule under load (docs/chaos.md); figures go to
# build/chaos/result.json.
chaos: deps
	$(MAKE) MODE=release build
	scripts/chaos

fmt:
	clang-format -i common/*.[ch] services/*/*.[ch] tests/unit/*.c tests/fuzz/*.c

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance \
	  --inline-suppr -Icommon common services

clean:
	rm -rf build

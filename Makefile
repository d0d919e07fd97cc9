# Thin wrapper over CMake; the scripts in scripts/ do the work.
BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local

# Keeps the output readable: the build below is itself make, one level down.
MAKEFLAGS += --no-print-directory

.PHONY: all deps build test test-sanitized run lint format clean install docker-check bench fuzz chaos regress

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSLUICE_TEST_SHARDS=$(TEST_SHARDS)
	cmake --build $(BUILD_DIR) -j$(JOBS)

# Everything `make test` runs must stay under 15 minutes on a fresh clone (2 cores); the deeper
# checks are `make test-sanitized`, which .ci/run runs right after it.
# The integration tests run as TEST_SHARDS GoogleTest shards (ctest entries integration_0..N-1,
# each its own process with its own throwaway PostgreSQL), TEST_JOBS of them at once: most of a
# test's time is spent waiting (timeouts, drivers starting up), so more shards than cores pay.
TEST_SHARDS ?= 4
TEST_JOBS   ?= 4

# Unit and integration tests, then the short fault-injection run (tests/chaos/, sluiced only;
# `make chaos` is the long one beside PgBouncer).
test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(TEST_JOBS)
	bash tests/chaos/run.sh --short --poolers sluiced

# Every ctest test again under AddressSanitizer + UndefinedBehaviorSanitizer, sluiced included (the
# integration tests run the sanitized build's sluiced, which inherits these options): any report
# makes it exit non-zero, which fails the test that ran it.
ASAN_BUILD_DIR  ?= build-asan
ASAN_BUILD_TYPE ?= Debug
SANITIZER_ENV   ?= ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
                   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Then the worker loops' threads under ThreadSanitizer: only sluiced is built with it, and the
# integration tests that run several workers use that sluiced; a data race makes it exit 66, which
# fails the test that ran it; tests/tsan.supp says what it is told to overlook, and why. Then each
# libFuzzer target for FUZZ_SMOKE_SECONDS (scripts/fuzz.sh).
TSAN_BUILD_DIR     ?= build-tsan
TSAN_TESTS         ?= Workers*:Upgrade*
FUZZ_SMOKE_SECONDS ?= 30

test-sanitized: build
	cmake -S . -B $(ASAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=$(ASAN_BUILD_TYPE) -DSLUICE_SANITIZE=ON \
	  -DSLUICE_TEST_SHARDS=$(TEST_SHARDS)
	cmake --build $(ASAN_BUILD_DIR) -j$(JOBS)
	$(SANITIZER_ENV) ctest --test-dir $(ASAN_BUILD_DIR) --output-on-failure -j$(TEST_JOBS)
	cmake -S . -B $(TSAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_TSAN=ON
	cmake --build $(TSAN_BUILD_DIR) -j$(JOBS) --target sluiced
	SLUICE_TEST_SLUICED=$(TSAN_BUILD_DIR)/bin/sluiced \
	  TSAN_OPTIONS=halt_on_error=1:exitcode=66:suppressions=$(CURDIR)/tests/tsan.supp \
	  $(BUILD_DIR)/bin/integration_tests --gtest_filter='$(TSAN_TESTS)'
	bash scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS)

run: build
	bash scripts/run.sh

# Needs the build for compile_commands.json and generated headers.
lint: deps build
	BUILD_DIR=$(BUILD_DIR) bash scripts/lint.sh

format: deps
	bash scripts/lint.sh --format

clean:
	rm -rf $(BUILD_DIR)

# PREFIX (default /usr/local) and DESTDIR (staging root) are honoured; run as root: sudo make install
install: build
	BUILD_DIR=$(BUILD_DIR) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) bash scripts/install.sh

# Builds the Dockerfile with podman (no engine needed) and checks the image; needs root.
docker-check:
	bash scripts/docker-check.sh

# sluiced against PgBouncer and direct PostgreSQL; writes bench/results/latest.md
bench: build
	bash bench/run.sh

# Fault injection against sluiced, side by side with PgBouncer; writes tests/chaos/results/latest.md.
# The long run (about 5 minutes); `bash tests/chaos/run.sh --short` is the short one.
chaos: build
	bash tests/chaos/run.sh

# PostgreSQL's regression suite directly and through sluiced in session and transaction mode
# (REGRESS_MODES, REGRESS_SCHEDULE, REGRESS_GATE_TRANSACTION; about 15 minutes); prints the tests
# that differ and writes build/regress/summary.md.
regress: build
	bash scripts/regress.sh

# libFuzzer targets built with clang in build-fuzz/; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# Thin wrapper over CMake; the scripts in scripts/ do the work.
BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local

# Keeps the output readable: the build below is itself make, one level down.
MAKEFLAGS += --no-print-directory

.PHONY: all deps build test run lint format clean install docker-check bench

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure

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

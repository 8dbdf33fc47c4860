# edgeauth — top-level entry points. Each target installs missing Debian
# packages first (scripts/deps.sh), then configures and builds with CMake.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
CHECK_BUILD ?= build-check

.PHONY: all deps build demo check bench install clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS) >/dev/null

demo: build
	@scripts/demo.sh $(BUILD)

# All tests under AddressSanitizer + UndefinedBehaviorSanitizer, warnings as
# errors, built with clang so that the libFuzzer targets build and run too.
check: deps
	@cmake -S . -B $(CHECK_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
		-DEA_SANITIZE=ON -DEA_WERROR=ON -DEA_FUZZ=ON >/dev/null
	@cmake --build $(CHECK_BUILD) -j $(JOBS)
	@cd $(CHECK_BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@$(BUILD)/bin/bench_se_sign
	@$(BUILD)/bin/bench_se_ops
	@$(BUILD)/bin/bench_handshake -m $(BUILD)/lib/ossl-modules
	@$(BUILD)/bin/bench_offload
	@$(BUILD)/bin/bench_offload -n 3 -r 1 -t se050
	@$(BUILD)/bin/bench_ca_issue
	@$(BUILD)/bin/bench_provision
	@bash scripts/bench_cloud.sh $(BUILD)

install: build
	@cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)

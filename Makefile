# Thin wrapper around meson; see README.md.
BUILD ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?=
RESULTS ?= $(BUILD)/results

.PHONY: all deps compile deb check check-unit check-host check-rxe check-style check-asan demo bench fuzz format clean

all: compile

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

compile: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The Debian package (debian/), built from a copy of the tree in
# $(DEB_DIR)/src: $(DEB_DIR)/rdmig_VERSION_ARCH.deb.
DEB_DIR ?= $(BUILD)/deb
deb:
	@scripts/build-deb $(DEB_DIR)

# Everything: unit tests, host integration tests, soft-RoCE tests.
check: deps
	@$(MAKE) --no-print-directory compile
	@scripts/check all

check-unit: compile
	@scripts/check unit

check-host: compile
	@scripts/check host

check-rxe: compile
	@scripts/check rxe

check-style:
	@scripts/check style

# Unit and host tests under AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan: deps
	@test -f $(ASAN_BUILD)/build.ninja || meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(ASAN_BUILD)
	@BUILD=$(ASAN_BUILD) scripts/check unit host

demo: deps
	@$(MAKE) --no-print-directory compile
	@scripts/demo

bench: deps
	@$(MAKE) --no-print-directory compile
	@bench/run

# libFuzzer targets (clang), each run for FUZZ_SECONDS (default 60); FUZZ_TARGETS picks some.
# Only the targets are built: the rest of the tree is gcc's business.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image ctrl api_json lpsock progress connhint
fuzz:
	@test -f build-fuzz/build.ninja || CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false
	ninja -C build-fuzz $(addprefix test/fuzz/fuzz_,$(FUZZ_TARGETS))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

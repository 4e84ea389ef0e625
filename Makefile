# The words people type. CMake + Ninja do the work; see CMakePresets.json.
PRESET ?= debug
CMAKE  ?= cmake

.PHONY: all deps build check unit fuzz bench demo clean format

all: build

deps:
	@scripts/deps

build:
	$(CMAKE) --preset $(PRESET) >/dev/null
	$(CMAKE) --build --preset $(PRESET)

# Everything, under ASan+UBSan: unit, crash, integration and fuzz-corpus tests, then a short
# libFuzzer run of every target. ctest's closing line is the summary.
check: deps
	$(CMAKE) --preset asan >/dev/null
	$(CMAKE) --build --preset asan
	$(CMAKE) --preset fuzz >/dev/null
	$(CMAKE) --build --preset fuzz
	TANDEM_FUZZ_BUILD=$(CURDIR)/build/fuzz ctest --preset asan

fuzz: deps
	$(CMAKE) --preset fuzz >/dev/null
	$(CMAKE) --build --preset fuzz
	scripts/fuzz-run build/fuzz $${FUZZ_SECONDS:-60}

bench:
	@scripts/deps --bench
	$(CMAKE) --preset release >/dev/null
	$(CMAKE) --build --preset release
	bench/run build/release

demo: deps
	$(CMAKE) --preset release >/dev/null
	$(CMAKE) --build --preset release
	scripts/demo build/release

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

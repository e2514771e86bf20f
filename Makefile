# Build of the test kernel, its ISO, libmm.a and the host tests.
# `make help` lists the targets.

BUILD    ?= build
MEM      ?= 512M
SMP      ?= 1
CPU      ?= max
FIRMWARE ?= bios
ACCEL    ?= tcg
TIMEOUT  ?= 120

# ---------------------------------------------------------------- host tests
HOST_CC      ?= gcc
FUZZ_CC      ?= clang
HOST_CFLAGS  := -std=c11 -Wall -Wextra -Werror -g -O1 -Iinclude -Itests/host \
                -DMM_HOST -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined -pthread
BENCH_CFLAGS := -std=c11 -Wall -Wextra -Werror -g -O2 -Iinclude -Itests/host -DMM_HOST -pthread

MM_SRCS      := $(sort $(wildcard mm/*.c))
MM_HOST_SRCS := $(filter-out mm/arch_x86.c,$(MM_SRCS))
HARNESS_SRCS := tests/host/harness.c tests/host/arch_host.c
HOST_TESTS   := $(patsubst tests/host/%.c,$(BUILD)/host/%,$(sort $(wildcard tests/host/test_*.c)))
FUZZERS      := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
BENCHES      := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard tests/bench/bench_*.c)))
HOST_DEPS    := $(MM_HOST_SRCS) $(HARNESS_SRCS) $(wildcard include/mm/*.h tests/host/*.h)

$(BUILD)/host/%: tests/host/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -g -O1 -Iinclude -Itests/host -DMM_HOST -DMM_FUZZ \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS)

$(BUILD)/bench/%: tests/bench/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(BENCH_CFLAGS) -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS) -lm

.PHONY: host-build test-host
host-build: $(HOST_TESTS)
test-host: $(HOST_TESTS)
	@tools/run-host-tests.sh $(HOST_TESTS)

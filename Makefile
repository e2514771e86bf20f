# Makefile - builds the test kernel, its bootable ISO, libmm.a and the host
# tests, and runs them.  `make help` lists the targets and variables.

BUILD    ?= build
MEM      ?= 512M
SMP      ?= 1
# CPUs for `make run` (SMP=n overrides it); V=1 shows full command lines.
RUN_SMP  ?= 2
V        ?= 0
CPU      ?= max
FIRMWARE ?= bios
ACCEL    ?= tcg
TIMEOUT  ?= 180
INJECT   ?=
PREFIX   ?= /usr/local

# ------------------------------------------------------------- toolchain
# A cross compiler is used when present; the host gcc works too with the
# freestanding flags below.
ifneq ($(shell command -v x86_64-elf-gcc 2>/dev/null),)
  KCC := x86_64-elf-gcc
  KAR := x86_64-elf-ar
else
  KCC := gcc
  KAR := ar
endif
NASM ?= nasm

# Quiet output in the style of kbuild: "  CC      mm/buddy.c"; V=1 prints
# the full command lines instead.
ifeq ($(V),1)
  Q :=
  say =
else
  Q := @
  say = printf '  %-7s %s\n' '$(1)' '$(2)';
endif

# The library sees only include/ (mm/ must not depend on kernel/).
LIB_CFLAGS := -std=c11 -ffreestanding -mcmodel=kernel -mno-red-zone -mgeneral-regs-only \
              -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
              -fno-omit-frame-pointer -O2 -g -Wall -Wextra -Werror -Iinclude
# The kernel and its copy of the library take the inline fast-path hooks
# (kernel/mm-inline/mm_platform_inline.h; see KMM_CFLAGS below).
KINLINE := -DMM_PLATFORM_INLINE -Ikernel/mm-inline
KCFLAGS := $(LIB_CFLAGS) $(KINLINE) -Ikernel
ifneq ($(INJECT),)
  KCFLAGS += -DKTEST_INJECT_$(INJECT)
endif
KLDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 \
            -Wl,-z,noexecstack -T linker.ld

MM_SRCS      := $(sort $(wildcard mm/*.c))
KERNEL_CSRCS := $(sort $(wildcard kernel/*.c)) $(sort $(wildcard tests/kernel/*.c))
KERNEL_ASRCS := $(sort $(wildcard boot/*.asm kernel/*.asm))
KHEADERS     := $(wildcard include/mm/*.h kernel/*.h kernel/mm-inline/*.h user/*.h)

KOBJ_DIR := $(BUILD)/kobj$(if $(INJECT),-$(INJECT))
MM_OBJS  := $(patsubst %.c,$(BUILD)/lobj/%.o,$(MM_SRCS))
# The test kernel links its own copy of the library, built with its inline
# fast-path hooks (kernel/mm-inline/mm_platform_inline.h); build/libmm.a
# stays generic (out-of-line hooks) for tests/embed and `make install`.
KMM_CFLAGS := $(LIB_CFLAGS) $(KINLINE)
KMM_OBJS   := $(patsubst %.c,$(BUILD)/kmmobj/%.o,$(MM_SRCS))
K_OBJS   := $(patsubst %.c,$(KOBJ_DIR)/%.o,$(KERNEL_CSRCS)) \
            $(patsubst %.asm,$(KOBJ_DIR)/%.o,$(KERNEL_ASRCS)) \
            $(KOBJ_DIR)/user/embed.o

KERNEL_ELF := $(BUILD)/kernel$(if $(INJECT),-$(INJECT)).elf
KERNEL_ISO := $(BUILD)/kernel$(if $(INJECT),-$(INJECT)).iso
LIBMM      := $(BUILD)/libmm.a
LIBMM_K    := $(BUILD)/libmm-kernel.a

.PHONY: all
all: $(KERNEL_ISO) $(LIBMM)

$(BUILD)/lobj/%.o: %.c $(wildcard include/mm/*.h mm/*.h)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<) $(KCC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/kmmobj/%.o: %.c $(wildcard include/mm/*.h mm/*.h) kernel/mm-inline/mm_platform_inline.h
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$< [kernel]) $(KCC) $(KMM_CFLAGS) -c $< -o $@

$(KOBJ_DIR)/%.o: %.c $(KHEADERS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<) $(KCC) $(KCFLAGS) -c $< -o $@

$(KOBJ_DIR)/%.o: %.asm
	@mkdir -p $(dir $@)
	$(Q)$(call say,AS,$<) $(NASM) -f elf64 -g -F dwarf -o $@ $<

# The user program (user/): freestanding, no SSE (the kernel saves no FPU
# state), linked at 0x400000 by user/user.ld, embedded in the kernel's
# rodata by user/embed.asm (kernel/user.c loads it).
USER_CFLAGS := -std=c11 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
               -fno-asynchronous-unwind-tables -fcf-protection=none -mgeneral-regs-only \
               -O2 -g -Wall -Wextra -Werror
USER_ELF    := $(BUILD)/user/prog.elf

$(USER_ELF): user/prog.c user/modes.h user/abi.h user/user.ld
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,user/prog.c) $(KCC) $(USER_CFLAGS) -nostdlib -static -no-pie -Wl,--build-id=none \
	    -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -T user/user.ld -o $@ user/prog.c

$(KOBJ_DIR)/user/embed.o: user/embed.asm $(USER_ELF)
	@mkdir -p $(dir $@)
	$(Q)$(call say,AS,$<) $(NASM) -f elf64 -i $(dir $(USER_ELF)) -o $@ $<

$(LIBMM): $(MM_OBJS)
	@rm -f $@
	$(Q)$(call say,AR,$@) $(KAR) rcs $@ $^

$(LIBMM_K): $(KMM_OBJS)
	@rm -f $@
	$(Q)$(call say,AR,$@) $(KAR) rcs $@ $^

$(KERNEL_ELF): $(K_OBJS) $(LIBMM_K) linker.ld
	$(Q)$(call say,LD,$@) $(KCC) $(KLDFLAGS) -o $@ $(K_OBJS) $(LIBMM_K)

$(KERNEL_ISO): $(KERNEL_ELF) tools/grub.cfg
	@rm -rf $@.dir && mkdir -p $@.dir/boot/grub
	$(Q)cp $(KERNEL_ELF) $@.dir/boot/kernel.elf
	$(Q)cp tools/grub.cfg $@.dir/boot/grub/grub.cfg
	$(Q)$(call say,ISO,$@) grub-mkrescue -o $@ $@.dir 2>$(BUILD)/grub-mkrescue.log || \
	    { cat $(BUILD)/grub-mkrescue.log; exit 1; }

.PHONY: kernel iso lib deps
kernel: $(KERNEL_ELF)
iso: $(KERNEL_ISO)
lib: $(LIBMM)
deps:
	@tools/install-deps.sh

# ---------------------------------------------------------------- running
QEMU_VARS = MEM=$(MEM) SMP=$(SMP) CPU=$(CPU) FIRMWARE=$(FIRMWARE) ACCEL=$(ACCEL) TIMEOUT=$(TIMEOUT)

.PHONY: run test-kernel debug
# make run boots RUN_SMP (2) CPUs unless SMP is given, so that the SMP
# cases run.  Both targets keep the serial log and draw the picture of
# memory from it next to it (tools/memory-svg.py; README "Pictures"); the
# boot's status is kept, and a picture that cannot be drawn from the log of
# a passing boot fails the target.
RUN_SMP_USED = $(if $(filter command line environment,$(origin SMP)),$(SMP),$(RUN_SMP))
MEMORY_SVG   = $(BUILD)/memory.svg
RUN_LOG      = $(BUILD)/serial-$(FIRMWARE)-$(MEM)-smp$(RUN_SMP_USED)-$(CPU).log
TEST_LOG     = $(BUILD)/serial-$(FIRMWARE)-$(MEM)-smp$(SMP)-$(CPU).log
draw_memory  = rc=$$?; tools/memory-svg.py $(1) -o $(MEMORY_SVG) && \
	    echo "  SVG     $(MEMORY_SVG) (from $(1))" || [ $$rc -ne 0 ] || rc=1; exit $$rc

run:
	@tools/install-deps.sh --quiet
	@$(MAKE) --no-print-directory iso
	@$(QEMU_VARS) SMP=$(RUN_SMP_USED) LOG=$(RUN_LOG) \
	    tools/run-qemu.sh run $(KERNEL_ISO); $(call draw_memory,$(RUN_LOG))

test-kernel:
	@tools/install-deps.sh --quiet
	@$(MAKE) --no-print-directory iso
	@$(QEMU_VARS) EXPECT_CPUS=$(SMP) LOG=$(TEST_LOG) \
	    tools/run-qemu.sh test $(KERNEL_ISO); $(call draw_memory,$(TEST_LOG))

# A scripted gdb session against a halted QEMU: the mm-* commands of
# tools/gdb/ checked against the kernel's own dumps (tools/test-gdb.sh).
.PHONY: test-gdb
test-gdb:
	@tools/install-deps.sh --quiet
	@$(MAKE) --no-print-directory iso
	@tools/test-gdb.sh $(KERNEL_ISO) $(KERNEL_ELF)

debug:
	@tools/install-deps.sh --quiet
	@$(MAKE) --no-print-directory iso
	@echo "QEMU is halted with a gdb stub on :1234; in another terminal run:"
	@echo "    gdb -x tools/gdbinit $(KERNEL_ELF)"
	@$(QEMU_VARS) tools/run-qemu.sh debug $(KERNEL_ISO)

# The embedding example (tests/embed): a separate kernel that links
# build/libmm.a exactly as docs/INTEGRATION.md describes.
.PHONY: test-embed
test-embed: $(LIBMM)
	@tools/install-deps.sh --quiet
	@$(MAKE) --no-print-directory -C tests/embed
	@$(QEMU_VARS) LOG=tests/embed/build/serial-$(FIRMWARE).log \
	    tools/run-qemu.sh test tests/embed/build/embed.iso
	@$(QEMU_VARS) LOG=tests/embed/build/serial-own-$(FIRMWARE).log \
	    tools/run-qemu.sh test tests/embed/build/embed-own.iso

# The embedding example built from an installed libmm through pkg-config
# (make install + libmm.pc), as a kernel outside this tree would, and booted.
PC_PREFIX := $(abspath $(BUILD))/prefix
.PHONY: test-pkgconfig
test-pkgconfig: $(LIBMM)
	@rm -rf $(PC_PREFIX)
	@$(MAKE) --no-print-directory install PREFIX=$(PC_PREFIX) >/dev/null
	@echo "pkg-config --cflags --libs libmm: $$(PKG_CONFIG_PATH=$(PC_PREFIX)/lib/pkgconfig pkg-config --cflags --libs libmm)"
	@PKG_CONFIG_PATH=$(PC_PREFIX)/lib/pkgconfig $(MAKE) --no-print-directory -s -C tests/embed \
	    PKG_CONFIG_LIBMM=1 OUT=build-pc build-pc/embed.iso
	@$(QEMU_VARS) LOG=tests/embed/build-pc/serial.log \
	    tools/run-qemu.sh test tests/embed/build-pc/embed.iso

# Deliberately broken glue: each boot passes only when the library's
# mm_conformance suite reports the named failure ("not ok <n> <check>")
# and the kernel exits with failure (tools/run-qemu.sh, EXPECT_NOT_OK).
# The shootdown that skips a CPU needs SMP, so it is the test kernel with
# INJECT=shootdown_skip (kernel/smp.c) on 2 CPUs; the other two are
# variants of the single-CPU embedding example (tests/embed/Makefile).
.PHONY: test-broken-shootdown test-broken-irq test-broken-wx test-broken-stackoverflow
test-broken-shootdown:
	@$(MAKE) --no-print-directory iso INJECT=shootdown_skip
	@$(QEMU_VARS) SMP=2 EXPECT_NOT_OK=shootdown_reaches_every_cpu \
	    LOG=$(BUILD)/serial-broken-shootdown.log \
	    tools/run-qemu.sh test $(BUILD)/kernel-shootdown_skip.iso
# INJECT=stackoverflow (kernel/main.c) recurses without end on the boot
# CPU's kernel stack: the boot passes only when the double-fault handler's
# panic names the overflow and the stack (tools/run-qemu.sh, EXPECT_PANIC).
test-broken-stackoverflow:
	@$(MAKE) --no-print-directory iso INJECT=stackoverflow
	@$(QEMU_VARS) SMP=2 EXPECT_PANIC="double fault: kernel stack overflow: stack 'cpu0' of cpu 0" \
	    LOG=$(BUILD)/serial-broken-stackoverflow.log \
	    tools/run-qemu.sh test $(BUILD)/kernel-stackoverflow.iso
test-broken-irq: $(LIBMM)
	@$(MAKE) --no-print-directory -C tests/embed
	@$(QEMU_VARS) EXPECT_NOT_OK=irq_save_restore_nest \
	    LOG=tests/embed/build/serial-broken-irq.log \
	    tools/run-qemu.sh test tests/embed/build/embed-broken-irq.iso
test-broken-wx: $(LIBMM)
	@$(MAKE) --no-print-directory -C tests/embed
	@$(QEMU_VARS) EXPECT_NOT_OK=image_sections_wx \
	    LOG=tests/embed/build/serial-broken-wx.log \
	    tools/run-qemu.sh test tests/embed/build/embed-own-broken-wx.iso

# ------------------------------------------------------------- host tests
HOST_CC      ?= gcc
FUZZ_CC      ?= clang
# Every host build takes the harness's inlined fast-path hooks
# (tests/host/mm_platform_inline.h; include/mm/platform.h).
HOST_PLATFORM := -Iinclude -Itests/host -DMM_HOST -DMM_PLATFORM_INLINE
HOST_CFLAGS  := -std=c11 -Wall -Wextra -Werror -g -O1 $(HOST_PLATFORM) -DMM_STEP_COUNT -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined -pthread
BENCH_CFLAGS := -std=c11 -Wall -Wextra -Werror -g -O2 $(HOST_PLATFORM) -pthread

MM_HOST_SRCS := $(filter-out mm/arch_x86.c,$(MM_SRCS))
HARNESS_SRCS := tests/host/harness.c tests/host/arch_host.c tests/host/tlb_model.c
HOST_TESTS   := $(patsubst tests/host/%.c,$(BUILD)/host/%,$(sort $(wildcard tests/host/test_*.c)))
FUZZERS      := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
BENCHES      := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard tests/bench/bench_*.c)))
HOST_DEPS    := $(MM_HOST_SRCS) $(HARNESS_SRCS) $(wildcard include/mm/*.h mm/*.h tests/host/*.h tests/bench/*.h tests/fuzz/*.h)
FUZZ_TIME    ?= 10
FUZZ_LONG    ?= 300

$(BUILD)/host/%: tests/host/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,HOSTCC,$@) $(HOST_CC) $(HOST_CFLAGS) -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS) $(HOST_TEST_LIBS)

# test_cow forces one cross-CPU interleaving by wrapping a library call
# (test_destroy_races_survivor).
$(BUILD)/host/test_cow: HOST_TEST_LIBS := -Wl,--wrap=mm_frameref_put

$(BUILD)/fuzz/%: tests/fuzz/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,FUZZCC,$@) $(FUZZ_CC) -std=c11 -g -O1 $(HOST_PLATFORM) -DMM_FUZZ \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS)

$(BUILD)/bench/%: tests/bench/%.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,HOSTCC,$@) $(HOST_CC) $(BENCH_CFLAGS) -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS) $(BENCH_LIBS) -lm

# bench_kmalloc runs jemalloc and mimalloc next to glibc in one process.
# libc comes first on the link line so that the process malloc stays
# glibc's (both libraries export malloc too); see the file's comment.
$(BUILD)/bench/bench_kmalloc: BENCH_LIBS := -Wl,--no-as-needed -lc -ljemalloc -lmimalloc -ldl
BENCH_DEPS := /usr/include/jemalloc/jemalloc.h:libjemalloc-dev /usr/include/mimalloc.h:libmimalloc-dev

.PHONY: test-host fuzz fuzz-short bench
test-host: $(HOST_TESTS)
	@tools/run-host-tests.sh $(HOST_TESTS)

fuzz-short: $(FUZZERS)
	@tools/run-fuzz.sh $(FUZZ_TIME) $(FUZZERS)

fuzz: $(FUZZERS)
	@tools/run-fuzz.sh $(FUZZ_LONG) $(FUZZERS)

bench:
	@tools/install-deps.sh --quiet $(BENCH_DEPS)
	@$(MAKE) --no-print-directory $(BENCHES)
	@tools/machine-info.sh
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# Cache misses per MMIO-pool step under callgrind's cache simulator:
# machine-independent counts to go with bench_mmio's times.
$(BUILD)/bench-cachesim/bench_mmio: tests/bench/bench_mmio.c $(HOST_DEPS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,HOSTCC,$@) $(HOST_CC) $(BENCH_CFLAGS) -DBENCH_CACHESIM -o $@ $< $(MM_HOST_SRCS) $(HARNESS_SRCS) -lm

.PHONY: bench-cachesim
bench-cachesim: $(BUILD)/bench-cachesim/bench_mmio
	@tools/install-deps.sh --quiet valgrind:valgrind
	@tools/bench-cachesim.sh $<

# ------------------------------------------------------------------ test
# Everything unattended; ends with one summary line.
.PHONY: test
# prove runs tools/test-all.sh (a TAP stream, one test point per step) and
# prints the standard summary.  It is started through App::Prove with
# autoflush on and the console formatter (prove picks a formatter that
# holds everything back until the end when its output is not a terminal),
# so that a log file (CI) fills line by line as on a terminal.
PROVE := perl -MApp::Prove -e '$$|=1; my $$p = App::Prove->new; $$p->process_args(@ARGV); exit($$p->run ? 0 : 1)' --
test:
	@tools/install-deps.sh --quiet
	@$(PROVE) -v --merge --formatter TAP::Formatter::Console tools/test-all.sh

# ------------------------------------------------------------- install
.PHONY: install clean help
# Installs the library, its headers and libmm.pc, so that a kernel's
# build can ask `pkg-config --cflags --libs libmm` (the guide, section 3).
install: $(LIBMM)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/mm
	install -m 644 $(LIBMM) $(DESTDIR)$(PREFIX)/lib/libmm.a
	install -m 644 include/mm/*.h $(DESTDIR)$(PREFIX)/include/mm/
	sed -e 's|@PREFIX@|$(PREFIX)|' tools/libmm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libmm.pc

clean:
	rm -rf $(BUILD)

help:
	@echo "Targets:"
	@echo "  make            build build/kernel.elf, build/kernel.iso and build/libmm.a"
	@echo "  make run        boot the ISO in QEMU ($(RUN_SMP) CPUs unless SMP=n), serial console here"
	@echo "  make test       everything below that is unattended, as TAP under prove"
	@echo "  make test-host  host unit tests under ASan/UBSan"
	@echo "  make test-kernel  boot once and run the in-kernel self-tests (KTAP)"
	@echo "                  (make run and make test-kernel also draw build/memory.svg from the log)"
	@echo "  make test-embed   boot the embedding example (tests/embed) that links libmm.a"
	@echo "  make test-pkgconfig  install libmm with libmm.pc, build the example through pkg-config, boot it"
	@echo "  make test-broken-shootdown|test-broken-irq|test-broken-wx"
	@echo "                  boot deliberately broken glue: mm_conformance must name the fault"
	@echo "  make test-broken-stackoverflow  the double-fault handler must name the overflow"
	@echo "  make fuzz       long libFuzzer runs (FUZZ_LONG=$(FUZZ_LONG) s each); fuzz-short: FUZZ_TIME=$(FUZZ_TIME) s"
	@echo "  make bench      host micro-benchmarks (installs jemalloc and mimalloc for bench_kmalloc)"
	@echo "  make bench-cachesim  cache misses per MMIO-pool step (callgrind)"
	@echo "  make debug      QEMU halted with a gdb stub (gdb -x tools/gdbinit: mm-* commands)"
	@echo "  make test-gdb   scripted gdb session: the mm-* commands checked against the kernel's dumps"
	@echo "  make lib        build/libmm.a;  make install PREFIX=... (with lib/pkgconfig/libmm.pc)"
	@echo "  make deps       install the Debian packages the project needs"
	@echo "  make clean"
	@echo "Variables:"
	@echo "  MEM=$(MEM) SMP=$(SMP) RUN_SMP=$(RUN_SMP) CPU=$(CPU) FIRMWARE=bios|uefi ACCEL=tcg|kvm TIMEOUT=$(TIMEOUT)"
	@echo "  INJECT=fail|panic|triple|hang|shootdown_skip|stackoverflow (deliberately broken kernel)"
	@echo "  V=1 (full command lines)  BUILD=$(BUILD)  PREFIX=$(PREFIX)"

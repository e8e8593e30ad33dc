# ecr — build, test, benchmark, demo.
#
#   make              build build/ecr, build/libecr.a and build/libecr.so (for python/ecr)
#   make test         unit + CLI tests, then the same unit tests under ASan+UBSan
#   make bench        benchmarks (each prints its ratio against a peer)
#   make stress       the long fault test: kills and write failures for every objective
#   make fuzz         every parser under libFuzzer, 10^6 executions each (clang)
#   make demo         ECR against no ECR on the bundled lo10 corpus, end to end
#   make teacher      retrain the shipped reference model and its anchors (about 90 min)
#   make experiment   the methods and ablations on lo10 (resumable; ONLY=REGEX for a part,
#                     STUDY=convergence for the 5-epoch study)
#   make precision    bf16 against fp32 on lo10 (resumable; ONLY=REGEX for a part)
#
# Options: NO_BLAS=1 (portable matrix products), NO_OMP=1 (single-threaded),
#          NO_DNNL=1 (no oneDNN: no bf16 products, --precision auto means fp32),
#          NO_MPI=1 (no MPI: train, embed and eval run as one process),
#          SAN=1 (AddressSanitizer + UndefinedBehaviorSanitizer; builds into build-san/).

ifeq ($(origin CC),default)
CC := gcc
endif
# FUZZ=1: the libFuzzer build (clang; ASan + UBSan; into build-fuzz/; see `make fuzz`).
ifeq ($(FUZZ),1)
CC := clang
endif
MULTIARCH := $(or $(shell $(CC) -print-multiarch 2>/dev/null),$(shell gcc -print-multiarch 2>/dev/null))
# Each configuration builds into its own folder, so objects never mix across options.
VARIANT := $(if $(filter 1,$(FUZZ)),-fuzz)$(if $(filter 1,$(SAN)),-san)$(if $(filter 1,$(NO_BLAS)),-noblas)$(if $(filter 1,$(NO_OMP)),-noomp)$(if $(filter 1,$(NO_DNNL)),-nodnnl)$(if $(filter 1,$(NO_MPI)),-nompi)
BUILD   ?= build$(VARIANT)
ifeq ($(FUZZ),1)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all
else ifeq ($(SAN),1)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
# -fno-trapping-math: we never unmask floating-point exceptions, and without it gcc keeps the
# selects of the kernels' exp (ops.c fexp) as branches and vectorises no loop that calls it
# (SwiGLU, the softmaxes). It changes no value: each operation is the same IEEE operation,
# in the same order (reassociation would need -fassociative-math, which we do not use).
OPT     := -O3 -march=native -g -fno-trapping-math
endif

# V=1 shows full command lines.
Q ?= @
ifeq ($(V),1)
Q :=
endif
# The library's layers, one folder each (docs/DESIGN.md, "Layout"); every folder is on the
# include path, so a source names its headers without their folder.
SRC_DIRS := base io data model method train eval
CFLAGS_BASE := -std=c11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -D_GNU_SOURCE -Iinclude \
               $(addprefix -Isrc/,$(SRC_DIRS))
LDLIBS  := -lm

# ---- dependency detection ------------------------------------------------------------
FOUND :=
# cJSON and utf8proc are required.
ifeq ($(shell pkg-config --exists libcjson && echo y),y)
  CFLAGS_BASE += $(shell pkg-config --cflags libcjson)
  LDLIBS += $(shell pkg-config --libs libcjson)
  FOUND += cJSON-$(shell pkg-config --modversion libcjson)
else
  $(error cJSON not found: apt-get install libcjson-dev)
endif
ifeq ($(shell pkg-config --exists libutf8proc && echo y),y)
  CFLAGS_BASE += $(shell pkg-config --cflags libutf8proc)
  LDLIBS += $(shell pkg-config --libs libutf8proc)
  FOUND += utf8proc-$(shell pkg-config --modversion libutf8proc)
else
  $(error utf8proc not found: apt-get install libutf8proc-dev)
endif
# OpenMP (optional).
ifneq ($(NO_OMP),1)
  ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo y),y)
    CFLAGS_BASE += -fopenmp -DECR_HAVE_OMP=1
    LDLIBS += -fopenmp
    FOUND += OpenMP
    HAVE_OMP := 1
  endif
endif
ifneq ($(HAVE_OMP),1)
  CFLAGS_BASE += -Wno-unknown-pragmas   # `#pragma omp` lines are simply serial without OpenMP
endif
# OpenBLAS (optional). Prefer Debian's OpenMP build so BLAS threads and ours cooperate.
ifneq ($(NO_BLAS),1)
  OB_OMP := /usr/lib/$(MULTIARCH)/openblas-openmp
  ifneq ($(wildcard $(OB_OMP)/libopenblas.so),)
    CFLAGS_BASE += -I/usr/include/$(MULTIARCH)/openblas-openmp -DECR_HAVE_BLAS=1
    LDLIBS += -L$(OB_OMP) -Wl,-rpath,$(OB_OMP) -lopenblas
    FOUND += OpenBLAS(openmp)
  else ifeq ($(shell pkg-config --exists openblas && echo y),y)
    CFLAGS_BASE += $(shell pkg-config --cflags openblas) -DECR_HAVE_BLAS=1
    LDLIBS += $(shell pkg-config --libs openblas)
    FOUND += OpenBLAS-$(shell pkg-config --modversion openblas)
  endif
endif

# oneDNN (optional): the bf16 matrix products (AMX / AVX512-BF16). Debian's libdnnl-dev has
# no pkg-config file, so the header and the library are tried directly.
ifneq ($(NO_DNNL),1)
  ifeq ($(shell printf '\043include <oneapi/dnnl/dnnl.h>\nint main(void){return dnnl_version() == 0;}\n' | $(CC) -x c - -ldnnl -o /dev/null 2>/dev/null && echo y),y)
    CFLAGS_BASE += -DECR_HAVE_DNNL=1
    LDLIBS += -ldnnl
    FOUND += oneDNN-$(shell printf '\043include <oneapi/dnnl/dnnl_version.h>\nDNNL_VERSION_MAJOR.DNNL_VERSION_MINOR.DNNL_VERSION_PATCH\n' | $(CC) -E -P -x c - 2>/dev/null | tr -d ' ')
    HAVE_DNNL := 1
  endif
endif

# MPI (optional): `ecr train`, `embed` and `eval` across the processes of an mpirun job.
# Only the CLI (cli/comm.c) and bench_allreduce include mpi.h; the library takes a
# communicator (ecr_comm).
MPI_CFLAGS :=
ifneq ($(NO_MPI),1)
  ifeq ($(shell pkg-config --exists mpi-c && echo y),y)
    MPI_CFLAGS += $(shell pkg-config --cflags mpi-c) -DECR_HAVE_MPI=1
    MPI_LDLIBS := $(shell pkg-config --libs mpi-c)
    LDLIBS += $(MPI_LDLIBS)
    FOUND += MPI-$(shell pkg-config --modversion mpi-c)
    HAVE_MPI := 1
  endif
endif

CFLAGS  := $(CFLAGS_BASE) $(OPT) $(EXTRA_CFLAGS)
LDFLAGS := $(OPT)
# The compiler flags of the last build of this folder: objects depend on the file, which is
# rewritten only when the flags change, so a change of flags (or EXTRA_CFLAGS=...) rebuilds.
FLAGS_STAMP := $(BUILD)/.cflags
$(shell mkdir -p $(BUILD) && echo '$(CC) $(CFLAGS) $(MPI_CFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
        echo '$(CC) $(CFLAGS) $(MPI_CFLAGS)' > $(FLAGS_STAMP))

SRC      := $(sort $(foreach d,$(SRC_DIRS),$(wildcard src/$(d)/*.c)))
HDR      := $(wildcard src/*/*.h)
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/cli/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TESTLIB  := $(BUILD)/tests/testlib.o
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB      := $(BUILD)/libecr.a
# The shared library (python/ecr loads it with ctypes): the same sources compiled again with
# -fPIC into their own folder (calls inside it bound at link time, as in the static library),
# linked without MPI (the library never calls it).
SO       := $(BUILD)/libecr.so
PIC_OBJ  := $(SRC:src/%.c=$(BUILD)/pic/%.o)
ECR      := $(BUILD)/ecr
DATA     := build/data/lo10/train.jsonl build/data/lo10/valid.jsonl

.PHONY: fuzz fuzz-smoke fuzz-bins teacher experiment precision all test test-unit test-cli test-san test-nodnnl bench stress demo data clean found
all: found $(ECR) $(LIB) $(SO)

found:
	@echo "ecr: found $(FOUND)$(if $(filter 1,$(NO_BLAS)), (NO_BLAS: portable matmul),)$(if $(filter 1,$(NO_OMP)), (NO_OMP: one thread),)$(if $(HAVE_DNNL),, (no oneDNN: fp32 only; apt-get install libdnnl-dev for bf16))$(if $(HAVE_MPI),, (no MPI: one process; apt-get install libopenmpi-dev for mpirun))$(if $(filter y,$(HAVE_LIBFUZZER)), libFuzzer(clang), (no libFuzzer: make fuzz needs apt-get install clang libfuzzer-14-dev))"

$(BUILD)/obj/%.o: src/%.c include/ecr.h $(HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/cli/%.o: cli/%.c include/ecr.h $(wildcard cli/*.h) $(HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	$(Q)$(CC) $(CFLAGS) $(MPI_CFLAGS) -Icli -c $< -o $@

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR   $@"
	$(Q)rm -f $@ && ar rcs $@ $^   # from scratch: a removed source leaves no stale object

$(BUILD)/pic/%.o: src/%.c include/ecr.h $(HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC   $< (-fPIC)"
	$(Q)$(CC) $(CFLAGS) -fPIC -fno-semantic-interposition -c $< -o $@

$(SO): $(PIC_OBJ)
	@echo "  SO   $@"
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,libecr.so -Wl,--no-undefined -Wl,-Bsymbolic $^ $(filter-out $(MPI_LDLIBS),$(LDLIBS)) -o $@

$(ECR): $(CLI_OBJ) $(LIB)
	@echo "  LINK $@"
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

# Helpers shared by the unit tests (tests/testlib.h), linked into each of them.
$(TESTLIB): tests/testlib.c tests/testlib.h include/ecr.h $(HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	$(Q)$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h tests/testlib.h $(TESTLIB) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  TEST $@"
	$(Q)$(CC) $(CFLAGS) -Itests $< $(TESTLIB) $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  BENCH $@"
	$(Q)$(CC) $(CFLAGS) $(MPI_CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The bundled corpus ships xz-compressed; decompress on demand.
build/data/lo10/%.jsonl: data/lo10/%.jsonl.xz
	@mkdir -p $(dir $@)
	xz -dc $< > $@.tmp && mv $@.tmp $@
data: $(DATA)

# Unit tests: each tests/test_*.c is a program that exits non-zero on any failed check.
test-unit: $(TEST_BIN) $(ECR) $(DATA)
	@mkdir -p build/tests   # scratch files of the tests, whatever the build folder
	@fail=0; for t in $(TEST_BIN); do \
	  ECR_BIN=$(ECR) $$t || { echo "FAILED: $$t"; fail=1; }; done; exit $$fail

# The fault injector of tests/cli_faults.sh (an LD_PRELOAD library; never sanitized: it is
# loaded before the sanitizer's runtime).
FAULTSHIM := $(BUILD)/faultshim.so
$(FAULTSHIM): tests/faultshim.c
	@mkdir -p $(dir $@)
	@echo "  SHIM $@"
	$(Q)$(CC) -O2 -fPIC -shared -Wall -Wextra -Werror $< -ldl -o $@

# CLI tests: tests/cli_*.sh drive the binary (exit codes, messages, no half-written files).
# The fault test tries every 3rd of its fault points but the renames (every 16th and at
# most 10 random kills under the sanitizers); `make stress` tries them all. Under the
# sanitizers the MPI test compares one objective (ecr) instead of three.
# The scripts run two at a time (each in its own scratch folder; their output is printed
# whole, script by script). Under the sanitizers the interoperability tests against other
# programs (llama.cpp in cli_export, the Python module in cli_python) are left out: what
# they drive of ecr is run under the sanitizers by test_gguf and cli_embed_text.
CLI_TESTS := $(filter-out tests/cli_lib.sh $(if $(filter 1,$(SAN)),tests/cli_export.sh tests/cli_python.sh),$(sort $(wildcard tests/cli_*.sh)))
test-cli: $(ECR) $(if $(filter 1,$(SAN)),,$(SO)) $(DATA) $(FAULTSHIM)
	@mkdir -p $(BUILD)/cli-logs
	@printf '%s\n' $(CLI_TESTS) | xargs -P 2 -I{} sh -c 'n=$$(basename {} .sh); t0=$$(date +%s); \
	  ECR_BIN=$(ECR) FAULTSHIM=$(abspath $(FAULTSHIM)) $(if $(filter 1,$(SAN)),FAULT_EVERY=16 FAULT_RANDOM_KILLS=10 MPI_OBJECTIVES=ecr,FAULT_EVERY=3) \
	  bash {} >$(BUILD)/cli-logs/$$n.log 2>&1; echo $$? >$(BUILD)/cli-logs/$$n.rc; echo $$(( $$(date +%s) - t0 )) >$(BUILD)/cli-logs/$$n.s'
	@fail=0; for t in $(CLI_TESTS); do n=$$(basename $$t .sh); cat $(BUILD)/cli-logs/$$n.log; \
	  [ "$$(cat $(BUILD)/cli-logs/$$n.rc)" = 0 ] || { echo "FAILED: $$t"; fail=1; }; done; \
	  echo "test-cli: seconds per script (two at a time):$$(for t in $(CLI_TESTS); do n=$$(basename $$t .sh); \
	  printf ' %s %s' $$n $$(cat $(BUILD)/cli-logs/$$n.s); done)"; exit $$fail

test-san:
	$(MAKE) --no-print-directory SAN=1 test-unit test-cli

# The build without oneDNN (NO_DNNL=1) must build too: its bf16 path is the reference engine.
test-nodnnl:
	$(MAKE) --no-print-directory NO_DNNL=1 build-nodnnl/ecr build-nodnnl/tests/test_bf16
	@mkdir -p build/tests
	build-nodnnl/tests/test_bf16

test: all test-unit test-cli
	$(MAKE) --no-print-directory test-nodnnl
	$(MAKE) --no-print-directory test-san
	FUZZ_TIME=1 $(MAKE) --no-print-directory fuzz-smoke
	@echo "make test: all passed"

bench: $(BENCH_BIN) $(ECR) $(DATA)
	@for b in $(BENCH_BIN); do ECR_BIN=$(ECR) $$b || exit 1; done
	@for b in $(sort $(wildcard bench/bench_*.sh)); do ECR_BIN=$(ECR) bash $$b || exit 1; done

# libFuzzer targets (fuzz/fuzz_*.c), built with FUZZ=1 into build-fuzz/fuzz/; they link the
# CLI's objects but main, for the argument parser and the report's loader.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ)) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $@"
	$(Q)$(CC) $(CFLAGS) -Icli -DFUZZ_ROOT='"$(abspath .)"' -fsanitize=fuzzer $< \
	  $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ)) $(LIB) $(LDLIBS) -o $@
fuzz-bins: $(FUZZ_BIN)

# make fuzz: every target for FUZZ_RUNS executions (default 10^6) from its seed corpus
# (fuzz/corpus/NAME/), crashes into fuzz/regress/NAME/, then a table of executions.
# make fuzz-smoke: the regression inputs, then a few seconds of each (part of make test).
# Without clang's libFuzzer, make fuzz fails and make fuzz-smoke says it skipped.
HAVE_LIBFUZZER = $(shell printf 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }\n' | \
  clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null && echo y)
fuzz fuzz-smoke:
	@if [ "$(HAVE_LIBFUZZER)" != y ]; then \
	  echo "fuzz: clang with libFuzzer not found: apt-get install clang libfuzzer-14-dev"; \
	  [ $@ = fuzz-smoke ] && echo "fuzz-smoke: skipped"; [ $@ = fuzz-smoke ]; exit; fi; \
	$(MAKE) --no-print-directory FUZZ=1 fuzz-bins && \
	bash scripts/fuzz.sh $(if $(filter fuzz-smoke,$@),--smoke) build-fuzz/fuzz

# The long fault test: kills at every file operation, at random moments and write failures
# for each objective (tests/cli_faults.sh; the README's "Robustness").
stress: $(ECR) $(DATA) $(FAULTSHIM)
	ECR_BIN=$(ECR) FAULTSHIM=$(abspath $(FAULTSHIM)) FAULT_OBJECTIVES="lm ecr kd lm+contrastive" \
	  FAULT_RANDOM_STEPS=$${FAULT_RANDOM_STEPS:-3000} FAULT_RANDOM_KILLS=$${FAULT_RANDOM_KILLS:-400} bash tests/cli_faults.sh

# The README's first command: the pipeline end to end on the bundled corpus.
demo: all $(DATA)
	ECR_BIN=$(ECR) bash scripts/demo.sh

# The methods x sizes x seeds and the ECR ablations; skips runs already in results/.
experiment: all $(DATA)
	ECR_BIN=$(ECR) bash scripts/experiment.sh $(if $(STUDY),--study $(STUDY)) $(if $(ONLY),--only '$(ONLY)')

# bf16 against fp32: the demo students, a small run and an ECR run in both precisions
# (resumable; results/precision/; see scripts/precision.sh).
precision: all $(DATA)
	ECR_BIN=$(ECR) bash scripts/precision.sh $(if $(ONLY),--only '$(ONLY)')

# The reference model and its anchors (about 90 minutes on 2 cores; resumes if stopped).
teacher: all $(DATA)
	ECR_BIN=$(ECR) bash scripts/teacher.sh

clean:
	rm -rf build build-san build-noblas* build-noomp build-san-*

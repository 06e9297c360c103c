# nvsrelayd - MongoDB-style change streams for NVSentinel on PostgreSQL.
#
#   make            build the daemon, the CLI and the tests
#   make demo       throwaway TLS PostgreSQL + daemon + sample events + a subscriber
#   make check      unit and integration tests (TAP, prove)
#   make check-unit the unit tests and fuzz corpus replays only (seconds, no PostgreSQL)
#   make check T=tests/integ/20-resume.t   only the named tests (T takes several)
#   make check SANITIZE=address,undefined
#   make check-valgrind   the same tests with the daemon and unit tests under valgrind
#   make check-long       the chaos checker, the load test and the 50-node fleet at their long sizes (minutes)
#   make fuzz FUZZ_TIME=30   each libFuzzer target for FUZZ_TIME seconds (clang)
#   make deps       install the Debian packages the build, demo and tests need
#                   (check, demo and the other test targets run it first; DEPS=0 skips it)
#   make deb        Debian packages in build/deb/ (dpkg-buildpackage)
#   make image      OCI image in build/image/ from those packages (mmdebstrap; no registry)
#
# Warnings are errors for development and CI; packagers' builds, with other
# compilers and flags, pass WERROR= (packaging/debian/rules does).

VERSION   := 0.1.0
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
SBINDIR   ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR    ?= $(PREFIX)/share/man
UNITDIR   ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DESTDIR   ?=

CC        ?= cc
# Sanitizer builds get their own tree so objects never mix.
B         := build$(if $(SANITIZE),-san)
PKGS      := libpq libcjson libsystemd openssl
WERROR    ?= -Werror
WARN      := -Wall -Wextra -Wpedantic -Wshadow -Wmissing-prototypes -Wformat=2 $(WERROR)
OPT       ?= -O2 -g
CFLAGS    ?= $(OPT)
# The daemon's modules by concern (see README "Hacking"); headers are found by
# name, so a module can move between folders without touching its includes.
DAEMON_DIRS := daemon daemon/pg daemon/stream daemon/net daemon/upstream
INCLUDES  := -Iproto $(DAEMON_DIRS:%=-I%) -Icli
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DNVSRELAY_VERSION=\"$(VERSION)\" $(WARN) $(CFLAGS) $(INCLUDES) -I$(B) \
             $(shell pkg-config --cflags $(PKGS))
LIBS       = $(shell pkg-config --libs $(PKGS)) -lev -lm
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDSAN      := -fsanitize=$(SANITIZE)
endif

PROTO_SRC  := proto/errors.c proto/frame.c proto/hostport.c proto/jsoncost.c proto/request.c proto/rfc3339.c proto/token.c \
              proto/utf8.c
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard $(DAEMON_DIRS:%=%/*.c)))
HEADERS    := $(wildcard proto/*.h cli/*.h $(DAEMON_DIRS:%=%/*.h))
# The CLI (cli/) links libnvsrelay; `import` also reads the daemon's
# configuration with conf_load.c, and every file with fileio.c.
CONF_OBJ   := $(patsubst %.c,$(B)/%.o,daemon/conf.c daemon/conf_value.c daemon/conf_load.c daemon/fileio.c \
              daemon/errbuf.c daemon/net/owners.c)
CLI_OBJ    := $(patsubst %.c,$(B)/%.o,$(filter-out cli/main.c,$(wildcard cli/*.c))) $(CONF_OBJ)
# libnvsrelay, the C client library (API: proto/nvsrelay.h).
LIB_SRC    := proto/frame.c proto/token.c proto/wire.c proto/nvsrelay.c
LIB_OBJ    := $(LIB_SRC:%.c=$(B)/pic/%.o)
LIB_LIBS    = $(shell pkg-config --libs libcjson openssl)
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
SQL_FILES  := $(sort $(wildcard sql/[0-9]*.sql))
PROTO_OBJ  := $(PROTO_SRC:%.c=$(B)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o) $(B)/sql_embed.o
PURE_OBJ   := $(PROTO_OBJ) $(B)/proto/wire.o $(CONF_OBJ) $(patsubst %.c,$(B)/%.o,daemon/net/allow.c daemon/net/intake.c \
              daemon/stream/diff.c daemon/stream/event.c daemon/net/outq.c cli/extjson.c daemon/stream/filter.c \
              daemon/metrics.c daemon/net/clientstat.c daemon/stream/subtab.c daemon/upstream/upframe.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
# Every fuzz target is also built with the normal compiler into a replay
# driver that runs it over its corpus, so `make check` catches regressions.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN   := $(FUZZ_TARGETS:%=$(B)/tests/replay_%)
# The benchmark's C clients (tests/bench/bench_*.c) build with everything
# else so they cannot rot; `make bench` runs the suite.
BENCH_BIN    := $(patsubst tests/bench/%.c,$(B)/bench/%,$(wildcard tests/bench/bench_*.c))

all: $(B)/nvsrelayd $(B)/nvsrelay $(B)/libnvsrelay.a $(B)/libnvsrelay.so.0 $(UNIT_BIN) $(REPLAY_BIN) $(BENCH_BIN)

$(B)/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/sql_embed.c: $(SQL_FILES) sql/embed.sh
	@mkdir -p $(@D)
	sh sql/embed.sh $(SQL_FILES) > $@.tmp && mv $@.tmp $@

# Migrations are long string literals by nature; only this generated file
# may exceed ISO C's 4095-byte minimum, which gcc and clang both handle.
$(B)/sql_embed.o: $(B)/sql_embed.c
	$(CC) $(ALL_CFLAGS) -Wno-overlength-strings -c $< -o $@

# The chained source (daemon/upstream) parses the upstream's frames with
# the client side of the protocol, proto/wire.c.
$(B)/nvsrelayd: $(B)/daemon/main.o $(DAEMON_OBJ) $(PROTO_OBJ) $(B)/proto/wire.o
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/nvsrelay: $(B)/cli/main.o $(CLI_OBJ) $(B)/libnvsrelay.a $(PROTO_OBJ)
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(LIBS)

# libnvsrelay: position-independent objects in their own tree.  Only the API
# of nvsrelay.h is exported, from the .so by visibility and from the .a by
# localizing everything else, so its helpers never clash with a program's.
$(B)/pic/%.o: %.c $(wildcard proto/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(B)/libnvsrelay.a: $(LIB_OBJ)
	$(LD) -r -o $(B)/pic/libnvsrelay.o $(LIB_OBJ)
	objcopy --localize-hidden $(B)/pic/libnvsrelay.o
	rm -f $@ && $(AR) rcs $@ $(B)/pic/libnvsrelay.o

$(B)/libnvsrelay.so.0: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libnvsrelay.so.0 $(if $(SANITIZE),,-Wl,--no-undefined) $(LDSAN) $(LDFLAGS) \
	    -o $@ $(LIB_OBJ) $(LIB_LIBS)

# Unit tests link only the pure modules (no I/O) and cmocka.  Pattern rules
# alone would make some of them intermediate files, deleted after each build.
.SECONDARY: $(PURE_OBJ)
$(B)/tests/test_%: tests/unit/test_%.c $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(PURE_OBJ) $(LIBS) $(shell pkg-config --libs cmocka) $(LDSAN)

# The hub is no pure module: its test links it with log.c, and fakes of its
# event source and of the client functions it calls (tests/unit/test_hub.c).
HUB_TEST_OBJ := $(B)/daemon/stream/hub.o $(B)/daemon/stream/hubview.o $(B)/daemon/stream/hubcount.o $(B)/daemon/stream/hubguard.o $(B)/daemon/stream/hubsave.o $(B)/daemon/stream/hubmark.o $(B)/daemon/stream/hubpark.o $(B)/daemon/log.o
$(B)/tests/test_hub: tests/unit/test_hub.c $(HUB_TEST_OBJ) $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(HUB_TEST_OBJ) $(PURE_OBJ) $(LIBS) $(shell pkg-config --libs cmocka) $(LDSAN)

# The upstream cursors' test links cursor.c with log.c and a fake of the
# upstream connection (tests/unit/test_cursor.c).
CURSOR_TEST_OBJ := $(B)/daemon/upstream/cursor.o $(B)/daemon/log.o
$(B)/tests/test_cursor: tests/unit/test_cursor.c $(CURSOR_TEST_OBJ) $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(CURSOR_TEST_OBJ) $(PURE_OBJ) $(LIBS) $(shell pkg-config --libs cmocka) $(LDSAN)

# The chained relays' requests: downlink.c with log.c and fakes of its
# source and of the client and hub functions it calls.
DOWNLINK_TEST_OBJ := $(B)/daemon/upstream/downlink.o $(B)/daemon/log.o
$(B)/tests/test_downlink: tests/unit/test_downlink.c $(DOWNLINK_TEST_OBJ) $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(DOWNLINK_TEST_OBJ) $(PURE_OBJ) $(LIBS) $(shell pkg-config --libs cmocka) $(LDSAN)

# The log's test links log.c (it writes to stderr, which the test redirects).
$(B)/tests/test_log: tests/unit/test_log.c $(B)/daemon/log.o $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(B)/daemon/log.o $(PURE_OBJ) $(LIBS) $(shell pkg-config --libs cmocka) $(LDSAN)

$(B)/bench/%: tests/bench/%.c tests/bench/bench.c tests/bench/bench.h $(B)/libnvsrelay.a $(PROTO_OBJ) | $(B)/bench
	$(CC) $(ALL_CFLAGS) -Itests/bench -o $@ $< tests/bench/bench.c $(B)/libnvsrelay.a $(PROTO_OBJ) \
	    $(LIBS) -lpthread $(LDSAN)

$(B)/tests $(B)/bench:
	mkdir -p $@

deps:
	@sh tests/tools/deps.sh

# The test targets install missing packages first (deps.sh runs apt-get only
# when one is missing); DEPS=0 leaves the machine alone.
DEPS      ?= 1
NEED_DEPS := $(if $(filter 0,$(DEPS)),,deps)

# T=...: only those tests (integration .t files, or build/tests/ binaries).
T         ?=
check: $(NEED_DEPS)
	$(MAKE) all
	CMOCKA_MESSAGE_OUTPUT=TAP NVSRELAY_BUILD=$(CURDIR)/$(B) NVSRELAY_SANITIZE=$(SANITIZE) \
	    prove -j2 $(PROVE_FLAGS) $(if $(T),$(T),$(UNIT_BIN) $(REPLAY_BIN) $(wildcard tests/integ/*.t))

check-unit: $(NEED_DEPS)
	$(MAKE) all
	CMOCKA_MESSAGE_OUTPUT=TAP prove -j2 $(PROVE_FLAGS) $(UNIT_BIN) $(REPLAY_BIN)

# The daemon under valgrind: build-vg/nvsrelayd execs valgrind on build/nvsrelayd,
# everything else in build-vg/ links to build/.  Leaks count as errors, memory
# still reachable at exit (libpq's and OpenSSL's globals) does not.
VG_B      := build-vg
VALGRIND  := valgrind --error-exitcode=99 --suppressions=$(CURDIR)/tests/valgrind.supp --leak-check=full --show-leak-kinds=definite,indirect,possible \
             --errors-for-leak-kinds=definite,indirect,possible
check-valgrind: $(NEED_DEPS)
	$(MAKE) all
	rm -rf $(VG_B) && mkdir -p $(VG_B)
	for f in build/*; do [ "$${f##*/}" = nvsrelayd ] || ln -s "$(CURDIR)/$$f" $(VG_B)/; done
	printf '#!/bin/sh\nexec %s --quiet "%s" "$$@"\n' "$(VALGRIND)" "$(CURDIR)/build/nvsrelayd" > $(VG_B)/nvsrelayd
	chmod 755 $(VG_B)/nvsrelayd
	CMOCKA_MESSAGE_OUTPUT=TAP prove -j2 $(PROVE_FLAGS) --exec '$(VALGRIND) --quiet' $(UNIT_BIN) $(REPLAY_BIN)
	NVSRELAY_BUILD=$(CURDIR)/$(VG_B) NVS_VALGRIND=1 \
	    prove -j2 $(PROVE_FLAGS) $(wildcard tests/integ/*.t)

check-long: $(NEED_DEPS)
	$(MAKE) all
	NVSRELAY_BUILD=$(CURDIR)/$(B) NVSRELAY_SANITIZE=$(SANITIZE) NVS_CHAOS_SIZE=long NVS_LOAD_SIZE=long \
	    NVS_FLEET_SIZE=long prove -v $(PROVE_FLAGS) tests/integ/95-chaos.t tests/integ/98-load.t tests/integ/56-fleet.t

# Benchmarks against the LISTEN floor and NVSentinel's polling scheme
# (tests/bench/README.md); BENCH_QUICK=1 for a run of seconds.  Not part of
# check: timings are no assertions.
bench: $(NEED_DEPS)
	$(MAKE) all
	@sh tests/bench/deps.sh
	perl tests/bench/bench.pl --build $(CURDIR)/$(B)

demo: $(NEED_DEPS)
	$(MAKE) all
	sh tests/tools/demo.sh $(CURDIR)/$(B)

install: all man install-lib
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/nvsrelayd
	install -m 755 $(B)/nvsrelayd $(DESTDIR)$(SBINDIR)/nvsrelayd
	install -m 755 $(B)/nvsrelay $(DESTDIR)$(BINDIR)/nvsrelay
	install -m 640 conf/nvsrelayd.conf $(DESTDIR)$(SYSCONFDIR)/nvsrelayd/nvsrelayd.conf
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 644 $(B)/man/nvsrelay.1 $(DESTDIR)$(MANDIR)/man1/nvsrelay.1
	install -m 644 $(B)/man/nvsrelayd.conf.5 $(DESTDIR)$(MANDIR)/man5/nvsrelayd.conf.5
	install -m 644 $(B)/man/nvsrelayd.8 $(DESTDIR)$(MANDIR)/man8/nvsrelayd.8
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	for u in nvsrelayd.service nvsrelayd.socket nvsrelayd-tcp.socket; do \
	    sed 's|/usr/sbin/nvsrelayd|$(SBINDIR)/nvsrelayd|g' packaging/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
	    chmod 644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 644 packaging/systemd/nvsrelayd.sysusers $(DESTDIR)$(SYSUSERSDIR)/nvsrelayd.conf

# Man pages: packaging/man/*.in with the version, and nvsrelayd.conf(5) with
# every key of the annotated sample.
MAN_PAGES := $(B)/man/nvsrelayd.8 $(B)/man/nvsrelay.1 $(B)/man/nvsrelayd.conf.5
man: $(MAN_PAGES)
$(B)/man/%: packaging/man/%.in packaging/man/manpage.pl conf/nvsrelayd.conf
	@mkdir -p $(B)/man
	perl packaging/man/manpage.pl $(VERSION) conf/nvsrelayd.conf < $< > $@.tmp && mv $@.tmp $@

# Debian packages nvsrelayd, libnvsrelay0 and libnvsrelay-dev in DEBDIR,
# built by dpkg-buildpackage in a copy of the tree with packaging/debian as
# debian/ (so nothing is written next to the sources).  In a git checkout
# the copy is the committed tree (HEAD): what is packaged is what others
# can build.
DEBDIR    ?= build/deb
deb:
	rm -rf $(DEBDIR) && mkdir -p $(DEBDIR)/src
	if git rev-parse --verify -q HEAD >/dev/null 2>&1; then \
	    git archive --format=tar HEAD | tar -C $(DEBDIR)/src -xf -; \
	else \
	    tar -cf - --exclude=./build --exclude=./build-san --exclude=./build-fuzz --exclude=./debian . | \
	        tar -C $(DEBDIR)/src -xf -; \
	fi
	cp -r $(DEBDIR)/src/packaging/debian $(DEBDIR)/src/debian
	cd $(DEBDIR)/src && dpkg-buildpackage -us -uc -b
	rm -rf $(DEBDIR)/src
	@ls $(DEBDIR)/*.deb

# The OCI image (packaging/image/build.sh): nvsrelayd_*.deb on a Debian base
# unpacked by mmdebstrap, reproducible (SOURCE_DATE_EPOCH of the last
# commit); the base is cached in IMAGE_CACHE by package list.
IMAGEDIR    ?= build/image
IMAGE_CACHE ?= build/image-base
image: deb
	IMAGE_CACHE=$(IMAGE_CACHE) sh packaging/image/build.sh $(DEBDIR) $(IMAGEDIR) $(VERSION)

# The client library alone: header, static and shared library, pkg-config file.
install-lib: $(B)/libnvsrelay.a $(B)/libnvsrelay.so.0
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 proto/nvsrelay.h $(DESTDIR)$(INCLUDEDIR)/nvsrelay.h
	install -m 644 $(B)/libnvsrelay.a $(DESTDIR)$(LIBDIR)/libnvsrelay.a
	install -m 755 $(B)/libnvsrelay.so.0 $(DESTDIR)$(LIBDIR)/libnvsrelay.so.0
	ln -sf libnvsrelay.so.0 $(DESTDIR)$(LIBDIR)/libnvsrelay.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' proto/nvsrelay.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/nvsrelay.pc

# The replay driver defaults to the target's corpus, so prove can run it bare.
$(B)/tests/replay_%: tests/fuzz/replay.c tests/fuzz/fuzz_%.c $(PURE_OBJ) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -DREPLAY_CORPUS=\"$(CURDIR)/tests/fuzz/corpus/$*\" -o $@ \
	    tests/fuzz/replay.c tests/fuzz/fuzz_$*.c $(PURE_OBJ) $(LIBS) $(LDSAN)

# libFuzzer builds (clang only) in their own tree.  New inputs go to
# build-fuzz/corpus/<target>, crashes to build-fuzz/crash/; the checked-in
# corpus is only read.  A fixed crasher belongs in tests/fuzz/corpus/<target>/.
FUZZ_TIME ?= 30
FUZZ_CC   ?= clang
FUZZ_B    := build-fuzz
FUZZ_SRC  := $(patsubst $(B)/%.o,%.c,$(PURE_OBJ))

$(FUZZ_B)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(HEADERS)
	@mkdir -p $(FUZZ_B)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all $(INCLUDES) $(shell pkg-config --cflags $(PKGS)) \
	    -o $@ $< $(FUZZ_SRC) $(LIBS)

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_B)/fuzz_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_B)/corpus/$$t $(FUZZ_B)/crash; \
	    dict=; [ ! -f tests/fuzz/$$t.dict ] || dict=-dict=tests/fuzz/$$t.dict; \
	    echo "fuzz_$$t: $(FUZZ_TIME) s"; \
	    $(FUZZ_B)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 -print_final_stats=1 $$dict \
	        -artifact_prefix=$(FUZZ_B)/crash/$$t- $(FUZZ_B)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

clean:
	rm -rf build build-san build-fuzz build-vg

.PHONY: all bench deps check check-unit check-valgrind check-long demo install install-lib man deb image clean fuzz

# noticecast — top-level build.  `make` builds the library and programs, `make test` runs
# every test tier (see README.md), `make demo` runs the whole flow locally.
include config.mk

COMMON_SRC := $(sort $(wildcard common/*.c))
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libnoticecast.a

PRODUCER_SRC := $(sort $(wildcard producer/*.c))
PRODUCER_OBJ := $(PRODUCER_SRC:%.c=$(BUILD)/%.o)

WEBHOOKS_SRC := $(sort $(wildcard consumer/webhooks/*.c))
WEBHOOKS_OBJ := $(WEBHOOKS_SRC:%.c=$(BUILD)/%.o)

MAILER_SRC := $(sort $(wildcard consumer/mailer/*.c))
MAILER_OBJ := $(MAILER_SRC:%.c=$(BUILD)/%.o)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PROGRAMS := $(BUILD)/noticecast $(BUILD)/noticecast-webhooks $(BUILD)/noticecast-mailer

.PHONY: all clean install uninstall test unit-test integration-test test-faults asan format \
	format-check lint \
	kafka-fetch kafka-up kafka-down demo bench deps

all: $(PROGRAMS)

# -MMD: each object also depends on the headers it includes (build/**/*.d).
$(BUILD)/%.o: %.c config.mk
	@mkdir -p $(dir $@)
	$(CC) $(NC_CPPFLAGS) $(NC_CFLAGS) -MMD -MP -c -o $@ $<

-include $(COMMON_OBJ:.o=.d) $(PRODUCER_OBJ:.o=.d) $(WEBHOOKS_OBJ:.o=.d) $(MAILER_OBJ:.o=.d)

$(LIB): $(COMMON_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/noticecast: $(PRODUCER_OBJ) $(LIB)
	$(CC) $(NC_LDFLAGS) -o $@ $(PRODUCER_OBJ) $(LIB) $(NC_LIBS)

$(BUILD)/noticecast-webhooks: $(WEBHOOKS_OBJ) $(LIB)
	$(CC) $(NC_LDFLAGS) -o $@ $(WEBHOOKS_OBJ) $(LIB) $(NC_LIBS)

# The mailer interposes connect() (consumer/mailer/nodelay.c): it needs -ldl and threads.
$(BUILD)/noticecast-mailer: $(MAILER_OBJ) $(LIB)
	$(CC) $(NC_LDFLAGS) -Wl,--export-dynamic-symbol=connect -o $@ $(MAILER_OBJ) $(LIB) \
		$(NC_LIBS) -ldl -lpthread

# test_smtp includes the mailer's smtp.c and nodelay.c itself.
$(BUILD)/tests/test_smtp: consumer/mailer/smtp.c consumer/mailer/nodelay.c consumer/mailer/smtp.h \
	consumer/mailer/nodelay.h

# test_ml_policy includes the mailer's ml_policy.c.
$(BUILD)/tests/test_ml_policy: consumer/mailer/ml_policy.c consumer/mailer/ml_policy.h \
	consumer/mailer/smtp.h

# test_unsub_token includes the mailer's unsub_token.c.
$(BUILD)/tests/test_unsub_token: consumer/mailer/unsub_token.c consumer/mailer/unsub_token.h

# test_wh_policy includes the webhooks daemon's wh_policy.c.
$(BUILD)/tests/test_wh_policy: consumer/webhooks/wh_policy.c consumer/webhooks/wh_policy.h

# test_mail and test_digest link the mailer's message builder (and templates) objects.
ML_MAIL_OBJ := $(BUILD)/consumer/mailer/ml_mail.o
ML_DIGEST_OBJ := $(BUILD)/consumer/mailer/ml_digest.o $(ML_MAIL_OBJ)
$(BUILD)/tests/test_mail: TEST_OBJ = $(ML_MAIL_OBJ)
$(BUILD)/tests/test_mail: $(ML_MAIL_OBJ)
$(BUILD)/tests/test_digest: TEST_OBJ = $(ML_DIGEST_OBJ)
$(BUILD)/tests/test_digest: $(ML_DIGEST_OBJ)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) tests/unit/nc_test.h
	@mkdir -p $(dir $@)
	$(CC) $(NC_CPPFLAGS) -Itests/unit $(NC_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS)) \
		-o $@ $< $(TEST_OBJ) $(NC_LDFLAGS) $(LIB) $(NC_LIBS) $(shell $(PKG_CONFIG) --libs $(TEST_PKGS))

# ---- tests ---------------------------------------------------------------------------------
# `make test` is the one command CI runs (.ci/run): the style and shell checks, unit +
# integration tests with a normal build, then the same suite again under AddressSanitizer + UBSan.
test: deps-check
	$(MAKE) format-check lint
	$(MAKE) unit-test integration-test
	$(MAKE) SANITIZE=1 unit-test integration-test

unit-test: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; \
		NC_TEST_SRCDIR=$(CURDIR) NC_SPEC_DIR=$(CURDIR)/../shared/mustache-spec $$t; done

integration-test: $(PROGRAMS) kafka-fetch
	NC_BIN_DIR=$(CURDIR)/$(BUILD) python3 -m pytest -ra -m "not faults" tests/integration

# The fault tier: misbehaving relays, partners, clients and brokers, one test per defect
# (tests/integration/test_9*_fault_*.py, marked `faults`).  CI runs it after `make test`,
# with the normal build only: its tests are long (outages, shutdown bounds) and count what
# arrived and what was committed rather than exercise memory safety.
test-faults: deps-check $(PROGRAMS) kafka-fetch
	NC_BIN_DIR=$(CURDIR)/$(BUILD) python3 -m pytest -ra -m faults tests/integration

asan:
	$(MAKE) SANITIZE=1 all $(UNIT_BIN:build/%=build-asan/%)

deps:
	deploy/local/install-deps.sh

deps-check:
	@deploy/local/install-deps.sh --check || deploy/local/install-deps.sh

# ---- local Kafka (deploy/local) ---------------------------------------------------------------
KAFKA_PORT ?= 9092
kafka-fetch:
	deploy/local/kafka.sh fetch

kafka-up: kafka-fetch
	KAFKA_PORT=$(KAFKA_PORT) deploy/local/kafka.sh up

kafka-down:
	deploy/local/kafka.sh down

demo: deps-check all
	deploy/local/demo.sh

bench: deps-check all
	deploy/local/install-deps.sh --bench
	tests/bench/run.sh
	tests/bench/webhooks.sh
	tests/bench/smtp.sh
	tests/bench/mailer.sh

# ---- style -----------------------------------------------------------------------------------
FORMAT_FILES = $(wildcard common/*.[ch] producer/*.[ch] consumer/*/*.[ch] tests/unit/*.[ch])
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

# Every shell script; -x -P SCRIPTDIR follows the bench scripts' `. "$HERE/lib.sh"`.
SHELL_FILES = $(wildcard deploy/*/*.sh tests/bench/*.sh) .ci/run
lint:
	shellcheck -x -P SCRIPTDIR $(SHELL_FILES)

# ---- install ---------------------------------------------------------------------------------
install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(SYSCONFDIR)/noticecast
	$(INSTALL) -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(LIB) $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 0644 man/noticecast.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 config/noticecast.conf $(DESTDIR)$(SYSCONFDIR)/noticecast/noticecast.conf.example

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGRAMS))) $(DESTDIR)$(LIBDIR)/libnoticecast.a \
		$(DESTDIR)$(MANDIR)/man1/noticecast.1 $(DESTDIR)$(SYSCONFDIR)/noticecast/noticecast.conf.example

clean:
	rm -rf build build-asan

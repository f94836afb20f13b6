# noticecast — top-level build.  `make` builds the library and programs, `make test` runs
# every test tier (see README.md), `make demo` runs the whole flow locally.
include config.mk
include deploy/monitoring.mk

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

PROGRAMS := $(BUILD)/noticecast $(BUILD)/noticecast-webhooks $(BUILD)/noticecast-mailer \
	$(BUILD)/noticecast-inbound
# The man pages as installed, generated from man/*.in (see install below).
MAN_IN := $(sort $(wildcard man/*.in))
MAN_OUT := $(MAN_IN:man/%.in=$(BUILD)/man/%)

.PHONY: all FORCE clean install uninstall test unit-test integration-test test-faults asan format \
	format-check lint deps-check dist-files hardening-check systemd-check \
	kafka-fetch kafka-up kafka-down demo bench deps

all: $(PROGRAMS)

# The compiler and every flag (CPPFLAGS/CFLAGS/LDFLAGS, PREFIX-derived paths, pkg-config
# results) in one file, rewritten only when they differ from the last build: objects and
# programs depend on it, so a change of flags rebuilds them and an unchanged one does not.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_TEXT = $(CC) $(NC_CPPFLAGS) $(NC_CFLAGS) $(NC_LDFLAGS) $(NC_LIBS)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@printf '%s\n' '$(subst ','\'',$(FLAGS_TEXT))' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

FORCE:

# -MMD: each object also depends on the headers it includes (build/**/*.d).
$(BUILD)/%.o: %.c config.mk $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(NC_CPPFLAGS) $(NC_CFLAGS) -MMD -MP -c -o $@ $<

-include $(COMMON_OBJ:.o=.d) $(PRODUCER_OBJ:.o=.d) $(WEBHOOKS_OBJ:.o=.d) $(MAILER_OBJ:.o=.d)

$(LIB): $(COMMON_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# `noticecast inbound` opens unsubscribe tokens with the mailer's own code.
CLI_MAILER_OBJ := $(BUILD)/consumer/mailer/unsub_token.o $(BUILD)/consumer/mailer/ml_siv.o
# --as-needed: only the libraries it calls are loaded at each start (no libcurl, libesmtp,
# libmicrohttpd: see producer/noticecast.c and cli.c), since it runs once per inbound mail.
$(BUILD)/noticecast: $(PRODUCER_OBJ) $(CLI_MAILER_OBJ) $(LIB) $(FLAGS_STAMP)
	$(CC) $(NC_LDFLAGS) -Wl,--as-needed -o $@ $(PRODUCER_OBJ) $(CLI_MAILER_OBJ) $(LIB) \
		$(NC_LIBS)

# The MTA's side of `noticecast inbound --serve`: libc only (a process per mail).
$(BUILD)/noticecast-inbound: producer/client/inbound_client.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(NC_CPPFLAGS) -DNC_BINDIR=\"$(BINDIR)\" -std=c11 $(WARNFLAGS) $(SANFLAGS) $(CFLAGS) \
		$(NC_LDFLAGS) -o $@ $<

$(BUILD)/noticecast-webhooks: $(WEBHOOKS_OBJ) $(LIB) $(FLAGS_STAMP)
	$(CC) $(NC_LDFLAGS) -o $@ $(WEBHOOKS_OBJ) $(LIB) $(NC_LIBS)

# The mailer interposes connect() (consumer/mailer/nodelay.c): it needs -ldl and threads.
$(BUILD)/noticecast-mailer: $(MAILER_OBJ) $(LIB) $(FLAGS_STAMP)
	$(CC) $(NC_LDFLAGS) -Wl,--export-dynamic-symbol=connect -o $@ $(MAILER_OBJ) $(LIB) \
		$(NC_LIBS) -ldl -lpthread

# test_smtp includes the mailer's smtp.c and nodelay.c itself.
$(BUILD)/tests/test_smtp: consumer/mailer/smtp.c consumer/mailer/nodelay.c consumer/mailer/smtp.h \
	consumer/mailer/nodelay.h

# test_ml_policy includes the mailer's ml_policy.c.
$(BUILD)/tests/test_ml_policy: consumer/mailer/ml_policy.c consumer/mailer/ml_policy.h \
	consumer/mailer/smtp.h

# test_unsub_token and test_webtoken include the mailer's token modules and ml_siv.c.
$(BUILD)/tests/test_unsub_token: consumer/mailer/unsub_token.c consumer/mailer/unsub_token.h \
	consumer/mailer/ml_siv.c consumer/mailer/ml_siv.h
$(BUILD)/tests/test_ratelimit: consumer/mailer/ml_ratelimit.c consumer/mailer/ml_ratelimit.h
$(BUILD)/tests/test_webtoken: consumer/mailer/ml_webtoken.c consumer/mailer/ml_webtoken.h \
	consumer/mailer/ml_siv.c consumer/mailer/ml_siv.h

# test_ml_domain includes the mailer's ml_domain.c.
$(BUILD)/tests/test_ml_domain: consumer/mailer/ml_domain.c consumer/mailer/ml_domain.h

# test_wh_policy includes the webhooks daemon's wh_policy.c.
$(BUILD)/tests/test_wh_policy: consumer/webhooks/wh_policy.c consumer/webhooks/wh_policy.h

# test_mail and test_digest link the mailer's message builder (and templates) objects.
ML_MAIL_OBJ := $(BUILD)/consumer/mailer/ml_mail.o
ML_DIGEST_OBJ := $(BUILD)/consumer/mailer/ml_digest.o $(ML_MAIL_OBJ)
$(BUILD)/tests/test_mail: TEST_OBJ = $(ML_MAIL_OBJ)
$(BUILD)/tests/test_mail: $(ML_MAIL_OBJ)
$(BUILD)/tests/test_digest: TEST_OBJ = $(ML_DIGEST_OBJ)
$(BUILD)/tests/test_digest: $(ML_DIGEST_OBJ)

# test_inbound links the CLI's classifier and the token objects it uses.
INBOUND_OBJ := $(BUILD)/producer/inbound.o $(CLI_MAILER_OBJ)
$(BUILD)/tests/test_inbound: TEST_OBJ = $(INBOUND_OBJ)
$(BUILD)/tests/test_inbound: $(INBOUND_OBJ)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) tests/unit/nc_test.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(NC_CPPFLAGS) -Itests/unit $(NC_CFLAGS) $(NC_TEST_CFLAGS) \
		-o $@ $< $(TEST_OBJ) $(NC_LDFLAGS) $(LIB) $(NC_LIBS) $(NC_TEST_LIBS)

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
test-faults: deps-check
	$(MAKE) all kafka-fetch
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

# demo, bench, test-faults and test build in a sub-make, after deps-check: that make reads
# config.mk again, so its pkg-config sees what deps-check installed (the first `make demo` on
# a bare machine).
demo: deps-check
	$(MAKE) all
	deploy/local/demo.sh

bench: deps-check
	deploy/local/install-deps.sh --bench
	$(MAKE) all
	tests/bench/run.sh
	tests/bench/webhooks.sh
	tests/bench/smtp.sh
	tests/bench/mailer.sh
	tests/bench/inbound.sh

# A build with Debian's hardening flags (dpkg-buildflags, hardening=+all) into
# build/hardened/, then readelf/nm checks of the binaries: fortified, stack protector, PIE,
# full RELRO, NX (deploy/local/hardening-check.sh).
hardening-check:
	deploy/local/hardening-check.sh build/hardened

# The units as installed: systemd-analyze verify clean, security exposure <= 2.0 each
# (deploy/systemd/check.sh; offline, systemd need not be running).
systemd-check: all dist-files
	deploy/systemd/check.sh $(BUILD)

# ---- style -----------------------------------------------------------------------------------
FORMAT_FILES = $(wildcard common/*.[ch] producer/*.[ch] producer/client/*.c consumer/*/*.[ch] \
	tests/unit/*.[ch])
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

# Every shell script; -x -P SCRIPTDIR follows the bench scripts' `. "$HERE/lib.sh"`.
SHELL_FILES = $(wildcard deploy/*/*.sh tests/bench/*.sh) .ci/run
# mandoc -T lint: every man page, as installed (generated from man/*.in), style notes included.
lint: $(MAN_OUT) deploy-lint check-monitoring
	shellcheck -x -P SCRIPTDIR $(SHELL_FILES)
	mandoc -T lint -W style $(MAN_OUT)

# ---- install ---------------------------------------------------------------------------------
# Man pages, units and tmpfiles.d are generated from their .in by sed: the version and the
# installed paths (PREFIX, SYSCONFDIR, ...) are written in.  DESTDIR stages; the paths
# written in are those without it.
GEN_SED = sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@DATE@|$(RELEASE_DATE)|g' \
	-e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' \
	-e 's|@SYSTEMDUNITDIR@|$(SYSTEMDUNITDIR)|g'
UNIT_IN := $(sort $(wildcard deploy/systemd/*.service.in))
UNIT_OUT := $(UNIT_IN:deploy/systemd/%.in=$(BUILD)/systemd/%)
TMPFILES_OUT := $(BUILD)/systemd/noticecast.tmpfiles
TEMPLATE_FILES := $(sort $(wildcard config/templates/*/*.mustache))
TEMPLATE_LANGS := $(sort $(notdir $(patsubst %/,%,$(dir $(TEMPLATE_FILES)))))
# The public pages' templates (consumer/mailer/web.c) and their stylesheet.
PAGE_FILES := $(sort $(wildcard config/templates/*/pages/*.mustache))

$(BUILD)/man/%: man/%.in config.mk $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(GEN_SED) $< > $@.tmp && mv -f $@.tmp $@

$(BUILD)/systemd/%: deploy/systemd/%.in config.mk $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(GEN_SED) $< > $@.tmp && mv -f $@.tmp $@

dist-files: $(MAN_OUT) $(UNIT_OUT) $(TMPFILES_OUT)

install: all dist-files
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/noticecast $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(addprefix $(DESTDIR)$(DATADIR)/noticecast/templates/,$(TEMPLATE_LANGS)) \
		$(addprefix $(DESTDIR)$(DATADIR)/noticecast/templates/,$(addsuffix /pages,$(TEMPLATE_LANGS)))
	$(INSTALL) -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(filter %.1,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(filter %.5,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 $(filter %.8,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man8/
	@set -e; for f in $(TEMPLATE_FILES); do \
		l=$$(basename $$(dirname $$f)); \
		echo "$(INSTALL) -m 0644 $$f $(DESTDIR)$(DATADIR)/noticecast/templates/$$l/"; \
		$(INSTALL) -m 0644 $$f $(DESTDIR)$(DATADIR)/noticecast/templates/$$l/; \
	done
	@set -e; for f in $(PAGE_FILES); do \
		l=$$(basename $$(dirname $$(dirname $$f))); \
		echo "$(INSTALL) -m 0644 $$f $(DESTDIR)$(DATADIR)/noticecast/templates/$$l/pages/"; \
		$(INSTALL) -m 0644 $$f $(DESTDIR)$(DATADIR)/noticecast/templates/$$l/pages/; \
	done
	$(INSTALL) -m 0644 config/templates/site.css $(DESTDIR)$(DATADIR)/noticecast/templates/
	$(INSTALL) -m 0644 config/noticecast.conf.example $(DESTDIR)$(SYSCONFDIR)/noticecast/
	$(INSTALL) -m 0644 $(UNIT_OUT) $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(INSTALL) -m 0644 deploy/systemd/noticecast.sysusers $(DESTDIR)$(SYSUSERSDIR)/noticecast.conf
	$(INSTALL) -m 0644 $(TMPFILES_OUT) $(DESTDIR)$(TMPFILESDIR)/noticecast.conf
	$(INSTALL) -m 0644 LICENSE CHANGELOG.md README.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 config/templates/README.md $(DESTDIR)$(DOCDIR)/templates.md

# Removes what install put there, and the directories of noticecast's own once empty (an
# edited /etc/noticecast/noticecast.conf stays, and so does its directory).
uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGRAMS))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(filter %.1,$(MAN_OUT)))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(filter %.5,$(MAN_OUT)))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(filter %.8,$(MAN_OUT)))) \
		$(TEMPLATE_FILES:config/templates/%=$(DESTDIR)$(DATADIR)/noticecast/templates/%) \
		$(PAGE_FILES:config/templates/%=$(DESTDIR)$(DATADIR)/noticecast/templates/%) \
		$(DESTDIR)$(DATADIR)/noticecast/templates/site.css \
		$(DESTDIR)$(SYSCONFDIR)/noticecast/noticecast.conf.example \
		$(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(UNIT_OUT))) \
		$(DESTDIR)$(SYSUSERSDIR)/noticecast.conf $(DESTDIR)$(TMPFILESDIR)/noticecast.conf \
		$(addprefix $(DESTDIR)$(DOCDIR)/,LICENSE CHANGELOG.md README.md templates.md)
	-rmdir $(addprefix $(DESTDIR)$(DATADIR)/noticecast/templates/,$(addsuffix /pages,$(TEMPLATE_LANGS))) \
		$(addprefix $(DESTDIR)$(DATADIR)/noticecast/templates/,$(TEMPLATE_LANGS)) \
		$(DESTDIR)$(DATADIR)/noticecast/templates $(DESTDIR)$(DATADIR)/noticecast \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/noticecast 2>/dev/null

clean:
	rm -rf build build-asan

include deploy/deploy.mk

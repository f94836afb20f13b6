# Shared build settings for every Makefile of noticecast (style of mosquitto's config.mk).
# Override on the command line: make PREFIX=/usr DESTDIR=/tmp/stage CFLAGS=-O0

# The one version: -V of every program (NC_VERSION), the man pages and CHANGELOG.md.
VERSION := 0.1.0
RELEASE_DATE := 2026-12-02

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/noticecast
SYSCONFDIR ?= /etc
# systemd looks in /usr/lib/systemd/system and /usr/local/lib/systemd/system alike, and so
# for sysusers.d and tmpfiles.d: all follow PREFIX.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DESTDIR ?=

CC ?= cc
PKG_CONFIG ?= pkg-config
INSTALL ?= install

# Libraries, all found through pkg-config (Debian: see deploy/local/install-deps.sh).
PKGS := rdkafka jansson libcurl libesmtp-1.0 libssl libcrypto libmicrohttpd gmime-3.0
TEST_PKGS := cmocka

# Debian's dpkg-buildflags convention: CPPFLAGS, CFLAGS and LDFLAGS from the environment or
# the command line reach every compile and link line (after ours, so they win).
CFLAGS ?= -O2 -g
CPPFLAGS ?=
LDFLAGS ?=
WARNFLAGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes
# SANITIZE=1 builds into build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer.
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

# pkg-config runs when a compile or link line first needs it, not when the Makefile is read:
# `make demo` on a bare machine parses this file before deps-check has installed the -dev
# packages.  Each is a recursive variable that replaces itself with its value on first use.
NC_PKG_CFLAGS = $(eval NC_PKG_CFLAGS := $$(shell $(PKG_CONFIG) --cflags $(PKGS)))$(NC_PKG_CFLAGS)
NC_PKG_LIBS = $(eval NC_PKG_LIBS := $$(shell $(PKG_CONFIG) --libs $(PKGS)))$(NC_PKG_LIBS)
NC_TEST_CFLAGS = $(eval NC_TEST_CFLAGS := $$(shell $(PKG_CONFIG) --cflags $(TEST_PKGS)))$(NC_TEST_CFLAGS)
NC_TEST_LIBS = $(eval NC_TEST_LIBS := $$(shell $(PKG_CONFIG) --libs $(TEST_PKGS)))$(NC_TEST_LIBS)

NC_CPPFLAGS = -D_GNU_SOURCE -DNC_VERSION=\"$(VERSION)\" -DNC_SYSCONFDIR=\"$(SYSCONFDIR)\" \
	-DNC_DATADIR=\"$(DATADIR)\" -Icommon $(CPPFLAGS)
NC_CFLAGS = -std=c11 $(WARNFLAGS) $(SANFLAGS) $(CFLAGS) $(NC_PKG_CFLAGS)
NC_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
NC_LIBS = $(NC_PKG_LIBS) -lm

# Shared build settings for every Makefile of noticecast (style of mosquitto's config.mk).
# Override on the command line: make PREFIX=/usr DESTDIR=/tmp/stage CFLAGS=-O0

VERSION := 0.1.0

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DESTDIR ?=

CC ?= cc
PKG_CONFIG ?= pkg-config
INSTALL ?= install

# Libraries, all found through pkg-config (Debian: see deploy/local/install-deps.sh).
PKGS := rdkafka jansson libcurl libesmtp-1.0 libssl libcrypto libmicrohttpd gmime-3.0
TEST_PKGS := cmocka

CFLAGS ?= -O2 -g
WARNFLAGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes
# SANITIZE=1 builds into build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer.
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

NC_CPPFLAGS := -D_GNU_SOURCE -DNC_VERSION=\"$(VERSION)\" -DNC_SYSCONFDIR=\"$(SYSCONFDIR)\" -Icommon
NC_CFLAGS := -std=c11 $(WARNFLAGS) $(SANFLAGS) $(CFLAGS) $(shell $(PKG_CONFIG) --cflags $(PKGS))
NC_LDFLAGS := $(SANFLAGS) $(LDFLAGS)
NC_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lm

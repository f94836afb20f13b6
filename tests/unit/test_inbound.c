/* Unit tests for producer/inbound.c: what a mail that came back means.  The samples of
 * tests/integration/inbound/ with their placeholders filled in (a real VERP address, a real
 * unsubscribe token), variations of them (forged, mangled, truncated), and input that is not
 * a mail at all. */
#include "nc_test.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "../../producer/inbound.h"
#include "nc_util.h"
#include "nc_verp.h"

static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
static const unsigned char other[] = "fedcba9876543210fedcba9876543210";
#define SECRET_LEN 32
#define BASE       "bounces@example.gov"
#define UNSUB      "unsubscribe@example.gov"
#define FROM       "notices@example.gov"
#define RCPT       "ana.souza@example.org"
#define MID        "n-2026-0001.ana@example.gov"
#define DATE       "Thu, 03 Dec 2026 12:00:00 +0000"
#define GEN        UINT64_C(0x0123456789abcdef)
#define NOW        INT64_C(1796299200) /* 2026-12-03 */

static char verp[128], token[ML_TOKEN_SIZE];
static nc_verp_keys_t keys;

static inbound_conf_t conf(const char *envelope)
{
        return (inbound_conf_t){.secret = secret,
                                .secret_len = SECRET_LEN,
                                .verp_base = BASE,
                                .verp_delim = '+',
                                .unsubscribe_mailto = UNSUB,
                                .envelope_recipient = envelope,
                                .now_s = NOW};
}

static int setup(void **state)
{
        (void)state;
        nc_verp_derive(secret, SECRET_LEN, &keys);
        if (nc_verp_address(&keys, BASE, '+', RCPT, MID, verp, sizeof(verp)) != 0 ||
            ml_token_seal(secret, SECRET_LEN, RCPT, GEN, NOW + 86400, token, sizeof(token)) != 0)
                return -1;
        return 0;
}

/* S with every NAME replaced by VALUE (malloc'd). */
static char *replace(const char *s, const char *name, const char *value)
{
        size_t nl = strlen(name), vl = strlen(value), n = 0;
        const char *p;
        char *out, *o;

        for (p = s; (p = strstr(p, name)); p += nl)
                n++;
        out = o = nc_xmalloc(strlen(s) + n * vl + 1);
        for (p = s; *p;) {
                if (!strncmp(p, name, nl)) {
                        memcpy(o, value, vl);
                        o += vl;
                        p += nl;
                } else {
                        *o++ = *p++;
                }
        }
        *o = '\0';
        return out;
}

/* The sample NAME with the placeholders of its README filled in; VERP_ADDR and TOKEN_ for
 * ${VERP} and ${TOKEN}. */
static char *sample_with(const char *name, const char *verp_addr, const char *tok)
{
        char rel[256], path[1024], err[512];
        const char *names[] = {"${VERP}",  "${RCPT}",  "${MESSAGE_ID}", "${FROM}",
                               "${TOKEN}", "${UNSUB}", "${DATE}"};
        const char *values[] = {verp_addr, RCPT, MID, FROM, tok, UNSUB, DATE};
        char *s, *t;

        snprintf(rel, sizeof(rel), "tests/integration/inbound/%s", name);
        nc_test_src_path(path, sizeof(path), rel);
        if (!(s = nc_file_read(path, NULL, err, sizeof(err))))
                fail_msg("%s", err);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                t = replace(s, names[i], values[i]);
                free(s);
                s = t;
        }
        return s;
}

static char *sample(const char *name)
{
        return sample_with(name, verp, token);
}

static void classify(const char *envelope, const char *data, size_t len, inbound_t *r)
{
        inbound_conf_t c = conf(envelope);
        json_t *ev;
        char *dump;

        inbound_classify(&c, data, len, r);
        /* Whatever it was, the event is valid JSON with its type. */
        ev = inbound_event(r, "2026-12-03T12:00:00Z");
        assert_non_null(dump = json_dumps(ev, JSON_COMPACT));
        assert_string_equal(json_string_value(json_object_get(ev, "type")),
                            inbound_type_name(r->type));
        free(dump);
        json_decref(ev);
}

static void classify_str(const char *envelope, const char *s, inbound_t *r)
{
        classify(envelope, s, strlen(s), r);
}

static void assert_refs(const inbound_t *r)
{
        assert_true(r->has_ref);
        assert_true(r->subscriber_ref == nc_verp_subscriber_ref(&keys, RCPT));
        assert_true(r->has_message_ref);
        assert_true(r->message_ref == nc_verp_message_ref(MID));
}

static void assert_prefix(const char *s, const char *want)
{
        if (strncmp(s, want, strlen(want)) != 0)
                fail_msg("\"%s\"\n  does not start with \"%s\"", s, want);
}

static void test_names(void **state)
{
        (void)state;
        assert_string_equal(inbound_type_name(INBOUND_BOUNCE), "mail.bounce");
        assert_string_equal(inbound_type_name(INBOUND_DELAYED), "mail.delayed");
        assert_string_equal(inbound_type_name(INBOUND_COMPLAINT), "mail.complaint");
        assert_string_equal(inbound_type_name(INBOUND_UNSUBSCRIBED), "mail.unsubscribed");
        assert_string_equal(inbound_type_name(INBOUND_IGNORED), "mail.ignored");
        assert_string_equal(inbound_kind_name(INBOUND_DSN), "dsn");
        assert_string_equal(inbound_kind_name(INBOUND_ARF), "arf");
        assert_string_equal(inbound_kind_name(INBOUND_MAILTO), "mailto");
        assert_string_equal(inbound_kind_name(INBOUND_OTHER), "other");
}

static void test_gmail_dsn(void **state)
{
        char *s = sample("gmail-dsn-5.1.1.eml");
        inbound_t r;
        json_t *ev;

        (void)state;
        classify_str(verp, s, &r);
        assert_int_equal(r.type, INBOUND_BOUNCE);
        assert_int_equal(r.kind, INBOUND_DSN);
        assert_false(r.quarantine);
        assert_string_equal(r.status, "5.1.1");
        assert_string_equal(r.action, "failed");
        assert_string_equal(r.status_source, "delivery-status");
        /* Unfolded: the continuation lines joined by one space each. */
        assert_prefix(r.diagnostic, "smtp; 550-5.1.1 The email account that you tried to reach "
                                    "does not exist. Please try 550-5.1.1 double-checking the");
        assert_non_null(strstr(r.diagnostic, "550 5.1.1 https://support.google.com"));
        assert_null(strchr(r.diagnostic, '\n'));
        assert_string_equal(r.recipient, RCPT);
        assert_prefix(r.remote_mta, "gmail-smtp-in.l.google.com.");
        assert_refs(&r);
        assert_string_equal(r.token_source, "envelope");
        assert_string_equal(r.subscriber, "");
        assert_string_equal(r.report_message_id,
                            "6577ea3f.050a0220.1c7d0.9b7eSMTPIN_ADDED_BROKEN@mx.google.com");
        assert_string_equal(r.envelope_recipient, verp);

        ev = inbound_event(&r, "2026-12-03T12:00:00Z");
        assert_string_equal(json_string_value(json_object_get(ev, "source")), "inbound");
        assert_string_equal(json_string_value(json_object_get(ev, "kind")), "dsn");
        assert_int_equal(strlen(json_string_value(json_object_get(ev, "subscriber_ref"))), 16);
        assert_int_equal(strlen(json_string_value(json_object_get(ev, "message_ref"))), 8);
        assert_int_equal(strlen(json_string_value(json_object_get(ev, "id"))), 16);
        assert_null(json_object_get(ev, "subscriber"));
        assert_null(json_object_get(ev, "reason"));
        json_decref(ev);

        /* Without the MTA's envelope recipient: the To header names the VERP address. */
        classify_str(NULL, s, &r);
        assert_int_equal(r.type, INBOUND_BOUNCE);
        assert_refs(&r);
        assert_string_equal(r.token_source, "to");
        assert_string_equal(r.envelope_recipient, verp);
        free(s);
}

/* The other DSN samples: their outcome, status, action and unfolded Diagnostic-Code. */
static void test_dsn_samples(void **state)
{
        static const struct {
                const char *name;
                inbound_type_t type;
                const char *status, *action, *diagnostic;
        } cases[] = {
            {"exchange-ndr-5.1.10.eml", INBOUND_BOUNCE, "5.1.10", "failed",
             "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
             "lookup"},
            {"delayed-4.4.7.eml", INBOUND_DELAYED, "4.4.7", "delayed",
             "X-Postfix; connect to mx.slow.example[192.0.2.25]:25: Connection timed out"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *s = sample(cases[i].name);
                inbound_t r;

                classify_str(verp, s, &r);
                assert_int_equal(r.type, cases[i].type);
                assert_int_equal(r.kind, INBOUND_DSN);
                assert_string_equal(r.status, cases[i].status);
                assert_string_equal(r.action, cases[i].action);
                assert_string_equal(r.diagnostic, cases[i].diagnostic);
                assert_string_equal(r.recipient, RCPT);
                assert_refs(&r);
                free(s);
        }
}

static void test_yahoo_arf(void **state)
{
        char *s = sample("yahoo-arf-abuse.eml");
        inbound_t r;
        json_t *ev;
        char key[512];

        (void)state;
        classify_str(verp, s, &r);
        assert_int_equal(r.type, INBOUND_COMPLAINT);
        assert_int_equal(r.kind, INBOUND_ARF);
        assert_string_equal(r.feedback_type, "abuse");
        assert_string_equal(r.user_agent, "Yahoo!-Mail-Feedback/2.0");
        assert_string_equal(r.recipient, RCPT);
        /* The List-Unsubscribe of the original names the subscriber itself. */
        assert_string_equal(r.subscriber, RCPT);
        assert_true(r.generation == GEN);
        assert_false(r.token_expired);
        assert_string_equal(r.token_source, "original");
        assert_refs(&r);
        inbound_key(&r, key, sizeof(key));
        assert_string_equal(key, RCPT);
        ev = inbound_event(&r, "t");
        assert_string_equal(json_string_value(json_object_get(ev, "generation")),
                            "0123456789abcdef");
        json_decref(ev);
        free(s);

        /* Redacted: no VERP anywhere, only the token of List-Unsubscribe. */
        s = sample_with("yahoo-arf-abuse.eml", "bounces@example.gov", token);
        classify_str(NULL, s, &r);
        assert_int_equal(r.type, INBOUND_COMPLAINT);
        assert_string_equal(r.subscriber, RCPT);
        assert_false(r.has_message_ref);
        free(s);
}

static void test_microsoft_arf(void **state)
{
        char *s = sample("microsoft-arf-abuse.eml");
        inbound_t r;
        char key[512], want[64];

        (void)state;
        classify_str(NULL, s, &r);
        assert_int_equal(r.type, INBOUND_COMPLAINT);
        assert_int_equal(r.kind, INBOUND_ARF);
        assert_string_equal(r.feedback_type, "abuse");
        assert_string_equal(r.user_agent, "Microsoft JMRP/1.0");
        assert_string_equal(r.subscriber, "");
        assert_refs(&r);
        assert_string_equal(r.token_source, "to");
        inbound_key(&r, key, sizeof(key));
        snprintf(want, sizeof(want), "ref:%016" PRIx64, nc_verp_subscriber_ref(&keys, RCPT));
        assert_string_equal(key, want);
        free(s);
}

static void test_mailto(void **state)
{
        char *s = sample("mailto-unsubscribe.eml"), *t;
        inbound_t r;

        (void)state;
        classify_str(UNSUB, s, &r);
        assert_int_equal(r.type, INBOUND_UNSUBSCRIBED);
        assert_int_equal(r.kind, INBOUND_MAILTO);
        assert_string_equal(r.subscriber, RCPT);
        assert_true(r.generation == GEN);
        assert_string_equal(r.token_source, "subject");
        free(s);

        /* Without the envelope: To names the address. */
        s = sample("mailto-unsubscribe.eml");
        classify_str(NULL, s, &r);
        assert_int_equal(r.type, INBOUND_UNSUBSCRIBED);

        /* "Re:", folding, case; and the address in another case. */
        {
                char subj[1024];

                snprintf(subj, sizeof(subj), "Subject: Re: UNSUBSCRIBE\r\n  %s", token);
                t = replace(s, "Subject: unsubscribe ", "X-Old: ");
                free(s);
                s = replace(t, "To: " UNSUB, subj);
                free(t);
                t = nc_xmalloc(strlen(s) + 64);
                sprintf(t, "To: Unsubscribe@EXAMPLE.GOV\r\n%s", s);
        }
        classify_str(NULL, t, &r);
        assert_int_equal(r.type, INBOUND_UNSUBSCRIBED);
        assert_string_equal(r.subscriber, RCPT);
        free(t);
        free(s);
}

static void test_mailto_tokens(void **state)
{
        char *s, forged[ML_TOKEN_SIZE], expired[ML_TOKEN_SIZE], addr[128];
        inbound_t r;

        (void)state;
        /* Forged: a token of another secret. */
        assert_int_equal(
            ml_token_seal(other, SECRET_LEN, RCPT, GEN, NOW + 86400, forged, sizeof(forged)), 0);
        s = sample_with("mailto-unsubscribe.eml", verp, forged);
        classify_str(UNSUB, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_int_equal(r.kind, INBOUND_MAILTO);
        assert_string_equal(r.reason, "forged unsubscribe token");
        assert_string_equal(r.subscriber, "");
        assert_false(r.has_ref);
        free(s);

        /* Expired but authentic: honoured, and said so. */
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, RCPT, GEN, NOW - 86400, expired, sizeof(expired)), 0);
        s = sample_with("mailto-unsubscribe.eml", verp, expired);
        classify_str(UNSUB, s, &r);
        assert_int_equal(r.type, INBOUND_UNSUBSCRIBED);
        assert_string_equal(r.subscriber, RCPT);
        assert_true(r.token_expired);
        free(s);

        /* No token at all. */
        s = sample_with("mailto-unsubscribe.eml", verp, "please");
        classify_str(UNSUB, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_string_equal(r.reason, "no token");
        free(s);

        /* A VERP-style token in the address itself. */
        assert_int_equal(nc_verp_address(&keys, UNSUB, '+', RCPT, MID, addr, sizeof(addr)), 0);
        s = sample_with("mailto-unsubscribe.eml", verp, "please");
        classify_str(addr, s, &r);
        assert_int_equal(r.type, INBOUND_UNSUBSCRIBED);
        assert_refs(&r);
        assert_string_equal(r.token_source, "address");
        addr[strlen("unsubscribe+") + 3] ^= 1; /* altered */
        classify_str(addr, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_string_equal(r.reason, "forged VERP token");
        free(s);
}

static void test_out_of_office(void **state)
{
        char *s = sample("out-of-office.eml");
        inbound_t r;

        (void)state;
        classify_str(verp, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_int_equal(r.kind, INBOUND_OTHER);
        assert_string_equal(r.reason, "auto-reply");
        assert_false(r.quarantine);
        assert_refs(&r); /* recorded: whose auto-reply it was */
        free(s);
}

static void test_forged_verp(void **state)
{
        nc_verp_keys_t k2;
        char addr[128], *s;
        inbound_t r;

        (void)state;
        /* Made with another secret. */
        nc_verp_derive(other, SECRET_LEN, &k2);
        assert_int_equal(nc_verp_address(&k2, BASE, '+', RCPT, MID, addr, sizeof(addr)), 0);
        s = sample_with("gmail-dsn-5.1.1.eml", addr, token);
        classify_str(addr, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_int_equal(r.kind, INBOUND_DSN);
        assert_string_equal(r.reason, "forged VERP token");
        assert_false(r.has_ref);
        assert_string_equal(r.status, "5.1.1"); /* recorded as it was */
        free(s);

        /* Ours, one character altered. */
        snprintf(addr, sizeof(addr), "%s", verp);
        addr[strlen("bounces+") + 5] = addr[strlen("bounces+") + 5] == 'a' ? 'b' : 'a';
        s = sample_with("exchange-ndr-5.1.10.eml", addr, token);
        classify_str(addr, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_string_equal(r.reason, "forged VERP token");
        free(s);

        /* A DSN to the bare bounce address: nothing says whose it is. */
        s = sample_with("gmail-dsn-5.1.1.eml", BASE, token);
        classify_str(BASE, s, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_string_equal(r.reason, "no token");
        free(s);
}

static void test_mangled_dsn(void **state)
{
        char *s = sample("gmail-dsn-5.1.1.eml"), *t;
        const char *status_part;
        inbound_t r;
        char text[4096];

        (void)state;
        /* The report part flattened to text/plain with only its Status line. */
        status_part = strstr(s, "Content-Type: message/delivery-status");
        assert_non_null(status_part);
        {
                const char *end = strstr(status_part, "--00000000000084e3a1061a2b7c5d");
                size_t head = (size_t)(status_part - s);

                t = nc_xmalloc(strlen(s) + 64);
                memcpy(t, s, head);
                sprintf(t + head, "Content-Type: text/plain\n\nStatus: 5.1.1\n\n%s", end);
        }
        classify_str(verp, t, &r);
        assert_int_equal(r.type, INBOUND_BOUNCE);
        assert_string_equal(r.status, "5.1.1");
        assert_string_equal(r.status_source, "text");
        assert_refs(&r);
        free(t);
        free(s);

        /* An MTA's own format: plain text from MAILER-DAEMON with the SMTP reply. */
        snprintf(text, sizeof(text),
                 "From: MAILER-DAEMON@mx.example.net\r\nTo: %s\r\nSubject: failure notice\r\n"
                 "Message-ID: <q1@mx.example.net>\r\n\r\nHi. This is the qmail-send program.\r\n"
                 "<%s>:\r\n192.0.2.7 does not like recipient.\r\nRemote host said: 550 5.1.1 "
                 "<%s>: Recipient address rejected: User unknown\r\n",
                 verp, RCPT, RCPT);
        classify_str(NULL, text, &r);
        assert_int_equal(r.type, INBOUND_BOUNCE);
        assert_int_equal(r.kind, INBOUND_DSN);
        assert_string_equal(r.status, "5.1.1");
        assert_string_equal(r.status_source, "text");
        assert_prefix(r.diagnostic, "Remote host said: 550 5.1.1");
        assert_refs(&r);

        /* Exchange's report part as the only text, 4xx: transient. */
        snprintf(text, sizeof(text),
                 "From: postmaster@contoso.example\r\nTo: <%s>\r\nSubject: Undeliverable\r\n"
                 "\r\nRemote Server returned '452 4.2.2 Mailbox full'\r\n",
                 verp);
        classify_str(NULL, text, &r);
        assert_int_equal(r.type, INBOUND_DELAYED);
        assert_string_equal(r.status, "4.2.2");
}

/* The sample NAME with FROM replaced by TO, classified into R (envelope: the VERP). */
static void classify_variant(const char *name, const char *from, const char *to, inbound_t *r)
{
        char *s = sample(name), *t = replace(s, from, to);

        classify_str(verp, t, r);
        free(t);
        free(s);
}

static void test_dsn_actions(void **state)
{
        inbound_t r;

        (void)state;
        classify_variant("gmail-dsn-5.1.1.eml", "Action: failed", "Action: delivered", &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_string_equal(r.reason, "delivery notification (Action: delivered)");
        /* failed with a 4.x.x status (expired in a queue): transient, as the status says. */
        classify_variant("gmail-dsn-5.1.1.eml", "Status: 5.1.1", "Status: 4.4.7", &r);
        assert_int_equal(r.type, INBOUND_DELAYED);
        /* No Status field: the code in Diagnostic-Code. */
        classify_variant("gmail-dsn-5.1.1.eml", "Status: 5.1.1", "X-Status: gone", &r);
        assert_int_equal(r.type, INBOUND_BOUNCE);
        assert_string_equal(r.status, "5.1.1");
        assert_string_equal(r.status_source, "diagnostic-code");
}

static void test_arf_other_types(void **state)
{
        inbound_t r;

        (void)state;
        classify_variant("yahoo-arf-abuse.eml", "Feedback-Type: abuse", "Feedback-Type: not-spam",
                         &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_int_equal(r.kind, INBOUND_ARF);
        assert_string_equal(r.reason, "feedback type not-spam");
        assert_string_equal(r.subscriber, RCPT); /* still recorded */
        classify_variant("yahoo-arf-abuse.eml", "Feedback-Type: abuse", "Feedback-Type: fraud", &r);
        assert_int_equal(r.type, INBOUND_COMPLAINT);
}

static void test_mbox_from_line(void **state)
{
        char *s = sample("delayed-4.4.7.eml"), *t = nc_xmalloc(strlen(s) + 64);
        inbound_t r;

        (void)state;
        sprintf(t, "From MAILER-DAEMON  Thu Dec  3 12:00:00 2026\n%s", s);
        classify_str(NULL, t, &r);
        assert_int_equal(r.type, INBOUND_DELAYED);
        free(t);
        free(s);
}

static void expect_quarantine(const char *data, size_t len, const char *reason)
{
        inbound_t r;
        char key[128];

        classify(NULL, data, len, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_true(r.quarantine);
        assert_prefix(r.reason, reason);
        inbound_key(&r, key, sizeof(key));
        assert_prefix(key, "inbound:");
}

static void test_garbage(void **state)
{
        static const char nul_hdr[] = "From: a@b\nSub\0ject: x\n\nbody";
        char rnd[4096];
        unsigned seed = 42;

        (void)state;
        expect_quarantine("", 0, "unparseable: empty input");
        expect_quarantine("hello world\n", 12, "unparseable: not an RFC 5322 message");
        expect_quarantine(" leading: continuation\n", 23, "unparseable: not an RFC 5322");
        expect_quarantine(nul_hdr, sizeof(nul_hdr) - 1, "unparseable: not an RFC 5322");
        for (int round = 0; round < 50; round++) {
                for (size_t i = 0; i < sizeof(rnd); i++)
                        rnd[i] = (char)(rand_r(&seed) & 0xff);
                rnd[3] = '\0'; /* never a header block */
                expect_quarantine(rnd, sizeof(rnd), "unparseable:");
        }
}

static void test_huge(void **state)
{
        size_t n = INBOUND_MAX_BYTES + 1;
        char *big = nc_xmalloc(n);
        static const char head[] = "From: a@example.org\r\nSubject: big\r\n\r\n";
        inbound_t r;

        (void)state;
        memset(big, 'a', n);
        memcpy(big, head, sizeof(head) - 1);
        expect_quarantine(big, n, "unparseable: larger than 10 MiB");
        /* At the limit: read, and not a report. */
        classify(NULL, big, INBOUND_MAX_BYTES, &r);
        assert_int_equal(r.type, INBOUND_IGNORED);
        assert_false(r.quarantine);
        assert_string_equal(r.reason, "not a report");
        /* 8-bit and NUL bytes in a body are a mail still. */
        memset(big + sizeof(head), 0, 1000);
        memset(big + sizeof(head) + 1000, 0xff, 1000);
        classify(NULL, big, 1 << 20, &r);
        assert_false(r.quarantine);
        free(big);
}

static void test_nested(void **state)
{
        size_t cap = 1 << 20, o = 0;
        char *s = nc_xmalloc(cap);
        inbound_t r;

        (void)state;
        /* 1,000 multiparts deep: refused before GMime spends seconds on it. */
        o +=
            (size_t)sprintf(s, "From: a@b.example\nContent-Type: multipart/mixed; boundary=b0\n\n");
        for (int i = 1; i < 1000; i++)
                o += (size_t)sprintf(
                    s + o, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i - 1, i);
        expect_quarantine(s, o, "unparseable: more than 64 multipart or message parts");

        /* Folded Content-Type headers count too. */
        o = (size_t)sprintf(s, "From: a@b.example\nContent-Type:\n message/rfc822\n\n");
        for (int i = 0; i < 100; i++)
                o += (size_t)sprintf(s + o, "Content-Type:\n\tmessage/rfc822\n\n");
        expect_quarantine(s, o, "unparseable: more than 64");

        /* 40 deep, under the count but past the depth walked: read, no crash. */
        o = (size_t)sprintf(s, "From: a@b.example\nContent-Type: multipart/report; "
                               "report-type=delivery-status; boundary=b0\n\n");
        for (int i = 1; i < 40; i++)
                o += (size_t)sprintf(
                    s + o, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i - 1, i);
        o += (size_t)sprintf(s + o, "--b39\nContent-Type: message/delivery-status\n\n"
                                    "Action: failed\nStatus: 5.1.1\n\n");
        classify(NULL, s, o, &r);
        assert_false(r.quarantine);
        assert_int_equal(r.kind, INBOUND_DSN);
        assert_int_equal(r.type, INBOUND_IGNORED);
        free(s);
}

/* Every prefix of every sample (a truncated mail, a cut pipe) and byte-flipped copies: no
 * crash (ASan in `make asan`), always a valid event. */
static void test_truncated_and_mutated(void **state)
{
        static const char *const names[] = {
            "gmail-dsn-5.1.1.eml", "exchange-ndr-5.1.10.eml", "delayed-4.4.7.eml",
            "yahoo-arf-abuse.eml", "microsoft-arf-abuse.eml", "mailto-unsubscribe.eml",
            "out-of-office.eml",
        };
        unsigned seed = 7;
        inbound_t r;

        (void)state;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *s = sample(names[i]);
                size_t len = strlen(s);

                for (size_t n = 0; n <= len; n += 7)
                        classify(verp, s, n, &r);
                for (int round = 0; round < 300; round++) {
                        char *m = nc_xmalloc(len);

                        memcpy(m, s, len);
                        for (int k = 0; k < 8; k++)
                                m[(size_t)rand_r(&seed) % len] = (char)(rand_r(&seed) & 0xff);
                        classify(verp, m, len, &r);
                        free(m);
                }
                free(s);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_names),
            cmocka_unit_test(test_gmail_dsn),
            cmocka_unit_test(test_dsn_samples),
            cmocka_unit_test(test_yahoo_arf),
            cmocka_unit_test(test_microsoft_arf),
            cmocka_unit_test(test_mailto),
            cmocka_unit_test(test_mailto_tokens),
            cmocka_unit_test(test_out_of_office),
            cmocka_unit_test(test_forged_verp),
            cmocka_unit_test(test_mangled_dsn),
            cmocka_unit_test(test_dsn_actions),
            cmocka_unit_test(test_arf_other_types),
            cmocka_unit_test(test_mbox_from_line),
            cmocka_unit_test(test_garbage),
            cmocka_unit_test(test_huge),
            cmocka_unit_test(test_nested),
            cmocka_unit_test(test_truncated_and_mutated),
        };
        int rc = cmocka_run_group_tests(tests, setup, NULL);

        inbound_global_shutdown();
        return rc;
}

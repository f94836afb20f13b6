/* curl_loop: the bare libcurl reference for the webhook benchmark (tests/bench/webhooks.sh).
 *
 *   curl_loop URL BODY_FILE HANDLES COUNT MAX_SECONDS [HEADER]...
 *
 * HANDLES easy handles on one multi handle, each POSTing BODY_FILE to URL with the given
 * extra headers, keep-alive and TCP_NODELAY, until COUNT requests have completed (or
 * MAX_SECONDS have passed).  A finished handle is simply added again: no per-request work
 * beyond what libcurl itself does, which is the floor for any libcurl-based deliverer.
 *
 * Prints one line: "requests=N ok=N failed=N seconds=S rate=R cpu=C" (rate = completed/s,
 * cpu = user+sys CPU seconds of this process).
 * Exit status 0 if COUNT requests completed with a 2xx, 1 otherwise.
 *
 * Build: cc -O2 -o curl_loop curl_loop.c $(pkg-config --cflags --libs libcurl) */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *buf, size_t size, size_t n, void *opaque)
{
        (void)buf;
        (void)opaque;
        return size * n;
}

static char *read_file(const char *path, long *len)
{
        FILE *f = fopen(path, "rb");
        char *buf;

        if (!f)
                return NULL;
        fseek(f, 0, SEEK_END);
        *len = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)*len + 1);
        if (!buf || fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
                fclose(f);
                free(buf);
                return NULL;
        }
        buf[*len] = '\0';
        fclose(f);
        return buf;
}

int main(int argc, char **argv)
{
        struct curl_slist *hdrs = NULL;
        struct rusage ru;
        long body_len, handles, count, started = 0, done = 0, ok = 0, failed = 0;
        double max_s, t0, t;
        CURL **easy;
        CURLM *multi;
        char *body;
        int running = 1, i;

        if (argc < 6) {
                fprintf(stderr, "usage: curl_loop URL BODY_FILE HANDLES COUNT MAX_SECONDS "
                                "[HEADER]...\n");
                return 64;
        }
        if (!(body = read_file(argv[2], &body_len))) {
                perror(argv[2]);
                return 66;
        }
        handles = strtol(argv[3], NULL, 10);
        count = strtol(argv[4], NULL, 10);
        max_s = strtod(argv[5], NULL);
        if (handles < 1 || count < 1 || max_s <= 0) {
                fprintf(stderr, "curl_loop: HANDLES, COUNT and MAX_SECONDS must be positive\n");
                return 64;
        }
        for (i = 6; i < argc; i++)
                hdrs = curl_slist_append(hdrs, argv[i]);
        hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */

        curl_global_init(CURL_GLOBAL_DEFAULT);
        multi = curl_multi_init();
        curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, handles * 2);
        easy = calloc((size_t)handles, sizeof(*easy));
        for (i = 0; i < handles; i++) {
                CURL *e = curl_easy_init();

                curl_easy_setopt(e, CURLOPT_URL, argv[1]);
                curl_easy_setopt(e, CURLOPT_POST, 1L);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
                curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
                curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
                curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
                curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
                easy[i] = e;
        }

        t0 = now_s();
        for (i = 0; i < handles && started < count; i++, started++)
                curl_multi_add_handle(multi, easy[i]);
        while (done < count) {
                CURLMsg *msg;
                int left;

                curl_multi_perform(multi, &running);
                while ((msg = curl_multi_info_read(multi, &left))) {
                        CURL *e = msg->easy_handle;
                        long status = 0;

                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                        done++;
                        if (msg->data.result == CURLE_OK && status >= 200 && status < 300)
                                ok++;
                        else if (failed++ < 5)
                                fprintf(stderr, "curl_loop: %s, HTTP %ld\n",
                                        curl_easy_strerror(msg->data.result), status);
                        curl_multi_remove_handle(multi, e);
                        if (started < count) {
                                curl_multi_add_handle(multi, e);
                                started++;
                        }
                }
                if (done >= count || now_s() - t0 > max_s)
                        break;
                curl_multi_poll(multi, NULL, 0, 100, NULL);
        }
        t = now_s() - t0;
        getrusage(RUSAGE_SELF, &ru);
        printf("requests=%ld ok=%ld failed=%ld seconds=%.3f rate=%.0f cpu=%.2f\n", done, ok, failed,
               t, (double)done / t,
               (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);

        for (i = 0; i < handles; i++) {
                curl_multi_remove_handle(multi, easy[i]);
                curl_easy_cleanup(easy[i]);
        }
        free(easy);
        curl_multi_cleanup(multi);
        curl_slist_free_all(hdrs);
        curl_global_cleanup();
        free(body);
        return ok == count ? 0 : 1;
}

#include "nc_time.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "nc_util.h"

static int digits(const char *s, int n, int *out)
{
        int v = 0, i;

        for (i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return 0;
}

static int days_in_month(int y, int m)
{
        static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

        if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return 29;
        return dm[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

int nc_time_parse_rfc3339(const char *s, int64_t *ms, char *errstr, size_t errstr_size)
{
        int Y, M, D, h, m, sec, oh = 0, om = 0, sign = 0, frac_ms = 0, scale = 100;
        const char *p;

        if (strlen(s) < 19 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
            s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') ||
            digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' ||
            digits(s + 17, 2, &sec))
                return nc_err(errstr, errstr_size,
                              "'%s' is not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS+HH:MM)", s);
        if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || m > 59 ||
            sec > 60)
                return nc_err(errstr, errstr_size, "'%s' is not a valid date and time", s);
        p = s + 19;
        if (*p == '.') {
                if (!isdigit((unsigned char)p[1]))
                        return nc_err(errstr, errstr_size, "'%s': empty fraction of a second", s);
                for (p++; isdigit((unsigned char)*p); p++) {
                        frac_ms += (*p - '0') * scale;
                        scale /= 10;
                }
        }
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                sign = *p == '-' ? -1 : 1;
                if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 ||
                    om > 59)
                        return nc_err(errstr, errstr_size, "'%s': bad UTC offset", s);
                p += 6;
        } else {
                return nc_err(errstr, errstr_size,
                              "'%s': missing time zone ('Z' or an offset like +09:00)", s);
        }
        if (*p)
                return nc_err(errstr, errstr_size, "'%s': trailing characters", s);
        if (sec == 60)
                sec = 59; /* leap second: clamp, Unix time has no slot for it */
        *ms = ((days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + sec) -
               (int64_t)sign * (oh * 3600 + om * 60)) *
                  1000 +
              frac_ms;
        return 0;
}

char *nc_time_format_rfc3339(int64_t ms, char *buf, size_t size)
{
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        size_t n;

        gmtime_r(&t, &tm);
        n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        if (ms % 1000)
                snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
        else
                snprintf(buf + n, size - n, "Z");
        return buf;
}

int64_t nc_time_now_ms(void)
{
        struct timeval tv;

        gettimeofday(&tv, NULL);
        return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

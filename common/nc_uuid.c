#include "nc_uuid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int nc_uuid_v7(int64_t ms, char out[NC_UUID_STRLEN])
{
        unsigned char b[16];
        int i;

        if (getrandom(b + 6, 10, 0) != 10)
                return -1;
        for (i = 0; i < 6; i++)
                b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
        b[6] = (unsigned char)(0x70 | (b[6] & 0x0f)); /* version 7 */
        b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 */
        snprintf(out, NC_UUID_STRLEN,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                 b[15]);
        return 0;
}

int nc_uuid_valid(const char *s)
{
        int i;

        if (strlen(s) != 36)
                return 0;
        for (i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return 0;
                } else if (!isxdigit((unsigned char)s[i])) {
                        return 0;
                }
        }
        return 1;
}

int nc_uuid_version(const char *s)
{
        char c = (char)tolower((unsigned char)s[14]);

        return isdigit((unsigned char)c) ? c - '0' : c - 'a' + 10;
}

int64_t nc_uuid_v7_time(const char *s)
{
        int64_t ms = 0;
        int i;

        for (i = 0; i < 13; i++) {
                char c = (char)tolower((unsigned char)s[i]);

                if (c == '-')
                        continue;
                ms = ms * 16 + (isdigit((unsigned char)c) ? c - '0' : c - 'a' + 10);
        }
        return ms;
}

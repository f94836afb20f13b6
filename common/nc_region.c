#include "nc_region.h"

#include <string.h>

/* Officially assigned codes, two letters each, sorted so bsearch-style scans stay simple. */
static const char codes[] = "ADAEAFAGAIALAMAOAQARASATAUAWAXAZ"
                            "BABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ"
                            "CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ"
                            "DEDJDKDMDODZ"
                            "ECEEEGEHERESET"
                            "FIFJFKFMFOFR"
                            "GAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGY"
                            "HKHMHNHRHTHU"
                            "IDIEILIMINIOIQIRISIT"
                            "JEJMJOJP"
                            "KEKGKHKIKMKNKPKRKWKYKZ"
                            "LALBLCLILKLRLSLTLULVLY"
                            "MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZ"
                            "NANCNENFNGNINLNONPNRNUNZ"
                            "OM"
                            "PAPEPFPGPHPKPLPMPNPRPSPTPWPY"
                            "QA"
                            "RERORSRURW"
                            "SASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZ"
                            "TCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZ"
                            "UAUGUMUSUYUZ"
                            "VAVCVEVGVIVNVU"
                            "WFWS"
                            "YEYT"
                            "ZAZMZW";

int nc_region_valid(const char *code)
{
        int lo = 0, hi = nc_region_count() - 1;

        if (strlen(code) != 2)
                return 0;
        while (lo <= hi) {
                int mid = (lo + hi) / 2, c = strncmp(code, codes + 2 * mid, 2);

                if (c == 0)
                        return 1;
                if (c < 0)
                        hi = mid - 1;
                else
                        lo = mid + 1;
        }
        return 0;
}

int nc_region_count(void)
{
        return (int)(sizeof(codes) - 1) / 2;
}

int nc_region_list_add(nc_strlist_t *list, const char *code, char *errstr, size_t errstr_size)
{
        char up[3] = "";

        if (strlen(code) == 2) {
                memcpy(up, code, 2);
                nc_str_upper(up);
        }
        if (!nc_region_valid(up))
                return nc_err(errstr, errstr_size, "'%s' is not an ISO 3166-1 alpha-2 country code",
                              code);
        if (!nc_strlist_has(list, up))
                nc_strlist_add(list, up);
        return 0;
}

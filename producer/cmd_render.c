/* noticecast render TEMPLATE [DATA.json]: renders a Mustache template from the command line,
 * the way the mailer does (partials from the template's folder), to try a template change. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_mustache.h"

static const char render_usage[] =
    "noticecast render [--html|--text] TEMPLATE [DATA.json|-]\n"
    "\n"
    "Renders the Mustache template TEMPLATE with the JSON object in DATA.json (or stdin,\n"
    "or an empty object) and prints the result.  {{>name}} loads name.mustache from the\n"
    "template's folder.  Values are HTML-escaped when the file name contains \"html\"\n"
    "(or with --html); --text turns escaping off.\n"
    "Exit: 0 rendered, 64 usage, 65 template or data error, 66 cannot read a file.\n";

struct partials {
        char *dir;
        char *last; /* the text handed out last (freed on the next call and at the end) */
};

static const char *load_partial(void *opaque, const char *name)
{
        struct partials *p = opaque;
        char path[4096];

        free(p->last);
        p->last = NULL;
        if (strchr(name, '/') || strstr(name, ".."))
                return NULL; /* partials are names in the template's folder, not paths */
        snprintf(path, sizeof(path), "%s/%s.mustache", p->dir, name);
        p->last = nc_file_read(path, NULL, NULL, 0);
        return p->last;
}

int cmd_render(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {NC_CLI_COMMON_LONG,
                                                 {"html", no_argument, NULL, 'H'},
                                                 {"text", no_argument, NULL, 'T'},
                                                 {0}};
        struct partials parts = {0};
        nc_mustache_opts_t opts = {0};
        json_error_t jerr;
        json_t *data = NULL;
        char err[1024], *tmpl = NULL, *out = NULL, *copy;
        int c, escape = -1, rc = NC_EX_OK;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(render_usage, stdout);
                        return NC_EX_OK;
                }
                if (c == 'H' || c == 'T') {
                        escape = c == 'H';
                        continue;
                }
                return nc_cli_usage_error("render", "noticecast render TEMPLATE [DATA.json]");
        }
        if (optind >= argc || argc - optind > 2)
                return nc_cli_usage_error("render", "noticecast render TEMPLATE [DATA.json]");
        if (!(tmpl = nc_file_read(argv[optind], NULL, err, sizeof(err))))
                return nc_cli_fail(NC_EX_NOINPUT, "render", "%s", err);
        if (optind + 1 < argc) {
                const char *path = argv[optind + 1];

                data = strcmp(path, "-") ? json_load_file(path, 0, &jerr)
                                         : json_loadf(stdin, 0, &jerr);
                if (!data) {
                        rc = nc_cli_fail(NC_EX_DATAERR, "render", "%s:%d: %s", path, jerr.line,
                                         jerr.text);
                        goto out;
                }
        } else {
                data = json_object();
        }
        copy = nc_xstrdup(argv[optind]);
        parts.dir = nc_xstrdup(dirname(copy));
        free(copy);
        opts.partial = load_partial;
        opts.opaque = &parts;
        opts.escape_html = escape >= 0 ? escape : strstr(argv[optind], "html") != NULL;
        if (!(out = nc_mustache_render(tmpl, data, &opts, err, sizeof(err)))) {
                rc = nc_cli_fail(NC_EX_DATAERR, "render", "%s: %s", argv[optind], err);
                goto out;
        }
        fputs(out, stdout);
out:
        free(out);
        free(tmpl);
        free(parts.dir);
        free(parts.last);
        json_decref(data);
        return rc;
}

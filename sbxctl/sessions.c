/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "sessions.h"

#define SESSION_ROW "(ossuutb)" /* path, language, owner, uid, exec count, created (µs, realtime), closed */

static void json_str(const char *s) {
        fputc('"', stdout);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p < 0x20)
                        printf("\\u%04x", *p);
                else
                        fputc(*p, stdout);
        fputc('"', stdout);
}

static void format_age(char *buf, size_t size, uint64_t created_usec) {
        struct timespec ts;
        uint64_t now, s;

        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
        if (created_usec == 0 || created_usec > now) {
                snprintf(buf, size, "-");
                return;
        }
        s = (now - created_usec) / 1000000u;
        if (s < 60)
                snprintf(buf, size, "%llus", (unsigned long long) s);
        else if (s < 3600)
                snprintf(buf, size, "%llum%02llus", (unsigned long long) (s / 60), (unsigned long long) (s % 60));
        else if (s < 86400)
                snprintf(buf, size, "%lluh%02llum", (unsigned long long) (s / 3600),
                         (unsigned long long) (s % 3600 / 60));
        else
                snprintf(buf, size, "%llud%02lluh", (unsigned long long) (s / 86400),
                         (unsigned long long) (s % 86400 / 3600));
}

int sbxctl_sessions(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path, *lang, *owner, *sig;
        uint32_t uid, execs;
        uint64_t created;
        int closed, r;
        bool json = false;
        size_t n = 0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else {
                        fprintf(stderr, "sbxctl sessions: unexpected argument '%s' (usage: sessions [--json])\n",
                                argv[i]);
                        return 2;
                }
        }

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "ListSessions", &error, &reply, "");
        if (r < 0) {
                fprintf(stderr, "sbxctl: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return sbx_error_exit_status(&error);
        }
        sig = sd_bus_message_get_signature(reply, true);
        if (!sig || strcmp(sig, "a" SESSION_ROW) != 0) {
                /* A broker newer than this client: still show what it said. */
                if (json) {
                        r = sbx_json_write_value(reply, stdout);
                        fputc('\n', stdout);
                        return r < 0 ? 1 : 0;
                }
                fprintf(stderr, "sbxctl: unexpected ListSessions reply signature '%s' (expected 'a%s'); try --json\n",
                        sig ?: "?", SESSION_ROW);
                return 1;
        }

        r = sd_bus_message_enter_container(reply, 'a', SESSION_ROW);
        if (json)
                fputc('[', stdout);
        while (r >= 0 && (r = sd_bus_message_read(reply, SESSION_ROW, &path, &lang, &owner, &uid, &execs, &created,
                                                  &closed)) > 0) {
                if (json) {
                        if (n > 0)
                                fputc(',', stdout);
                        fputs("{\"path\":", stdout);
                        json_str(path);
                        fputs(",\"language\":", stdout);
                        json_str(lang);
                        fputs(",\"owner\":", stdout);
                        json_str(owner);
                        printf(",\"uid\":%u,\"exec_count\":%u,\"created_usec\":%llu,\"closed\":%s}", uid, execs,
                               (unsigned long long) created, closed ? "true" : "false");
                } else {
                        char age[32];
                        if (n == 0)
                                printf("%-34s %-11s %-6s %-6s %-8s %-7s %s\n", "SESSION", "LANGUAGE", "UID", "EXECS",
                                       "AGE", "STATE", "OWNER");
                        format_age(age, sizeof age, created);
                        printf("%-34s %-11s %-6u %-6u %-8s %-7s %s\n", path, lang, uid, execs, age,
                               closed ? "closed" : "open", owner);
                }
                n++;
        }
        if (json)
                puts("]");
        if (r < 0) {
                fprintf(stderr, "sbxctl: cannot parse the ListSessions reply: %s\n", strerror(-r));
                return 1;
        }
        if (!json && n == 0)
                printf("no sessions\n");
        return 0;
}

int sbxctl_close(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        const char *arg;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: sbxctl close PATH|ID   (PATH as shown by 'sbxctl sessions')\n");
                return 2;
        }
        arg = argv[1];
        if (arg[0] == '/')
                path = strdup(arg);
        else if (arg[0] && strspn(arg + (arg[0] == '_'), "0123456789") == strlen(arg + (arg[0] == '_')) &&
                 arg[arg[0] == '_'])
                if (asprintf(&path, SBX_SESSION_PREFIX "/_%s", arg + (arg[0] == '_')) < 0)
                        path = NULL;
        if (!path || !sd_bus_object_path_is_valid(path) ||
            strncmp(path, SBX_SESSION_PREFIX "/", strlen(SBX_SESSION_PREFIX "/")) != 0) {
                fprintf(stderr, "sbxctl close: '%s' is not a session (%s/_ID, or ID)\n", arg, SBX_SESSION_PREFIX);
                return 2;
        }

        r = sd_bus_call_method(bus, SBX_BUS_NAME, SBX_BUS_PATH, SBX_BUS_IFACE, "CloseSession", &error, NULL, "o",
                               path);
        if (r < 0) {
                if (error.name && sd_bus_error_has_names(&error, SBX_ERROR_NOT_FOUND, SD_BUS_ERROR_UNKNOWN_OBJECT)) {
                        fprintf(stderr, "sbxctl: no such session: %s\n", path);
                        return 2;
                }
                if (error.name && sd_bus_error_has_name(&error, SBX_ERROR_SESSION_CLOSED)) {
                        printf("%s was already closed\n", path);
                        return 0;
                }
                if (error.name && sd_bus_error_has_name(&error, SBX_ERROR_ACCESS_DENIED)) {
                        fprintf(stderr, "sbxctl: %s: only its owner or root may close it\n", path);
                        return 1;
                }
                fprintf(stderr, "sbxctl: %s: %s\n", error.name ?: "error", error.message ?: strerror(-r));
                return sbx_error_exit_status(&error);
        }
        printf("closed %s\n", path);
        return 0;
}

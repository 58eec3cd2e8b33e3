/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"

int sbx_bus_connect(SbxBusKind kind, const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (kind == SBX_BUS_AUTO) {
                address = getenv("SBX_BUS_ADDRESS");
                if (address && *address)
                        kind = SBX_BUS_ADDRESS;
                else if (getenv("DBUS_SESSION_BUS_ADDRESS"))
                        kind = SBX_BUS_USER;
                else
                        kind = SBX_BUS_SYSTEM;
        }
        switch (kind) {
        case SBX_BUS_USER:
                r = sd_bus_open_user(&bus);
                break;
        case SBX_BUS_SYSTEM:
                r = sd_bus_open_system(&bus);
                break;
        default:
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_negotiate_fds(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
                break;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                switch (*p) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (*p < 0x20)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
        }
        fputc('"', f);
}

int sbx_json_write_value(sd_bus_message *m, FILE *f) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r < 0 ? r : -ENXIO;

        switch (type) {
        case 's':
        case 'o':
        case 'g': {
                const char *s;
                r = sd_bus_message_read_basic(m, type, &s);
                if (r >= 0)
                        json_string(f, s);
                return r;
        }
        case 'b': {
                int b;
                r = sd_bus_message_read_basic(m, type, &b);
                if (r >= 0)
                        fputs(b ? "true" : "false", f);
                return r;
        }
        case 'y': {
                uint8_t v;
                r = sd_bus_message_read_basic(m, type, &v);
                if (r >= 0)
                        fprintf(f, "%u", v);
                return r;
        }
        case 'n':
        case 'q':
        case 'i':
        case 'u':
        case 'x':
        case 't': {
                union {
                        int16_t n;
                        uint16_t q;
                        int32_t i;
                        uint32_t u;
                        int64_t x;
                        uint64_t t;
                } v;
                r = sd_bus_message_read_basic(m, type, &v);
                if (r < 0)
                        return r;
                if (type == 'n')
                        fprintf(f, "%d", v.n);
                else if (type == 'q')
                        fprintf(f, "%u", v.q);
                else if (type == 'i')
                        fprintf(f, "%d", v.i);
                else if (type == 'u')
                        fprintf(f, "%u", v.u);
                else if (type == 'x')
                        fprintf(f, "%lld", (long long) v.x);
                else
                        fprintf(f, "%llu", (unsigned long long) v.t);
                return 0;
        }
        case 'd': {
                double d;
                r = sd_bus_message_read_basic(m, type, &d);
                if (r >= 0)
                        fprintf(f, "%g", d);
                return r;
        }
        case 'h': {
                int fd;
                r = sd_bus_message_read_basic(m, type, &fd);
                if (r >= 0)
                        fputs("null", f);
                return r;
        }
        case 'v':
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = sbx_json_write_value(m, f);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        case 'a': {
                bool dict = contents[0] == '{';
                bool first = true;
                r = sd_bus_message_enter_container(m, 'a', contents);
                if (r < 0)
                        return r;
                fputc(dict ? '{' : '[', f);
                for (;;) {
                        if (dict) {
                                char inner[64];
                                size_t n = strlen(contents);
                                if (n < 2 || n - 2 >= sizeof inner)
                                        return -EINVAL;
                                memcpy(inner, contents + 1, n - 2);
                                inner[n - 2] = 0;
                                r = sd_bus_message_enter_container(m, 'e', inner);
                                if (r < 0)
                                        return r;
                                if (r == 0)
                                        break;
                                if (!first)
                                        fputc(',', f);
                                first = false;
                                /* JSON keys must be strings. */
                                const char *kc;
                                char kt;
                                r = sd_bus_message_peek_type(m, &kt, &kc);
                                if (r < 0)
                                        return r;
                                if (kt == 's')
                                        r = sbx_json_write_value(m, f);
                                else {
                                        fputc('"', f);
                                        r = sbx_json_write_value(m, f);
                                        fputc('"', f);
                                }
                                if (r < 0)
                                        return r;
                                fputc(':', f);
                                r = sbx_json_write_value(m, f);
                                if (r < 0)
                                        return r;
                                r = sd_bus_message_exit_container(m);
                                if (r < 0)
                                        return r;
                        } else {
                                r = sd_bus_message_at_end(m, false);
                                if (r < 0)
                                        return r;
                                if (r > 0)
                                        break;
                                if (!first)
                                        fputc(',', f);
                                first = false;
                                r = sbx_json_write_value(m, f);
                                if (r < 0)
                                        return r;
                        }
                }
                fputc(dict ? '}' : ']', f);
                return sd_bus_message_exit_container(m);
        }
        case 'r': {
                bool first = true;
                r = sd_bus_message_enter_container(m, 'r', contents);
                if (r < 0)
                        return r;
                fputc('[', f);
                while ((r = sd_bus_message_at_end(m, false)) == 0) {
                        if (!first)
                                fputc(',', f);
                        first = false;
                        r = sbx_json_write_value(m, f);
                        if (r < 0)
                                return r;
                }
                if (r < 0)
                        return r;
                fputc(']', f);
                return sd_bus_message_exit_container(m);
        }
        default:
                return -EOPNOTSUPP;
        }
}

int sbx_dict_find(sd_bus_message *m, const char *key, const char *contents) {
        int r;

        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *k, *c;
                char t;
                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r <= 0)
                        return r < 0 ? r : -ENOENT;
                r = sd_bus_message_read(m, "s", &k);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &t, &c);
                if (r < 0)
                        return r;
                if (strcmp(k, key) == 0 && strcmp(c, contents) == 0)
                        return sd_bus_message_enter_container(m, 'v', contents);
                r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
}

int sbx_error_exit_status(const sd_bus_error *e) {
        if (!e || !e->name)
                return 1;
        if (sd_bus_error_has_names(e, SBX_ERROR_INVALID_INPUT, SBX_ERROR_CODE_VALIDATION, SBX_ERROR_ENV_VALIDATION))
                return 2;
        if (sd_bus_error_has_names(e, SBX_ERROR_CAPACITY, SBX_ERROR_VM_TRANSIENT, SBX_ERROR_VM_BOOT_TIMEOUT))
                return 75;
        return 1;
}

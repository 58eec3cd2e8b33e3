/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "frame.h"
#include "macro.h"
#include "request.h"
#include "validate.h"

void request_init(SbxRequest *r, uint32_t default_memory_mb) {
        *r = (SbxRequest) {
                .language = SBX_LANG_PYTHON,
                .timeout_s = SBX_TIMEOUT_DEFAULT_S,
                .memory_mb = default_memory_mb,
                .stdout_fd = -EBADF,
                .stderr_fd = -EBADF,
                .idle_timeout_s = SBX_IDLE_TIMEOUT_DEFAULT_S,
                .use_warm_pool = true,
                .use_snapshot = true,
        };
}

void request_done(SbxRequest *r) {
        free(r->code);
        for (size_t i = 0; i < r->n_env; i++)
                free(r->env[i]);
        free(r->env);
        for (size_t i = 0; i < r->n_domains; i++)
                free(r->domains[i]);
        free(r->domains);
        safe_close(r->stdout_fd);
        safe_close(r->stderr_fd);
        *r = (SbxRequest) { .stdout_fd = -EBADF, .stderr_fd = -EBADF };
}

static const struct {
        const char *key, *type;
        RequestKey bit;
} request_keys[] = {
        { "code", "s", REQ_CODE },
        { "language", "s", REQ_LANGUAGE },
        { "timeout_seconds", "u", REQ_TIMEOUT },
        { "memory_mb", "u", REQ_MEMORY },
        { "env", "a{ss}", REQ_ENV },
        { "stdout_fd", "h", REQ_STDOUT_FD },
        { "stderr_fd", "h", REQ_STDERR_FD },
        { "idle_timeout_seconds", "u", REQ_IDLE_TIMEOUT },
        { "warm_pool", "b", REQ_WARM_POOL },
        { "snapshot", "b", REQ_SNAPSHOT },
        { "allow_network", "b", REQ_ALLOW_NETWORK },
        { "allowed_domains", "as", REQ_ALLOWED_DOMAINS },
        { "expose_ports", "as", REQ_EXPOSE_PORTS },
};

static int unknown_key(const char *key, sd_bus_error *error) {
        for (size_t i = 0; i < ELEMENTSOF(request_keys); i++)
                if (strcmp(key, request_keys[i].key) == 0)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "Request key '%s' must have type '%s'.", key, request_keys[i].type);
        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                 "Unknown request key '%.64s' (known: code, language, timeout_seconds, memory_mb, env, "
                                 "stdout_fd, stderr_fd, idle_timeout_seconds, warm_pool, snapshot, allow_network, allowed_domains, "
                                 "expose_ports).",
                                 key);
}

int request_apply_string(SbxRequest *r, const char *key, const char *value, sd_bus_error *error) {
        if (strcmp(key, "language") == 0) {
                SbxLanguage l = sbx_language_from_string(value);
                if (l == SBX_LANG_INVALID)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "Unknown language '%.64s': use python, javascript or raw.", value);
                r->language = l;
                r->seen |= REQ_LANGUAGE;
                return 0;
        }
        if (strcmp(key, "code") == 0) {
                size_t n = strlen(value);
                /* Checked again in request_finish(); refuse early so we never copy a huge string. */
                if (n > SBX_CODE_MAX)
                        return sd_bus_error_setf(error, SBX_ERROR_CODE_VALIDATION,
                                                 "Code is %zu bytes; the limit is 1 MiB (%u bytes).", n, SBX_CODE_MAX);
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                free(r->code);
                r->code = c;
                r->code_len = n;
                r->have_code = true;
                r->seen |= REQ_CODE;
                return 0;
        }
        return unknown_key(key, error);
}

int request_apply_u32(SbxRequest *r, const char *key, uint32_t value, sd_bus_error *error) {
        if (strcmp(key, "timeout_seconds") == 0) {
                if (value < SBX_TIMEOUT_MIN_S || value > SBX_TIMEOUT_MAX_S)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "timeout_seconds must be between %u and %u, got %u.",
                                                 SBX_TIMEOUT_MIN_S, SBX_TIMEOUT_MAX_S, value);
                r->timeout_s = value;
                r->seen |= REQ_TIMEOUT;
                return 0;
        }
        if (strcmp(key, "memory_mb") == 0) {
                if (value < SBX_MEMORY_MIN_MB)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "memory_mb must be at least %u, got %u.", SBX_MEMORY_MIN_MB, value);
                r->memory_mb = value;
                r->seen |= REQ_MEMORY;
                return 0;
        }
        if (strcmp(key, "idle_timeout_seconds") == 0) {
                if (value < SBX_IDLE_TIMEOUT_MIN_S || value > SBX_IDLE_TIMEOUT_MAX_S)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "idle_timeout_seconds must be between %u and %u, got %u.",
                                                 SBX_IDLE_TIMEOUT_MIN_S, SBX_IDLE_TIMEOUT_MAX_S, value);
                r->idle_timeout_s = value;
                r->seen |= REQ_IDLE_TIMEOUT;
                return 0;
        }
        return unknown_key(key, error);
}

int request_apply_bool(SbxRequest *r, const char *key, bool value, sd_bus_error *error) {
        if (strcmp(key, "warm_pool") == 0) {
                r->use_warm_pool = value;
                r->seen |= REQ_WARM_POOL;
                return 0;
        }
        if (strcmp(key, "snapshot") == 0) {
                r->use_snapshot = value;
                r->seen |= REQ_SNAPSHOT;
                return 0;
        }
        if (strcmp(key, "allow_network") == 0) {
                r->allow_network = value;
                r->seen |= REQ_ALLOW_NETWORK;
                return 0;
        }
        return unknown_key(key, error);
}

int request_apply_string_item(SbxRequest *r, const char *key, const char *value, sd_bus_error *error) {
        const char *reason = NULL;

        if (strcmp(key, "allowed_domains") == 0) {
                char canonical[SBX_DOMAIN_MAX + 1];
                if (r->n_domains >= SBX_ALLOWED_DOMAINS_MAX)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "Too many allowed_domains; the limit is %u.",
                                                 SBX_ALLOWED_DOMAINS_MAX);
                if (sbx_validate_domain_pattern(value, canonical, &reason) < 0)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT, "Allowed domain '%.64s' %s.", value,
                                                 reason);
                char **d = realloc(r->domains, (r->n_domains + 1) * sizeof(char *));
                if (!d)
                        return -ENOMEM;
                r->domains = d;
                r->domains[r->n_domains] = strdup(canonical);
                if (!r->domains[r->n_domains])
                        return -ENOMEM;
                r->n_domains++;
                r->seen |= REQ_ALLOWED_DOMAINS;
                return 0;
        }
        if (strcmp(key, "expose_ports") == 0) {
                SbxExpose e;
                if (r->n_expose >= SBX_EXPOSE_MAX)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "Too many expose_ports; the limit is %u.", SBX_EXPOSE_MAX);
                if (sbx_parse_expose(value, &e, &reason) < 0)
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT, "Port mapping '%.32s' %s.", value,
                                                 reason);
                for (size_t i = 0; i < r->n_expose; i++)
                        if ((r->expose[i].internal == e.internal && r->expose[i].udp == e.udp) ||
                            (e.external != 0 && r->expose[i].external == e.external && r->expose[i].udp == e.udp))
                                return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                         "Port mapping '%.32s' repeats a port.", value);
                r->expose[r->n_expose++] = e;
                r->seen |= REQ_EXPOSE_PORTS;
                return 0;
        }
        return unknown_key(key, error);
}

int request_apply_env(SbxRequest *r, const char *name, const char *value, sd_bus_error *error) {
        const char *reason = NULL;

        if (r->n_env >= SBX_ENV_COUNT_MAX)
                return sd_bus_error_setf(error, SBX_ERROR_ENV_VALIDATION,
                                         "Too many environment variables; the limit is %u.", SBX_ENV_COUNT_MAX);
        if (sbx_validate_env_name(name, &reason) < 0)
                return sd_bus_error_setf(error, SBX_ERROR_ENV_VALIDATION, "Environment variable '%.64s': %s.", name,
                                         reason);
        if (sbx_validate_env_value(value, &reason) < 0)
                return sd_bus_error_setf(error, SBX_ERROR_ENV_VALIDATION, "Environment variable '%.64s': %s.", name,
                                         reason);

        char **e = realloc(r->env, (r->n_env + 1) * sizeof(char *));
        if (!e)
                return -ENOMEM;
        r->env = e;
        if (asprintf(&r->env[r->n_env], "%s=%s", name, value) < 0)
                return -ENOMEM;
        r->n_env++;
        r->seen |= REQ_ENV;
        return 0;
}

int request_apply_fd(SbxRequest *r, const char *key, int fd, sd_bus_error *error) {
        int *field;

        if (strcmp(key, "stdout_fd") == 0)
                field = &r->stdout_fd;
        else if (strcmp(key, "stderr_fd") == 0)
                field = &r->stderr_fd;
        else
                return unknown_key(key, error);

        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return sd_bus_error_set_errnof(error, errno, "Failed to take %s: %m", key);
        safe_close(*field);
        *field = copy;
        r->seen |= field == &r->stdout_fd ? REQ_STDOUT_FD : REQ_STDERR_FD;
        return 0;
}

int request_finish(SbxRequest *r, unsigned allowed, uint32_t max_memory_mb, sd_bus_error *error) {
        const char *reason = NULL;

        for (size_t i = 0; i < ELEMENTSOF(request_keys); i++)
                if ((r->seen & request_keys[i].bit) && !(allowed & request_keys[i].bit))
                        return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                                 "Key '%s' is not accepted by this method.", request_keys[i].key);
        if (!(allowed & REQ_CODE))
                goto memory;
        if (!r->have_code)
                return sd_bus_error_set(error, SBX_ERROR_CODE_VALIDATION, "The request has no 'code'.");
        if (sbx_validate_code(r->code, r->code_len, &reason) < 0)
                return sd_bus_error_setf(error, SBX_ERROR_CODE_VALIDATION, "Invalid code: %s.", reason);
memory:
        /* Naming domains asks for the network; allow_network=false with domains is a contradiction. */
        if (r->n_domains > 0) {
                if ((r->seen & REQ_ALLOW_NETWORK) && !r->allow_network)
                        return sd_bus_error_set(error, SBX_ERROR_INVALID_INPUT,
                                                "allowed_domains needs the network; allow_network is false.");
                r->allow_network = true;
        }
        if (max_memory_mb > 0 && r->memory_mb > max_memory_mb)
                return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                         "memory_mb=%u is more than this host can give one VM (%u).", r->memory_mb,
                                         max_memory_mb);
        return 0;
}

static int read_env(sd_bus_message *m, SbxRequest *r, sd_bus_error *error) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "{ss}");
        if (k < 0)
                return k;
        for (;;) {
                const char *name, *value;
                k = sd_bus_message_read(m, "{ss}", &name, &value);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                k = request_apply_env(r, name, value, error);
                if (k < 0)
                        return k;
        }
        return sd_bus_message_exit_container(m);
}

static int read_string_array(sd_bus_message *m, SbxRequest *r, const char *key, sd_bus_error *error) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "s");
        if (k < 0)
                return k;
        for (;;) {
                const char *v;
                k = sd_bus_message_read(m, "s", &v);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                k = request_apply_string_item(r, key, v, error);
                if (k < 0)
                        return k;
        }
        return sd_bus_message_exit_container(m);
}

int request_read(sd_bus_message *m, SbxRequest *r, unsigned allowed, uint32_t max_memory_mb, sd_bus_error *error) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (k < 0)
                return k;
        for (;;) {
                const char *key, *contents;
                char type;

                k = sd_bus_message_enter_container(m, 'e', "sv");
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                k = sd_bus_message_read(m, "s", &key);
                if (k < 0)
                        return k;
                k = sd_bus_message_peek_type(m, &type, &contents);
                if (k < 0)
                        return k;
                k = sd_bus_message_enter_container(m, 'v', contents);
                if (k < 0)
                        return k;

                if (strcmp(contents, "s") == 0) {
                        const char *s;
                        k = sd_bus_message_read(m, "s", &s);
                        if (k >= 0)
                                k = request_apply_string(r, key, s, error);
                } else if (strcmp(contents, "u") == 0) {
                        uint32_t u;
                        k = sd_bus_message_read(m, "u", &u);
                        if (k >= 0)
                                k = request_apply_u32(r, key, u, error);
                } else if (strcmp(contents, "b") == 0) {
                        int b;
                        k = sd_bus_message_read(m, "b", &b);
                        if (k >= 0)
                                k = request_apply_bool(r, key, b, error);
                } else if (strcmp(contents, "h") == 0) {
                        int fd;
                        k = sd_bus_message_read(m, "h", &fd);
                        if (k >= 0)
                                k = request_apply_fd(r, key, fd, error);
                } else if (strcmp(contents, "a{ss}") == 0 && strcmp(key, "env") == 0)
                        k = read_env(m, r, error);
                else if (strcmp(contents, "as") == 0 &&
                         (strcmp(key, "allowed_domains") == 0 || strcmp(key, "expose_ports") == 0))
                        k = read_string_array(m, r, key, error);
                else
                        k = unknown_key(key, error);
                if (k < 0)
                        return k;
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
        }
        k = sd_bus_message_exit_container(m);
        if (k < 0)
                return k;
        return request_finish(r, allowed, max_memory_mb, error);
}

void request_put_network(const SbxRequest *r, SbxMsg *m) {
        if (r->allow_network)
                sbx_msg_put_u8(m, SBX_T_NETWORK, 1);
        for (size_t i = 0; i < r->n_domains; i++)
                sbx_msg_put_str(m, SBX_T_ALLOWED_DOMAIN, r->domains[i]);
        for (size_t i = 0; i < r->n_expose; i++) {
                char buf[32];
                sbx_expose_format(&r->expose[i], buf, sizeof buf);
                sbx_msg_put_str(m, SBX_T_EXPOSE, buf);
        }
}

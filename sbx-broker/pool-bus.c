/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "broker.h"
#include "bus-names.h"
#include "macro.h"
#include "pool.h"
#include "validate.h"

/* GetPool() -> a(suuu): language, target size, ready VMs, VMs starting. */
int method_get_pool(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Broker *b = userdata;
        int r;
        (void) error;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(suuu)");
        for (int l = 0; r >= 0 && l < _SBX_LANG_MAX; l++) {
                uint32_t target = 0, ready = 0, starting = 0;
                if (b->pool)
                        pool_get_counts(b->pool, (SbxLanguage) l, &target, &ready, &starting);
                r = sd_bus_message_append(reply, "(suuu)", sbx_language_to_string((SbxLanguage) l), target, ready,
                                          starting);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* SetPoolSize(s language, u size): administrators only; lasts until the broker restarts. */
int method_set_pool_size(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        const char *language;
        SbxLanguage l;
        uint32_t size;
        int r;

        r = sd_bus_message_read(m, "su", &language, &size);
        if (r < 0)
                return r;
        if (!bus_sender_is_admin(b, m))
                return sd_bus_error_set(error, SBX_ERROR_ACCESS_DENIED,
                                        "Only root or members of the admin group may resize the warm pool.");
        l = sbx_language_from_string(language);
        if (l == SBX_LANG_INVALID)
                return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT,
                                         "Unknown language '%s': expected python, javascript or raw.", language);
        if (size > 64)
                return sd_bus_error_setf(error, SBX_ERROR_INVALID_INPUT, "A pool of %u VMs is more than 64.", size);
        if (!b->pool)
                return sd_bus_error_set(error, SBX_ERROR_INTERNAL, "The broker is stopping.");
        r = pool_set_target(b->pool, l, size);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to resize the pool: %m");
        return sd_bus_reply_method_return(m, "");
}

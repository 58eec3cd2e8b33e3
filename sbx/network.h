/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The network options shared by `sbx run` and `sbx session`: --network,
 * --allow-domain and --expose, and their request keys. */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-bus.h>

#include "proto.h"
#include "validate.h"

struct SbxNetworkOptions {
        bool network;
        const char *domains[SBX_ALLOWED_DOMAINS_MAX];
        size_t n_domains;
        SbxExpose expose[SBX_EXPOSE_MAX];
        size_t n_expose;
};
typedef struct SbxNetworkOptions SbxNetworkOptions;

/* Each returns 0, or prints why and returns -EINVAL. */
int sbx_network_add_domain(SbxNetworkOptions *o, const char *arg);
/* An omitted external port is picked here (a free port on 127.0.0.1), so it
 * can be printed before the code runs. */
int sbx_network_add_expose(SbxNetworkOptions *o, const char *arg);
/* The warning for full outbound access, and the exposed ports, on stderr. */
void sbx_network_announce(const SbxNetworkOptions *o);
/* allow_network, allowed_domains and expose_ports, inside an open a{sv}. */
int sbx_append_network(sd_bus_message *m, const SbxNetworkOptions *o);

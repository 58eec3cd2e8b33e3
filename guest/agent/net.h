/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The guest's network, when the host gave the VM a NIC (docs/network.md): QEMU user-mode networking's
 * fixed addresses. */

#define GUEST_NET_IFNAME "eth0"
#define GUEST_NET_ADDRESS "10.0.2.15"
#define GUEST_NET_NETMASK "255.255.255.0"
#define GUEST_NET_GATEWAY "10.0.2.2"
#define GUEST_NET_DNS "10.0.2.3"

/* No NIC: does nothing and returns 0. Otherwise eth0 up with GUEST_NET_ADDRESS/24, a default route via
 * GUEST_NET_GATEWAY, IPv6 disabled and /etc/resolv.conf naming GUEST_NET_DNS; returns 1, or a negative
 * errno (logged) when a step failed. Needs lo up first. */
int guest_setup_network(void);

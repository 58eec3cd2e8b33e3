/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "net.h"

static void set_addr(struct sockaddr *sa, const char *ip) {
        struct sockaddr_in *in = (struct sockaddr_in *) sa;

        *in = (struct sockaddr_in){.sin_family = AF_INET};
        (void) inet_pton(AF_INET, ip, &in->sin_addr);
}

static int if_ioctl(int fd, unsigned long req, struct ifreq *ifr, const char *what) {
        if (ioctl(fd, req, ifr) < 0)
                return log_warning_errno(errno, "Failed to %s of %s: %m", what, ifr->ifr_name);
        return 0;
}

static int bring_up(int fd, const char *name) {
        struct ifreq ifr = {};
        int r;

        strncpy(ifr.ifr_name, name, sizeof ifr.ifr_name - 1);
        r = if_ioctl(fd, SIOCGIFFLAGS, &ifr, "get the flags");
        if (r < 0)
                return r;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        return if_ioctl(fd, SIOCSIFFLAGS, &ifr, "bring up");
}

static int write_resolv_conf(void) {
        static const char content[] = "nameserver " GUEST_NET_DNS "\n";
        /* The root is an overlay with a RAM upper layer: this copies the file up, the image stays as is. */
        _cleanup_close_ int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);

        if (fd < 0)
                return log_warning_errno(errno, "Failed to open /etc/resolv.conf: %m");
        if (fchmod(fd, 0644) < 0 || loop_write(fd, content, sizeof content - 1) < 0)
                return log_warning_errno(errno, "Failed to write /etc/resolv.conf: %m");
        return 0;
}

int guest_setup_network(void) {
        _cleanup_close_ int fd = -EBADF;
        struct ifreq ifr = {};
        struct rtentry rt = {};
        int r;

        /* The host adds a NIC only when the request asked for a network or exposed ports. */
        if (access("/sys/class/net/" GUEST_NET_IFNAME, F_OK) < 0)
                return 0;

        /* IPv4 only: slirp runs with ipv6=off and sbx-netd refuses IPv6 anyway; no addresses, no
         * router solicitations. */
        (void) write_string_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        (void) write_string_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        (void) write_string_file("/proc/sys/net/ipv6/conf/" GUEST_NET_IFNAME "/disable_ipv6", "1");

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_warning_errno(errno, "Failed to open a socket to configure the network: %m");

        strncpy(ifr.ifr_name, GUEST_NET_IFNAME, sizeof ifr.ifr_name - 1);
        set_addr(&ifr.ifr_addr, GUEST_NET_ADDRESS);
        r = if_ioctl(fd, SIOCSIFADDR, &ifr, "set the address");
        if (r < 0)
                return r;
        set_addr(&ifr.ifr_netmask, GUEST_NET_NETMASK);
        r = if_ioctl(fd, SIOCSIFNETMASK, &ifr, "set the netmask");
        if (r < 0)
                return r;
        r = bring_up(fd, GUEST_NET_IFNAME);
        if (r < 0)
                return r;

        set_addr(&rt.rt_dst, "0.0.0.0");
        set_addr(&rt.rt_genmask, "0.0.0.0");
        set_addr(&rt.rt_gateway, GUEST_NET_GATEWAY);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = (char *) GUEST_NET_IFNAME;
        if (ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST)
                return log_warning_errno(errno, "Failed to add the default route via %s: %m", GUEST_NET_GATEWAY);

        r = write_resolv_conf();
        if (r < 0)
                return r;
        log_debug("%s is up: %s/24 via %s, DNS %s.", GUEST_NET_IFNAME, GUEST_NET_ADDRESS, GUEST_NET_GATEWAY,
                  GUEST_NET_DNS);
        return 1;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker.h"
#include "log.h"
#include "macro.h"

static void help(void) {
        printf("sbx-broker [--config FILE] [--system]\n\n"
               "Serves org.sbx.Broker1 on D-Bus: runs untrusted code in QEMU microVMs.\n\n"
               "  --config FILE   configuration file (default $SBX_CONFIG, then /etc/sbx/sbx.conf)\n"
               "  --system        use the system bus (default: the bus that activated us, else the session bus)\n"
               "  --version       print the version\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "system", no_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *config = NULL;
        bool system_bus = false;
        Broker *b = NULL;
        sigset_t mask;
        int c, r;

        log_set_ident("sbx-broker");
        log_parse_environment();
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 's':
                        system_bus = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        puts(SBX_VERSION);
                        return 0;
                default:
                        return 2;
                }

        /* sd-event handles these through signalfd and child sources. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = broker_new(config, system_bus, &b);
        if (r < 0)
                return 1;
        r = broker_run(b);
        broker_free(b);
        return r < 0 ? 1 : 0;
}

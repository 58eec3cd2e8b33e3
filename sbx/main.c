/* SPDX-License-Identifier: Apache-2.0 */
/* sbx: the user's command line. `sbx run` sends code to org.sbx.Broker1. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-util.h"
#include "macro.h"
#include "proto.h"
#include "run.h"
#include "session.h"

static void help(void) {
        printf("Usage: sbx [--system|--user|--address ADDR] COMMAND ...\n\n"
               "Runs untrusted code in throwaway QEMU microVMs through sbx-broker.\n\n"
               "Commands:\n"
               "  run [OPTIONS] [SOURCE...]   run code; SOURCE is inline code, a file, or - for stdin\n"
               "  session [OPTIONS]           an interactive prompt on one sandbox whose state persists\n"
               "                              (sbx session --help; .help at the prompt)\n\n"
               "run options:\n"
               "  -c, --code CODE         inline code (repeatable)\n"
               "  -l, --language LANG     python, javascript or raw (default: from the file extension, else python)\n"
               "  -t, --timeout SECONDS   1-300 (default 30)\n"
               "  -m, --memory MB         guest memory, at least 128 (default 256)\n"
               "  -e, --env KEY=VALUE     environment variable (repeatable)\n"
               "      --json              print the result as JSON instead of streaming output\n"
               "  -q, --quiet             no summary line on stderr\n"
               "      --cold              boot a fresh VM: no warm pool VM, no memory snapshot (for benchmarks)\n"
               "      --network           outbound network through sbx-netd (full access unless --allow-domain)\n"
               "      --allow-domain NAME only these names (repeatable; NAME or *.NAME); implies --network\n"
               "      --expose PORT[:HOSTPORT][/tcp|udp]\n"
               "                          reach a server in the VM at 127.0.0.1:HOSTPORT (repeatable, at most 10;\n"
               "                          HOSTPORT picked and printed when omitted; works with the network off)\n"
               "      --upload LOCAL[:GUEST]\n"
               "                          copy a file into the sandbox before the code runs (repeatable;\n"
               "                          GUEST: LOCAL's file name; LOCAL - is stdin)\n"
               "      --download GUEST[:LOCAL]\n"
               "                          copy a file out after the code ran (repeatable; LOCAL: ./NAME,\n"
               "                          a directory, or - for stdout)\n"
               "                          Both split on the last colon; a trailing colon keeps the default\n"
               "                          for the second path. Sandbox paths are relative to its home.\n\n"
               "Several sources run concurrently; their lines are prefixed with [N].\n"
               "Exit status: the code's own (124 on timeout), 2 for invalid input, 75 when the VM\n"
               "failed transiently or capacity ran out (safe to retry), 1 for other errors.\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "system", no_argument, NULL, 'S' },
                { "user", no_argument, NULL, 'U' },
                { "address", required_argument, NULL, 'A' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        SbxBusKind kind = SBX_BUS_AUTO;
        const char *address = NULL;
        int c;

        /* Global options stop at the command name. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'S':
                        kind = SBX_BUS_SYSTEM;
                        break;
                case 'U':
                        kind = SBX_BUS_USER;
                        break;
                case 'A':
                        kind = SBX_BUS_ADDRESS;
                        address = optarg;
                        break;
                case 'V':
                        puts(SBX_VERSION);
                        return 0;
                default:
                        return 2;
                }
        if (optind >= argc) {
                help();
                return 2;
        }
        const char *cmd = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 0; /* reset getopt for the subcommand */

        if (strcmp(cmd, "run") == 0)
                return sbx_run(kind, address, sub_argc, sub_argv);
        if (strcmp(cmd, "session") == 0)
                return sbx_session(kind, address, sub_argc, sub_argv);
        fprintf(stderr, "sbx: unknown command '%s' (try --help)\n", cmd);
        return 2;
}

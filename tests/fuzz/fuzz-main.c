/* SPDX-License-Identifier: Apache-2.0 */
/* Standalone driver for the fuzz targets when they are not built with
 * libFuzzer (gcc, -Dfuzz=false): runs LLVMFuzzerTestOneInput() once per
 * file named on the command line, or per regular file in each directory
 * named (recursively, in sorted order). Each input gets a buffer of exactly
 * its size, so sanitizers catch reads past the end. Without arguments it
 * runs the empty input. */

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned n_inputs;

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        struct stat st;
        if (fstat(fileno(f), &st) < 0) {
                fclose(f);
                return -errno;
        }
        size_t size = (size_t) st.st_size;
        /* malloc(0) may return NULL; keep a valid pointer for size 0. */
        uint8_t *buf = malloc(size ?: 1);
        if (!buf) {
                fclose(f);
                return -ENOMEM;
        }
        if (size > 0 && fread(buf, 1, size, f) != size) {
                fprintf(stderr, "%s: short read\n", path);
                free(buf);
                fclose(f);
                return -EIO;
        }
        fclose(f);

        fprintf(stderr, "Running: %s (%zu bytes)\n", path, size);
        LLVMFuzzerTestOneInput(buf, size);
        free(buf);
        n_inputs++;
        return 0;
}

static int run_path(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return run_file(path);

        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        int r = 0;
        for (int i = 0; i < n; i++) {
                const char *name = names[i]->d_name;
                if (r == 0 && name[0] != '.') {
                        char *child;
                        if (asprintf(&child, "%s/%s", path, name) < 0)
                                r = -ENOMEM;
                        else {
                                r = run_path(child);
                                free(child);
                        }
                }
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char *argv[]) {
        if (argc < 2) {
                LLVMFuzzerTestOneInput((const uint8_t *) "", 0);
                n_inputs++;
        }
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i]) < 0)
                        return EXIT_FAILURE;
        fprintf(stderr, "Executed %u inputs.\n", n_inputs);
        return EXIT_SUCCESS;
}

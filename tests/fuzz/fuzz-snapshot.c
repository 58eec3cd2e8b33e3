/* SPDX-License-Identifier: Apache-2.0 */
/* The L1 snapshot parsers: qmp_parse() on the input as one QMP reply line (QEMU runs guest code,
 * so its monitor output is untrusted), snapshot_meta_parse() on the input as a meta file (a file
 * on disk), and the meta round trip: whatever parses formats to text that parses to the same. */

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "qmp.h"
#include "snapshot-store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        QmpReply q;
        SnapshotMeta m, m2;
        const char *reason = NULL;
        char text[SNAPSHOT_META_MAX];

        int r = qmp_parse((const char *) data, size, &q);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        if (r == 0) {
                FUZZ_CHECK(q.kind <= QMP_KIND_EVENT);
                FUZZ_CHECK(memchr(q.status, 0, sizeof q.status) && memchr(q.desc, 0, sizeof q.desc) &&
                           memchr(q.event, 0, sizeof q.event));
        }

        r = snapshot_meta_parse((const char *) data, size, &m, &reason);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        FUZZ_CHECK(reason != NULL);
        if (r == 0) {
                FUZZ_CHECK(m.version == SNAPSHOT_FORMAT_VERSION && strlen(m.key) == 64 && strlen(m.state_sha256) == 64);
                FUZZ_CHECK(m.ram_size == (uint64_t) m.memory_mb << 20);
                int n = snapshot_meta_format(&m, text, sizeof text);
                FUZZ_CHECK(n > 0);
                FUZZ_CHECK(snapshot_meta_parse(text, (size_t) n, &m2, &reason) == 0);
                FUZZ_CHECK(memcmp(&m, &m2, sizeof m) == 0);
        }
        return 0;
}

/* fuzz_busmsg: arbitrary bytes as a message from Redis (the bus channel or
 * the log) into busmsg_decode. It must never read out of bounds; what it
 * accepts must re-encode to exactly the same bytes (so no two readings of
 * one message exist), with every field inside its bounds. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "busmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct busmsg m;
	struct buf again = { 0 };
	const char *why;
	char *copy = malloc(size ? size : 1);

	/* a copy of exactly size bytes: ASan sees any read past the end */
	memcpy(copy, data, size);
	if (busmsg_decode(copy, size, 70000, &m, &why) == 0) {
		if (m.epoch_len < 1 || m.epoch_len > BUSMSG_MAX_EPOCH || m.seq == 0 || m.key_len > BUSMSG_MAX_KEY ||
		    m.owner_len > 128 || m.id_len > 128 || m.body_len < 1 || m.body_len > 70000)
			abort();
		buf_printf(&again, "%.*s:%" PRIu64 ":%" PRId64 "\n%.*s\n", (int)m.epoch_len, m.epoch, m.seq, m.created,
			   (int)m.owner_len, m.owner);
		{
			char key[BUSMSG_MAX_KEY + 1], id[129];
			snprintf(key, sizeof(key), "%.*s", (int)m.key_len, m.key);
			snprintf(id, sizeof(id), "%.*s", (int)m.id_len, m.id);
			busmsg_payload(&again, m.kind, key, id, m.body, m.body_len);
		}
		if (again.len != size || memcmp(again.data, copy, size) != 0)
			abort();
		free(again.data);
	}
	free(copy);
	return 0;
}

/*
 * fuzz_upframe.c - libFuzzer target for the frames a chained relay reads
 * from its upstream (daemon/upstream/upframe.c).
 *
 * Any input either is refused or gives a frame of a known type.  An event
 * carries a token and text of the length it claims; an update split into
 * two variants gives a variant without the pre-image that is still JSON
 * and shorter than the one with it, which is the upstream's event exactly.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "upframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct upframe f;
	char err[200];
	int r = upframe_parse((const char *)data, size, &f, err, sizeof(err));

	if (r < 0) {
		CHECK(r == -EBADMSG || r == -ENOMEM);
		CHECK(!f.ev);
		return 0;
	}
	CHECK(f.type >= UPF_EVENT && f.type <= UPF_OTHER);
	if (f.type != UPF_EVENT) {
		CHECK(!f.ev);
		return 0;
	}
	CHECK(f.ev && f.has_token && f.ev->refs == 1);
	CHECK(token_cmp(&f.ev->pos, &f.tok) == 0);
	CHECK(f.ev->json && strlen(f.ev->json) == f.ev->len);
	if (f.ev->json_before) {
		cJSON *j = cJSON_ParseWithLength(f.ev->json, f.ev->len);

		CHECK(strlen(f.ev->json_before) == f.ev->len_before);
		CHECK(f.ev->len < f.ev->len_before);
		CHECK(j);
		cJSON_Delete(j);
		/* What is left is the pre-image variant's text around the cut. */
		CHECK(memcmp(f.ev->json, f.ev->json_before, 1) == 0);
		CHECK(f.ev->json[f.ev->len - 1] == f.ev->json_before[f.ev->len_before - 1]);
	}
	event_unref(f.ev);
	return 0;
}

/*
 * test_outq.c - unit tests of a connection's output queue
 * (daemon/net/outq.c): the bytes handed out are the frames queued, in order,
 * across partial writes; events are held by reference; positions count as
 * delivered only once their frame has left; a dropped client keeps exactly
 * what it started to receive; the table of positions stays bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "outq.h"

static struct event *
mkevent(uint64_t id, const char *json, const char *before)
{
	struct event *ev = calloc(1, sizeof(*ev));

	assert_non_null(ev);
	ev->refs = 1;
	ev->pos = (struct token){ 1, 7, id };
	ev->json = strdup(json);
	ev->len = strlen(json);
	if (before) {
		ev->json_before = strdup(before);
		ev->len_before = strlen(before);
	}
	return ev;
}

/* Everything queued, as the transport would see it, consuming step bytes
 * at a time (from the front of what outq_iov offers). */
static char *
drain(Outq *q, size_t step)
{
	size_t total = outq_bytes(q), at = 0;
	char *out = malloc(total + 1);

	assert_non_null(out);
	while (outq_bytes(q) > 0) {
		struct iovec iov[8];
		int n = outq_iov(q, iov, 8, step);
		size_t took = 0;

		assert_true(n > 0);
		for (int i = 0; i < n && took < step; i++) {
			size_t k = iov[i].iov_len < step - took ? iov[i].iov_len : step - took;

			memcpy(out + at + took, iov[i].iov_base, k);
			took += k;
		}
		outq_consume(q, took);
		at += took;
	}
	assert_int_equal(at, total);
	out[at] = '\0';
	return out;
}

static void
test_frames_in_order(void **state)
{
	Outq *q = outq_new(4);
	struct event *ev = mkevent(3, "{\"a\":1}", "{\"a\":0}");
	struct token t = { 1, 7, 9 };
	char *out;

	(void)state;
	assert_int_equal(outq_push(q, "{\"op\":\"pong\"}\n", 14, false, 0, NULL), 0);
	assert_int_equal(outq_push(q, "x\n", 2, false, 0, NULL), 0);
	assert_int_equal(outq_event_len(12, ev, false), strlen("{\"op\":\"event\",\"sid\":12,\"event\":{\"a\":1}}\n"));
	assert_int_equal(outq_push_event(q, 12, ev, false), 0);
	assert_int_equal(outq_push_event(q, 5, ev, true), 0);
	assert_int_equal(ev->refs, 3);
	assert_int_equal(outq_push(q, "b\n", 2, true, 5, &t), 0);
	out = drain(q, 5);
	assert_string_equal(out, "{\"op\":\"pong\"}\nx\n"
			    "{\"op\":\"event\",\"sid\":12,\"event\":{\"a\":1}}\n"
			    "{\"op\":\"event\",\"sid\":5,\"event\":{\"a\":0}}\n"
			    "b\n");
	free(out);
	assert_int_equal(ev->refs, 1);
	assert_true(outq_delivered(q, 5, &t));
	assert_int_equal(t.id, 9);
	assert_true(outq_delivered(q, 12, &t));
	assert_int_equal(t.id, 3);
	assert_false(outq_delivered(q, 1, &t));
	event_unref(ev);
	outq_free(q);
}

static void
test_before_without_variant(void **state)
{
	Outq *q = outq_new(4);
	struct event *ev = mkevent(3, "{\"a\":1}", NULL);
	char *out;

	(void)state;
	assert_int_equal(outq_event_len(1, ev, true), outq_event_len(1, ev, false));
	assert_int_equal(outq_push_event(q, 1, ev, true), 0);
	out = drain(q, 1000);
	assert_string_equal(out, "{\"op\":\"event\",\"sid\":1,\"event\":{\"a\":1}}\n");
	free(out);
	event_unref(ev);
	outq_free(q);
}

/* Only what has left counts as delivered. */
static void
test_delivered_after_leaving(void **state)
{
	Outq *q = outq_new(4);
	struct event *ev = mkevent(3, "{}", NULL);
	struct token t;

	(void)state;
	assert_int_equal(outq_push_event(q, 2, ev, false), 0);
	outq_consume(q, 5);
	assert_false(outq_delivered(q, 2, &t));
	outq_consume(q, outq_bytes(q));
	assert_true(outq_delivered(q, 2, &t));
	event_unref(ev);
	outq_free(q);
}

static void
test_drop_unsent(void **state)
{
	Outq *q = outq_new(4);
	struct event *e1 = mkevent(1, "{\"n\":1}", NULL), *e2 = mkevent(2, "{\"n\":2}", NULL);
	struct event *e3 = mkevent(3, "{\"n\":3}", NULL);
	size_t one = outq_event_len(1, e1, false);
	struct token t;

	(void)state;
	outq_push_event(q, 1, e1, false);
	outq_push_event(q, 1, e2, false);
	outq_push_event(q, 1, e3, false);
	/* The first frame partly written, the transport holding the rest of
	 * it and two bytes of the second: both stay, the third goes. */
	outq_consume(q, 3);
	outq_drop_unsent(q, one - 3 + 2);
	assert_int_equal(outq_bytes(q), 2 * one - 3);
	assert_int_equal(e3->refs, 1);
	/* Kept frames count as delivered: the error frames name them. */
	assert_true(outq_delivered(q, 1, &t));
	assert_int_equal(t.id, 2);
	/* Nothing written, nothing promised: everything goes. */
	outq_clear(q);
	outq_push_event(q, 1, e3, false);
	outq_drop_unsent(q, 0);
	assert_int_equal(outq_bytes(q), 0);
	assert_int_equal(outq_push(q, "z\n", 2, false, 0, NULL), 0);
	assert_int_equal(outq_bytes(q), 2);
	event_unref(e1);
	event_unref(e2);
	event_unref(e3);
	outq_free(q);
}

/* Past max_sids the entry moved longest ago makes room. */
static void
test_positions_bounded(void **state)
{
	Outq *q = outq_new(2);
	struct token t = { 1, 1, 0 };

	(void)state;
	for (long long sid = 0; sid < 3; sid++) {
		t.id = (uint64_t)sid + 100;
		outq_push(q, "b\n", 2, true, sid, &t);
		outq_consume(q, 2);
	}
	assert_false(outq_delivered(q, 0, &t));
	assert_true(outq_delivered(q, 1, &t));
	assert_true(outq_delivered(q, 2, &t));
	assert_int_equal(t.id, 102);
	outq_free(q);
	outq_free(NULL);
}

/* A sid taken by a new subscription: where the old one got to, and its
 * frames that leave later, are not the new one's position. */
static void
test_sid_reset(void **state)
{
	Outq *q = outq_new(4);
	struct event *e1 = mkevent(50, "{\"n\":1}", NULL), *e2 = mkevent(60, "{\"n\":2}", NULL);
	struct event *e3 = mkevent(7, "{\"n\":3}", NULL);
	struct token t;

	(void)state;
	outq_push_event(q, 1, e1, false);
	outq_consume(q, outq_bytes(q));
	outq_push_event(q, 1, e2, false);   /* the old subscription's, still queued */
	outq_push_event(q, 3, e1, false);
	outq_sid_reset(q, 1);
	assert_false(outq_delivered(q, 1, &t));
	outq_consume(q, outq_bytes(q));
	assert_false(outq_delivered(q, 1, &t));
	assert_true(outq_delivered(q, 3, &t));
	assert_int_equal(t.id, 50);
	/* The new subscription's own frames count, also when kept by a drop. */
	outq_push_event(q, 1, e3, false);
	outq_push_event(q, 1, e2, false);
	outq_drop_unsent(q, 1);
	assert_true(outq_delivered(q, 1, &t));
	assert_int_equal(t.id, 7);
	/* Before anything of sid was ever queued. */
	outq_sid_reset(q, 9);
	assert_false(outq_delivered(q, 9, &t));
	outq_consume(q, outq_bytes(q));
	/* A reset whose entry is evicted (4 slots, 5 sids) while the old
	 * subscription's frame is still queued: that frame still does not
	 * count when it leaves. */
	outq_push_event(q, 2, e2, false);   /* sid 2's old subscription */
	outq_sid_reset(q, 2);
	for (long long sid = 20; sid < 24; sid++)
		outq_sid_reset(q, sid);    /* evicts sid 2's entry */
	outq_consume(q, outq_bytes(q));
	assert_false(outq_delivered(q, 2, &t));
	event_unref(e1);
	event_unref(e2);
	event_unref(e3);
	outq_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_in_order),
		cmocka_unit_test(test_before_without_variant),
		cmocka_unit_test(test_delivered_after_leaving),
		cmocka_unit_test(test_drop_unsent),
		cmocka_unit_test(test_positions_bounded),
		cmocka_unit_test(test_sid_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

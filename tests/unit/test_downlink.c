/*
 * test_downlink.c - the answers to chained relays' position and store
 * requests (daemon/upstream/downlink.c) from a fake source, with fakes of
 * the client and hub functions it calls.  Proves that a source answering
 * inside the call (pgconn.c fails its queue at once when a send finds the
 * connection gone) is answered once and leaves no freed request on the
 * pending list (run under ASan by `make check SANITIZE=...`), that a
 * deferred answer still finds its request, and that an answer for a client
 * that went is dropped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "downlink.h"
#include "errors.h"
#include "hub.h"
#include "log.h"
#include "request.h"

/* ---- fakes of what downlink.c calls ------------------------------------------ */

struct client {
	int sent, errors;
	char last[256];
};

uint64_t client_id(const Client *c)
{
	(void)c;
	return 1;
}

void client_send(Client *c, const char *data, size_t len)
{
	c->sent++;
	snprintf(c->last, sizeof(c->last), "%.*s", (int)len, data);
}

void client_send_error(Client *c, long long sid, int code, const char *msg, const struct token *tok)
{
	(void)tok;
	c->errors++;
	snprintf(c->last, sizeof(c->last), "error sid=%lld code=%d %s", sid, code, msg);
}

bool hub_consumer_busy(const Hub *h, const char *consumer)
{
	(void)h;
	(void)consumer;
	return false;
}

/* ---- a source that answers at once, or when the test says ------------------- */

static bool sync_answer;
static source_pos_cb held_cb;
static source_done_cb held_done;
static void *held_arg;

static int fake_load(void *impl, const char *consumer, source_pos_cb cb, void *arg)
{
	(void)impl;
	(void)consumer;
	if (sync_answer) {
		cb(arg, -EIO, NULL, "connection lost");
		return 0;
	}
	held_cb = cb;
	held_arg = arg;
	return 0;
}

static int fake_save(void *impl, const char *consumer, const struct token *pos, source_done_cb done, void *arg)
{
	(void)impl;
	(void)consumer;
	(void)pos;
	if (sync_answer) {
		done(arg, -EIO);
		return 0;
	}
	held_done = done;
	held_arg = arg;
	return 0;
}

static const struct source_ops fake_ops = {
	.load_position = fake_load,
	.save_position = fake_save,
};
static const struct source fake_src = { &fake_ops, NULL };

static struct request position_req(long long sid)
{
	struct request r;

	memset(&r, 0, sizeof(r));
	r.op = REQUEST_POSITION;
	r.sid = sid;
	r.consumer = "node-1/fault-quarantine";
	return r;
}

static void test_answered_inside_the_call(void **state)
{
	Downlink *d = downlink_new(NULL);
	struct client c1 = { 0 }, c2 = { 0 };
	struct request r = position_req(7);
	struct token at = { 1, 5, 9 };

	(void)state;
	assert_non_null(d);
	downlink_set_source(d, &fake_src);
	sync_answer = true;
	downlink_request(d, &c1, &r);
	assert_int_equal(c1.errors, 1);
	assert_non_null(strstr(c1.last, "sid=7"));
	r.op = REQUEST_STORE;
	r.sid = 8;
	r.ack = at;
	downlink_request(d, &c1, &r);
	assert_int_equal(c1.errors, 2);
	assert_non_null(strstr(c1.last, "sid=8"));
	/* The list holds nothing freed: a deferred request and a client's
	 * departure walk it. */
	sync_answer = false;
	r = position_req(9);
	downlink_request(d, &c2, &r);
	downlink_client_gone(d, &c1);
	held_cb(held_arg, 0, &at, NULL);
	assert_int_equal(c2.sent, 1);
	assert_non_null(strstr(c2.last, "\"sid\":9"));
	assert_int_equal(c1.sent, 0);
	downlink_free(d);
}

static void test_answer_after_the_client_went(void **state)
{
	Downlink *d = downlink_new(NULL);
	struct client c = { 0 };
	struct request r = position_req(3);

	(void)state;
	downlink_set_source(d, &fake_src);
	sync_answer = false;
	r.op = REQUEST_STORE;
	downlink_request(d, &c, &r);
	downlink_client_gone(d, &c);
	held_done(held_arg, 0);
	assert_int_equal(c.sent + c.errors, 0);
	downlink_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answered_inside_the_call),
		cmocka_unit_test(test_answer_after_the_client_went),
	};

	log_setup("err", "text");
	return cmocka_run_group_tests(tests, NULL, NULL);
}

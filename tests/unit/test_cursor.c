/*
 * test_cursor.c - the upstream cursors (daemon/upstream/cursor.c) on a real
 * libev loop, with a fake of the upstream connection (upconn.h) whose
 * callbacks the test fires.  Proves that the hub asking for its next page
 * from inside the answer to its last one (what hub.c's page_done does), when
 * every cursor slot is taken, evicts a cursor without freeing one that the
 * answering walk still holds (run under ASan by `make check SANITIZE=...`),
 * and that every read is answered exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "conf.h"
#include "cursor.h"
#include "errors.h"
#include "log.h"
#include "upconn.h"

#define SLOTS 32                 /* cursor.c's MAX_CURSORS */

/* ---- fake upstream connections ---------------------------------------------- */

struct upconn {
	struct upconn_cbs cbs;
	void *arg;
};

static UpConn *conns[4 * SLOTS];
static size_t nconns;

UpConn *upconn_open(struct ev_loop *loop, const struct upconn_opts *o, const struct upconn_cbs *cbs, void *arg)
{
	UpConn *u = calloc(1, sizeof(*u));

	(void)loop;
	(void)o;
	assert_non_null(u);
	u->cbs = *cbs;
	u->arg = arg;
	assert_true(nconns < sizeof(conns) / sizeof(conns[0]));
	conns[nconns++] = u;
	return u;
}

int upconn_send(UpConn *u, const char *data, size_t len)
{
	(void)u;
	(void)data;
	(void)len;
	return 0;
}

void upconn_pause(UpConn *u, bool paused)
{
	(void)u;
	(void)paused;
}

void upconn_close(UpConn *u)
{
	for (size_t i = 0; u && i < nconns; i++)
		if (conns[i] == u)
			conns[i] = NULL;
	free(u);
}

const char *upconn_addr(const UpConn *u)
{
	(void)u;
	return "upstream.test:7000";
}

/* The connection fails: cursor.c's down callback, then the fake is gone. */
static void conn_down(size_t i)
{
	UpConn *u = conns[i];

	assert_non_null(u);
	u->cbs.down(u->arg, u, "test: connection lost");
	conns[i] = NULL;
	free(u);
}

/* ---- a hub that asks again from inside its answer ---------------------------- */

static Cursors *cs;
static bool reread;
static uint64_t next_id = 1000;

struct reader {
	int answers;
	int code;
};

static struct reader readers[4 * SLOTS];
static size_t nreaders;

static void page_cb(void *arg, struct event **evs, size_t n, const struct token *next,
		    int code, const char *msg)
{
	struct reader *r = arg;

	(void)evs;
	(void)next;
	(void)msg;
	assert_int_equal(n, 0);
	r->answers++;
	r->code = code;
	if (reread) {
		/* Another subscriber's page, at a position no cursor is at. */
		struct token pos = { 1, 1, next_id++ };
		assert_true(nreaders < sizeof(readers) / sizeof(readers[0]));
		assert_int_equal(cursors_read(cs, "upstream.test:7000", &pos, TABLE_OTHER, page_cb,
					      &readers[nreaders++]), 0);
	}
}

static void test_evict_while_answering(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct conf_values cv;
	struct cursor_env env;
	size_t i, first;

	(void)state;
	memset(&cv, 0, sizeof(cv));
	cv.batch_rows = 100;
	cv.max_frame_bytes = 1 << 20;
	env = (struct cursor_env){ .loop = loop, .cv = &cv, .client = "test", .timeout = 30 };
	cs = cursors_new(&env);
	assert_non_null(cs);
	for (i = 0; i < SLOTS; i++) {
		struct token pos = { 1, 1, i + 1 };
		assert_int_equal(cursors_read(cs, "upstream.test:7000", &pos, TABLE_OTHER, page_cb,
					      &readers[nreaders++]), 0);
	}
	assert_int_equal(cursors_count(cs), SLOTS);
	/* Every slot waits; a further read has no cursor to take. */
	{
		struct token pos = { 1, 1, 999 };
		assert_int_equal(cursors_read(cs, "upstream.test:7000", &pos, TABLE_OTHER, page_cb,
					      &readers[SLOTS]), -ENOTCONN);
	}
	/* The upstream goes away under every cursor; each answer makes its
	 * reader ask for a new page, which has to evict an answered cursor
	 * while the walk is still on the list. */
	for (i = 0; i < SLOTS; i++)
		conn_down(i);
	first = nreaders;
	reread = true;
	ev_run(loop, EVRUN_NOWAIT);
	reread = false;
	for (i = 0; i < SLOTS; i++) {
		assert_int_equal(readers[i].answers, 1);
		assert_int_equal(readers[i].code, ERR_HOST_UNREACHABLE);
	}
	assert_int_equal(nreaders - first, SLOTS);
	/* The dead cursors are gone; the new reads hold the slots. */
	assert_int_equal(cursors_count(cs), SLOTS);
	for (i = first; i < nreaders; i++)
		assert_int_equal(readers[i].answers, 0);
	cursors_free(cs);
	for (i = first; i < nreaders; i++) {
		assert_int_equal(readers[i].answers, 1);
		assert_int_equal(readers[i].code, ERR_HOST_UNREACHABLE);
	}
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evict_while_answering),
	};

	log_setup("err", "text");
	return cmocka_run_group_tests(tests, NULL, NULL);
}

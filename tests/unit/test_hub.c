/*
 * test_hub.c - the hub (daemon/stream/hub.c) on a real libev loop, with a
 * fake event source (source.h: pages served from events in memory, stored
 * positions in memory, every answer deferred until the test gives it) and
 * fakes of the client functions it calls, which record the frames each
 * client is sent.  Proves the ring/catch-up hand-over (no gap, no
 * duplicate, also with events published while a page is in flight),
 * bookmarks of filtered subscriptions (they move over what does not match
 * and skip nothing on resume), the hub's part of slow-consumer handling
 * (high-water mark, catch-up pacing, a client dropped in the middle of a
 * pump), consumer takeover (Interrupted with the position really sent,
 * the newcomer starting from the acknowledged one), and a source that lost
 * its live position (every subscription ends with 286, none is promoted,
 * the stream starts over at the new head).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <ev.h>

#include "client.h"
#include "conf.h"
#include "errors.h"
#include "event.h"
#include "filter.h"
#include "hub.h"
#include "hubsub.h"   /* test_parked counts the parked subscriptions */
#include "log.h"
#include "source.h"
#include "token.h"

#define GEN 0x2a
#define MAX_EVENTS 4096
#define KIB 1024

/* ---- fake clients: what hub.c calls of client.c ------------------------------ */

enum frame_kind { F_EVENT, F_BOOKMARK, F_ERROR, F_STANDBY, F_COUNT };

struct frame {
	enum frame_kind kind;
	long long sid;
	bool has_pos;
	struct token pos;
	int code;
	size_t pending;          /* output queued when it was sent */
	bool stale;              /* an earlier subscription's (client_sid_reset) */
};

struct client {
	uint64_t id;
	size_t pending;          /* bytes "queued"; the test drains them */
	size_t frame_bytes;      /* what one event frame adds */
	size_t limit;            /* like client_output_limit: dropped past it (0: none) */
	size_t wake_below;       /* last client_wake_below */
	bool closed;
	struct frame *f;
	size_t nf, cap;
};

static Hub *hub;             /* the hub a fake client reports a drop to */
static struct ev_loop *loop;

/* test_bookmark_sweep's record of bookmarks: loop turn, time, client; and
 * a client whose bookmark closes the three clients before it. */
struct bm_rec {
	unsigned iter;
	ev_tstamp t;
	uint64_t client;
};
static struct bm_rec bm_log[8192];
static size_t bm_n;
static bool bm_logging;
static Client **bm_clients;  /* by id - 1 */
static uint64_t bm_kill_at;

static void record(Client *c, enum frame_kind kind, long long sid, const struct token *pos, int code)
{
	assert_non_null(c);
	assert_false(c->closed);   /* the hub wrote to a client it was told is gone */
	if (c->nf == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->f = realloc(c->f, c->cap * sizeof(*c->f));
		assert_non_null(c->f);
	}
	c->f[c->nf++] = (struct frame){ kind, sid, pos != NULL, pos ? *pos : (struct token){ 0, 0, 0 }, code,
					c->pending, false };
}

uint64_t client_id(const Client *c)
{
	return c->id;
}

size_t client_pending(const Client *c)
{
	return c->pending;
}

void client_wake_below(Client *c, size_t bytes)
{
	c->wake_below = bytes;
}

bool client_delivered(const Client *c, long long sid, struct token *ret)
{
	for (size_t i = c->nf; i-- > 0;)
		if (c->f[i].sid == sid && c->f[i].kind != F_ERROR && !c->f[i].stale) {
			*ret = c->f[i].pos;
			return true;
		}
	return false;
}

void client_sid_reset(Client *c, long long sid)
{
	for (size_t i = 0; i < c->nf; i++)
		if (c->f[i].sid == sid)
			c->f[i].stale = true;
}

/* As client.c: an event that would pass the limit is not queued; every
 * subscription gets its error frame, then the client closes. */
void client_send_event(Client *c, long long sid, struct event *ev, bool before)
{
	(void)before;
	assert_non_null(c);
	if (c->limit && c->pending + c->frame_bytes > c->limit) {
		hub_client_error(hub, c, ERR_EXCEEDED_MEMORY_LIMIT, "output limit exceeded");
		c->closed = true;
		hub_client_gone(hub, c);
		return;
	}
	record(c, F_EVENT, sid, &ev->pos, 0);
	c->pending += c->frame_bytes;
}

/* The hub writes raw frames: a standby's, and count answers (recorded
 * with the id as sid, -1 without one, and the count as code). */
void client_send(Client *c, const char *data, size_t len)
{
	long long sid;
	int count;

	assert_true(len > 0 && data[len - 1] == '\n');
	if (sscanf(data, "{\"op\":\"count\",\"id\":%lld,\"count\":%d}", &sid, &count) == 2) {
		record(c, F_COUNT, sid, NULL, count);
		return;
	}
	if (sscanf(data, "{\"op\":\"count\",\"count\":%d}", &count) == 1) {
		record(c, F_COUNT, -1, NULL, count);
		return;
	}
	assert_int_equal(sscanf(data, "{\"op\":\"standby\",\"sid\":%lld}", &sid), 1);
	record(c, F_STANDBY, sid, NULL, 0);
}

void client_send_bookmark(Client *c, long long sid, const struct token *tok)
{
	record(c, F_BOOKMARK, sid, tok, 0);
	if (!bm_logging)
		return;
	assert_true(bm_n < sizeof(bm_log) / sizeof(bm_log[0]));
	bm_log[bm_n++] = (struct bm_rec){ ev_iteration(loop), ev_now(loop), c->id };
	if (c->id == bm_kill_at) {
		bm_kill_at = 0;
		for (uint64_t k = c->id - 1; k + 3 >= c->id && k >= 1; k--) {
			bm_clients[k - 1]->closed = true;
			hub_client_gone(hub, bm_clients[k - 1]);
		}
	}
}

void client_send_error(Client *c, long long sid, int code, const char *msg, const struct token *tok)
{
	(void)msg;
	record(c, F_ERROR, sid, tok, code);
}

static Client *client_make(uint64_t id, size_t frame_bytes)
{
	Client *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->id = id;
	c->frame_bytes = frame_bytes;
	return c;
}

static void client_drop(Client *c)
{
	free(c->f);
	free(c);
}

/* The client wrote everything (or down to left bytes) to its socket. */
static void drain(Client *c, size_t left)
{
	if (c->pending > left)
		c->pending = left;
	hub_client_writable(hub, c);
}

/* ---- fake source: the changelog in memory ---------------------------------- */

enum req_kind { R_PAGE, R_LOAD, R_SAVE, R_EVENT_POS, R_EXISTS, R_COUNT };

struct req {
	struct req *next;
	enum req_kind kind;
	struct token pos;
	enum event_table table;
	char consumer[32];
	uint64_t event_id;
	source_page_cb page;
	source_pos_cb found;
	source_done_cb done;
	source_count_cb counted;
	void *arg;
};

static struct fake {
	struct event *ev[MAX_EVENTS];   /* every event ever written, in order */
	size_t nev;
	uint64_t head_tick;             /* ticks 1..head_tick exist */
	uint64_t last_id;
	size_t page_rows;               /* batch_rows */
	struct req *queue, **tail;      /* answers not given yet */
	int reads;                      /* read_page calls */
	bool has_stored;
	struct token stored;            /* the one consumer's stored position */
	int saves;
	int batches, batched;           /* save_positions calls, consumers in them */
	bool one_table;                 /* every event in health_events */
	bool down;                      /* PostgreSQL away: calls fail, pages error */
} fk;

static void enqueue(struct req *q)
{
	q->next = NULL;
	*fk.tail = q;
	fk.tail = &q->next;
}

static struct req *req_new(enum req_kind kind, void *arg)
{
	struct req *q = calloc(1, sizeof(*q));

	assert_non_null(q);
	q->kind = kind;
	q->arg = arg;
	return q;
}

static int fk_read_page(void *impl, const struct token *pos, enum event_table table,
			source_page_cb cb, void *arg)
{
	struct req *q;

	(void)impl;
	if (fk.down)
		return -ENOTCONN;
	q = req_new(R_PAGE, arg);
	q->pos = *pos;
	q->table = table;
	q->page = cb;
	fk.reads++;
	enqueue(q);
	return 0;
}

static int fk_load_position(void *impl, const char *consumer, source_pos_cb cb, void *arg)
{
	struct req *q = req_new(R_LOAD, arg);

	(void)impl;
	snprintf(q->consumer, sizeof(q->consumer), "%s", consumer);
	q->found = cb;
	enqueue(q);
	return 0;
}

static int fk_save_position(void *impl, const char *consumer, const struct token *pos,
			    source_done_cb cb, void *arg)
{
	struct req *q = req_new(R_SAVE, arg);

	(void)impl;
	snprintf(q->consumer, sizeof(q->consumer), "%s", consumer);
	q->pos = *pos;
	q->done = cb;
	enqueue(q);
	return 0;
}

/* One write for n consumers: the fake keeps one stored position (the
 * highest), and counts the consumers written together. */
static int fk_save_positions(void *impl, size_t n, const char *const *consumers, const struct token *pos,
			     source_done_cb cb, void *arg)
{
	struct req *q = req_new(R_SAVE, arg);

	(void)impl;
	snprintf(q->consumer, sizeof(q->consumer), "%s", consumers[0]);
	q->pos = pos[0];
	for (size_t i = 1; i < n; i++)
		if (token_cmp(&pos[i], &q->pos) > 0)
			q->pos = pos[i];
	q->done = cb;
	fk.batches++;
	fk.batched += n;
	enqueue(q);
	return 0;
}

static int fk_position_of_event(void *impl, uint64_t event_id, source_pos_cb cb, void *arg)
{
	struct req *q = req_new(R_EVENT_POS, arg);

	(void)impl;
	q->event_id = event_id;
	q->found = cb;
	enqueue(q);
	return 0;
}

static int fk_position_at_time(void *impl, const char *rfc3339, source_pos_cb cb, void *arg)
{
	(void)impl;
	(void)rfc3339;
	(void)cb;
	(void)arg;
	return -ENOTCONN;
}

/* Ticks 1..head_tick are written. */
static int fk_position_exists(void *impl, const struct token *pos, source_pos_cb cb, void *arg)
{
	struct req *q;

	(void)impl;
	if (pos->tick > INT64_MAX)
		return -ENOENT;
	q = req_new(R_EXISTS, arg);
	q->pos = *pos;
	q->found = cb;
	enqueue(q);
	return 0;
}

/* The events of table after pos, as the count request counts them. */
static int fk_count_after(void *impl, enum event_table table, const struct token *pos,
			  source_count_cb cb, void *arg)
{
	struct req *q;

	(void)impl;
	if (fk.down)
		return -ENOTCONN;
	q = req_new(R_COUNT, arg);
	q->pos = *pos;
	q->table = table;
	q->counted = cb;
	enqueue(q);
	return 0;
}

static const struct source_ops fk_ops = {
	.read_page = fk_read_page,
	.load_position = fk_load_position,
	.save_position = fk_save_position,
	.save_positions = fk_save_positions,
	.position_of_event = fk_position_of_event,
	.position_at_time = fk_position_at_time,
	.position_exists = fk_position_exists,
	.count_after = fk_count_after,
};
static const struct source fk_source = { &fk_ops, &fk };
/* A source that cannot count: a node relay's. */
static const struct source_ops fk_ops_nocount = {
	.read_page = fk_read_page,
	.load_position = fk_load_position,
	.save_position = fk_save_position,
	.position_of_event = fk_position_of_event,
	.position_at_time = fk_position_at_time,
	.position_exists = fk_position_exists,
};
static const struct source fk_source_nocount = { &fk_ops_nocount, &fk };

/* One page as relay.c reads it: the rows of one batch after pos (of one
 * table, or all), at most page_rows; the position after them. */
static void answer_page(struct req *q)
{
	struct event **evs = calloc(fk.page_rows, sizeof(*evs));
	struct token next = q->pos;
	uint64_t tick = q->pos.tick, after = q->pos.id;
	size_t n = 0;

	assert_non_null(evs);
	if (fk.down) {
		q->page(q->arg, evs, 0, &q->pos, ERR_HOST_UNREACHABLE, "PostgreSQL connection lost");
		free(evs);
		return;
	}
	if (q->pos.id == TOKEN_ID_END) {
		if (q->pos.tick >= fk.head_tick) {
			q->page(q->arg, evs, 0, &q->pos, 0, NULL);   /* no newer tick yet */
			free(evs);
			return;
		}
		tick = q->pos.tick + 1;
		after = 0;
	}
	for (size_t i = 0; i < fk.nev && n < fk.page_rows; i++) {
		struct event *ev = fk.ev[i];
		if (ev->pos.tick == tick && ev->pos.id > after &&
		    (q->table == TABLE_OTHER || ev->table == q->table))
			evs[n++] = event_ref(ev);
	}
	next = (struct token){ GEN, tick, TOKEN_ID_END };
	if (n == fk.page_rows)
		next.id = evs[n - 1]->pos.id;   /* more of this batch */
	q->page(q->arg, evs, n, &next, 0, NULL);
	free(evs);
}

static void answer(struct req *q)
{
	switch (q->kind) {
	case R_PAGE:
		answer_page(q);
		break;
	case R_LOAD:
		if (fk.has_stored)
			q->found(q->arg, 0, &fk.stored, NULL);
		else
			q->found(q->arg, -ENOENT, NULL, NULL);
		break;
	case R_SAVE:
		/* resume_tokens' upsert: never backwards. */
		if (!fk.has_stored || token_cmp(&q->pos, &fk.stored) > 0)
			fk.stored = q->pos;
		fk.has_stored = true;
		fk.saves++;
		q->done(q->arg, 0);
		break;
	case R_EXISTS:
		if (q->pos.tick >= 1 && q->pos.tick <= fk.head_tick)
			q->found(q->arg, 0, &q->pos, NULL);
		else
			q->found(q->arg, -ENOENT, NULL, "no such tick");
		break;
	case R_COUNT: {
		uint64_t n = 0;

		for (size_t i = 0; i < fk.nev; i++)
			n += fk.ev[i]->table == q->table && token_cmp(&fk.ev[i]->pos, &q->pos) > 0;
		q->counted(q->arg, 0, n, NULL);
		break;
	}
	case R_EVENT_POS:
		for (size_t i = 0; i < fk.nev; i++)
			if (fk.ev[i]->pos.id == q->event_id) {
				q->found(q->arg, 0, &fk.ev[i]->pos, NULL);
				free(q);
				return;
			}
		q->found(q->arg, -ESTALE, NULL, "older than the retained history");
		break;
	}
	free(q);
}

/* Gives the oldest answer still owed, if any of kind (or of any kind: -1). */
static bool answer_one(int kind)
{
	struct req **pp;

	for (pp = &fk.queue; *pp; pp = &(*pp)->next) {
		struct req *q = *pp;
		if (kind >= 0 && q->kind != (enum req_kind)kind)
			continue;
		*pp = q->next;
		if (fk.tail == &q->next)
			fk.tail = pp;
		answer(q);
		return true;
	}
	return false;
}

static int owed(int kind)
{
	int n = 0;

	for (struct req *q = fk.queue; q; q = q->next)
		n += kind < 0 || q->kind == (enum req_kind)kind;
	return n;
}

/* Until nothing is owed; a hub that asks without end fails. */
static void answer_all(void)
{
	for (int n = 0; answer_one(-1); n++)
		if (n > 100000)
			fail_msg("the hub keeps asking its source");
}

static struct event *make_event_doc(uint64_t tick, uint64_t id, enum event_table table, const char *doc)
{
	char rec[64];
	struct change_row row = { 0 };
	struct token pos = { GEN, tick, id };
	const char *err = NULL;
	struct event *ev;

	snprintf(rec, sizeof(rec), "00000000-0000-0000-0000-%012llu", (unsigned long long)id);
	row.id = id;
	row.table = table == TABLE_HEALTH_EVENTS ? "health_events" : "maintenance_events";
	row.record_id = rec;
	row.operation = "INSERT";
	row.cluster_time = "2026-11-25T10:00:00.000000Z";
	row.new_doc = doc;
	ev = event_build(&row, &pos, "nvsentinel", &err);
	assert_non_null(ev);
	return ev;
}

static struct event *make_event(uint64_t tick, uint64_t id, enum event_table table, bool match)
{
	char doc[96];

	snprintf(doc, sizeof(doc), "{\"kind\":\"%s\",\"n\":%llu,\"tag\":\"t%llu\"}", match ? "m" : "x",
		 (unsigned long long)id, (unsigned long long)(id % 3));
	return make_event_doc(tick, id, table, doc);
}

/* What a tick's event of index i is: the table and whether it matches the
 * filter, a fixed mix so every test sees both kinds of each. */
static enum event_table kind_table(uint64_t id)
{
	return id % 3 == 2 && !fk.one_table ? TABLE_MAINTENANCE_EVENTS : TABLE_HEALTH_EVENTS;
}

static bool kind_match(uint64_t id)
{
	return id % 4 != 1;
}

/* The live reader: a new tick of n events, published as pages of split
 * events (0: the whole batch at once), each page followed by the head. */
static void produce(size_t n, size_t split)
{
	struct token head;
	uint64_t tick = ++fk.head_tick;

	for (size_t i = 0; i < n; i++) {
		uint64_t id = ++fk.last_id;
		struct event *ev = make_event(tick, id, kind_table(id), kind_match(id));

		assert_true(fk.nev < MAX_EVENTS);
		fk.ev[fk.nev++] = ev;
		hub_publish(hub, event_ref(ev));
		if (split && (i + 1) % split == 0 && i + 1 < n) {
			head = (struct token){ GEN, tick, id };
			hub_set_head(hub, &head);
		}
	}
	head = (struct token){ GEN, tick, TOKEN_ID_END };
	hub_set_head(hub, &head);
}

/* ---- the world: loop, configuration, hub ----------------------------------- */

static struct conf_values cv;

static void world_new(int ring_events, size_t page_rows)
{
	memset(&fk, 0, sizeof(fk));
	fk.tail = &fk.queue;
	fk.page_rows = page_rows;
	memset(&cv, 0, sizeof(cv));
	cv.ring_events = ring_events;
	cv.ack_flush_ms = 10;
	cv.client_output_limit = 64 * 1024 * 1024;
	loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(loop);
	hub = hub_new(loop, &cv);
	assert_non_null(hub);
	hub_set_source(hub, &fk_source);
}

static void world_free(void)
{
	answer_all();
	hub_set_source(hub, NULL);
	hub_free(hub);
	hub = NULL;
	for (size_t i = 0; i < fk.nev; i++)
		event_unref(fk.ev[i]);
	ev_loop_destroy(loop);
	loop = NULL;
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ONE);
}

/* Runs the loop (the hub's bookmark and flush timer) for secs. */
static void run_for(double secs)
{
	ev_timer t;

	ev_timer_init(&t, stop_cb, secs, 0.);
	ev_timer_start(loop, &t);
	ev_run(loop, 0);
	ev_timer_stop(loop, &t);
}

static struct watch_req watch_req(long long sid, enum event_table table)
{
	struct watch_req req;

	memset(&req, 0, sizeof(req));
	req.sid = sid;
	req.table = table;
	return req;
}

static struct watch_req resume_req(long long sid, enum event_table table, const struct token *from)
{
	struct watch_req req = watch_req(sid, table);

	req.has_resume = true;
	req.resume = *from;
	return req;
}

/* {path: value}: a filter with a guard (hubguard.c). */
static Filter *eq_filter(const char *path, const char *value)
{
	char text[160];
	cJSON *p;
	Filter *f = NULL;
	char err[128];

	snprintf(text, sizeof(text), "[{\"$match\": {\"%s\": \"%s\"}}]", path, value);
	p = cJSON_Parse(text);
	assert_non_null(p);
	assert_int_equal(filter_compile(p, &f, err, sizeof(err)), 0);
	cJSON_Delete(p);
	return f;
}

static Filter *match_filter(void)
{
	return eq_filter("fullDocument.kind", "m");
}

/* The events c must have been sent for sid: every event of table after
 * from (that matches, when filtered), in order, exactly once. */
static void assert_stream(const Client *c, long long sid, enum event_table table, bool filtered,
			  const struct token *from)
{
	size_t k = 0;

	for (size_t i = 0; i < fk.nev; i++) {
		const struct event *ev = fk.ev[i];
		if (ev->table != table || token_cmp(&ev->pos, from) <= 0 || (filtered && !kind_match(ev->pos.id)))
			continue;
		while (k < c->nf && (c->f[k].sid != sid || c->f[k].kind != F_EVENT))
			k++;
		if (k == c->nf)
			fail_msg("event tick=%llu id=%llu never sent", (unsigned long long)ev->pos.tick,
				 (unsigned long long)ev->pos.id);
		if (token_cmp(&c->f[k].pos, &ev->pos) != 0)
			fail_msg("sent tick=%llu id=%llu where tick=%llu id=%llu was due",
				 (unsigned long long)c->f[k].pos.tick, (unsigned long long)c->f[k].pos.id,
				 (unsigned long long)ev->pos.tick, (unsigned long long)ev->pos.id);
		k++;
	}
	for (; k < c->nf; k++)
		if (c->f[k].sid == sid && c->f[k].kind == F_EVENT)
			fail_msg("extra event tick=%llu id=%llu", (unsigned long long)c->f[k].pos.tick,
				 (unsigned long long)c->f[k].pos.id);
}

static size_t count_frames(const Client *c, enum frame_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nf; i++)
		n += c->f[i].kind == kind;
	return n;
}

static int setup(void **state)
{
	(void)state;
	log_setup("err", "text");
	return 0;
}

/* ---- (a) the ring/catch-up hand-over --------------------------------------- */

/* Starting far behind a small ring: served by pages, then by the ring, and
 * once there by the ring alone. */
static void test_catchup_joins_ring(void **state)
{
	Client *c = client_make(1, 100);
	struct token from = { GEN, 1, TOKEN_ID_END };
	struct watch_req req = resume_req(1, TABLE_HEALTH_EVENTS, &from);
	int reads;

	(void)state;
	world_new(4, 2);
	for (int t = 0; t < 12; t++)
		produce(3, 0);
	assert_int_equal(hub_watch(hub, c, &req), 0);
	assert_int_equal(c->f[0].kind, F_BOOKMARK);
	assert_int_equal(owed(R_PAGE), 1);   /* behind the ring: a page is asked for */
	answer_all();
	assert_true(fk.reads > 3);
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);

	/* In the ring now: new events come without a read. */
	reads = fk.reads;
	for (int t = 0; t < 3; t++)
		produce(3, 0);
	assert_int_equal(fk.reads, reads);
	assert_int_equal(owed(-1), 0);
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
	world_free();
	client_drop(c);
}

/* The ring moves past the page while the page is in flight: the next page
 * follows on from where that one ended, not from the ring. */
static void test_catchup_publish_during_page(void **state)
{
	Client *c = client_make(1, 100);
	struct token from = { GEN, 2, TOKEN_ID_END };
	struct watch_req req = resume_req(1, TABLE_HEALTH_EVENTS, &from);

	(void)state;
	world_new(4, 2);
	for (int t = 0; t < 6; t++)
		produce(3, 0);
	assert_int_equal(hub_watch(hub, c, &req), 0);
	for (int round = 0; round < 8; round++) {
		assert_int_equal(owed(R_PAGE), 1);
		produce(3, round % 2 ? 2 : 0);   /* while the page is out */
		answer_one(R_PAGE);
	}
	answer_all();
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
	world_free();
	client_drop(c);
}

/* A catch-up page that ends exactly where the ring starts, or inside it. */
static void test_catchup_meets_ring_edge(void **state)
{
	(void)state;
	for (size_t rows = 1; rows <= 4; rows++) {
		for (int ring = 1; ring <= 7; ring++) {
			Client *c = client_make(1, 100);
			struct token from = { GEN, 0, TOKEN_ID_END };
			struct watch_req req = resume_req(1, TABLE_HEALTH_EVENTS, &from);

			world_new(ring, rows);
			for (int t = 0; t < 5; t++)
				produce(3, 0);
			assert_int_equal(hub_watch(hub, c, &req), 0);
			/* New ticks while it catches up, fewer than it reads. */
			for (int i = 0; answer_one(R_PAGE); i++) {
				if (i % 3 == 0 && i < 30)
					produce(1, 0);
				if (i > 1000)
					fail_msg("catch-up never ends");
			}
			produce(2, 0);
			answer_all();   /* a ring of one can be passed by one tick */
			assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
			world_free();
			client_drop(c);
		}
	}
}

static uint32_t rnd_state;

static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 16;
}

/* Pages answered, ticks written (whole or in pages), clients draining,
 * in random order: every subscriber still sees each event once, in order. */
static void test_catchup_random_interleaving(void **state)
{
	(void)state;
	for (uint32_t seed = 1; seed <= 60; seed++) {
		Client *c[3];
		struct token from[3];
		enum event_table tab[3] = { TABLE_HEALTH_EVENTS, TABLE_MAINTENANCE_EVENTS, TABLE_HEALTH_EVENTS };

		rnd_state = seed;
		world_new(1 + (int)(rnd() % 8), 1 + rnd() % 4);
		for (int t = 0; t < 8; t++)
			produce(rnd() % 4, rnd() % 3);
		for (int i = 0; i < 3; i++) {
			struct watch_req req;

			c[i] = client_make((uint64_t)i + 1, 50 * KIB);
			from[i] = (struct token){ GEN, rnd() % 9, TOKEN_ID_END };
			if (from[i].tick > 0 && rnd() % 2) {
				/* A position inside a batch, as an event's token. */
				for (size_t k = 0; k < fk.nev; k++)
					if (fk.ev[k]->pos.tick == from[i].tick)
						from[i] = fk.ev[k]->pos;
			}
			req = resume_req(7, tab[i], &from[i]);
			req.filter = i == 2 ? match_filter() : NULL;
			assert_int_equal(hub_watch(hub, c[i], &req), 0);
		}
		for (int step = 0; step < 200; step++) {
			switch (rnd() % 4) {
			case 0:
			case 1:
				answer_one(R_PAGE);
				break;
			case 2:
				produce(rnd() % 5, rnd() % 3);
				break;
			default:
				drain(c[rnd() % 3], 0);
			}
		}
		/* Settle: everything answered and read. */
		for (int i = 0; i < 500 && (owed(-1) || c[0]->pending || c[1]->pending || c[2]->pending); i++) {
			answer_all();
			for (int k = 0; k < 3; k++)
				drain(c[k], 0);
		}
		for (int i = 0; i < 3; i++)
			assert_stream(c[i], 7, tab[i], i == 2, &from[i]);
		world_free();
		for (int i = 0; i < 3; i++)
			client_drop(c[i]);
	}
}

/* PostgreSQL away while a subscriber catches up: it waits where it is
 * (bookmarks do not move it to the head), and goes on when it is back. */
static void test_catchup_source_down(void **state)
{
	Client *c = client_make(1, 100);
	struct token from = { GEN, 2, TOKEN_ID_END }, head;
	struct watch_req req = resume_req(1, TABLE_HEALTH_EVENTS, &from);

	(void)state;
	world_new(4, 2);
	for (int t = 0; t < 8; t++)
		produce(3, 0);
	assert_int_equal(hub_watch(hub, c, &req), 0);
	assert_int_equal(owed(R_PAGE), 1);
	fk.down = true;
	answer_one(R_PAGE);   /* the connection is lost under the page */
	run_for(0.03);
	produce(3, 0);        /* the relay still had those */
	run_for(0.03);
	assert_int_equal(count_frames(c, F_EVENT), 0);
	assert_int_equal(count_frames(c, F_ERROR), 0);
	for (size_t i = 0; i < c->nf; i++)
		assert_int_equal(token_cmp(&c->f[i].pos, &from), 0);
	assert_int_equal(hub_subscription_count(hub), 1);

	/* Back: the relay's main_up sets the head again. */
	fk.down = false;
	head = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	hub_set_head(hub, &head);
	answer_all();
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
	drain(c, 0);
	run_for(0.03);
	assert_int_equal(c->f[c->nf - 1].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&c->f[c->nf - 1].pos, &head), 0);
	world_free();
	client_drop(c);
}

/* ---- (b) filters across bookmarks ------------------------------------------ */

/* Every bookmark a filtered subscriber gets moves it over what did not
 * match but never over a match it was not sent; resuming from any of them
 * (in the ring or behind it) brings exactly the matches after it. */
static void test_filter_bookmarks(void **state)
{
	Client *c = client_make(1, 100);
	struct watch_req req = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token start = { GEN, 0, TOKEN_ID_END }, last_match = start;
	size_t nbm = 0, moved_over = 0;

	(void)state;
	world_new(6, 2);
	produce(2, 0);
	start = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	req.filter = match_filter();
	assert_int_equal(hub_watch(hub, c, &req), 0);
	for (int t = 0; t < 12; t++) {
		produce(1 + (size_t)t % 3, 0);
		run_for(0.025);
		drain(c, 0);
	}
	run_for(0.025);
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, true, &start);

	for (size_t k = 0; k < c->nf; k++) {
		const struct frame *f = &c->f[k];
		size_t due = 0, sent = 0;

		if (f->kind == F_EVENT) {
			last_match = f->pos;
			continue;
		}
		assert_int_equal(f->kind, F_BOOKMARK);
		assert_true(token_cmp(&f->pos, &last_match) >= 0);
		/* Only an idle client gets one: none queues behind output. */
		assert_int_equal(f->pending, 0);
		nbm++;
		for (size_t i = 0; i < fk.nev; i++)
			due += fk.ev[i]->table == TABLE_HEALTH_EVENTS && kind_match(fk.ev[i]->pos.id) &&
			       token_cmp(&fk.ev[i]->pos, &start) > 0 && token_cmp(&fk.ev[i]->pos, &f->pos) <= 0;
		for (size_t i = 0; i < k; i++)
			sent += c->f[i].kind == F_EVENT;
		assert_int_equal(sent, due);   /* nothing behind the bookmark left unsent */
		for (size_t i = 0; i < fk.nev; i++)
			if (token_cmp(&fk.ev[i]->pos, &last_match) > 0 && token_cmp(&fk.ev[i]->pos, &f->pos) <= 0) {
				moved_over++;   /* this bookmark passed an event not sent */
				break;
			}
	}
	assert_true(nbm > 3);
	assert_true(moved_over > 0);
	/* Idle: the last bookmark is the head. */
	assert_int_equal(c->f[c->nf - 1].kind, F_BOOKMARK);
	assert_int_equal(c->f[c->nf - 1].pos.tick, fk.head_tick);
	assert_true(c->f[c->nf - 1].pos.id == TOKEN_ID_END);

	/* Resume from each bookmark (the early ones are behind the ring). */
	for (size_t k = 0, sid = 100; k < c->nf; k++) {
		Client *r;
		struct watch_req rq;

		if (c->f[k].kind != F_BOOKMARK)
			continue;
		r = client_make(2, 100);
		rq = resume_req((long long)++sid, TABLE_HEALTH_EVENTS, &c->f[k].pos);
		rq.filter = match_filter();
		assert_int_equal(hub_watch(hub, r, &rq), 0);
		answer_all();
		produce(3, 0);
		assert_stream(r, (long long)sid, TABLE_HEALTH_EVENTS, true, &c->f[k].pos);
		hub_client_gone(hub, r);
		client_drop(r);
	}
	world_free();
	client_drop(c);
}

/* ---- (c) slow consumers ------------------------------------------------------ */

/* Live delivery stops at the high-water mark and resumes on drain. */
static void test_pump_high_water(void **state)
{
	Client *c = client_make(1, 100 * KIB);
	struct watch_req req = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token from;
	size_t before;

	(void)state;
	world_new(64, 8);
	fk.one_table = true;
	produce(1, 0);
	from = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	assert_int_equal(hub_watch(hub, c, &req), 0);
	produce(10, 0);
	/* 256 KiB: three 100 KiB frames pass it. */
	assert_int_equal(count_frames(c, F_EVENT), 3);
	produce(2, 0);
	assert_int_equal(count_frames(c, F_EVENT), 3);   /* still full */
	before = c->nf;
	drain(c, 200 * KIB);   /* not below the mark yet: room for one */
	assert_int_equal(c->nf, before + 1);
	for (int i = 0; i < 10; i++)
		drain(c, 0);
	assert_int_equal(count_frames(c, F_EVENT), 12);
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
	assert_int_equal(owed(R_PAGE), 0);   /* all from the ring */
	world_free();
	client_drop(c);
}

/* A catch-up reader asks for its next page only while fewer than a few
 * pages are queued, capped at half the output limit, and asks to be woken
 * below that. */
static void test_catchup_pacing(void **state)
{
	Client *c = client_make(1, 1024 * KIB);
	struct token from = { GEN, 0, TOKEN_ID_END };
	struct watch_req req = resume_req(1, TABLE_HEALTH_EVENTS, &from);

	(void)state;
	world_new(2, 2);   /* a page: one tick of one event */
	fk.one_table = true;
	cv.client_output_limit = 4 * 1024 * KIB;
	for (int t = 0; t < 10; t++)
		produce(1, 0);
	assert_int_equal(hub_watch(hub, c, &req), 0);
	assert_true(answer_one(R_PAGE));   /* 1 MiB queued: below 2 MiB, read on */
	assert_int_equal(c->pending, 1024 * KIB);
	assert_int_equal(owed(R_PAGE), 1);
	assert_true(answer_one(R_PAGE));   /* 2 MiB: half the limit, stop */
	assert_int_equal(c->pending, 2048 * KIB);
	assert_int_equal(owed(R_PAGE), 0);
	assert_int_equal(c->wake_below, 2048 * KIB);
	drain(c, 2048 * KIB);              /* no progress: still waits */
	assert_int_equal(owed(R_PAGE), 0);
	drain(c, 1536 * KIB);              /* below: the next page */
	assert_int_equal(owed(R_PAGE), 1);

	/* A soft limit lower than the hard one caps it instead. */
	cv.client_output_soft_limit = 3 * 1024 * KIB;
	answer_one(R_PAGE);
	assert_int_equal(owed(R_PAGE), 0);
	assert_int_equal(c->wake_below, 1536 * KIB);
	for (int i = 0; i < 40 && (owed(R_PAGE) || c->pending); i++) {
		answer_all();
		drain(c, 0);
	}
	assert_stream(c, 1, TABLE_HEALTH_EVENTS, false, &from);
	world_free();
	client_drop(c);
}

/* A send that drops the client (its hard limit) in the middle of a pump:
 * every subscription of it gets an error with the position it really has,
 * nothing more is written to it, and other clients go on. */
static void test_drop_during_pump(void **state)
{
	Client *slow = client_make(1, 100 * KIB), *ok = client_make(2, 100);
	struct watch_req a = watch_req(1, TABLE_HEALTH_EVENTS), b = watch_req(2, TABLE_MAINTENANCE_EVENTS);
	struct watch_req o = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token from;

	(void)state;
	world_new(64, 8);
	produce(1, 0);
	from = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	slow->limit = 250 * KIB;
	assert_int_equal(hub_watch(hub, slow, &a), 0);
	assert_int_equal(hub_watch(hub, ok, &o), 0);
	assert_int_equal(hub_watch(hub, slow, &b), 0);
	assert_int_equal(hub_subscription_count(hub), 3);
	produce(12, 0);
	assert_true(slow->closed);
	assert_int_equal(hub_subscription_count(hub), 1);
	assert_int_equal(count_frames(slow, F_ERROR), 2);
	/* Each error names the last position of its sid that was queued. */
	for (size_t i = 0; i < slow->nf; i++) {
		struct token last = { 0, 0, 0 };

		if (slow->f[i].kind != F_ERROR)
			continue;
		assert_int_equal(slow->f[i].code, ERR_EXCEEDED_MEMORY_LIMIT);
		for (size_t k = 0; k < i; k++)
			if (slow->f[k].sid == slow->f[i].sid)
				last = slow->f[k].pos;
		assert_true(slow->f[i].has_pos);
		assert_int_equal(token_cmp(&slow->f[i].pos, &last), 0);
	}
	assert_int_equal(count_frames(slow, F_EVENT), 2);
	produce(3, 0);
	run_for(0.03);
	assert_stream(ok, 1, TABLE_HEALTH_EVENTS, false, &from);
	world_free();
	client_drop(slow);
	client_drop(ok);
}

/* ---- (d) consumer takeover ------------------------------------------------- */

static const struct frame *last_of(const Client *c, long long sid)
{
	for (size_t i = c->nf; i-- > 0;)
		if (c->f[i].sid == sid && c->f[i].kind != F_ERROR)
			return &c->f[i];
	return NULL;
}

/* The second watch of a consumer ends the first with Interrupted, which
 * names the position the first was really sent; the second starts from what
 * the first acknowledged, even before its acks reached the store. */
static void test_takeover(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100);
	struct watch_req ra = watch_req(3, TABLE_HEALTH_EVENTS), rb = watch_req(4, TABLE_HEALTH_EVENTS);
	struct token sent_a, acked = { 0, 0, 0 }, before_a;
	int n = 0;

	(void)state;
	world_new(64, 8);
	produce(2, 0);
	ra.consumer = rb.consumer = "gpu-health";
	assert_int_equal(hub_watch(hub, a, &ra), 0);
	assert_int_equal(owed(R_LOAD), 1);
	answer_one(R_LOAD);   /* nothing stored: from the head */
	before_a = a->f[0].pos;
	answer_all();         /* its start position written */
	assert_true(fk.has_stored);
	produce(8, 0);
	for (size_t i = 0; i < a->nf; i++)
		if (a->f[i].kind == F_EVENT && ++n == 3)
			acked = a->f[i].pos;
	assert_int_equal(n, 6);   /* the health events of 8 */
	assert_int_equal(hub_ack(hub, a, 3, &acked), 0);
	/* An empty tick: a passes it, with no frame before the next bookmark. */
	produce(0, 0);
	sent_a = last_of(a, 3)->pos;
	assert_true(sent_a.tick < fk.head_tick);

	assert_int_equal(hub_watch(hub, b, &rb), 0);
	assert_int_equal(a->f[a->nf - 1].kind, F_ERROR);
	assert_int_equal(a->f[a->nf - 1].code, ERR_INTERRUPTED);
	assert_true(a->f[a->nf - 1].has_pos);
	assert_int_equal(token_cmp(&a->f[a->nf - 1].pos, &sent_a), 0);
	assert_int_equal(hub_subscription_count(hub), 1);

	/* Its acks never reached the store; the newcomer starts from them. */
	assert_true(token_cmp(&fk.stored, &acked) < 0);
	assert_true(token_cmp(&fk.stored, &before_a) >= 0);
	assert_true(answer_one(R_LOAD));
	assert_int_equal(b->f[0].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&b->f[0].pos, &acked), 0);
	produce(4, 0);
	assert_stream(b, 4, TABLE_HEALTH_EVENTS, false, &acked);
	answer_all();   /* the old holder's last write lands late: no step back */
	assert_true(token_cmp(&fk.stored, &acked) >= 0);
	world_free();
	client_drop(a);
	client_drop(b);
}

/* The stored position is ahead of what the old holder acknowledged (another
 * relay moved it): the newcomer starts from the stored one. */
static void test_takeover_stored_ahead(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100);
	struct watch_req ra = watch_req(3, TABLE_HEALTH_EVENTS), rb = watch_req(4, TABLE_HEALTH_EVENTS);
	struct token ahead;

	(void)state;
	world_new(64, 8);
	produce(2, 0);
	ra.consumer = rb.consumer = "gpu-health";
	assert_int_equal(hub_watch(hub, a, &ra), 0);
	answer_all();
	produce(6, 0);
	ahead = fk.ev[fk.nev - 2]->pos;
	fk.stored = ahead;
	assert_int_equal(hub_watch(hub, b, &rb), 0);
	assert_int_equal(a->f[a->nf - 1].code, ERR_INTERRUPTED);
	answer_one(R_LOAD);
	assert_int_equal(token_cmp(&b->f[0].pos, &ahead), 0);
	produce(2, 0);
	assert_stream(b, 4, TABLE_HEALTH_EVENTS, false, &ahead);
	world_free();
	client_drop(a);
	client_drop(b);
}

/* A holder that leaves right after its last ack is still writing that
 * position when the same consumer subscribes again: the newcomer's load
 * can read the older stored one, and must not start before the ack (it
 * would get the acknowledged events again). */
static void test_takeover_dead_saving(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100);
	struct watch_req ra = watch_req(3, TABLE_HEALTH_EVENTS), rb = watch_req(4, TABLE_HEALTH_EVENTS);
	struct token acked = { 0, 0, 0 }, stored;
	int n = 0;

	(void)state;
	world_new(64, 8);
	produce(2, 0);
	ra.consumer = rb.consumer = "gpu-health";
	assert_int_equal(hub_watch(hub, a, &ra), 0);
	answer_all();
	stored = fk.stored;
	produce(8, 0);
	for (size_t i = 0; i < a->nf; i++)
		if (a->f[i].kind == F_EVENT && ++n == 3)
			acked = a->f[i].pos;
	assert_int_equal(hub_ack(hub, a, 3, &acked), 0);
	a->closed = true;
	hub_client_gone(hub, a);
	assert_int_equal(owed(R_SAVE), 1);   /* its last write, in flight */

	assert_int_equal(hub_watch(hub, b, &rb), 0);
	assert_true(answer_one(R_LOAD));     /* overtakes the write: the older position */
	assert_int_equal(token_cmp(&fk.stored, &stored), 0);
	assert_true(token_cmp(&stored, &acked) < 0);
	assert_int_equal(b->f[0].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&b->f[0].pos, &acked), 0);
	assert_stream(b, 4, TABLE_HEALTH_EVENTS, false, &acked);
	answer_all();
	world_free();
	client_drop(a);
	client_drop(b);
}

/* ---- count requests ---------------------------------------------------------- */

/* Answered from the source with the request's id; an answer for a client
 * gone meanwhile is dropped; a position of another generation and a source
 * that cannot count are refused at once, connection-level. */
static void test_count(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100), *b2 = client_make(3, 100);
	struct token pos, other;
	size_t n;

	(void)state;
	world_new(64, 8);
	produce(6, 0);
	pos = fk.ev[1]->pos;
	hub_count(hub, a, 7, TABLE_HEALTH_EVENTS, &pos);
	hub_count(hub, a, -1, TABLE_MAINTENANCE_EVENTS, &pos);
	assert_int_equal(a->nf, 0);          /* answered later, from the loop */
	assert_int_equal(owed(R_COUNT), 2);
	answer_all();
	assert_int_equal(a->nf, 2);
	assert_int_equal(a->f[0].kind, F_COUNT);
	assert_int_equal(a->f[0].sid, 7);
	assert_int_equal(a->f[0].code, 3);   /* after id 2: 3, 4 and 6 (5 is maintenance) */
	assert_int_equal(a->f[1].kind, F_COUNT);
	assert_int_equal(a->f[1].sid, -1);
	assert_int_equal(a->f[1].code, 1);

	hub_count(hub, b, 1, TABLE_HEALTH_EVENTS, &pos);
	b->closed = true;
	hub_client_gone(hub, b);
	answer_all();                        /* record() fails if b is written to */
	assert_int_equal(b->nf, 0);

	other = pos;
	other.gen ^= 1;
	hub_count(hub, a, 8, TABLE_HEALTH_EVENTS, &other);
	assert_int_equal(owed(R_COUNT), 0);
	assert_int_equal(a->f[a->nf - 1].kind, F_ERROR);
	assert_int_equal(a->f[a->nf - 1].code, ERR_HISTORY_LOST);
	assert_int_equal(a->f[a->nf - 1].sid, -1);
	hub_set_source(hub, &fk_source_nocount);
	hub_count(hub, a, 9, TABLE_HEALTH_EVENTS, &pos);
	assert_int_equal(a->f[a->nf - 1].code, ERR_COMMAND_NOT_FOUND);
	hub_set_source(hub, &fk_source);
	fk.down = true;
	hub_count(hub, a, 10, TABLE_HEALTH_EVENTS, &pos);
	assert_int_equal(a->f[a->nf - 1].code, ERR_HOST_UNREACHABLE);
	fk.down = false;
	/* At most 16 wait per connection: the 17th is refused, the others
	 * answered; another connection is not affected. */
	for (int i = 0; i < 17; i++)
		hub_count(hub, a, 100 + i, TABLE_HEALTH_EVENTS, &pos);
	assert_int_equal(owed(R_COUNT), 16);
	assert_int_equal(a->f[a->nf - 1].kind, F_ERROR);
	assert_int_equal(a->f[a->nf - 1].code, ERR_EXCEEDED_LIMIT);
	hub_count(hub, b2, 1, TABLE_HEALTH_EVENTS, &pos);
	assert_int_equal(owed(R_COUNT), 17);
	n = a->nf;
	answer_all();
	assert_int_equal(a->nf, n + 16);
	assert_int_equal(a->f[a->nf - 1].kind, F_COUNT);
	assert_int_equal(a->f[a->nf - 1].sid, 115);
	assert_int_equal(b2->f[b2->nf - 1].kind, F_COUNT);
	/* Pending when the hub goes: the late answer reaches nobody. */
	hub_count(hub, a, 11, TABLE_HEALTH_EVENTS, &pos);
	a->closed = true;
	hub_set_source(hub, NULL);
	hub_free(hub);
	hub = NULL;
	assert_true(answer_one(R_COUNT));
	for (size_t i = 0; i < fk.nev; i++)
		event_unref(fk.ev[i]);
	ev_loop_destroy(loop);
	loop = NULL;
	client_drop(a);
	client_drop(b);
	client_drop(b2);
}

/* ---- start positions, acks and standbys ------------------------------------ */

/* A resume token past the head is asked of the source: a tick it never
 * wrote (a forged token, one of 2^63 or more) is refused with
 * InvalidResumeToken and no subscription; a written one is started from. */
static void test_resume_beyond_head(void **state)
{
	Client *c = client_make(1, 100);
	struct token far = { GEN, 1000000, TOKEN_ID_END }, huge = { GEN, (uint64_t)1 << 63, 5 };
	struct token later;
	struct watch_req r1 = resume_req(1, TABLE_HEALTH_EVENTS, &far);
	struct watch_req r2 = resume_req(2, TABLE_HEALTH_EVENTS, &huge);
	struct watch_req r3;

	(void)state;
	world_new(64, 8);
	produce(4, 0);
	r1.consumer = "victim";
	assert_int_equal(hub_watch(hub, c, &r1), 0);
	answer_all();
	assert_int_equal(c->f[c->nf - 1].kind, F_ERROR);
	assert_int_equal(c->f[c->nf - 1].code, ERR_INVALID_RESUME_TOKEN);
	assert_int_equal(count_frames(c, F_BOOKMARK), 0);
	assert_false(fk.has_stored);   /* the consumer's position never moved */
	assert_int_equal(hub_watch(hub, c, &r2), 0);
	answer_all();
	assert_int_equal(c->f[c->nf - 1].code, ERR_INVALID_RESUME_TOKEN);
	assert_int_equal(hub_subscription_count(hub), 0);

	/* Another relay of the database read a tick this one has not yet. */
	fk.head_tick++;
	later = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	r3 = resume_req(3, TABLE_HEALTH_EVENTS, &later);
	assert_int_equal(hub_watch(hub, c, &r3), 0);
	assert_int_equal(owed(R_EXISTS), 1);
	answer_all();
	assert_int_equal(c->f[c->nf - 1].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&c->f[c->nf - 1].pos, &later), 0);
	world_free();
	client_drop(c);
}

/* An ack may name only what the subscription was sent: not the position it
 * passed silently (other tables) before a bookmark told the client. */
static void test_ack_only_sent(void **state)
{
	Client *c = client_make(1, 100);
	struct watch_req r = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token start, head;

	(void)state;
	world_new(64, 8);
	produce(1, 0);
	r.consumer = "quiet";
	assert_int_equal(hub_watch(hub, c, &r), 0);
	answer_all();
	start = c->f[0].pos;
	/* A tick with only maintenance events: passed, not yet bookmarked. */
	for (int i = 0; i < 3; i++) {
		uint64_t id = ++fk.last_id;
		struct event *ev = make_event(fk.head_tick + 1, id, TABLE_MAINTENANCE_EVENTS, true);
		fk.ev[fk.nev++] = ev;
		hub_publish(hub, event_ref(ev));
	}
	head = (struct token){ GEN, ++fk.head_tick, TOKEN_ID_END };
	hub_set_head(hub, &head);
	assert_int_equal(hub_ack(hub, c, 1, &head), -EINVAL);
	assert_int_equal(c->f[c->nf - 1].code, ERR_BAD_VALUE);
	assert_int_equal(hub_ack(hub, c, 1, &start), 0);
	run_for(1.3);   /* the bookmark of the passed tick */
	assert_int_equal(last_of(c, 1)->kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&last_of(c, 1)->pos, &head), 0);
	assert_int_equal(hub_ack(hub, c, 1, &head), 0);
	world_free();
	client_drop(c);
}

/* A standby waits without events while the holder reads; when the holder
 * goes it starts from what the holder acknowledged: the unacknowledged
 * events again, none of the acknowledged ones. */
static void test_standby(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100), *c = client_make(3, 100);
	Client *d = client_make(4, 100);
	struct watch_req ra = watch_req(1, TABLE_HEALTH_EVENTS), rb = watch_req(2, TABLE_HEALTH_EVENTS);
	struct watch_req rc;
	struct token acked = { 0, 0, 0 };
	int n = 0;

	(void)state;
	world_new(64, 8);
	produce(2, 0);
	ra.consumer = rb.consumer = "gpu-health";
	rb.standby = true;
	assert_int_equal(hub_watch(hub, a, &ra), 0);
	answer_all();
	assert_int_equal(hub_watch(hub, b, &rb), 0);
	assert_int_equal(b->nf, 1);
	assert_int_equal(b->f[0].kind, F_STANDBY);
	assert_int_equal(owed(-1), 0);
	produce(8, 0);
	run_for(0.3);
	assert_int_equal(b->nf, 1);   /* nothing while standing by */
	assert_int_not_equal(a->f[a->nf - 1].kind, F_ERROR);
	for (size_t i = 0; i < a->nf; i++)
		if (a->f[i].kind == F_EVENT && ++n == 4)
			acked = a->f[i].pos;
	assert_int_equal(hub_ack(hub, a, 1, &acked), 0);
	/* A standby of no holder would start at once; a second standby waits too. */
	rc = watch_req(3, TABLE_HEALTH_EVENTS);
	rc.consumer = "gpu-health";
	rc.standby = true;
	assert_int_equal(hub_watch(hub, c, &rc), 0);
	assert_int_equal(c->f[0].kind, F_STANDBY);

	a->closed = true;
	hub_client_gone(hub, a);
	assert_int_equal(owed(R_LOAD), 1);   /* b, the older standby */
	answer_all();
	assert_int_equal(b->f[1].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&b->f[1].pos, &acked), 0);
	assert_stream(b, 2, TABLE_HEALTH_EVENTS, false, &acked);
	assert_int_equal(c->nf, 1);
	/* A plain watch still takes the name over; the standby stays. */
	rc = watch_req(4, TABLE_HEALTH_EVENTS);
	rc.consumer = "gpu-health";
	assert_int_equal(hub_watch(hub, d, &rc), 0);
	assert_int_equal(b->f[b->nf - 1].code, ERR_INTERRUPTED);
	assert_int_equal(c->nf, 1);
	assert_int_equal(hub_subscription_count(hub), 2);
	world_free();
	client_drop(a);
	client_drop(b);
	client_drop(c);
	client_drop(d);
}

/* Many subscriptions: every ack finds its own, whichever client and sid. */
static void test_ack_many(void **state)
{
	enum { NC = 40, NS = 50 };
	Client *cs[NC];
	struct token start;

	(void)state;
	world_new(64, 8);
	produce(1, 0);
	for (int i = 0; i < NC; i++) {
		cs[i] = client_make((uint64_t)i + 1, 100);
		for (int j = 0; j < NS; j++) {
			struct watch_req r = watch_req(j * 7 + 1, TABLE_HEALTH_EVENTS);
			assert_int_equal(hub_watch(hub, cs[i], &r), 0);
		}
	}
	start = cs[0]->f[0].pos;
	for (int i = 0; i < NC; i++)
		for (int j = 0; j < NS; j++)
			assert_int_equal(hub_ack(hub, cs[i], j * 7 + 1, &start), 0);
	assert_int_equal(hub_ack(hub, cs[0], 2, &start), -ENOENT);
	for (int i = 0; i < NC; i += 2)
		assert_int_equal(hub_unwatch(hub, cs[i], 1), 0);
	assert_int_equal(hub_ack(hub, cs[0], 1, &start), -ENOENT);
	assert_int_equal(hub_ack(hub, cs[1], 1, &start), 0);
	world_free();
	for (int i = 0; i < NC; i++)
		client_drop(cs[i]);
}

/* The source lost its live position: every subscription, whatever its
 * state, ends with 286 (no standby promoted), nothing more reaches it,
 * watches wait for the new head, and the stream starts over there. */
static void test_lose_head(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100), *c = client_make(3, 100);
	Client *d = client_make(4, 100), *e = client_make(5, 100);
	struct watch_req ra = watch_req(1, TABLE_HEALTH_EVENTS), rb = watch_req(1, TABLE_HEALTH_EVENTS);
	struct watch_req rc = watch_req(1, TABLE_HEALTH_EVENTS), rd, re = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token first, head;
	size_t dn, nold;

	(void)state;
	world_new(8, 4);
	produce(4, 0);
	first = (struct token){ GEN, 1, TOKEN_ID_END };
	rb.consumer = rc.consumer = "x";
	rc.standby = true;
	assert_int_equal(hub_watch(hub, a, &ra), 0);
	assert_int_equal(hub_watch(hub, b, &rb), 0);
	answer_all();
	assert_int_equal(hub_watch(hub, c, &rc), 0);
	/* A newer holder of "x" is ahead of its standby in the hub's list. */
	rb.sid = 2;
	assert_int_equal(hub_watch(hub, b, &rb), 0);
	answer_all();
	assert_int_equal(b->f[b->nf - 2].code, ERR_INTERRUPTED);
	produce(20, 4);                          /* a and b keep up with the ring */
	rd = resume_req(1, TABLE_HEALTH_EVENTS, &first);
	assert_int_equal(hub_watch(hub, d, &rd), 0);
	assert_int_equal(owed(R_PAGE), 1);   /* behind the ring: a page in flight */
	dn = d->nf;

	assert_int_equal(hub_lose_head(hub, "gone"), 4);
	for (Client *k = a; k; k = k == a ? b : k == b ? c : k == c ? d : NULL) {
		assert_int_equal(k->f[k->nf - 1].kind, F_ERROR);
		assert_int_equal(k->f[k->nf - 1].code, ERR_HISTORY_LOST);
	}
	head = (struct token){ GEN, 2, TOKEN_ID_END };
	assert_true(a->f[a->nf - 1].has_pos);
	assert_int_equal(token_cmp(&a->f[a->nf - 1].pos, &head), 0);
	assert_false(c->f[c->nf - 1].has_pos);   /* a standby has no position */
	assert_int_equal(owed(R_LOAD), 0);       /* and none was promoted */
	assert_int_equal(hub_subscription_count(hub), 0);
	assert_int_equal(hub_ring_count(hub), 0);
	answer_all();                            /* d's page comes back: dropped */
	assert_int_equal(d->nf, dn + 1);
	nold = a->nf + b->nf + c->nf + d->nf;

	/* No head: a watch is told to retry. */
	assert_int_equal(hub_watch(hub, e, &re), -EAGAIN);
	assert_int_equal(e->f[0].code, ERR_HOST_UNREACHABLE);
	/* The new head, ticks later: the stream starts there. */
	fk.head_tick += 5;
	head = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	hub_set_head(hub, &head);
	re.sid = 2;
	assert_int_equal(hub_watch(hub, e, &re), 0);
	assert_int_equal(e->f[1].kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&e->f[1].pos, &head), 0);
	produce(6, 0);
	assert_stream(e, 2, TABLE_HEALTH_EVENTS, false, &head);
	run_for(0.05);
	assert_int_equal(a->nf + b->nf + c->nf + d->nf, nold);   /* the ended ones get nothing more */
	world_free();
	client_drop(a);
	client_drop(b);
	client_drop(c);
	client_drop(d);
	client_drop(e);
}

/* Each client's subscriptions are its own list: a drain pumps the drained
 * client's subscriptions only, a watch counts only the client's own, an
 * unwatch of its oldest or newest and its close leave every other client's
 * stream whole. */
static void test_client_lists(void **state)
{
	Client *a = client_make(1, 100 * KIB), *b = client_make(2, 100 * KIB), *c = client_make(3, 100 * KIB);
	struct watch_req req;
	struct token from;
	size_t an, cn;

	(void)state;
	world_new(64, 8);
	fk.one_table = true;
	produce(1, 0);
	from = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	/* Interleaved, so no client's subscriptions sit together in the hub. */
	const struct { Client *c; long long sid; } w[] = { { a, 1 }, { b, 1 }, { a, 2 }, { c, 1 }, { b, 2 }, { a, 3 } };
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		req = watch_req(w[i].sid, TABLE_HEALTH_EVENTS);
		assert_int_equal(hub_watch(hub, w[i].c, &req), 0);
	}
	assert_int_equal(hub_client_subscriptions(hub, a), 3);
	assert_int_equal(hub_client_subscriptions(hub, b), 2);
	assert_int_equal(hub_client_subscriptions(hub, c), 1);
	produce(4, 0);
	/* 256 KiB: each client holds three 100 KiB frames and stops. */
	assert_int_equal(count_frames(a, F_EVENT), 3);
	assert_int_equal(count_frames(b, F_EVENT), 3);
	an = a->nf;
	cn = c->nf;
	for (int i = 0; i < 10; i++)
		drain(b, 0);
	assert_stream(b, 1, TABLE_HEALTH_EVENTS, false, &from);
	assert_stream(b, 2, TABLE_HEALTH_EVENTS, false, &from);
	assert_int_equal(a->nf, an);   /* b's drain pumped nobody else */
	assert_int_equal(c->nf, cn);

	/* a's oldest and newest go; the one between them still gets all. */
	assert_int_equal(hub_unwatch(hub, a, 1), 0);
	assert_int_equal(hub_unwatch(hub, a, 3), 0);
	assert_int_equal(hub_client_subscriptions(hub, a), 1);
	an = count_frames(a, F_EVENT);
	for (int i = 0; i < 10; i++)
		drain(a, 0);
	assert_stream(a, 2, TABLE_HEALTH_EVENTS, false, &from);
	assert_int_equal(c->nf, cn);

	/* c closes: only its subscription ends; a and b go on. */
	c->closed = true;
	hub_client_gone(hub, c);
	assert_int_equal(hub_client_subscriptions(hub, c), 0);
	assert_int_equal(hub_subscription_count(hub), 3);
	produce(2, 0);
	for (int i = 0; i < 10; i++) {
		drain(a, 0);
		drain(b, 0);
	}
	assert_stream(a, 2, TABLE_HEALTH_EVENTS, false, &from);
	assert_stream(b, 1, TABLE_HEALTH_EVENTS, false, &from);
	assert_stream(b, 2, TABLE_HEALTH_EVENTS, false, &from);
	assert_true(count_frames(a, F_EVENT) > an);
	hub_client_gone(hub, a);
	hub_client_gone(hub, b);
	assert_int_equal(hub_subscription_count(hub), 0);
	world_free();
	client_drop(a);
	client_drop(b);
	client_drop(c);
}

/* The events of table health_events after from that sid must have got:
 * those whose id wants(id, arg), in order, once each. */
static void assert_ids(const Client *c, long long sid, const struct token *from, bool (*want)(uint64_t id, int arg),
		       int arg)
{
	size_t k = 0, n = 0;

	for (size_t i = 0; i < fk.nev; i++) {
		const struct event *ev = fk.ev[i];
		if (token_cmp(&ev->pos, from) <= 0 || !want(ev->pos.id, arg))
			continue;
		while (k < c->nf && (c->f[k].sid != sid || c->f[k].kind != F_EVENT))
			k++;
		if (k == c->nf || token_cmp(&c->f[k].pos, &ev->pos) != 0)
			fail_msg("sid %lld: event id=%llu not sent in its place", sid, (unsigned long long)ev->pos.id);
		k++;
		n++;
	}
	for (; k < c->nf; k++)
		if (c->f[k].sid == sid && c->f[k].kind == F_EVENT)
			fail_msg("sid %lld: extra event id=%llu", sid, (unsigned long long)c->f[k].pos.id);
	assert_true(n > 0);   /* the filter let something through */
}

static bool id_kind_m(uint64_t id, int arg)
{
	(void)arg;
	return kind_match(id);
}

static bool id_kind_x(uint64_t id, int arg)
{
	(void)arg;
	return !kind_match(id);
}

static bool id_tag(uint64_t id, int arg)
{
	return id % 3 == (uint64_t)arg;
}

/* c watches sid with {path: value}, from the head or (from) a position. */
static void watch_eq(Client *c, long long sid, const char *path, const char *value, const struct token *from)
{
	struct watch_req req = from ? resume_req(sid, TABLE_HEALTH_EVENTS, from) : watch_req(sid, TABLE_HEALTH_EVENTS);

	req.filter = eq_filter(path, value);
	assert_int_equal(hub_watch(hub, c, &req), 0);
	answer_all();
}

/* A world of one table with one tick written; returns the head. */
static struct token guard_world(int ring_events, size_t page_rows)
{
	world_new(ring_events, page_rows);
	fk.one_table = true;
	produce(1, 0);
	return (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
}

static void drain_all(Client *const *cs, size_t n, int rounds)
{
	for (int t = 0; t < rounds; t++)
		for (size_t i = 0; i < n; i++)
			drain(cs[i], 0);
}

/* Filters with guards (hubguard.c) give the same events as run in full:
 * two values of one field share a slot; more distinct fields than slots
 * run in full; a slot freed and taken by another field does not answer
 * from what it read for the old one (a resume re-reads ring events the old
 * field was read for). */
static void test_guards(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100), *c = client_make(3, 100), *d = client_make(4, 100);
	Client *const all[] = { a, b, c, d };
	/* Five more spellings of one field (keys match case-insensitively):
	 * more distinct paths than there are slots. */
	static const char *const kinds[] = { "fullDocument.KIND", "fullDocument.Kind", "fullDocument.kInd",
					     "fullDocument.kiNd", "fullDocument.kinD" };
	struct token from;

	(void)state;
	from = guard_world(64, 8);
	watch_eq(a, 1, "fullDocument.kind", "m", NULL);
	watch_eq(b, 1, "fullDocument.kind", "x", NULL);
	watch_eq(c, 1, "fullDocument.tag", "t1", NULL);
	for (int k = 0; k < 5; k++)
		watch_eq(d, 10 + k, kinds[k], "m", NULL);
	for (int t = 0; t < 6; t++) {
		produce(5, 2);
		drain_all(all, 4, 1);
	}
	assert_ids(a, 1, &from, id_kind_m, 0);
	assert_ids(b, 1, &from, id_kind_x, 0);
	assert_ids(c, 1, &from, id_tag, 1);
	for (int k = 0; k < 5; k++)
		assert_ids(d, 10 + k, &from, id_kind_m, 0);

	/* The kind and the KIND slots empty; a new field takes one and reads
	 * the ring's events from the start. */
	assert_int_equal(hub_unwatch(hub, a, 1), 0);
	assert_int_equal(hub_unwatch(hub, b, 1), 0);
	for (int k = 0; k < 5; k++)
		assert_int_equal(hub_unwatch(hub, d, 10 + k), 0);
	watch_eq(a, 2, "fullDocument.TAG", "t2", &from);
	watch_eq(b, 2, "fullDocument.Tag", "t0", &from);
	produce(5, 0);
	drain_all(all, 3, 10);
	assert_ids(a, 2, &from, id_tag, 2);
	assert_ids(b, 2, &from, id_tag, 0);
	assert_ids(c, 1, &from, id_tag, 1);
	world_free();
	for (size_t i = 0; i < 4; i++)
		client_drop(all[i]);
}

/* Periodic bookmarks of n subscriptions in bm_log[from..]: the most sent
 * in one loop turn, and how many flushes they fell on (runs of bookmarks
 * no more than gap apart). */
static void bm_shape(size_t from, double gap, unsigned *max_turn, int *flushes)
{
	*max_turn = 0;
	*flushes = 0;
	for (size_t i = from, run = 0; i < bm_n; i++) {
		run = i > from && bm_log[i].iter == bm_log[i - 1].iter ? run + 1 : 1;
		if (run > *max_turn)
			*max_turn = (unsigned)run;
		if (i == from || bm_log[i].t - bm_log[i - 1].t > gap)
			(*flushes)++;
	}
}

/* Bookmarks go out a slice per loop turn, so live events are read between
 * them (a thousand filtered subscribers due on one flush were a thousand
 * writes in one callback); subscriptions that started together fall due
 * on flushes of their own; a client closed in the middle of a sweep costs
 * the others nothing. */
static void test_bookmark_sweep(void **state)
{
	enum { N = 200, SLICE = 16 /* hubmark.c MARK_SLICE_SENDS */ };
	Client *cs[N];
	size_t from;
	unsigned max_turn;
	int flushes;
	struct token head;

	(void)state;
	world_new(64, 8);
	cv.ack_flush_ms = 100;   /* a flush every 0.1 s, bookmarks every 0.5 s */
	hub_reconfigure(hub);
	fk.one_table = true;
	produce(1, 0);
	for (int i = 0; i < N; i++) {
		cs[i] = client_make((uint64_t)i + 1, 100);
		watch_eq(cs[i], 1, "fullDocument.kind", "none", NULL);
	}
	bm_clients = cs;
	bm_n = 0;
	bm_logging = true;

	/* Events nobody wants, for a second: each subscription is bookmarked
	 * past them, the first time on a flush given by its phase. */
	for (int t = 0; t < 10; t++) {
		produce(2, 0);
		run_for(0.1);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(last_of(cs[i], 1)->kind, F_BOOKMARK);
		assert_true(cs[i]->nf >= 2);
	}
	bm_shape(0, 0.05, &max_turn, &flushes);
	assert_true(max_turn <= SLICE);
	/* Bookmarks on about ten flushes; all at one phase, two. */
	assert_true(flushes >= 5);

	/* Quiet until every one is due, then one more event: all 200 fall due
	 * on one flush and go out in slices.  The bookmark to client 150 closes
	 * clients 149-147, the sweep's next; the rest get theirs in that sweep. */
	run_for(1.2);
	for (int i = 0; i < N; i++)
		assert_int_equal(token_cmp(&last_of(cs[i], 1)->pos, &(struct token){ GEN, fk.head_tick, TOKEN_ID_END }), 0);
	produce(2, 0);
	head = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	from = bm_n;
	bm_kill_at = 150;
	run_for(0.15);
	bm_logging = false;
	assert_int_equal(bm_kill_at, 0);
	bm_shape(from, 0.05, &max_turn, &flushes);
	assert_true(max_turn <= SLICE);
	assert_int_equal(flushes, 1);
	assert_int_equal(bm_n - from, N - 3);
	for (int i = 0; i < N; i++) {
		if (i + 1 >= 147 && i + 1 <= 149) {
			assert_true(cs[i]->closed);
			continue;
		}
		assert_int_equal(last_of(cs[i], 1)->kind, F_BOOKMARK);
		assert_int_equal(token_cmp(&last_of(cs[i], 1)->pos, &head), 0);
	}
	world_free();
	for (int i = 0; i < N; i++)
		client_drop(cs[i]);
	bm_clients = NULL;
}

/* A tick of one health event with document doc; returns its id. */
static uint64_t produce_doc(const char *doc)
{
	uint64_t tick = ++fk.head_tick, id = ++fk.last_id;
	struct event *ev = make_event_doc(tick, id, TABLE_HEALTH_EVENTS, doc);
	struct token head = { GEN, tick, TOKEN_ID_END };

	assert_true(fk.nev < MAX_EVENTS);
	fk.ev[fk.nev++] = ev;
	hub_publish(hub, event_ref(ev));
	hub_set_head(hub, &head);
	return id;
}

static uint64_t park_arr_id, park_none_id, park_solo_id;

/* A tick of n health events published in one move, the first with tag
 * "solo"; returns its id. */
static uint64_t produce_solo(size_t n)
{
	uint64_t tick = ++fk.head_tick, solo = 0;
	struct token head = { GEN, tick, TOKEN_ID_END };

	for (size_t k = 0; k < n; k++) {
		uint64_t id = ++fk.last_id;
		struct event *ev = k ? make_event(tick, id, TABLE_HEALTH_EVENTS, kind_match(id))
				     : make_event_doc(tick, id, TABLE_HEALTH_EVENTS, "{\"kind\":\"m\",\"tag\":\"solo\"}");

		if (k == 0)
			solo = id;
		assert_true(fk.nev < MAX_EVENTS);
		fk.ev[fk.nev++] = ev;
		hub_publish(hub, event_ref(ev));
	}
	hub_set_head(hub, &head);
	return solo;
}

struct info_find {
	const Client *c;
	long long sid;
	struct hub_sub_info si;
	bool found;
};

static void info_find_cb(void *arg, const struct hub_sub_info *si)
{
	struct info_find *f = arg;

	if (si->conn == f->c && si->sid == f->sid) {
		f->si = *si;
		f->found = true;
	}
}

/* id_tag, but the array event has tags 1 and 2, one has none, and the
 * solo one only "solo" (arg 3). */
static bool id_tag_park(uint64_t id, int arg)
{
	if (id == park_arr_id)
		return arg == 1 || arg == 2;
	if (id == park_solo_id)
		return arg == 3;
	return id != park_none_id && id_tag(id, arg);
}

static size_t parked_count(void)
{
	size_t n = 0;

	for (const struct sub *s = hub->parked; s; s = s->pnext)
		n++;
	return n;
}

/* Guarded subscriptions at the head park (hubpark.c) and are woken only by
 * events whose guard value may be theirs: each still gets exactly its
 * events, also from an event whose field is an array (it wakes every
 * parked subscription of the field) and after more events than the ring
 * holds arrived in one move (they catch up from the source); a parked
 * subscription's bookmarks and lag are at the head; one that leaves while
 * parked leaves its bucket to the others. */
static void test_parked(void **state)
{
	Client *a = client_make(1, 100), *b = client_make(2, 100), *c = client_make(3, 100), *d = client_make(4, 100);
	Client *const all[] = { a, b, c, d };
	struct watch_req rd = watch_req(1, TABLE_HEALTH_EVENTS);
	struct token from, head;
	struct info_find fi = { .c = b, .sid = 1 };

	(void)state;
	from = guard_world(16, 4);
	watch_eq(a, 1, "fullDocument.tag", "t0", NULL);
	watch_eq(b, 1, "fullDocument.tag", "t1", NULL);
	watch_eq(c, 1, "fullDocument.tag", "t2", NULL);
	watch_eq(c, 2, "fullDocument.tag", "t2", NULL);   /* shares c's bucket */
	watch_eq(a, 2, "fullDocument.tag", "solo", NULL);
	assert_int_equal(hub_watch(hub, d, &rd), 0);
	answer_all();
	for (int t = 0; t < 4; t++) {
		produce(5, 2);
		drain_all(all, 4, 1);
	}
	assert_int_equal(parked_count(), 5);   /* all but d, which has no guard */
	park_arr_id = produce_doc("{\"kind\":\"m\",\"tag\":[\"t1\",\"t2\"]}");
	park_none_id = produce_doc("{\"kind\":\"m\"}");
	produce(3, 0);
	drain_all(all, 4, 1);
	/* Forty events in one move through a ring of sixteen, the first the
	 * only one a's second subscription wants: gone from the ring before
	 * the move is looked at. */
	park_solo_id = produce_solo(40);
	for (int t = 0; t < 20; t++) {
		answer_all();
		drain_all(all, 4, 1);
	}
	produce(2, 0);
	drain_all(all, 4, 1);
	assert_ids(a, 1, &from, id_tag_park, 0);
	assert_ids(a, 2, &from, id_tag_park, 3);
	assert_ids(b, 1, &from, id_tag_park, 1);
	assert_ids(c, 1, &from, id_tag_park, 2);
	assert_ids(c, 2, &from, id_tag_park, 2);
	assert_stream(d, 1, TABLE_HEALTH_EVENTS, false, &from);

	/* Events only for t0: b's and c's bookmarks and lag are at the head. */
	produce_doc("{\"kind\":\"m\",\"tag\":\"t0\"}");
	head = (struct token){ GEN, fk.head_tick, TOKEN_ID_END };
	run_for(0.2);
	assert_int_equal(last_of(b, 1)->kind, F_BOOKMARK);
	assert_int_equal(token_cmp(&last_of(b, 1)->pos, &head), 0);
	assert_int_equal(token_cmp(&last_of(c, 2)->pos, &head), 0);
	hub_foreach(hub, info_find_cb, &fi);
	assert_true(fi.found);
	assert_int_equal(token_cmp(&fi.si.acked, &head), 0);
	assert_int_equal(fi.si.lag_events, 0);

	/* c's first subscription leaves its shared bucket; the second still
	 * gets its events, the first none. */
	assert_int_equal(hub_unwatch(hub, c, 1), 0);
	produce_doc("{\"kind\":\"m\",\"tag\":\"t2\"}");
	drain_all(all, 4, 1);
	assert_int_equal(last_of(c, 2)->kind, F_EVENT);
	assert_int_equal(last_of(c, 2)->pos.id, fk.last_id);
	assert_true(last_of(c, 1)->kind != F_EVENT || last_of(c, 1)->pos.id != fk.last_id);
	world_free();
	for (size_t i = 0; i < 4; i++)
		client_drop(all[i]);
}

/* A flush writes every consumer that moved in one call; one that did not
 * move is not written; a subscription leaving is written at once. */
static void test_save_batch(void **state)
{
	enum { N = 5 };
	Client *cs[N];
	struct token last;

	(void)state;
	world_new(64, 8);
	fk.one_table = true;
	produce(1, 0);
	for (int i = 0; i < N; i++) {
		struct watch_req r = watch_req(1, TABLE_HEALTH_EVENTS);
		char name[16];

		snprintf(name, sizeof(name), "c%d", i);
		r.consumer = name;
		cs[i] = client_make((uint64_t)i + 1, 100);
		assert_int_equal(hub_watch(hub, cs[i], &r), 0);
		answer_all();   /* the stored position (none), the first write */
	}
	assert_int_equal(fk.batches, 0);
	produce(3, 0);
	last = (struct token){ GEN, fk.head_tick, fk.last_id };
	for (int i = 0; i < N; i++)
		assert_int_equal(hub_ack(hub, cs[i], 1, &last), 0);
	run_for(0.03);   /* ack_flush_ms = 10 */
	assert_int_equal(owed(R_SAVE), 1);
	assert_int_equal(fk.batches, 1);
	assert_int_equal(fk.batched, N);
	answer_all();
	assert_int_equal(token_cmp(&fk.stored, &last), 0);
	run_for(0.03);
	assert_int_equal(owed(R_SAVE), 0);   /* nothing moved since */
	assert_int_equal(fk.batches, 1);
	hub_client_gone(hub, cs[0]);
	world_free();
	for (int i = 0; i < N; i++)
		client_drop(cs[i]);
}

/* Shutdown's last bookmark closes a client (and, with bm_kill_at, the
 * three before it, one of them a durable consumer with an ack not written):
 * the walk goes on past the dead, every live subscription gets one last
 * bookmark, and the shutdown waits for the dead consumer's write too. */
static int shutdown_calls;
static void shutdown_done(void *arg)
{
	(void)arg;
	shutdown_calls++;
}

static void test_shutdown_drop(void **state)
{
	enum { N = 6 };
	Client *cs[N];
	struct token last;
	size_t before[N];

	(void)state;
	world_new(64, 8);
	cv.ack_flush_ms = 1000000;   /* the ack is written by the shutdown only */
	hub_reconfigure(hub);
	fk.one_table = true;
	produce(1, 0);
	for (int i = 0; i < N; i++) {
		struct watch_req r = watch_req(1, TABLE_HEALTH_EVENTS);

		cs[i] = client_make((uint64_t)i + 1, 100);
		if (i == 1)
			r.consumer = "held";
		assert_int_equal(hub_watch(hub, cs[i], &r), 0);
		answer_all();
	}
	produce(2, 0);
	last = (struct token){ GEN, fk.head_tick, fk.last_id };
	assert_int_equal(hub_ack(hub, cs[1], 1, &last), 0);
	for (int i = 0; i < N; i++)
		before[i] = count_frames(cs[i], F_BOOKMARK);
	/* Newest first: client 5's bookmark closes clients 4, 3 and 2 (the
	 * consumer); client 6 came before and 1 comes after the dead. */
	bm_clients = cs;
	bm_logging = true;
	bm_n = 0;
	bm_kill_at = 5;
	shutdown_calls = 0;
	hub_shutdown(hub, shutdown_done, NULL);
	bm_logging = false;
	assert_int_equal(bm_kill_at, 0);
	for (int i = 0; i < N; i++)
		if (!cs[i]->closed)
			assert_int_equal(count_frames(cs[i], F_BOOKMARK), before[i] + 1);
	assert_true(cs[1]->closed && !cs[0]->closed && !cs[5]->closed);
	assert_int_equal(shutdown_calls, 0);   /* the consumer's write is owed */
	assert_int_equal(owed(R_SAVE), 1);
	answer_all();
	assert_int_equal(shutdown_calls, 1);
	assert_int_equal(token_cmp(&fk.stored, &last), 0);
	world_free();
	for (int i = 0; i < N; i++)
		client_drop(cs[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catchup_joins_ring),
		cmocka_unit_test(test_catchup_publish_during_page),
		cmocka_unit_test(test_catchup_meets_ring_edge),
		cmocka_unit_test(test_catchup_random_interleaving),
		cmocka_unit_test(test_catchup_source_down),
		cmocka_unit_test(test_filter_bookmarks),
		cmocka_unit_test(test_pump_high_water),
		cmocka_unit_test(test_catchup_pacing),
		cmocka_unit_test(test_drop_during_pump),
		cmocka_unit_test(test_takeover),
		cmocka_unit_test(test_takeover_stored_ahead),
		cmocka_unit_test(test_takeover_dead_saving),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_resume_beyond_head),
		cmocka_unit_test(test_ack_only_sent),
		cmocka_unit_test(test_standby),
		cmocka_unit_test(test_ack_many),
		cmocka_unit_test(test_lose_head),
		cmocka_unit_test(test_client_lists),
		cmocka_unit_test(test_guards),
		cmocka_unit_test(test_save_batch),
		cmocka_unit_test(test_shutdown_drop),
		cmocka_unit_test(test_bookmark_sweep),
		cmocka_unit_test(test_parked),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}

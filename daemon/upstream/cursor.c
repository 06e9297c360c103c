/*
 * cursor.c - catch-up reads through upstream subscriptions (cursor.h).
 *
 * A cursor buffers what its subscription receives (events, and bookmarks
 * as progress) and answers the hub's read with what it has, at most
 * batch_rows events, from a prepare watcher: never inside the hub's call.
 * It stops reading from the upstream while it holds four pages, so a slow
 * local subscriber slows its cursor, not the node.  Errors of the upstream
 * subscription pass through with their codes: HistoryLost stays
 * HistoryLost, anything transient becomes HostUnreachable, after which the
 * hub asks again on the next head move.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "errors.h"
#include "log.h"
#include "upframe.h"
#include "wire.h"

#define MAX_CURSORS 32
#define CURSOR_IDLE 5.0

struct cursor {
	struct cursor *next;
	Cursors *cs;
	UpConn *conn;
	enum event_table table;
	struct token pos;          /* what the hub has been given */
	struct token progress;     /* what the subscription has passed */
	struct event **q;
	size_t qn, qcap;
	source_page_cb cb;         /* a read waiting, or NULL */
	void *arg;
	int code;                  /* the subscription failed: its code */
	char msg[352];
	bool dead;                 /* connection gone: answer, then free */
	ev_tstamp used;
};

struct cursors {
	struct cursor_env env;
	struct cursor *list;
	size_t n;
	ev_prepare prep;
	ev_timer sweep;
	bool answering;            /* prep_cb walks the list: do not free */
};

static void cursor_free(struct cursor *c)
{
	for (size_t i = 0; i < c->qn; i++)
		event_unref(c->q[i]);
	free(c->q);
	upconn_close(c->conn);
	free(c);
}

static void unlink_cursor(Cursors *cs, struct cursor *c)
{
	for (struct cursor **pp = &cs->list; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			cs->n--;
			return;
		}
}

/*
 * Makes room for a new cursor.  The hub asks for its next page from inside
 * the callback prep_cb runs, so the cursor evicted may be the one answered
 * or the next on prep_cb's walk: then it only dies here (connection closed,
 * events dropped) and prep_cb frees it once the walk is past it.
 */
static void evict(Cursors *cs, struct cursor *c)
{
	if (!cs->answering) {
		unlink_cursor(cs, c);
		cursor_free(c);
		return;
	}
	for (size_t i = 0; i < c->qn; i++)
		event_unref(c->q[i]);
	c->qn = 0;
	upconn_close(c->conn);
	c->conn = NULL;
	c->dead = true;
}

static size_t page_limit(const Cursors *cs)
{
	return cs->env.cv->batch_rows > 0 ? (size_t)cs->env.cv->batch_rows : 1;
}

/* Answers c's waiting read if it can be; returns true when it did. */
static bool answer(Cursors *cs, struct cursor *c)
{
	source_page_cb cb = c->cb;
	void *arg = c->arg;
	size_t n = c->qn, i;
	struct token next;

	if (!cb)
		return false;
	if (c->qn == 0 && token_cmp(&c->progress, &c->pos) <= 0 && !c->code && !c->dead)
		return false;
	c->cb = NULL;
	c->used = ev_now(cs->env.loop);
	if (c->qn == 0 && (c->code || c->dead)) {
		cb(arg, NULL, 0, &c->pos, c->code ? c->code : ERR_HOST_UNREACHABLE,
		   c->code ? c->msg : "upstream connection lost");
		return true;
	}
	if (n > page_limit(cs))
		n = page_limit(cs);
	/* progress is at or after the last event queued. */
	next = n == c->qn ? c->progress : c->q[n - 1]->pos;
	/* The events go to the hub (references and all); the rest moves up. */
	{
		struct event **evs = n ? malloc(n * sizeof(*evs)) : NULL;
		if (n && !evs) {
			c->cb = cb;
			c->arg = arg;
			return false;
		}
		c->pos = next;
		for (i = 0; i < n; i++)
			evs[i] = c->q[i];
		if (c->qn > n)   /* c->q is NULL before the first event */
			memmove(c->q, c->q + n, (c->qn - n) * sizeof(*c->q));
		c->qn -= n;
		if (c->conn && c->qn < 4 * page_limit(cs))
			upconn_pause(c->conn, false);
		cb(arg, evs, n, &next, 0, NULL);
		free(evs);
	}
	return true;
}

static void prep_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	Cursors *cs = w->data;
	struct cursor *c, *next;

	(void)loop;
	(void)revents;
	cs->answering = true;
	for (c = cs->list; c; c = c->next)
		answer(cs, c);
	cs->answering = false;
	for (c = cs->list; c; c = next) {
		next = c->next;
		if ((c->dead || c->code) && !c->cb && c->qn == 0) {
			unlink_cursor(cs, c);
			cursor_free(c);
		}
	}
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Cursors *cs = w->data;
	struct cursor *c, *next;

	(void)revents;
	for (c = cs->list; c; c = next) {
		next = c->next;
		if (!c->cb && ev_now(loop) - c->used > CURSOR_IDLE) {
			unlink_cursor(cs, c);
			cursor_free(c);
		}
	}
}

static void on_up(void *arg, UpConn *u, const char *generation)
{
	(void)arg;
	(void)u;
	(void)generation;
}

static int push(struct cursor *c, struct event *ev)
{
	if (c->qn == c->qcap) {
		size_t cap = c->qcap ? c->qcap * 2 : 256;
		struct event **q = realloc(c->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		c->q = q;
		c->qcap = cap;
	}
	c->q[c->qn++] = ev;
	return 0;
}

static void on_frame(void *arg, UpConn *u, const char *line, size_t len)
{
	struct cursor *c = arg;
	struct upframe f;
	char err[200];

	if (upframe_parse(line, len, &f, err, sizeof(err)) < 0) {
		log_warning("upstream cursor: bad frame from %s: %s", upconn_addr(u), err);
		snprintf(c->msg, sizeof(c->msg), "bad frame from the upstream");
		c->code = ERR_HOST_UNREACHABLE;
		upconn_close(u);
		c->conn = NULL;
		return;
	}
	if (f.type == UPF_EVENT) {
		if (token_cmp(&f.tok, &c->progress) > 0 && push(c, f.ev) == 0) {
			c->progress = f.tok;
		} else if (token_cmp(&f.tok, &c->progress) > 0) {
			/* Out of memory: this cursor cannot go on without a gap. */
			event_unref(f.ev);
			c->code = ERR_HOST_UNREACHABLE;
			snprintf(c->msg, sizeof(c->msg), "out of memory");
			upconn_close(u);
			c->conn = NULL;
			return;
		} else {
			event_unref(f.ev);
		}
		if (c->qn >= 4 * page_limit(c->cs))
			upconn_pause(u, true);
	} else if (f.type == UPF_BOOKMARK) {
		if (token_cmp(&f.tok, &c->progress) > 0)
			c->progress = f.tok;
	} else if (f.type == UPF_ERROR) {
		c->code = f.code == ERR_HISTORY_LOST || f.code == ERR_CHANGE_STREAM_FATAL ? f.code : ERR_HOST_UNREACHABLE;
		snprintf(c->msg, sizeof(c->msg), "upstream: %s", f.msg);
		upconn_close(u);
		c->conn = NULL;
	}
}

static void on_down(void *arg, UpConn *u, const char *why)
{
	struct cursor *c = arg;

	log_info("upstream cursor closed address=%s reason=%s", upconn_addr(u), LOGQ(why));
	c->conn = NULL;
	c->dead = true;
}

static const struct upconn_cbs cursor_cbs = { on_up, on_frame, on_down };

static struct cursor *open_cursor(Cursors *cs, const char *addr, const struct token *pos, enum event_table table)
{
	struct cursor *c = calloc(1, sizeof(*c));
	char hex[TOKEN_HEX_LEN + 1], *frame = NULL, err[128];
	struct upconn_opts o = {
		.addr = addr, .tls = cs->env.tls, .token = cs->env.token, .client = cs->env.client,
		.timeout = cs->env.timeout,
	};
	struct wire_watch w = {
		.sid = 1, .table = table == TABLE_HEALTH_EVENTS ? "health_events"
				 : table == TABLE_MAINTENANCE_EVENTS ? "maintenance_events" : "*",
		.resume_after = hex, .before = "whenAvailable",
	};

	if (!c)
		return NULL;
	token_format(pos, hex);
	c->cs = cs;
	c->table = table;
	c->pos = c->progress = *pos;
	c->used = ev_now(cs->env.loop);
	if (wire_watch(&w, &frame, err, sizeof(err)) < 0 || !(c->conn = upconn_open(cs->env.loop, &o, &cursor_cbs, c)) ||
	    upconn_send(c->conn, frame, strlen(frame)) < 0) {
		free(frame);
		cursor_free(c);
		return NULL;
	}
	free(frame);
	c->next = cs->list;
	cs->list = c;
	cs->n++;
	log_debug("upstream cursor opened address=%s after=%s", addr, hex);
	return c;
}

int cursors_read(Cursors *cs, const char *addr, const struct token *pos, enum event_table table,
		 source_page_cb cb, void *arg)
{
	struct cursor *c, *idle = NULL;

	for (c = cs->list; c; c = c->next) {
		if (!c->cb && !c->dead && !c->code && c->table == table && c->pos.gen == pos->gen &&
		    token_cmp(&c->pos, pos) == 0)
			break;
		if (!c->cb && (!idle || c->used < idle->used))
			idle = c;
	}
	if (!c) {
		if (cs->n >= MAX_CURSORS) {
			if (!idle)
				return -ENOTCONN;
			evict(cs, idle);
		}
		if (!(c = open_cursor(cs, addr, pos, table)))
			return -ENOTCONN;
	}
	c->cb = cb;
	c->arg = arg;
	return 0;
}

Cursors *cursors_new(const struct cursor_env *env)
{
	Cursors *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return NULL;
	cs->env = *env;
	ev_prepare_init(&cs->prep, prep_cb);
	cs->prep.data = cs;
	ev_prepare_start(env->loop, &cs->prep);
	ev_timer_init(&cs->sweep, sweep_cb, 1.0, 1.0);
	cs->sweep.data = cs;
	ev_timer_start(env->loop, &cs->sweep);
	return cs;
}

void cursors_reset(Cursors *cs)
{
	struct cursor *c, *next;

	for (c = cs->list; c; c = next) {
		next = c->next;
		if (c->cb) {
			source_page_cb cb = c->cb;
			c->cb = NULL;
			cb(c->arg, NULL, 0, &c->pos, ERR_HOST_UNREACHABLE, "upstream changed");
		}
		unlink_cursor(cs, c);
		cursor_free(c);
	}
}

void cursors_free(Cursors *cs)
{
	if (!cs)
		return;
	cursors_reset(cs);
	ev_prepare_stop(cs->env.loop, &cs->prep);
	ev_timer_stop(cs->env.loop, &cs->sweep);
	free(cs);
}

size_t cursors_count(const Cursors *cs)
{
	return cs->n;
}

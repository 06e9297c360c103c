/*
 * outq.c - a connection's output queue (see outq.h).
 *
 * A chunk is one event frame, whose envelope head is its own data and whose
 * event bytes are the shared event's; or copied frames, several small ones
 * (without a position) sharing one chunk of at least CHUNK_MIN bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "outq.h"

/* Small frames without a position share chunks of at least this size. */
#define CHUNK_MIN 512

/* One queued frame, or several small ones sharing data. */
struct chunk {
	struct chunk *next;
	struct event *ev;        /* shared event (a reference), or NULL: data is the frames */
	bool before;             /* ev: the fullDocumentBeforeChange variant */
	bool has_pos;            /* an event or bookmark: sid has reached pos */
	long long sid;
	struct token pos;
	uint64_t serial;         /* order of queueing, for outq_sid_reset */
	size_t len;              /* bytes of the whole chunk */
	size_t off;              /* bytes already written */
	size_t head;             /* ev: the envelope head in data */
	size_t cap;              /* room in data */
	char data[];
};

/* The last position of one sid that left. */
struct sidpos {
	long long sid;
	uint64_t seq;            /* when it was last moved, to evict the stalest */
	uint64_t from;           /* chunks queued before this serial are another subscription's */
	bool known;              /* pos is set */
	struct token pos;
};

struct outq {
	struct chunk *head, *tail;
	size_t bytes;            /* not yet consumed */
	struct sidpos *left;     /* per sid, what left; allocated on first use */
	size_t nleft, maxleft;
	uint64_t left_seq;
	uint64_t serial;         /* of the last chunk queued */
	uint64_t floor;          /* the highest 'from' an evicted entry had */
};

Outq *outq_new(size_t max_sids)
{
	Outq *q = calloc(1, sizeof(*q));

	if (q)
		q->maxleft = max_sids ? max_sids : 1;   /* note_left always writes one slot */
	return q;
}

static void chunk_free(struct chunk *ch)
{
	if (ch->ev)
		event_unref(ch->ev);
	free(ch);
}

void outq_clear(Outq *q)
{
	struct chunk *ch, *next;

	for (ch = q->head; ch; ch = next) {
		next = ch->next;
		chunk_free(ch);
	}
	q->head = q->tail = NULL;
	q->bytes = 0;
}

void outq_free(Outq *q)
{
	if (!q)
		return;
	outq_clear(q);
	free(q->left);
	free(q);
}

size_t outq_bytes(const Outq *q)
{
	return q->bytes;
}

static void append(Outq *q, struct chunk *ch, size_t len)
{
	ch->serial = ++q->serial;
	if (q->tail)
		q->tail->next = ch;
	else
		q->head = ch;
	q->tail = ch;
	q->bytes += len;
}

int outq_push(Outq *q, const char *data, size_t len, bool has_pos, long long sid, const struct token *pos)
{
	struct chunk *t = q->tail, *ch;
	size_t cap;

	if (!has_pos && t && !t->ev && !t->has_pos && t->cap - t->len >= len) {
		memcpy(t->data + t->len, data, len);
		t->len += len;
		q->bytes += len;
		return 0;
	}
	cap = has_pos || len >= CHUNK_MIN ? len : CHUNK_MIN;
	ch = malloc(sizeof(*ch) + cap);
	if (!ch)
		return -ENOMEM;
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->data, data, len);
	ch->len = len;
	ch->cap = cap;
	ch->has_pos = has_pos;
	ch->sid = sid;
	if (pos)
		ch->pos = *pos;
	append(q, ch, len);
	return 0;
}

/* Only the envelope is per subscription; the event bytes are shared. */
static int envelope(char *buf, size_t len, long long sid)
{
	return snprintf(buf, len, "{\"op\":\"event\",\"sid\":%lld,\"event\":", sid);
}

size_t outq_event_len(long long sid, const struct event *ev, bool before)
{
	return (size_t)envelope(NULL, 0, sid) + (before && ev->json_before ? ev->len_before : ev->len) + 2;
}

int outq_push_event(Outq *q, long long sid, struct event *ev, bool before)
{
	char head[64];
	struct chunk *ch;
	int n = envelope(head, sizeof(head), sid);

	before = before && ev->json_before;
	ch = malloc(sizeof(*ch) + (size_t)n);
	if (!ch)
		return -ENOMEM;
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->data, head, (size_t)n);
	ch->ev = event_ref(ev);
	ch->before = before;
	ch->has_pos = true;
	ch->sid = sid;
	ch->pos = ev->pos;
	ch->len = (size_t)n + (before ? ev->len_before : ev->len) + 2;
	ch->head = (size_t)n;
	ch->cap = (size_t)n;
	append(q, ch, ch->len);
	return 0;
}

/* The unwritten bytes of ch, as at most three pieces. */
static int chunk_pieces(const struct chunk *ch, struct iovec *iov)
{
	struct iovec all[3];
	size_t skip = ch->off;
	int n = 1, k = 0;

	if (ch->ev) {
		all[0].iov_base = (void *)ch->data;
		all[0].iov_len = ch->head;
		all[1].iov_base = ch->before ? ch->ev->json_before : ch->ev->json;
		all[1].iov_len = ch->before ? ch->ev->len_before : ch->ev->len;
		all[2].iov_base = (void *)"}\n";
		all[2].iov_len = 2;
		n = 3;
	} else {
		all[0].iov_base = (void *)ch->data;
		all[0].iov_len = ch->len;
	}
	for (int i = 0; i < n; i++) {
		if (skip >= all[i].iov_len) {
			skip -= all[i].iov_len;
			continue;
		}
		iov[k].iov_base = (char *)all[i].iov_base + skip;
		iov[k].iov_len = all[i].iov_len - skip;
		skip = 0;
		k++;
	}
	return k;
}

int outq_iov(const Outq *q, struct iovec *iov, int max, size_t max_bytes)
{
	size_t bytes = 0;
	int n = 0;

	for (const struct chunk *ch = q->head; ch && n + 3 <= max && bytes < max_bytes; ch = ch->next) {
		n += chunk_pieces(ch, iov + n);
		bytes += ch->len - ch->off;
	}
	return n;
}

/* sid's entry, taking the slot moved longest ago when sid has none; NULL
 * when out of memory. */
static struct sidpos *sid_entry(Outq *q, long long sid)
{
	size_t i, old = 0;

	for (i = 0; i < q->nleft; i++) {
		if (q->left[i].sid == sid)
			return &q->left[i];
		if (q->left[i].seq < q->left[old].seq)
			old = i;
	}
	if (!q->left && !(q->left = calloc(q->maxleft, sizeof(*q->left))))
		return NULL;
	if (q->nleft < q->maxleft) {
		i = q->nleft++;
	} else {
		/* An evicted reset must still hide the chunks queued before it:
		 * a new entry ignores all of those (at worst a token less in an
		 * error frame). */
		i = old;
		if (q->left[i].from > q->floor)
			q->floor = q->left[i].from;
	}
	memset(&q->left[i], 0, sizeof(q->left[i]));
	q->left[i].sid = sid;
	q->left[i].from = q->floor;
	return &q->left[i];
}

static void note_left(Outq *q, const struct chunk *ch)
{
	struct sidpos *e = sid_entry(q, ch->sid);

	if (!e || ch->serial < e->from)
		return;
	e->pos = ch->pos;
	e->known = true;
	e->seq = ++q->left_seq;
}

void outq_sid_reset(Outq *q, long long sid)
{
	struct sidpos *e = sid_entry(q, sid);

	if (!e)
		return;
	e->known = false;
	e->from = q->serial + 1;
	e->seq = ++q->left_seq;
}

bool outq_delivered(const Outq *q, long long sid, struct token *ret)
{
	for (size_t i = 0; i < q->nleft; i++) {
		if (q->left[i].sid == sid && q->left[i].known) {
			*ret = q->left[i].pos;
			return true;
		}
	}
	return false;
}

static void pop_chunk(Outq *q)
{
	struct chunk *ch = q->head;

	q->head = ch->next;
	if (!q->head)
		q->tail = NULL;
	if (ch->has_pos)
		note_left(q, ch);
	chunk_free(ch);
}

void outq_consume(Outq *q, size_t n)
{
	q->bytes -= n;
	while (n > 0) {
		struct chunk *ch = q->head;
		size_t left = ch->len - ch->off;

		if (n < left) {
			ch->off += n;
			return;
		}
		n -= left;
		pop_chunk(q);
	}
}

void outq_drop_unsent(Outq *q, size_t promised)
{
	struct chunk **pp = &q->head, *ch;
	size_t at = 0;

	while ((ch = *pp)) {
		size_t left = ch->len - ch->off;

		if (ch->off > 0 || at < promised) {
			if (ch->has_pos)
				note_left(q, ch);
			at += left;
			q->tail = ch;
			pp = &ch->next;
			continue;
		}
		*pp = ch->next;
		q->bytes -= left;
		chunk_free(ch);
	}
	if (!q->head)
		q->tail = NULL;
}

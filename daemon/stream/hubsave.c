/*
 * hubsave.c - durable positions: what each consumer has finished
 * (hub_durable_pos) goes to the source's resume_tokens.
 *
 * The flush (hub_save_all, every ack_flush_ms) writes every consumer that
 * moved since the last one in one call when the source can store several
 * at once: one statement, one commit and WAL flush, however many
 * consumers acknowledge.  Before, each consumer was written on its own
 * and again as soon as its previous write returned: a hundred consumers
 * acknowledging every event were some 700 synchronous commits a second,
 * queued on the connection the relay also reads catch-up pages and long
 * batches on.  A subscription that leaves, and the shutdown, are written
 * at once (hub_save), and again when acknowledged during that write, since
 * no later flush will.  hub.c calls this.
 */
#include <stdlib.h>

#include "hubsub.h"
#include "source.h"

struct save_batch {
	size_t n;
	struct sub *s[];
};

/* Whether s has a position to write, and which. */
static bool save_due(const struct sub *s, struct token *pos)
{
	struct token p;

	if (!s->consumer || s->standby || s->saving || !s->hub->src)
		return false;
	p = hub_durable_pos(s);
	if (!s->dirty && token_cmp(&p, &s->saved) <= 0)
		return false;
	*pos = p;
	return true;
}

static void saving(struct sub *s, const struct token *pos)
{
	s->saving = true;
	s->dirty = false;
	s->saved = *pos;
}

static void save_done(void *arg, int status)
{
	struct sub *s = arg;
	struct hub *h = s->hub;

	s->saving = false;
	if (status < 0)
		s->dirty = true;   /* retried on the next flush */
	else if (s->shutdown_wait || s->state == SUB_DEAD)
		hub_save(s);       /* acknowledged during the write: no flush follows */
	if (s->shutdown_wait && (!s->saving || status < 0)) {
		s->shutdown_wait = false;
		if (--h->shutdown_pending == 0)
			h->shutdown_done(h->shutdown_arg);
	}
}

void hub_save(struct sub *s)
{
	struct token pos;

	if (save_due(s, &pos) &&
	    s->hub->src->ops->save_position(s->hub->src->impl, s->consumer, &pos, save_done, s) == 0)
		saving(s, &pos);
}

static void batch_done(void *arg, int status)
{
	struct save_batch *b = arg;

	for (size_t i = 0; i < b->n; i++)
		save_done(b->s[i], status);
	free(b);
}

void hub_save_all(struct hub *h)
{
	const struct source *src = h->src;
	struct save_batch *b = NULL;
	const char **names = NULL;
	struct token *pos = NULL, p;
	size_t n = 0, k = 0;
	struct sub *s;

	for (s = h->subs; s; s = s->next)
		n += save_due(s, &p);
	if (n == 0)
		return;
	if (n > 1 && src->ops->save_positions) {
		b = malloc(sizeof(*b) + n * sizeof(b->s[0]));
		names = malloc(n * sizeof(*names));
		pos = malloc(n * sizeof(*pos));
	}
	if (!b || !names || !pos) {
		/* One at a time: a source that cannot batch, or no memory. */
		for (s = h->subs; s; s = s->next)
			hub_save(s);
		goto out;
	}
	for (s = h->subs; s && k < n; s = s->next) {
		if (save_due(s, &pos[k])) {
			b->s[k] = s;
			names[k] = s->consumer;
			k++;
		}
	}
	b->n = k;
	if (src->ops->save_positions(src->impl, k, names, pos, batch_done, b) == 0) {
		for (size_t i = 0; i < k; i++)
			saving(b->s[i], &pos[i]);
		b = NULL;   /* batch_done frees it */
	}
out:
	free(b);
	free(names);
	free(pos);
}

/*
 * count.h - the "count" request: how many changes of a table lie after a
 * position, for a component's backlog gauge (NVSentinel's
 * GetUnprocessedEventCount).  client.c hands the frame over; the answer
 * comes later, from the main PostgreSQL connection.
 */
#ifndef NVSRELAY_COUNT_H
#define NVSRELAY_COUNT_H

#include <cJSON.h>

#include "client.h"

struct hub;

void count_op(Client *c, struct hub *h, const cJSON *m);

#endif

#ifndef TANDEM_LIB_EVENT_H
#define TANDEM_LIB_EVENT_H

#include "tandem/events.h"

#include <stdio.h>

/*
 * Emits one operator event as a JSON line:
 *   {"ts":"2026-11-25T14:35:06.123Z","id":1004,"name":"store.log_corrupt","severity":"error",
 *    "subject":"<database or object>","message":"..."}
 * to the sink (stderr by default). Thread-safe. subject may be NULL.
 */
void event_emit(enum tdm_event id, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The stable dotted name and severity of an event id ("unknown" for an unknown id). */
const char *event_name(enum tdm_event id);
enum tdm_event_severity event_severity(enum tdm_event id);

/* Where lines go; the stream is borrowed. NULL silences events. */
void event_set_sink(FILE *sink);

/* Tests: called with every event after it is written. */
typedef void event_hook_cb(void *ctx, enum tdm_event id, const char *subject, const char *message);
void event_set_hook(event_hook_cb *cb, void *ctx);

#endif

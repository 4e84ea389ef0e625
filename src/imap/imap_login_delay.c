/*
 * Failed logins (imap_int.h). Each is answered NO [AUTHENTICATIONFAILED] only after a delay
 * that grows with the recent failures of the client's address and of the user name
 * (lib/auth_delay.h: 250 ms doubling to 4 s, the admin API's rule), whichever is longer: the
 * address's count slows one client trying many users, the user's count slows many addresses
 * trying one user. The session waits on a timer meanwhile (s->waiting: it reads nothing more),
 * so the delay costs the guesser time and nobody else anything. A connection that fails
 * [imap] max_login_failures times is closed with BYE after the last answer.
 *
 * A success forgets both counts. Only wrong credentials count: a directory outage or a
 * refusal to send a password in the clear is nobody's guess.
 */
#include "imap/imap_int.h"

#include "lib/auth_delay.h"
#include "lib/conn.h"
#include "lib/log.h"

#include <event2/event.h>
#include <stdio.h>
#include <time.h>

static void
address_key(const struct imap_session *s, char key[AUTH_DELAY_KEY_MAX + 1])
{
    snprintf(key, AUTH_DELAY_KEY_MAX + 1, "address %s", conn_peer_address(s->conn));
}

static void
user_key(const char *user, char key[AUTH_DELAY_KEY_MAX + 1])
{
    snprintf(key, AUTH_DELAY_KEY_MAX + 1, "user %s", user);
}

/* The name as the log may show it: a client chose it, and a line break in it could forge a
 * log line. */
static void
printable_name(const char *user, char out[DIR_NAME_MAX + 1])
{
    size_t i = 0;
    for (; user[i] && i < DIR_NAME_MAX; i++)
        out[i] = user[i] >= 0x20 && user[i] < 0x7f ? user[i] : '?';
    out[i] = '\0';
}

static void
answer_failure(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct imap_session *s = arg;
    event_free(s->login_delay);
    s->login_delay = NULL;
    s->waiting--;
    s->busy++;
    imap__reply(s, s->tag, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
    if (s->login_failures >= s->srv->cfg->imap.max_login_failures) {
        imap_buf_puts(&s->out, "* BYE Too many failed logins\r\n");
        imap__flush(s);
        conn_close_after_flush(s->conn);
    } else {
        imap__resume(s);
    }
    s->busy--;
    imap__release(s); /* the close may have come meanwhile */
}

void
imap__login_failed(struct imap_session *s, const char *user)
{
    struct auth_delay *delays = s->srv->login_delays;
    time_t now = time(NULL);
    char key[AUTH_DELAY_KEY_MAX + 1];
    address_key(s, key);
    uint32_t ms = auth_delay_failure(delays, key, now);
    user_key(user, key);
    uint32_t for_user = auth_delay_failure(delays, key, now);
    if (for_user > ms)
        ms = for_user;
    s->login_failures++;
    char shown[DIR_NAME_MAX + 1];
    printable_name(user, shown);
    log_info("imap: %s: login as %s failed (%u on this connection), answered in %u ms",
             conn_peer(s->conn), shown, s->login_failures, ms);
    s->login_delay = evtimer_new(s->srv->base, answer_failure, s);
    if (!s->login_delay)
        log_fatal("out of memory");
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(s->login_delay, &tv);
    s->waiting++;
}

void
imap__login_succeeded(struct imap_session *s)
{
    char key[AUTH_DELAY_KEY_MAX + 1];
    address_key(s, key);
    auth_delay_success(s->srv->login_delays, key);
    user_key(s->user, key);
    auth_delay_success(s->srv->login_delays, key);
}

void
imap__login_delay_cancel(struct imap_session *s)
{
    if (!s->login_delay)
        return;
    event_free(s->login_delay);
    s->login_delay = NULL;
    s->waiting--;
}

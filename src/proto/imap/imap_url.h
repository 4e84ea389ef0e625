#ifndef TANDEM_PROTO_IMAP_IMAP_URL_H
#define TANDEM_PROTO_IMAP_IMAP_URL_H

/*
 * IMAP URLs (RFC 5092), written: the server URL a login referral names (RFC 2221).
 *
 *   imap://<enc-user>;AUTH=*@<host>:<port>/
 *
 * enc-user is the user name with every byte outside RFC 5092's achar (ALPHA, DIGIT, "-" "."
 * "_" "~" "!" "$" "'" "(" ")" "*" "+" "," "&" "=") written %XX, upper-case hex: ";", ":",
 * "@", "/", "%", space and every 8-bit byte of a UTF-8 name included. ";AUTH=*" is what
 * RFC 2221 3 requires, so a client never falls back to an anonymous login and may use any
 * mechanism the server offers. host is written as it is, except that an IPv6 literal (any
 * host holding ':') goes in brackets (RFC 3986 IP-literal); the port is always written.
 *
 * Hazard: an IPv6 URL holds "]", so a client that reads a response code up to the first "]"
 * would cut it short; the RFC 2221 grammar (resp-text-code "REFERRAL" SP imapurl) does not
 * allow that reading, and the text after the code should not hold another "]".
 */

#include "proto/imap/imap_write.h"

#include <stdint.h>

/* Appends the URL to b (errors are b's sticky ones). user and host: C strings. */
void imap_write_server_url(struct imap_buf *b, const char *user, const char *host, uint16_t port);

#endif

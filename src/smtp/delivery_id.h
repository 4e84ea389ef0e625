#ifndef TANDEM_SMTP_DELIVERY_ID_H
#define TANDEM_SMTP_DELIVERY_ID_H

/*
 * The delivery id the transport gives one recipient of a message (docs/smtp.md, "Delivery
 * ids"): a hash of the envelope sender, the recipient and the message as the client sent it.
 * A client that retries the same message after an answer it could not trust (a 451 after a
 * partial delivery, a connection lost at the end of the data, a fence that came after the
 * write was durable) sends the same bytes, so the retry carries the same ids, and the mailbox
 * server drops what it already delivered. Pure: no state, no randomness.
 */

#include <stddef.h>
#include <stdint.h>

#define SMTP_DELIVERY_ID_LEN 16u

/* sender: the reverse path as smtp_mailbox_write() spells it ("" for the null path); rcpt:
 * the recipient likewise; data: the message as received (after dot-unstuffing, before our
 * Received: header). Never all zero (LMTP's XDELIVERYID refuses that). */
void smtp_delivery_id(const char *sender, size_t sender_len, const char *rcpt, size_t rcpt_len,
                      const uint8_t *data, size_t data_len, uint8_t id_r[SMTP_DELIVERY_ID_LEN]);

#endif

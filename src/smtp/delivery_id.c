/* The delivery id of one recipient of a message (delivery_id.h). */
#include "smtp/delivery_id.h"

#include "lib/wire_field.h"

#include <sodium.h>

/* Changing what goes into the hash changes every id: a retry across such an upgrade would be
 * delivered twice, so the domain string names the version of this recipe. */
static const char DOMAIN[] = "tandem delivery id 1";

/* Each part with its length first, so no two different (sender, rcpt, data) give one input. */
static void
put_part(crypto_generichash_state *h, const void *p, size_t len)
{
    uint8_t n[8];
    wire_put64(n, (uint64_t)len);
    crypto_generichash_update(h, n, sizeof(n));
    if (len)
        crypto_generichash_update(h, p, (unsigned long long)len);
}

void
smtp_delivery_id(const char *sender, size_t sender_len, const char *rcpt, size_t rcpt_len,
                 const uint8_t *data, size_t data_len, uint8_t id_r[SMTP_DELIVERY_ID_LEN])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, SMTP_DELIVERY_ID_LEN);
    put_part(&h, DOMAIN, sizeof(DOMAIN) - 1);
    put_part(&h, sender, sender_len);
    put_part(&h, rcpt, rcpt_len);
    put_part(&h, data, data_len);
    crypto_generichash_final(&h, id_r, SMTP_DELIVERY_ID_LEN);
    uint8_t any = 0;
    for (size_t i = 0; i < SMTP_DELIVERY_ID_LEN; i++)
        any |= id_r[i];
    if (!any) /* 2^-128; zero is not a delivery id on the wire */
        id_r[SMTP_DELIVERY_ID_LEN - 1] = 1;
}

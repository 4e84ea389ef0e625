/*
 * Fuzzes the mail record decoder (src/store/mail_codec.c). The first input byte picks one of
 * the mail record types (its value, or any byte modulo the type count), the rest is the payload.
 * Whatever decodes must re-encode to the very same bytes (the format is canonical) and decode again
 * to equal fields; any difference is a codec bug and aborts.
 */
#include "store/mail.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t types[] = {
    TDM_REC_MAILBOX_CREATE,   TDM_REC_MAILBOX_DELETE, TDM_REC_MAILBOX_SET_QUOTA,
    TDM_REC_FOLDER_CREATE,    TDM_REC_FOLDER_RENAME,  TDM_REC_FOLDER_DELETE,
    TDM_REC_FOLDER_SUBSCRIBE, TDM_REC_MESSAGE_APPEND, TDM_REC_MESSAGE_FLAGS,
    TDM_REC_MESSAGE_EXPUNGE,  TDM_REC_MESSAGE_COPY,   TDM_REC_FOLDER_RECENT,
};

static void
check(bool ok)
{
    if (!ok)
        abort();
}

static bool
str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void
check_equal(const struct mail_op *a, const struct mail_op *b)
{
    check(a->type == b->type);
    check(str_eq(a->mailbox, b->mailbox));
    check(str_eq(a->folder, b->folder));
    check(str_eq(a->new_folder, b->new_folder));
    check(a->quota_bytes == b->quota_bytes && a->quota_messages == b->quota_messages);
    check(a->uidvalidity == b->uidvalidity && a->special_use == b->special_use);
    check(a->subscribed == b->subscribed && a->move == b->move);
    check(a->n_targets == b->n_targets);
    check((a->delivery_ids == NULL) == (b->delivery_ids == NULL));
    for (size_t i = 0; i < a->n_targets; i++) {
        check(str_eq(a->targets[i].mailbox, b->targets[i].mailbox));
        check(str_eq(a->targets[i].folder, b->targets[i].folder));
        if (a->delivery_ids == NULL)
            continue;
        const uint8_t *x = a->delivery_ids[i], *y = b->delivery_ids[i];
        check((x == NULL) == (y == NULL));
        check(x == NULL || memcmp(x, y, MAIL_DELIVERY_ID_LEN) == 0);
    }
    check(memcmp(a->guid, b->guid, MAIL_GUID_LEN) == 0);
    check(a->internal_date == b->internal_date);
    check(a->flags == b->flags && a->flag_mode == b->flag_mode);
    check(a->unchanged_since == b->unchanged_since);
    check(a->deleted_only == b->deleted_only);
    check(a->n_keywords == b->n_keywords);
    for (size_t i = 0; i < a->n_keywords; i++)
        check(str_eq(a->keywords[i], b->keywords[i]));
    check(a->body_len == b->body_len);
    check(a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
    check(a->uid_limit == b->uid_limit);
    check(a->n_uids == b->n_uids);
    check(a->n_uids == 0 || memcmp(a->uids, b->uids, a->n_uids * sizeof *a->uids) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The type's own value picks it (how the seed corpus is written); any other byte still
     * maps to some type so that no input is wasted. */
    uint16_t type =
        mail_is_mail_record(data[0]) ? data[0] : types[data[0] % (sizeof types / sizeof types[0])];
    const uint8_t *payload = data + 1;
    size_t len = size - 1;

    struct mail_decoded dec, again;
    const char *error = NULL;
    if (mail_op_decode(type, payload, len, &dec, &error) != 0) {
        check(error != NULL);
        return 0;
    }
    uint8_t *enc;
    size_t enc_len;
    check(mail_op_encode(&dec.op, &enc, &enc_len, &error) == 0);
    check(enc_len == len && memcmp(enc, payload, len) == 0);
    check(mail_op_decode(type, enc, enc_len, &again, &error) == 0);
    check_equal(&dec.op, &again.op);
    mail_decoded_clear(&again);
    mail_decoded_clear(&dec);
    free(enc);
    return 0;
}

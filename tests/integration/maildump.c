/*
 * tdm_maildump <database dir>: prints a mail database's content as one JSON document, read
 * through a store_reader (read-only, safe while tandemd has the database mounted), so
 * integration tests can check what a protocol stored:
 *
 *   {"mailboxes": {"<name>": {"folders": {"<folder>": {
 *       "uidvalidity", "uidnext", "highestmodseq", "special_use", "subscribed",
 *       "messages": [{"uid", "flags", "keywords", "modseq", "size", "internal_date",
 *                     "body"}]}}}}}
 *
 * "body" is the message text with bytes above 0x7f replaced by '?' (tests send ASCII).
 * Exit 0, or 1 with a message on stderr.
 */
#include "store/mail.h"
#include "store/store_reader.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct walk {
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    const char *mailbox;
    json_t *out;
};

static int
message_cb(void *ctx, const struct mail_message_info *m)
{
    struct walk *w = ctx;
    json_t *kws = json_array();
    for (size_t i = 0; i < m->n_keywords; i++)
        json_array_append_new(kws, json_string(m->keywords[i]));
    const void *body;
    size_t len;
    json_t *text = json_null();
    if (mail_body_get(w->dbis, w->txn, m->body_hash, &body, &len) == 0) {
        char *copy = malloc(len + 1);
        if (!copy)
            return -1;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = ((const unsigned char *)body)[i];
            copy[i] = c >= 0x80 || c == 0 ? '?' : (char)c;
        }
        copy[len] = '\0';
        text = json_string(copy);
        free(copy);
    }
    json_array_append_new(w->out, json_pack("{s:I,s:I,s:o,s:I,s:I,s:I,s:o}", "uid",
                                            (json_int_t)m->uid, "flags", (json_int_t)m->flags,
                                            "keywords", kws, "modseq", (json_int_t)m->modseq,
                                            "size", (json_int_t)m->size, "internal_date",
                                            (json_int_t)m->internal_date, "body", text));
    return 0;
}

static int
folder_cb(void *ctx, const struct mail_folder_info *f)
{
    struct walk *w = ctx;
    json_t *messages = json_array();
    struct walk mw = {w->dbis, w->txn, w->mailbox, messages};
    int ret = mail_message_list(w->dbis, w->txn, w->mailbox, f->name, message_cb, &mw);
    json_object_set_new(w->out, f->name,
                        json_pack("{s:I,s:I,s:I,s:I,s:b,s:o}", "uidvalidity",
                                  (json_int_t)f->uidvalidity, "uidnext", (json_int_t)f->uidnext,
                                  "highestmodseq", (json_int_t)f->highestmodseq, "special_use",
                                  (json_int_t)f->special_use, "subscribed", f->subscribed,
                                  "messages", messages));
    return ret;
}

static int
mailbox_cb(void *ctx, const char *mailbox, const struct mail_mailbox_info *info)
{
    (void)info;
    struct walk *w = ctx;
    json_t *folders = json_object();
    struct walk fw = {w->dbis, w->txn, mailbox, folders};
    int ret = mail_folder_list(w->dbis, w->txn, mailbox, folder_cb, &fw);
    json_object_set_new(w->out, mailbox, json_pack("{s:o}", "folders", folders));
    return ret;
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tdm_maildump <database dir>\n");
        return 1;
    }
    struct store_reader *r = NULL;
    const char *why = NULL;
    if (store_reader_open(argv[1], NULL, &r, &why) < 0) {
        fprintf(stderr, "tdm_maildump: %s: %s\n", argv[1], why ? why : "cannot open");
        return 1;
    }
    MDB_txn *txn;
    if (store_reader_begin(r, &txn) < 0) {
        fprintf(stderr, "tdm_maildump: cannot begin a read transaction\n");
        store_reader_free(&r);
        return 1;
    }
    json_t *mailboxes = json_object();
    struct walk w = {store_reader_mail_dbis(r), txn, NULL, mailboxes};
    int ret = mail_mailbox_list(w.dbis, txn, mailbox_cb, &w);
    mdb_txn_abort(txn);
    store_reader_free(&r);
    if (ret != 0) {
        fprintf(stderr, "tdm_maildump: reading failed (%d)\n", ret);
        json_decref(mailboxes);
        return 1;
    }
    json_t *doc = json_pack("{s:o}", "mailboxes", mailboxes);
    json_dumpf(doc, stdout, JSON_INDENT(1) | JSON_SORT_KEYS);
    fputc('\n', stdout);
    json_decref(doc);
    return 0;
}

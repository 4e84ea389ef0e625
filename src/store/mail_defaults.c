/* A new mailbox's records (mail_defaults.h). */
#include "store/mail_defaults.h"

#include <string.h>

static const struct {
    const char *name;
    uint32_t use;
} default_folders[] = {{"Sent", MAIL_USE_SENT},
                       {"Drafts", MAIL_USE_DRAFTS},
                       {"Trash", MAIL_USE_TRASH},
                       {"Junk", MAIL_USE_JUNK},
                       {"Archive", MAIL_USE_ARCHIVE}};

void
mail_default_ops(const char *mailbox, uint32_t uidvalidity, struct mail_op ops[MAIL_DEFAULT_OPS])
{
    _Static_assert(MAIL_DEFAULT_OPS == 2 + 2 * (sizeof(default_folders) / sizeof(default_folders[0])),
                   "one create per folder, one subscription per folder and INBOX");
    memset(ops, 0, MAIL_DEFAULT_OPS * sizeof(*ops));
    size_t n = 0;
    ops[n++] = (struct mail_op){
        .type = TDM_REC_MAILBOX_CREATE, .mailbox = mailbox, .uidvalidity = uidvalidity};
    for (size_t i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++)
        ops[n++] = (struct mail_op){.type = TDM_REC_FOLDER_CREATE,
                                    .mailbox = mailbox,
                                    .folder = default_folders[i].name,
                                    .special_use = default_folders[i].use};
    ops[n++] = (struct mail_op){
        .type = TDM_REC_FOLDER_SUBSCRIBE, .mailbox = mailbox, .folder = "INBOX", .subscribed = true};
    for (size_t i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++)
        ops[n++] = (struct mail_op){.type = TDM_REC_FOLDER_SUBSCRIBE,
                                    .mailbox = mailbox,
                                    .folder = default_folders[i].name,
                                    .subscribed = true};
}

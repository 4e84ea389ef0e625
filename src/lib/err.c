#include "lib/err.h"

#include <string.h>

const char *
tdm_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case TDM_ECORRUPT:
        return "data is corrupt (checksum or structure check failed)";
    case TDM_EFOREIGN:
        return "not a tandem database";
    case TDM_EGAP:
        return "a needed log generation is missing";
    case TDM_EFAILED:
        return "the database failed earlier and refuses writes";
    case TDM_ENOSPACE:
        return "disk space reserve reached";
    case TDM_ENOTFOUND:
        return "not found";
    case TDM_EEXIST:
        return "already exists";
    case TDM_EQUOTA:
        return "quota exceeded";
    case TDM_ELIMIT:
        return "limit exceeded";
    case TDM_EINVAL:
        return "invalid argument or malformed data";
    case TDM_ECLOSED:
        return "shutting down";
    case TDM_ENEEDMORE:
        return "incomplete data";
    case TDM_ECONFLICT:
        return "changed by someone else since it was read";
    case TDM_EDUPLICATE:
        return "duplicate delivery dropped";
    default:
        break;
    }
    if (err < 0 && err > TDM_E_BASE)
        return strerror(-err);
    return "unknown error";
}

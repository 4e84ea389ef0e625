#ifndef TANDEM_LIB_ERR_H
#define TANDEM_LIB_ERR_H

/*
 * Error codes. Functions return 0 on success, -errno for system errors, or one of the
 * TDM_E* codes below (a reserved negative range well away from errno values).
 */
enum tdm_error {
    TDM_E_BASE = -10000,
    TDM_ECORRUPT = TDM_E_BASE,     /* a checksum or structure check failed */
    TDM_EFOREIGN = TDM_E_BASE - 1, /* the path is not a tandem database (or another one) */
    TDM_EGAP = TDM_E_BASE - 2,     /* a needed log generation is missing */
    TDM_EFAILED = TDM_E_BASE - 3,  /* the store failed earlier and refuses further writes */
    TDM_ENOSPACE = TDM_E_BASE - 4, /* disk reserve reached: no new commits, clean shutdown only */
    TDM_ENOTFOUND = TDM_E_BASE - 5,
    TDM_EEXIST = TDM_E_BASE - 6,
    TDM_EQUOTA = TDM_E_BASE - 7,
    TDM_ELIMIT = TDM_E_BASE - 8,     /* a size or count limit was exceeded */
    TDM_EINVAL = TDM_E_BASE - 9,     /* malformed input (record payload, argument) */
    TDM_ECLOSED = TDM_E_BASE - 10,   /* the store is shutting down */
    TDM_ENEEDMORE = TDM_E_BASE - 11, /* a decoder needs more bytes */
    TDM_ECONFLICT = TDM_E_BASE - 12, /* compare-and-set: the object changed since it was read */
    TDM_EDUPLICATE = TDM_E_BASE - 13, /* a delivery whose id the database already holds */
    TDM_E_LAST = TDM_E_BASE - 13,
};

/* A static description of err (0, -errno or TDM_E*). Never NULL. */
const char *tdm_strerror(int err);

#endif

#ifndef TANDEM_EVENTS_H
#define TANDEM_EVENTS_H

/*
 * Operator-facing events. The numbers are a stable contract: never reuse or renumber one.
 * Each is catalogued in docs/events.md with its cause and remedy.
 * Ranges: 1000-1999 store.
 */
enum tdm_event {
    TDM_EV_STORE_MOUNTED = 1000,
    TDM_EV_STORE_DISMOUNTED = 1001,
    TDM_EV_STORE_RECOVERED = 1002,
    TDM_EV_STORE_TORN_TAIL_CUT = 1003,
    TDM_EV_STORE_LOG_CORRUPT = 1004,
    TDM_EV_STORE_GENERATION_MISSING = 1005,
    TDM_EV_STORE_WRITE_FAILED = 1006,
    TDM_EV_STORE_DISK_RESERVE = 1007,
    TDM_EV_STORE_TRUNCATED = 1008,
    TDM_EV_STORE_SYSTEM_CRASH = 1009,
    TDM_EV_STORE_GENERATION_CLOSED = 1010,
};

enum tdm_event_severity {
    TDM_EV_SEV_INFO,
    TDM_EV_SEV_WARNING,
    TDM_EV_SEV_ERROR,
};

#endif

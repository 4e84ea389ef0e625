# Shared by the benchmarks that run tandem beside Dovecot (bench/lmtp, bench/imap): sourced,
# not run. The caller sets $tmp (a fresh directory under BENCH_DIR), $build (the build
# directory) and the array pids (every process started is added, for the caller's cleanup).
#   start_tandem ADDR USERS PROTO...    tandem with the mailbox and directory roles, one
#       database db1, users user1..userUSERS (address userN@bench.test, password bench-pw),
#       one listener per PROTO on ADDR; sets port_<proto> for each (e.g. $port_lmtp).
#   start_dovecot ADDR PROTO...         Dovecot on ADDR with mail_fsync=always, format
#       $DOVECOT_FORMAT (default maildir), any user with password bench-pw; sets
#       dport_<proto>.
# Dovecot's IMAP needs its imapd (dovecot-imapd), LMTP its lmtpd: scripts/deps --bench.

free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

wait_port() { # host port
    for _ in $(seq 1 200); do
        if python3 -c 'import socket,sys; socket.create_connection((sys.argv[1],int(sys.argv[2])),1)' "$1" "$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "bench: nothing listens on $1:$2" >&2
    return 1
}

start_tandem() {
    local addr=$1 users=$2
    shift 2
    local tandemd=$build/src/tandemd/tandemd tandemctl=$build/src/tandemctl/tandemctl
    mkdir -p "$tmp/tandem/db"
    {
        echo "server = bench1"
        echo "site = bench"
        echo "datadir = $tmp/tandem"
        echo "roles = mailbox, directory"
        echo
        echo "[network public]"
        echo "address = $addr"
        for proto in "$@"; do
            local port
            port=$(free_port "$addr")
            eval "port_$proto=$port"
            printf '\n[listen %s]\nnetwork = public\nport = %s\n' "$proto" "$port"
        done
        printf '\n[log]\nlevel = warning\nevents = %s/tandem/events.log\n' "$tmp"
    } >"$tmp/tandem.conf"
    "$tandemctl" db create "$tmp/tandem/db/db1" >/dev/null
    "$tandemd" -c "$tmp/tandem.conf" --foreground 2>"$tmp/tandemd.log" &
    pids+=($!)
    for _ in $(seq 1 200); do [ -S "$tmp/tandem/run/admin.sock" ] && break; sleep 0.05; done
    local sock=$tmp/tandem/run/admin.sock
    echo bench-pw >"$tmp/password"
    # The first write waits until the admin worker reaches the core.
    for _ in $(seq 1 100); do
        "$tandemctl" user add user1 --address user1@bench.test --database db1 \
            --new-password-file "$tmp/password" --socket "$sock" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for i in $(seq 2 "$users"); do
        "$tandemctl" user add "user$i" --address "user$i@bench.test" \
            --database db1 --new-password-file "$tmp/password" --socket "$sock" >/dev/null
    done
    for proto in "$@"; do
        eval "wait_port $addr \$port_$proto"
    done
}

start_dovecot() {
    local addr=$1
    shift
    local format=${DOVECOT_FORMAT:-maildir}
    mkdir -p "$tmp/dovecot/run" "$tmp/dovecot/state" "$tmp/dovecot/mail"
    local mail_user mail_group
    mail_user=$(id -u dovecot 2>/dev/null || id -u nobody)
    mail_group=$(id -g dovecot 2>/dev/null || id -g nogroup)
    chown "$mail_user:$mail_group" "$tmp/dovecot/mail"
    {
        cat <<EOC
base_dir = $tmp/dovecot/run
state_dir = $tmp/dovecot/state
log_path = $tmp/dovecot/dovecot.log
info_log_path = $tmp/dovecot/dovecot.log
protocols = $*
listen = $addr
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = $format:$tmp/dovecot/mail/%n
mail_fsync = always
first_valid_uid = 1
first_valid_gid = 1
userdb {
  driver = static
  args = uid=$mail_user gid=$mail_group home=$tmp/dovecot/mail/%n
}
passdb {
  driver = static
  args = password=bench-pw
}
EOC
        for proto in "$@"; do
            local port
            port=$(free_port "$addr")
            eval "dport_$proto=$port"
            # IMAP connections go to Dovecot's login service, which hands them to imap.
            local service=$proto
            [ "$proto" = imap ] && service=imap-login
            printf 'service %s {\n  inet_listener %s {\n    address = %s\n    port = %s\n  }\n}\n' \
                "$service" "$proto" "$addr" "$port"
        done
    } >"$tmp/dovecot/dovecot.conf"
    dovecot -c "$tmp/dovecot/dovecot.conf" -F 2>>"$tmp/dovecot/stderr.log" &
    pids+=($!)
    for proto in "$@"; do
        eval "wait_port $addr \$dport_$proto"
    done
}

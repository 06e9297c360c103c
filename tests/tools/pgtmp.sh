#!/bin/sh
# pgtmp.sh - throwaway PostgreSQL clusters with TLS and client-certificate auth,
# so integration tests run against a real server. Used by tests/lib/NvsTest.pm
# (one cluster per test file) and by hand or from demo scripts.
#
#   pgtmp.sh start DIR [PORT]        new cluster under DIR (created if missing), writes DIR/env
#   pgtmp.sh stop DIR                stop the server and remove DIR (idempotent)
#   pgtmp.sh restart DIR [fast|immediate]
#   pgtmp.sh stop-server DIR [fast|immediate]   stop, keep DIR
#   pgtmp.sh start-server DIR
#   pgtmp.sh status DIR              exit 0 when the server runs
#   pgtmp.sh psql DIR [psql args]    psql as the superuser over the Unix socket
#   pgtmp.sh replica DIR [ADDR]      DIR/replica: a synchronous streaming standby of DIR's
#                                    server (pg_basebackup), same port on ADDR (127.0.0.2),
#                                    writes DIR/replica/env; stop DIR stops it too
#   pgtmp.sh promote DIR             promote the standby in DIR (e.g. DIR/replica)
#
# Layout of DIR (keep DIR short: the socket path must fit in 107 bytes):
#   env    shell-sourceable PG* (local superuser) and DATASTORE_* (daemon, mTLS verify-full)
#   data/  the cluster, owned by the server user, 0700
#   sock/  Unix socket directory     log/server.log  server log
#   tls/   ca.crt, client.crt/.key (CN=nvsentinel), wrong-ca.crt/.key (an unrelated CA),
#          wrong-client.crt/.key (CN=nvsentinel signed by the wrong CA), mount/ (tls.crt, tls.key,
#          ca.crt: the POSTGRESQL_CLIENT_CERT_MOUNT_PATH layout)
#
# Run as root, the server runs as the `postgres` OS user (initdb refuses root); as any
# other user it runs as that user. PGTMP_USER overrides the server user, PGBIN the
# PostgreSQL binaries, PGTMP_CONF adds postgresql.conf lines (e.g. "log_statement = 'all'").
set -eu

die() { echo "pgtmp: $*" >&2; exit 1; }

# A stray PGHOST/PGPORT/PGSSLMODE... from the caller must not steer our own psql or pg_ctl.
for v in $(env | sed -n 's/^\(PG[A-Z_]*\)=.*/\1/p'); do
	case $v in PGTMP_*|PGBIN) ;; *) unset "$v" ;; esac
done
umask 022

if [ -z "${PGBIN:-}" ]; then
	# The Debian layout is versioned; prefer 15 (the tested version), else what pg_config says.
	if [ -x /usr/lib/postgresql/15/bin/initdb ]; then PGBIN=/usr/lib/postgresql/15/bin
	elif command -v pg_config >/dev/null 2>&1; then PGBIN=$(pg_config --bindir)
	else die "no PostgreSQL binaries found (run: make deps)"
	fi
fi
[ -x "$PGBIN/initdb" ] || die "$PGBIN/initdb missing (run: make deps)"

if [ "$(id -u)" = 0 ]; then
	RUNAS=${PGTMP_USER:-postgres}
	id -u "$RUNAS" >/dev/null 2>&1 || die "OS user $RUNAS missing (postgresql-15 creates it)"
else
	RUNAS=
fi

# Run a server-side command as the server user.
as_pg() {
	if [ -n "$RUNAS" ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi
}

# Resolve DIR to an absolute path; the server must not depend on our cwd.
absdir() {
	[ -n "${1:-}" ] || die "DIR argument missing"
	case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$(pwd)" "$1" ;; esac
}

port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		# Minimal images lack iproute2; LISTEN sockets are state 0A in /proc.
		hex=$(printf '%04X' "$1")
		cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
			awk -v h=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }'
	fi
}

# A random port below the kernel's ephemeral range (32768+), so an outgoing connection
# cannot grab it between our check and the server's bind; 2024 and 543x stay clear.
pick_port() {
	i=0
	while [ $i -lt 50 ]; do
		n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
		p=$((20000 + n % 12000))
		port_busy "$p" || { echo "$p"; return 0; }
		i=$((i + 1))
	done
	die "no free port found"
}

gen_certs() {
	t=$1
	# EC P-256 keys: ~10 ms each instead of ~150 ms for RSA-2048; libpq and the server accept them.
	newkey="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc"
	ca_ext="-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$t/server.ext"
	printf 'extendedKeyUsage=clientAuth\n' >"$t/client.ext"
	(
		cd "$t"
		# shellcheck disable=SC2086 # word splitting of the option lists is intended
		{
			openssl req -x509 $newkey -days 30 -subj /CN=nvs-test-ca $ca_ext -keyout ca.key -out ca.crt
			openssl req -x509 $newkey -days 30 -subj /CN=nvs-wrong-ca $ca_ext -keyout wrong-ca.key -out wrong-ca.crt
			openssl req $newkey -subj /CN=localhost -keyout server.key -out server.csr
			openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
				-extfile server.ext -out server.crt
			openssl req $newkey -subj /CN=nvsentinel -keyout client.key -out client.csr
			openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
				-extfile client.ext -out client.crt
			openssl req $newkey -subj /CN=nvsentinel -keyout wrong-client.key -out wrong-client.csr
			openssl x509 -req -in wrong-client.csr -CA wrong-ca.crt -CAkey wrong-ca.key -CAcreateserial \
				-days 30 -extfile client.ext -out wrong-client.crt
		} >openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
		# libpq refuses a client key readable by group/world.
		chmod 600 ./*.key
		mkdir -p mount
		cp client.crt mount/tls.crt
		cp client.key mount/tls.key
		cp ca.crt mount/ca.crt
		chmod 600 mount/tls.key
	) || die "certificate generation failed"
}

write_conf() {
	d=$1 port=$2
	cat >"$d/data/nvs.conf" <<EOF
# written by pgtmp.sh: test-only settings
listen_addresses = '${3:-127.0.0.1}'
port = $port
unix_socket_directories = '$d/sock'
max_connections = 100
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
# Speed only. synchronous_commit stays on: the daemon relies on it.
fsync = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%u@%d '
${PGTMP_CONF:-}
EOF
}

server_start() {
	d=$1
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log/server.log" -w -t 60 start >/dev/null
}

is_running() {
	[ -f "$1/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

server_stop() {
	d=$1 mode=${2:-fast}
	[ -d "$d/data" ] || return 0
	is_running "$d" || return 0
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -m "$mode" -w -t 60 stop >/dev/null && return 0
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -m immediate -w -t 30 stop >/dev/null && return 0
	# Last resort: the backends exit on their own once the postmaster is gone.
	pid=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null || true)
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	return 0
}

cmd_start() {
	d=$(absdir "${1:-}")
	want_port=${2:-}
	mkdir -p "$d"
	[ -e "$d/data" ] && die "$d already holds a cluster"
	# "/sock/.s.PGSQL.NNNNN" is 20 bytes; the kernel limit is 107.
	[ $((${#d} + 20)) -le 107 ] || die "$d is too long for a Unix socket path"
	cd "$d" # the server user must be able to stat its cwd (a root-only cwd gives warnings)
	chmod 755 "$d"
	: >"$d/.pgtmp" # marks DIR as ours, so stop may remove it
	mkdir "$d/sock" "$d/log" "$d/tls"
	mkdir -m 700 "$d/data"
	[ -n "$RUNAS" ] && chown "$RUNAS:" "$d/sock" "$d/log" "$d/data"

	gen_certs "$d/tls"

	as_pg "$PGBIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
		--no-sync >"$d/log/initdb.log" 2>&1 || { cat "$d/log/initdb.log" >&2; die "initdb failed"; }

	# The server refuses a key with group/world access, and needs to own it.
	cp "$d/tls/server.crt" "$d/tls/ca.crt" "$d/tls/server.key" "$d/data/"
	chmod 600 "$d/data/server.key"
	[ -n "$RUNAS" ] && chown "$RUNAS:" "$d/data/server.crt" "$d/data/ca.crt" "$d/data/server.key"
	echo "include 'nvs.conf'" >>"$d/data/postgresql.conf"
	cat >"$d/data/pg_hba.conf" <<EOF
# written by pgtmp.sh
local     all all                       trust
hostssl   all nvsentinel  127.0.0.1/32  cert
hostssl   all postgres    127.0.0.1/32  trust
hostssl   all scram_user  127.0.0.1/32  scram-sha-256
hostnossl all all         127.0.0.1/32  reject
EOF

	# Another cluster (a parallel test) can take the port between our check and the bind: retry.
	tries=0
	while :; do
		port=${want_port:-$(pick_port)}
		write_conf "$d" "$port"
		[ -n "$RUNAS" ] && chown "$RUNAS:" "$d/data/nvs.conf"
		server_start "$d" && break
		tries=$((tries + 1))
		if [ -z "$want_port" ] && [ $tries -lt 5 ] &&
			grep -q 'Address already in use' "$d/log/server.log" 2>/dev/null; then
			continue
		fi
		tail -n 20 "$d/log/server.log" >&2 2>/dev/null || true
		die "server did not start (port $port)"
	done

	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$d/sock" -p "$port" -U postgres -d postgres \
		-c "CREATE ROLE nvsentinel LOGIN" \
		-c "CREATE DATABASE nvsentinel OWNER nvsentinel" \
		-c "CREATE ROLE scram_user LOGIN PASSWORD 'scram-test-password'" >/dev/null ||
		{ server_stop "$d" immediate; die "creating roles failed"; }

	cat >"$d/env.tmp" <<EOF
# written by pgtmp.sh start; source it
PGTMP_DIR='$d'
PGTMP_BIN='$PGBIN'
PGTMP_LOG='$d/log/server.log'
PGTMP_SCRAM_USER='scram_user'
PGTMP_SCRAM_PASSWORD='scram-test-password'
PGHOST='$d/sock'
PGPORT='$port'
PGUSER='postgres'
PGDATABASE='nvsentinel'
DATASTORE_HOST='localhost'
DATASTORE_PORT='$port'
DATASTORE_DATABASE='nvsentinel'
DATASTORE_USERNAME='nvsentinel'
DATASTORE_SSLMODE='verify-full'
DATASTORE_SSLCERT='$d/tls/client.crt'
DATASTORE_SSLKEY='$d/tls/client.key'
DATASTORE_SSLROOTCERT='$d/tls/ca.crt'
export PGTMP_DIR PGTMP_BIN PGTMP_LOG PGTMP_SCRAM_USER PGTMP_SCRAM_PASSWORD
export PGHOST PGPORT PGUSER PGDATABASE
export DATASTORE_HOST DATASTORE_PORT DATASTORE_DATABASE DATASTORE_USERNAME DATASTORE_SSLMODE
export DATASTORE_SSLCERT DATASTORE_SSLKEY DATASTORE_SSLROOTCERT
EOF
	mv "$d/env.tmp" "$d/env"
}

cmd_stop() {
	d=$(absdir "${1:-}")
	[ -e "$d" ] || return 0
	# Refuse to rm -rf a directory start never set up.
	[ -e "$d/.pgtmp" ] || die "$d was not made by pgtmp.sh start; not removing it"
	cd /
	(server_stop "$d/replica" immediate) # a subshell: server_stop sets d
	server_stop "$d" fast
	i=0
	until rm -rf "$d" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 20 ] || die "could not remove $d"
		sleep 0.1 # a killed server's backends may still be exiting
	done
}

need_cluster() {
	[ -f "$1/data/PG_VERSION" ] || die "$1 holds no cluster"
	cd "$1"
}

# A standby in DIR/replica: all of the primary's TLS setup and roles come with the base
# backup. It listens on another loopback address with the same port, so a client can
# name both servers with one port (host=localhost,localhost hostaddr=127.0.0.1,ADDR).
# The primary waits for it on every commit (synchronous_standby_names), so whatever a
# client saw committed survives a promotion.
cmd_replica() {
	p=$(absdir "${1:-}")
	addr=${2:-127.0.0.2}
	r=$p/replica
	need_cluster "$p"
	. "$p/env"
	[ -e "$r" ] && die "$r exists"
	mkdir -p "$r/sock" "$r/log"
	mkdir -m 700 "$r/data"
	[ -n "$RUNAS" ] && chown "$RUNAS:" "$r/sock" "$r/log" "$r/data"
	: >"$r/.pgtmp"
	grep -q '^local *replication' "$p/data/pg_hba.conf" ||
		echo 'local     replication all                   trust' >>"$p/data/pg_hba.conf"
	as_pg "$PGBIN/pg_ctl" -D "$p/data" reload >/dev/null
	as_pg "$PGBIN/pg_basebackup" -D "$r/data" -h "$PGHOST" -p "$PGPORT" -U postgres -X stream -R -c fast \
		--no-sync >"$r/log/basebackup.log" 2>&1 || { cat "$r/log/basebackup.log" >&2; die "pg_basebackup failed"; }
	write_conf "$r" "$PGPORT" "$addr"
	echo "primary_conninfo = 'host=$PGHOST port=$PGPORT user=postgres application_name=nvs_replica'" \
		>>"$r/data/postgresql.auto.conf"
	[ -n "$RUNAS" ] && chown "$RUNAS:" "$r/data/nvs.conf" "$r/data/postgresql.auto.conf"
	server_start "$r" || { tail -n 20 "$r/log/server.log" >&2; die "replica did not start"; }
	i=0
	until [ "$("$PGBIN/psql" -X -A -t -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c \
		"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'nvs_replica' AND state = 'streaming'")" = 1 ]; do
		i=$((i + 1))
		[ $i -lt 300 ] || die "replica not streaming"
		sleep 0.1
	done
	"$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres \
		-c "ALTER SYSTEM SET synchronous_standby_names = 'nvs_replica'" -c "SELECT pg_reload_conf()" >/dev/null
	sed -e "s|^PGTMP_DIR=.*|PGTMP_DIR='$r'|" -e "s|^PGTMP_LOG=.*|PGTMP_LOG='$r/log/server.log'|" \
		-e "s|^PGHOST=.*|PGHOST='$r/sock'|" "$p/env" >"$r/env"
	echo "PGTMP_ADDR='$addr'" >>"$r/env"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
restart)
	d=$(absdir "${1:-}"); need_cluster "$d"
	case ${2:-fast} in fast|immediate|smart) ;; *) die "mode must be fast or immediate" ;; esac
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log/server.log" -m "${2:-fast}" -w -t 60 restart >/dev/null
	;;
stop-server)
	d=$(absdir "${1:-}"); need_cluster "$d"
	server_stop "$d" "${2:-fast}"
	;;
start-server)
	d=$(absdir "${1:-}"); need_cluster "$d"
	is_running "$d" || server_start "$d"
	;;
status)
	d=$(absdir "${1:-}"); need_cluster "$d"
	is_running "$d"
	;;
replica) cmd_replica "$@" ;;
promote)
	d=$(absdir "${1:-}"); need_cluster "$d"
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -w -t 60 promote >/dev/null
	;;
psql)
	d=$(absdir "${1:-}"); need_cluster "$d"; shift
	. "$d/env"
	exec "$PGTMP_BIN/psql" -X "$@"
	;;
*)
	echo "usage: pgtmp.sh start DIR [PORT] | stop DIR | restart DIR [fast|immediate] |" >&2
	echo "       stop-server DIR [fast|immediate] | start-server DIR | status DIR | psql DIR [args] |" >&2
	echo "       replica DIR [ADDR] | promote DIR" >&2
	exit 2
	;;
esac

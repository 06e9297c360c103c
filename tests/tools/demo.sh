#!/bin/sh
# demo.sh - `make demo`: a throwaway PostgreSQL 15 with TLS and client
# certificates, nvsrelayd streaming from it over verify-full TLS, sample
# NVSentinel health events written the way platform-connectors stores them,
# then the status updates fault-quarantine and node-drainer make, all seen
# by `nvsrelay watch` on the Unix socket.  Everything it starts is stopped
# on exit.  It needs nothing of the machine but the packages: its sockets
# (subscriber and admin) live in its temporary directory, /metrics on a free
# loopback port, no configuration file is read, and it fails when the
# daemon logs an error.  Usage: demo.sh BUILD_DIR
set -eu

BUILD=${1:?usage: demo.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/nvsdemo.XXXXXX)
chmod 755 "$DIR"
DAEMON_PID=
WATCH_PID=

cleanup() {
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
	sh "$HERE/pgtmp.sh" stop "$DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

if [ -t 1 ]; then B='\033[1m' G='\033[32m' N='\033[0m'; else B= G= N=; fi
say() { printf "\n${B}== %s${N}\n" "$*"; }

say "starting a throwaway PostgreSQL 15 with TLS and client-certificate auth"
sh "$HERE/pgtmp.sh" start "$DIR" >/dev/null
. "$DIR/env"
echo "cluster in $DIR, port $PGPORT; nvsrelayd connects as '$DATASTORE_USERNAME' with sslmode=$DATASTORE_SSLMODE"

# A free loopback port for /metrics (released just before the daemon binds it).
HTTP_PORT=$(perl -MIO::Socket::INET -e \
	'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport')

say "starting nvsrelayd (installs the schema, elects itself ticker, listens on $DIR/relay.sock)"
"$BUILD/nvsrelayd" --config /dev/null --set listen_unix="$DIR/relay.sock" --set admin_socket="$DIR/admin.sock" \
	--set http_listen="127.0.0.1:$HTTP_PORT" --set log_format=text >"$DIR/nvsrelayd.log" 2>&1 &
DAEMON_PID=$!
i=0
until [ -S "$DIR/relay.sock" ]; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
		echo "nvsrelayd did not become ready; its log:" >&2
		cat "$DIR/nvsrelayd.log" >&2
		exit 1
	fi
	sleep 0.1
done
sed 's/^/  nvsrelayd: /' "$DIR/nvsrelayd.log"

say "subscribing: nvsrelay watch --table HealthEvents --consumer demo (events print below)"
"$BUILD/nvsrelay" watch --socket "$DIR/relay.sock" --table HealthEvents --consumer demo \
	>"$DIR/watch.out" 2>&1 &
WATCH_PID=$!
SHOWN=0
# Prints what nvsrelay watch wrote since the last call.
show_events() {
	sleep 1
	total=$(wc -l <"$DIR/watch.out")
	tail -n +$((SHOWN + 1)) "$DIR/watch.out" | head -n $((total - SHOWN)) | while IFS= read -r line; do
		op=$(printf '%s' "$line" | sed -n 's/.*"operationType":"\([a-z]*\)".*/\1/p')
		node=$(printf '%s' "$line" | sed -n 's/.*"nodeName": *"\([^"]*\)".*/\1/p')
		upd=$(printf '%s' "$line" | sed -n 's/.*"updatedFields":\({[^}]*}\).*/\1/p')
		printf "  ${G}%-6s${N} %s %s\n" "$op" "$node" "$upd"
		printf '         %s\n' "$line"
	done
	SHOWN=$total
}
sleep 0.5

sql() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

say "platform-connectors stores three health events (one fatal XID 79, one NVLink warning, one healthy check)"
sql <<'SQL'
INSERT INTO health_events (node_name, event_type, severity, recommended_action, document)
SELECT n, c, 'GPU', a, jsonb_build_object(
    'createdAt', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'healthevent', jsonb_strip_nulls(jsonb_build_object(
        'version', 1, 'agent', 'gpu-health-monitor', 'componentClass', 'GPU', 'checkName', c,
        'isFatal', CASE WHEN f THEN true END, 'isHealthy', CASE WHEN h THEN true END,
        'message', m, 'recommendedAction', ra, 'errorCode', jsonb_build_array(e),
        'entitiesImpacted', jsonb_build_array(jsonb_build_object('entityType', 'GPU', 'entityValue', g)),
        'generatedTimestamp', jsonb_build_object('seconds', extract(epoch FROM now())::bigint, 'nanos', 0),
        'nodeName', n, 'processingStrategy', 1)),
    'healtheventstatus', jsonb_build_object(
        'nodequarantined', NULL, 'userpodsevictionstatus', jsonb_build_object('status', ''),
        'faultremediated', NULL, 'spanids', jsonb_build_object('platform-connector', md5(n)::text)))
FROM (VALUES
    ('gpu-node-01', 'GpuXidError', 'RESTART_BM', true, false, 'Xid 79: GPU has fallen off the bus', 24, '79', '0'),
    ('gpu-node-02', 'GpuNvlinkWatch', 'NONE', false, false, 'NVLink CRC errors above threshold', 0, 'NVL_CRC', '3'),
    ('gpu-node-03', 'GpuHealthCheck', 'NONE', false, true, 'all GPUs healthy', 0, '', '0')
) AS v(n, c, a, f, h, m, ra, e, g);
SQL
show_events

say "fault-quarantine cordons gpu-node-01 (jsonb_set on healtheventstatus.nodequarantined)"
sql <<'SQL'
UPDATE health_events
   SET node_quarantined = 'Quarantined',
       document = jsonb_set(jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"'),
                            '{healtheventstatus,spanids,fault-quarantine}', '"5f2b9c0d1e7a4b31"'),
       updated_at = now()
 WHERE node_name = 'gpu-node-01';
SQL
show_events

say "node-drainer evicts the pods (userpodsevictionstatus.status InProgress, then Succeeded)"
for st in InProgress Succeeded; do
	sql -v st="\"$st\"" -v col="$st" <<'SQL'
UPDATE health_events
   SET user_pods_eviction_status = :'col',
       document = jsonb_set(document, '{healtheventstatus,userpodsevictionstatus,status}', :'st'::jsonb),
       updated_at = now()
 WHERE node_name = 'gpu-node-01';
SQL
	show_events
done

events=$(grep -c '"operationType"' "$DIR/watch.out" || true)
say "nvsrelay watch received $events events (3 inserts, 3 updates expected)"

say "what on-call sees: nvsrelay status and clients on the admin socket, /metrics on port $HTTP_PORT"
"$BUILD/nvsrelay" status --admin-socket "$DIR/admin.sock" | sed 's/^/  /'
"$BUILD/nvsrelay" clients --admin-socket "$DIR/admin.sock" | sed 's/^/  /'
perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new("127.0.0.1:$ARGV[0]") or die "no /metrics: $!\n";
	print $s "GET /metrics HTTP/1.0\r\n\r\n";
	print "  $_" for grep { /^nvsrelay_(delivery_latency_seconds_count|events_delivered_total|ready) / } <$s>;
' "$HTTP_PORT"
if [ -t 0 ] && [ -t 1 ]; then
	echo "The stream is live: write more rows with"
	echo "  psql 'host=$PGHOST port=$PGPORT dbname=nvsentinel user=postgres'"
	printf "Press Enter to stop and clean up. "
	read -r _ || true
fi
say "stopping (SIGTERM: final bookmark, positions saved, exit 0)"
kill "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
kill "$DAEMON_PID"
wait "$DAEMON_PID" && echo "nvsrelayd exited 0"
DAEMON_PID=
[ "$events" -ge 6 ] || { echo "demo: expected 6 events, saw $events" >&2; exit 1; }
if grep ' err ' "$DIR/nvsrelayd.log" >&2; then
	echo "demo: nvsrelayd logged errors (above)" >&2
	exit 1
fi

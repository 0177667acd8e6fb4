#!/bin/sh
# Install pair into a container: its CLI in a virtualenv, an sshd on its own port that lets in
# exactly the people a Space is shared with (`pair verify` as AuthorizedKeysCommand), and
# supervisord programs for that sshd and `pair agent`. Safe to run twice; changes only what is
# missing. Also the Devcontainer Feature's installer (devcontainer-feature/src/pairspaces).
#
#   curl -fsSL https://BROKER/install.sh | sh -s -- --token "$(cat SPACE_ID.txt)"
#   sh install.sh --help
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

# -- fixed places (DESIGN.md §4)
SSHD_CONFIG=/etc/ssh/pair_sshd_config
SUPERVISOR_DIR=/etc/supervisor
SUPERVISORD_CONF=/etc/supervisor/supervisord.conf
CONF_D=/etc/supervisor/conf.d
PROGRAMS_CONF=/etc/supervisor/conf.d/pair.conf
LOG_DIR=/var/log/supervisor
BIN_DIR=/usr/local/bin
PYPI_NAME=pair-spaces
SUPERVISOR_SPEC="supervisor>=4.2"

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
  --broker-url URL    the broker's URL, kept in PREFIX/broker-url      [BROKERURL]
  --package SPEC      where pair comes from: empty for the newest pair-spaces on PyPI, a version
                      (0.1.0), a requirement (pair-spaces==0.1.0), a local wheel or sdist path,
                      or `broker` for URL/download/pair.whl (needs --broker-url)   [PACKAGE]
  --ssh-port PORT     the port sshd listens on (default 2222)          [SSHPORT]
  --ssh-user USER     the account people log in as (default $_REMOTE_USER, else root) [SSHUSER]
  --prefix DIR        where pair lives (default /opt/pair; root-owned)  [PAIR_PREFIX]
  --dry-run           print every action it would take; change nothing  [DRYRUN=true]
  --uninstall         remove what install.sh installed (not the OS packages) [UNINSTALL=true]
  -h, --help          this text

Needs root. Then start supervisord (supervisord -c /etc/supervisor/supervisord.conf) and run
PREFIX/pair spaces bootstrap.
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

# Everything below lands in sshd and supervisord configs, or in a shell: validate it all first.
# The token lands in none of them (only in PREFIX/bootstrap.txt, through printf '%s'), so it is
# judged later by pair's own parser, the one `pair spaces bootstrap` uses (check_token).
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
    BROKERURL=${BROKERURL%/}
    case $BROKERURL in
        "") ;;
        http://?* | https://?*)
            case ${BROKERURL#*://} in
                *[!A-Za-z0-9.:/_~%-]*) die "--broker-url has characters a URL should not have: \"$BROKERURL\"." ;;
            esac ;;
        *) die "--broker-url must start with http:// or https://, not \"$BROKERURL\"." ;;
    esac
    if [ "$UNINSTALL" = false ]; then classify_package; fi
    VENV=$PAIR_PREFIX/venv
    VPY=$VENV/bin/python
    LAUNCHER=$PAIR_PREFIX/pair
    HOST_KEY=$PAIR_PREFIX/sshd/ssh_host_ed25519_key
    CREATED=$PAIR_PREFIX/created-by-install.sh
    PACKAGE_STAMP=$VENV/.pair-package
}

# PACKAGE_KIND (pypi, file or broker) and PACKAGE_SPEC (what pip or the download gets) from PACKAGE.
classify_package() {
    PACKAGE_KIND=pypi
    case $PACKAGE in
        "") PACKAGE_SPEC=$PYPI_NAME ;;
        broker)
            [ -n "$BROKERURL" ] || die "--package broker needs --broker-url." "Pass --broker-url https://your-broker."
            PACKAGE_KIND=broker
            PACKAGE_SPEC="$BROKERURL/download/pair.whl" ;;
        [0-9]*)
            case $PACKAGE in *[!A-Za-z0-9.+!-]*) die "Not a version: \"$PACKAGE\"." ;; esac
            PACKAGE_SPEC="$PYPI_NAME==$PACKAGE" ;;
        "$PYPI_NAME" | "$PYPI_NAME"[=\<\>\!~]*)
            case $PACKAGE in *[!A-Za-z0-9.,+!=\<\>~-]*) die "Not a requirement: \"$PACKAGE\"." ;; esac
            PACKAGE_SPEC=$PACKAGE ;;
        */* | *.whl | *.tar.gz | *.zip)
            [ -f "$PACKAGE" ] || die "No such package file: $PACKAGE."
            PACKAGE_KIND="file"
            PACKAGE_SPEC=$PACKAGE ;;
        *) die "--package must be empty, a version, $PYPI_NAME==VERSION, a wheel/sdist path or \"broker\", not \"$PACKAGE\"." ;;
    esac
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

# -- steps ----------------------------------------------------------------------------------

# record PATH: remember that install.sh created PATH, so --uninstall removes it (and only it).
record() {
    if dry; then return 0; fi
    if [ ! -f "$CREATED" ] || ! grep -qxF "$1" "$CREATED"; then
        printf '%s\n' "$1" >>"$CREATED"
    fi
}

make_dir() {
    mkdir -p "$1"
    chmod "$2" "$1"
}

ensure_dir() { # ensure_dir DIR MODE [record]
    if [ -d "$1" ]; then
        return 0
    fi
    act "create $1" make_dir "$1" "$2"
    if [ "${3:-}" = record ]; then record "$1"; fi
}

ensure_prefix() {
    if [ ! -d "$PAIR_PREFIX" ]; then
        act "create $PAIR_PREFIX (root-owned, 0755)" make_dir "$PAIR_PREFIX" 755
        return 0
    fi
    owner=$(stat -c %u "$PAIR_PREFIX")
    mode=$(stat -c %a "$PAIR_PREFIX")
    if [ "$owner" = 0 ] && [ "$mode" = 755 ]; then
        ok "$PAIR_PREFIX is root-owned, 0755"
    else
        act "make $PAIR_PREFIX root-owned, 0755 (sshd insists)" fix_owner "$PAIR_PREFIX"
    fi
}

fix_owner() {
    chown 0:0 "$1"
    chmod 755 "$1"
}

# write_file PATH MODE CONTENT: replace PATH if its content or mode differs (atomically).
write_file() {
    target=$1
    mode=$2
    content=$3
    if [ -f "$target" ] && [ "$(cat "$target")" = "$content" ]; then
        if [ "$(stat -c %a "$target")" = "$mode" ]; then
            ok "$target is up to date"
            return 1
        fi
        act "set $target to mode $mode" chmod "$mode" "$target"
        return 0
    fi
    if [ -f "$target" ]; then
        act "update $target" put_file "$target" "$mode" "$content"
    else
        act "write $target" put_file "$target" "$mode" "$content"
    fi
}

put_file() {
    (
        umask 077
        printf '%s\n' "$3" >"$1.pair-new"
    )
    chmod "$2" "$1.pair-new"
    mv -f "$1.pair-new" "$1"
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

# Download BROKERURL/download/pair.whl into WORK_DIR under the name the broker gives it; prints the path.
download_wheel() {
    "$VPY" - "$BROKERURL/download/pair.whl" "$WORK_DIR" <<'PY'
import re, sys, urllib.request
url, folder = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=60) as response:
        disposition = response.headers.get("Content-Disposition", "")
        data = response.read()
except OSError as exc:
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
    kind=$PACKAGE_KIND
    spec=$PACKAGE_SPEC
    stamp=""
    if dry && [ ! -x "$VPY" ]; then
        act "install $spec and $SUPERVISOR_SPEC into $VENV" true
        return 0
    fi
    file=""
    case $kind in
        pypi) stamp="pypi $spec" ;;
        file) file=$spec; stamp="sha256 $(sha256_of "$file")" ;;
        broker)
            if dry; then
                act "download $spec and install it into $VENV" true
            else
                WORK_DIR=$(mktemp -d)
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

# The token through pair.api.tokens, the parser `pair spaces bootstrap` uses: it drops what a
# paste adds (whitespace, CR/LF, a BOM, quotes, NAME=) and refuses anything else, naming why. So
# install.sh accepts exactly what bootstrap accepts, and keeps the token as bootstrap will read it.
check_token() {
    if [ -z "$TOKEN" ]; then return 0; fi
    if [ ! -x "$VPY" ] || ! "$VPY" -I -c 'import pair.api.tokens' >/dev/null 2>&1; then
        log "the token is checked by pair itself once pair is installed" # a dry run on a bare system
        return 0
    fi
    # It prints "pair: error: ..." and "pair: hint: ..." itself; nothing more is installed after it.
    if ! TOKEN=$(printf '%s' "$TOKEN" | "$VPY" -I -m pair.api.tokens --source="$TOKEN_FROM"); then
        exit 1
    fi
    ok "the Space token from $TOKEN_FROM is well-formed"
}

ensure_path_links() {
    for program in supervisord supervisorctl; do
        existing=$(command -v "$program" 2>/dev/null || true)
        if [ -n "$existing" ]; then
            ok "$program is on PATH ($existing)"
            continue
        fi
        link=$BIN_DIR/$program
        if [ -e "$link" ] || [ -L "$link" ]; then
            ok "$link exists"
            continue
        fi
        act "link $link -> $VENV/bin/$program" ln -s "$VENV/bin/$program" "$link"
        record "$link"
    done
}

# The launcher text `python -m pair.container.launcher` would write, rendered without writing.
launcher_text() {
    "$VPY" -m pair.container.launcher --print "$PAIR_PREFIX"
}

ensure_launcher() {
    if [ ! -x "$VPY" ] || ! "$VPY" -c 'import pair' >/dev/null 2>&1; then
        act "write the launcher $LAUNCHER (python -m pair.container.launcher)" true
        return 0
    fi
    if [ -f "$LAUNCHER" ] && [ "$(stat -c %a "$LAUNCHER")" = 755 ] \
        && wanted=$(launcher_text) && [ "$(cat "$LAUNCHER")" = "$wanted" ]; then
        ok "launcher $LAUNCHER is up to date"
    else
        act "write the launcher $LAUNCHER" "$VPY" -m pair.container.launcher "$LAUNCHER" "$PAIR_PREFIX"
    fi
}

ensure_host_key() {
    ensure_dir "$PAIR_PREFIX/sshd" 755
    if [ -f "$HOST_KEY" ] && [ -f "$HOST_KEY.pub" ]; then
        ok "sshd host key $HOST_KEY"
    else
        act "generate the sshd host key $HOST_KEY" generate_host_key
    fi
    ensure_dir /run/sshd 755
}

generate_host_key() {
    rm -f "$HOST_KEY" "$HOST_KEY.pub"
    ssh-keygen -q -t ed25519 -N "" -C pair-space -f "$HOST_KEY" </dev/null
}

# render WHAT ARGS...: a config text from the installed package (the same text the tests check).
render() {
    "$VPY" -m pair.container.configs "$@"
}

ensure_sshd_config() {
    sshd=$(find_sshd)
    if [ ! -x "$VPY" ]; then
        act "write $SSHD_CONFIG (pair's sshd config, port $SSHPORT) and check it with sshd -t" true
        return 0
    fi
    content=$(render sshd --prefix "$PAIR_PREFIX" --port "$SSHPORT" --sshd "$sshd")
    if [ -f "$SSHD_CONFIG" ] && [ "$(cat "$SSHD_CONFIG")" = "$content" ]; then
        ok "$SSHD_CONFIG is up to date"
    elif dry; then
        act "write $SSHD_CONFIG (port $SSHPORT) and check it with sshd -t" true
    else
        put_file_checked "$SSHD_CONFIG" "$content" "$sshd"
        CHANGES=$((CHANGES + 1))
        SSHD_CHANGED=true
    fi
    if ! dry && [ -f "$SSHD_CONFIG" ] && ! output=$("$sshd" -t -f "$SSHD_CONFIG" 2>&1); then
        die "sshd rejects $SSHD_CONFIG: $output"
    fi
}

put_file_checked() { # PATH CONTENT SSHD: write beside, let sshd check it, then move into place.
    log "write $1 (port $SSHPORT)"
    (
        umask 022
        printf '%s\n' "$2" >"$1.pair-new"
    )
    if ! output=$("$3" -t -f "$1.pair-new" 2>&1); then
        rm -f "$1.pair-new"
        die "sshd rejects the config pair rendered: $output"
    fi
    chmod 644 "$1.pair-new"
    mv -f "$1.pair-new" "$1"
}

ensure_supervisor_configs() {
    ensure_dir "$SUPERVISOR_DIR" 755 record
    ensure_dir "$CONF_D" 755 record
    ensure_dir "$LOG_DIR" 755 record
    if [ ! -x "$VPY" ]; then
        [ -f "$SUPERVISORD_CONF" ] || act "write $SUPERVISORD_CONF (none exists)" true
        act "write $PROGRAMS_CONF (programs sshd and pair-agent)" true
        return 0
    fi
    if [ ! -f "$SUPERVISORD_CONF" ] || grep -qxF "$SUPERVISORD_CONF" "$CREATED" 2>/dev/null; then
        if write_file "$SUPERVISORD_CONF" 644 "$(render supervisord --conf-d "$CONF_D")"; then
            record "$SUPERVISORD_CONF"
            SUPERVISOR_CHANGED=true
        fi
    elif ! grep -q '^[[:space:]]*\[include\]' "$SUPERVISORD_CONF"; then
        warn "$SUPERVISORD_CONF (not ours) has no [include] section, so supervisord will NOT run pair's sshd and agent."
        warn "Add these two lines to it:  [include]  and  files = $CONF_D/*.conf"
    elif ! grep -q "^[[:space:]]*files[[:space:]]*=.*$CONF_D/" "$SUPERVISORD_CONF"; then
        warn "$SUPERVISORD_CONF (not ours) has an [include] that may not cover $CONF_D/*.conf; pair's programs are in $PROGRAMS_CONF."
    else
        ok "$SUPERVISORD_CONF (not ours) includes $CONF_D/*.conf"
    fi
    programs=$(render programs --prefix "$PAIR_PREFIX" --sshd-config "$SSHD_CONFIG" --sshd "$(find_sshd)")
    if write_file "$PROGRAMS_CONF" 644 "$programs"; then
        SUPERVISOR_CHANGED=true
    fi
}

# With UsePAM off, sshd refuses an account whose password field starts with "!" (locked).
# "*" means "no password" without locking: key logins work, password logins stay impossible.
check_login_user() {
    if id -u "$SSHUSER" >/dev/null 2>&1; then return 0; fi
    if dry; then
        warn "there is no user $SSHUSER (a real run stops here)"
    else
        die "There is no user \"$SSHUSER\" to log in as." "Create it first, or pass --ssh-user."
    fi
}

ensure_login_user() {
    if ! id -u "$SSHUSER" >/dev/null 2>&1; then return 0; fi # a dry run said so already
    if [ ! -r /etc/shadow ]; then
        warn "cannot read /etc/shadow (not root); a real run makes sure $SSHUSER is not locked"
    else
        field=$(awk -F: -v u="$SSHUSER" '$1 == u { print $2 }' /etc/shadow)
        case $field in
            "!"*'$'*)
                warn "$SSHUSER has a locked password; sshd (UsePAM no) refuses it even with a key. Unlock it: usermod -U $SSHUSER" ;;
            "!"*) # "!", "!!", "!*", "!locked" (Fedora): locked, and no password to lose
                act "unlock $SSHUSER for key logins (its password field \"$field\" becomes \"*\": still no password)" \
                    set_no_password "$SSHUSER" ;;
            *) ok "$SSHUSER can log in with a key" ;;
        esac
    fi
    write_file "$PAIR_PREFIX/ssh-user" 644 "$SSHUSER" || true
}

set_no_password() {
    if command -v usermod >/dev/null 2>&1; then
        usermod -p '*' "$1"
    else
        # busybox systems (Alpine) have no usermod: edit the one field in place.
        awk -F: -v OFS=: -v u="$1" '$1 == u { $2 = "*" } { print }' /etc/shadow >/etc/shadow.pair-new
        chmod 640 /etc/shadow.pair-new
        cat /etc/shadow.pair-new >/etc/shadow
        rm -f /etc/shadow.pair-new
    fi
}

ensure_settings() {
    if [ -n "$TOKEN" ]; then
        write_file "$PAIR_PREFIX/bootstrap.txt" 600 "$TOKEN" || true
    fi
    if [ -n "$BROKERURL" ]; then
        write_file "$PAIR_PREFIX/broker-url" 644 "$BROKERURL" || true
    fi
    # The agent dials sshd (tunnels, health probe) on this port.
    write_file "$PAIR_PREFIX/ssh-port" 644 "$SSHPORT" || true
}

# If supervisord already runs (install.sh run again in a live container), load the new programs.
apply_to_running_supervisord() {
    if dry; then return 0; fi
    if [ "${SUPERVISOR_CHANGED:-false}" != true ] && [ "${SSHD_CHANGED:-false}" != true ]; then return 0; fi
    ctl=$VENV/bin/supervisorctl
    if [ -x "$ctl" ] && "$ctl" -c "$SUPERVISORD_CONF" pid >/dev/null 2>&1; then
        log "supervisord is running: loading the new programs (supervisorctl update)"
        "$ctl" -c "$SUPERVISORD_CONF" update || warn "supervisorctl update failed"
        if [ "${SSHD_CHANGED:-false}" = true ]; then
            log "note: run \`supervisorctl restart sshd\` to apply the new sshd config"
        fi
    fi
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
    check_parents # before anything is installed
    check_login_user
    if dry; then log "dry run: nothing will be changed"; fi
    ensure_packages
    ensure_prefix
    ensure_venv
    ensure_package
    check_token
    ensure_path_links
    ensure_launcher
    ensure_host_key
    ensure_sshd_config
    ensure_supervisor_configs
    ensure_login_user
    ensure_settings
    apply_to_running_supervisord
    if dry; then
        log "dry run: $CHANGES change(s) would be made; nothing was changed."
    elif [ "$CHANGES" -eq 0 ]; then
        log "pair is already installed in $PAIR_PREFIX; nothing to change."
    else
        log "pair is installed in $PAIR_PREFIX ($CHANGES change(s)). sshd will listen on port $SSHPORT."
        log "next: supervisord -c $SUPERVISORD_CONF   (postStartCommand), then"
        log "      $LAUNCHER spaces bootstrap           (postAttachCommand)"
    fi
}

# -- uninstall ------------------------------------------------------------------------------

remove() { # remove PATH: a file or symlink install.sh made
    if [ -L "$1" ] || [ -f "$1" ]; then
        act "remove $1" rm -f "$1"
    fi
}

do_uninstall() {
    is_root || dry || die "install.sh --uninstall needs root." "Run it as root."
    if dry; then log "dry run: nothing will be changed"; fi
    ctl=$VENV/bin/supervisorctl
    running=false
    if [ -x "$ctl" ] && "$ctl" -c "$SUPERVISORD_CONF" pid >/dev/null 2>&1; then running=true; fi
    ours_conf=false
    if [ -f "$CREATED" ] && grep -qxF "$SUPERVISORD_CONF" "$CREATED"; then ours_conf=true; fi

    remove "$PROGRAMS_CONF"
    if [ "$running" = true ]; then
        if [ "$ours_conf" = true ]; then
            act "stop supervisord (supervisorctl shutdown): install.sh started its config" "$ctl" -c "$SUPERVISORD_CONF" shutdown
        else
            act "stop pair's sshd and agent (supervisorctl update)" "$ctl" -c "$SUPERVISORD_CONF" update
        fi
    fi
    remove "$SSHD_CONFIG"
    if [ -f "$CREATED" ]; then
        # Newest first, so a directory comes after what install.sh put in it.
        newest_first=$(awk '{ lines[NR] = $0 } END { for (i = NR; i > 0; i--) print lines[i] }' "$CREATED")
        while IFS= read -r path; do
            [ -n "$path" ] || continue
            if [ -L "$path" ]; then
                case $(readlink "$path") in
                    "$PAIR_PREFIX"/*) remove "$path" ;;
                esac
            elif [ -f "$path" ]; then
                remove "$path"
            elif [ -d "$path" ]; then
                if [ "$path" = "$LOG_DIR" ] && [ "$ours_conf" = true ]; then
                    for logfile in "$LOG_DIR"/supervisord.log* "$LOG_DIR"/pair-*.log*; do
                        remove "$logfile"
                    done
                fi
                if [ -z "$(ls -A "$path" 2>/dev/null)" ] || dry; then
                    act "remove the directory $path (if empty)" rmdir_quiet "$path"
                fi
            fi
        done <<EOF
$newest_first
EOF
    fi
    for program in supervisord supervisorctl; do
        if [ -L "$BIN_DIR/$program" ]; then
            case $(readlink "$BIN_DIR/$program") in
                "$PAIR_PREFIX"/*) remove "$BIN_DIR/$program" ;;
            esac
        fi
    done
    if [ -d "$PAIR_PREFIX" ]; then
        act "remove $PAIR_PREFIX" rm -rf "$PAIR_PREFIX"
    fi
    if dry; then
        log "dry run: $CHANGES change(s) would be made; nothing was changed."
    elif [ "$CHANGES" -eq 0 ]; then
        log "pair is not installed in $PAIR_PREFIX; nothing to remove."
    else
        log "removed pair ($CHANGES change(s)). Python, openssh-server and the login user's \"*\" password field stay."
    fi
}

rmdir_quiet() { rmdir "$1" 2>/dev/null || true; }

main() {
    parse_args "$@"
    validate
    trap cleanup EXIT
    if [ "$UNINSTALL" = true ]; then
        do_uninstall
    else
        do_install
    fi
}

main "$@"

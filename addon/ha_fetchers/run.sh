#!/usr/bin/env bash
# Add-on entry point: the person's options (/data/options.json) become the
# service's environment, then the service runs as PID 1. No secret is printed.
set -euo pipefail

OPTIONS="${ADDON_OPTIONS:-/data/options.json}"   # overridable for tests
CONFIG_DIR=/config                               # addon_config, mapped read-write
SHIPPED=/app/fetchers

log() { echo "ha-fetchers add-on: $*" >&2; }
die() { log "$*"; exit 1; }

# One option as text; empty when unset or null.
opt() { jq -r --arg k "$1" '.[$k] // empty' "$OPTIONS"; }

# A relative path is taken from the add-on's config folder.
in_config() { case "$1" in /*) echo "$1" ;; *) echo "$CONFIG_DIR/$1" ;; esac; }

[ -r "$OPTIONS" ] || die "cannot read $OPTIONS"

# Home Assistant through the Supervisor's proxy: with HA_URL unset the
# service finds SUPERVISOR_TOKEN itself and uses http://supervisor/core and
# ws://supervisor/core/websocket, the add-on docs' endpoints.
unset HA_URL HA_TOKEN
if [ -n "${SUPERVISOR_TOKEN:-}" ]; then
    log "Home Assistant: through the Supervisor"
else
    log "SUPERVISOR_TOKEN is not set: nothing is mirrored (is homeassistant_api on?)"
fi

# One listener: ingress, and the optional host port mapped to it. Requests
# from the ingress proxy count as HA's signed-in person; any other address
# needs API_TOKEN for everything but health.
export BIND=0.0.0.0:8099
export INGRESS_PROXY=172.30.32.2
export LOG_FORMAT=text
# Scoped API tokens (`ha-fetchers token create`) outlive the container in /data.
export TOKENS_FILE=/data/tokens.json

level="$(opt log_level)"
export RUST_LOG="${level:-info}"

# Empty redis_url: states stay in the service's own memory.
redis_url="$(opt redis_url)"
if [ -n "$redis_url" ]; then
    export REDIS_URL="$redis_url"
    redis_ca="$(opt redis_ca_file)"
    if [ -n "$redis_ca" ]; then
        REDIS_CA_FILE="$(in_config "$redis_ca")"
        export REDIS_CA_FILE
    fi
    log "states: Redis"
else
    log "states: in memory (no redis_url)"
fi

token="$(opt api_token)"
[ -z "$token" ] || export API_TOKEN="$token"
hosts="$(opt allowed_hosts)"
[ -z "$hosts" ] || export ALLOWED_HOSTS="$hosts"
sql_url="$(opt fetchers_sql_url)"
[ -z "$sql_url" ] || export FETCHERS_SQL_URL="$sql_url"

database_url="$(opt database_url)"
dir="$(opt fetchers_dir)"
source="$(opt fetchers_source)"
case "${source:-files}" in
    mysql)
        [ -n "$database_url" ] || die "fetchers_source is mysql but database_url is empty"
        export DATABASE_URL="$database_url"
        # migrate applies the schemas and seeds the shipped fetchers from here.
        FETCHERS_DIR="$(in_config "${dir:-$SHIPPED}")"
        export FETCHERS_DIR
        log "fetchers: MySQL rows (applying schemas, seeding from $FETCHERS_DIR)"
        ha-fetchers migrate
        ;;
    files)
        # DATABASE_URL would switch the registry to MySQL, so it stays unset.
        [ -z "$database_url" ] || log "database_url is not used with fetchers_source files"
        if [ -n "$dir" ]; then
            FETCHERS_DIR="$(in_config "$dir")"
        elif [ -d "$CONFIG_DIR" ] && [ -w "$CONFIG_DIR" ]; then
            # First start: an editable copy of the shipped fetchers and prompts.
            FETCHERS_DIR="$CONFIG_DIR/fetchers"
            [ -e "$FETCHERS_DIR" ] || cp -r "$SHIPPED" "$FETCHERS_DIR"
        else
            FETCHERS_DIR="$SHIPPED"
        fi
        export FETCHERS_DIR
        log "fetchers: files in $FETCHERS_DIR"
        ;;
    *) die "fetchers_source must be files or mysql, not $source" ;;
esac

exec ha-fetchers serve

#!/usr/bin/env bash
# Install healer's systemd unit, its system user, a default config and an env file.
# Idempotent: files that already exist are left alone (the unit is replaced only if it changed).
#
#   scripts/install-service.sh [--dry-run]
#   DESTDIR=/tmp/stage scripts/install-service.sh   # stage into a tree; no user, no reload
set -euo pipefail

usage() {
    echo "usage: ${0##*/} [--dry-run]   (env: DESTDIR, HEALER_CONFIG_SRC)"
}

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run|-n) DRY_RUN=1 ;;
        --help|-h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
UNIT_SRC="$REPO/deploy/healer.service"
CONFIG_SRC="${HEALER_CONFIG_SRC:-$REPO/config/orchestration.yml}"
UNIT_DST="$DESTDIR/etc/systemd/system/healer.service"
CONFIG_DST="$DESTDIR/etc/healer/orchestration.yml"
ENV_DST="$DESTDIR/etc/default/healer"
SERVICE_USER=healer

# Print each step; run it only outside --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

systemd_running() {
    # sd_booted(3)'s test, plus PID 1's name: a container may bind-mount /run.
    [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null || true)" = systemd ]
}

if [ ! -f "$UNIT_SRC" ]; then
    echo "error: $UNIT_SRC not found" >&2
    exit 1
fi
if [ "$DRY_RUN" = 0 ] && [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "error: run as root (or set DESTDIR to stage, or pass --dry-run)" >&2
    exit 1
fi

# 1. The unit.
if [ -f "$UNIT_DST" ] && cmp -s "$UNIT_SRC" "$UNIT_DST"; then
    echo "unit: $UNIT_DST is up to date"
else
    run install -D -m 0644 "$UNIT_SRC" "$UNIT_DST"
fi

# 2. The system user (only on the live system: a staging tree has no user database to edit).
if [ -n "$DESTDIR" ]; then
    echo "user: skipped under DESTDIR; create the '$SERVICE_USER' system user on the target"
elif getent passwd "$SERVICE_USER" >/dev/null; then
    echo "user: $SERVICE_USER exists"
else
    nologin="$(command -v nologin || echo /usr/sbin/nologin)"
    run useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell "$nologin" --comment "healer service" "$SERVICE_USER"
fi

# 3. A default config, never overwriting the operator's.
if [ -e "$CONFIG_DST" ]; then
    echo "config: $CONFIG_DST exists, left alone"
elif [ -f "$CONFIG_SRC" ]; then
    run install -D -m 0644 "$CONFIG_SRC" "$CONFIG_DST"
else
    echo "config: no default at $CONFIG_SRC; write $CONFIG_DST yourself" >&2
fi

# 4. The env file for secrets (HEALER_DISCORD_WEBHOOK): root-only, read by systemd itself.
if [ -e "$ENV_DST" ]; then
    echo "env: $ENV_DST exists, left alone"
elif [ "$DRY_RUN" = 1 ]; then
    echo "would write: $ENV_DST (mode 0600)"
else
    run install -d -m 0755 "$(dirname "$ENV_DST")"
    echo "+ write $ENV_DST (mode 0600)"
    (
        umask 077
        printf '%s\n' \
            '# Environment for healer.service. Keep this file mode 0600: it holds secrets.' \
            '#HEALER_DISCORD_WEBHOOK=https://discord.com/api/webhooks/<id>/<token>' \
            > "$ENV_DST"
    )
fi

# 5. Tell systemd, if it is the running init.
if [ -z "$DESTDIR" ] && systemd_running; then
    run systemctl daemon-reload
else
    echo "systemd: not reloaded (DESTDIR set or systemd is not PID 1)"
fi

cat <<NEXT

Next:
  1. Install the healer command at /usr/local/bin/healer, e.g.
       python3 -m venv /opt/healer && /opt/healer/bin/pip install $REPO
       ln -sf /opt/healer/bin/healer /usr/local/bin/healer
  2. Let '$SERVICE_USER' write the workspace root /srv/agent_workspaces (shared group,
     setgid directories; set SupplementaryGroups= in a drop-in: systemctl edit healer).
  3. Put HEALER_DISCORD_WEBHOOK in $ENV_DST if you want Discord alerts.
  4. systemctl enable --now healer && journalctl -u healer -f
NEXT

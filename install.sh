#!/bin/sh
# AgentOwl installer: from an unpacked release tarball (the binary beside this file) or with
# --binary PATH. Linux with systemd or macOS with launchd. Run as root; --dry-run first to see
# every step. Running it again changes nothing and says so. docs/operations.md has the details.
set -eu

usage() {
	cat <<'EOF'
Usage: install.sh [options]

Installs agentowl as a service: the service user, the data dir (0700), the binary, the vault
master key (a systemd credential), 'agentowl init' (it prints the first admin's password and
API token once), the systemd unit or launchd plist, enabled and started; then it waits for
/readyz and prints the console URL and the SMTP address.

  --binary PATH      the agentowl binary to install (default: ./agentowl beside install.sh)
  --prefix DIR       where the binary goes: DIR/bin (default /usr/local). Any prefix other than
                     /usr/local and /usr puts everything under DIR: DIR/etc, DIR/var/lib/agentowl
  --data-dir DIR     the data dir (default /var/lib/agentowl; macOS /usr/local/var/agentowl)
  --user NAME        the service user (default agentowl; macOS _agentowl), created if missing
  --upgrade          replace an installed binary: the previous one is kept as agentowl.prev and
                     the database copied to <data dir>/upgrade/; when the new one exits or is
                     not ready in --ready-timeout, both are put back ('agentowl rollback' later)
  --uninstall        stop and remove the service and the binary; keeps the data dir, the
                     settings and the master key
  --purge            with --uninstall: also remove the data dir, the settings, the master key
                     and the service user (the data cannot be recovered)
  --init-system S    systemd, launchd or none (default: detected)
  --ready-timeout N  seconds to wait for /readyz after a start (default 60)
  --dry-run          print every step, change nothing
  -h, --help         this text

Exit codes: 0 done (or nothing to change), 1 a step failed, 2 bad usage.
EOF
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}
usage_error() {
	echo "install.sh: $*" >&2
	echo "Try: install.sh --help" >&2
	exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
binary=""
prefix=/usr/local
data_dir=""
service_user=""
mode=install
purge=0
dry_run=0
init_system=auto
ready_timeout=60

while [ $# -gt 0 ]; do
	case "$1" in
	--binary | --prefix | --data-dir | --user | --init-system | --ready-timeout)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		case "$1" in
		--binary) binary=$2 ;;
		--prefix) prefix=$2 ;;
		--data-dir) data_dir=$2 ;;
		--user) service_user=$2 ;;
		--init-system) init_system=$2 ;;
		--ready-timeout) ready_timeout=$2 ;;
		esac
		shift
		;;
	--upgrade) mode=upgrade ;;
	--uninstall) mode=uninstall ;;
	--purge) purge=1 ;;
	--dry-run) dry_run=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown option '$1'" ;;
	esac
	shift
done
[ "$purge" -eq 0 ] || [ "$mode" = uninstall ] || usage_error "--purge goes with --uninstall"
case "$init_system" in auto | systemd | launchd | none) ;; *) usage_error "--init-system: systemd, launchd or none" ;; esac
case "$ready_timeout" in '' | *[!0-9]*) usage_error "--ready-timeout: a number of seconds" ;; esac
case "$prefix" in /*) ;; *) usage_error "--prefix must be an absolute path" ;; esac
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/

# ---- where things go -------------------------------------------------------------------------

os=$(uname -s)
case "$prefix" in
/usr/local | /usr) root="" ;;
*) root=$prefix ;;
esac
bin_dir=$prefix/bin
bin=$bin_dir/agentowl
prev=$bin_dir/agentowl.prev
etc_dir=$root/etc/agentowl
cred_dir=$etc_dir/credentials
master_key=$cred_dir/agentowl-master-key
env_file=$etc_dir/agentowl.env
unit=$root/etc/systemd/system/agentowl.service
plist=$root/Library/LaunchDaemons/dev.agentowl.agentowl.plist
apparmor_profile=$root/etc/apparmor.d/agentowl-bwrap
log_file=$root/Library/Logs/agentowl.log
if [ "$os" = Darwin ]; then
	[ -n "$data_dir" ] || data_dir=$root/usr/local/var/agentowl
	[ -n "$service_user" ] || service_user=_agentowl
else
	[ -n "$data_dir" ] || data_dir=$root/var/lib/agentowl
	[ -n "$service_user" ] || service_user=agentowl
fi
case "$data_dir" in /*) ;; *) usage_error "--data-dir must be an absolute path" ;; esac

# The service manager: systemd only when it runs (a container or a chroot has systemctl but no
# systemd), launchd on macOS.
skip_reason=""
if [ "$init_system" = auto ]; then
	if [ "$os" = Linux ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		init_system=systemd
	elif [ "$os" = Darwin ] && command -v launchctl >/dev/null 2>&1; then
		init_system=launchd
	else
		init_system=none
		if [ "$os" = Linux ] && ! command -v systemctl >/dev/null 2>&1; then
			skip_reason="systemctl is not installed"
		elif [ "$os" = Linux ]; then
			skip_reason="systemd is not running here (no /run/systemd/system: a container or a chroot?)"
		elif [ "$os" = Darwin ]; then
			skip_reason="launchctl is not installed"
		else
			skip_reason="$os has neither systemd nor launchd"
		fi
	fi
else
	[ "$init_system" != none ] || skip_reason="--init-system none"
fi

# The master key: a systemd credential outside the data dir; launchd has no credentials, so
# there it stays in the data dir, where 'agentowl serve' looks by default.
if [ "$init_system" = launchd ]; then
	use_credential=0
	master_key=$data_dir/master.key
else
	use_credential=1
fi

# ---- how steps are done ----------------------------------------------------------------------

changed=0
skipped=""
if [ "$dry_run" -eq 1 ]; then
	echo "install.sh: dry run: nothing is changed; these are the steps"
fi

# One change: printed, then done (or only printed with --dry-run).
run() {
	changed=$((changed + 1))
	if [ "$dry_run" -eq 1 ]; then
		echo "would run: $*"
	else
		echo "+ $*"
		"$@"
	fi
}
ok() { echo "ok    $*"; }
skip() {
	echo "skip  $*"
	skipped="$skipped
  - $*"
}
# install_file SRC DEST MODE: copied when DEST differs (atomically: a temp file, then a rename).
install_file() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		ok "$2 (unchanged)"
		return 1
	fi
	run mkdir -p "$(dirname "$2")"
	run cp "$1" "$2.new"
	run chmod "$3" "$2.new"
	run mv -f "$2.new" "$2"
	return 0
}

is_root() { [ "$(id -u)" -eq 0 ]; }
current_user=$(id -un)
if [ "$dry_run" -eq 0 ] && ! is_root && [ "$service_user" != "$current_user" ]; then
	die "run as root (sudo ./install.sh), or with --user $current_user for a user-owned install"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- the service files, rendered for these paths ---------------------------------------------

render_unit() {
	src=$here/systemd/agentowl.service
	[ -f "$src" ] || die "no systemd/agentowl.service beside install.sh ($here): run it from the unpacked tarball"
	sed -e "s#/usr/local/bin/agentowl#$bin#g" \
		-e "s#/var/lib/agentowl#$data_dir#g" \
		-e "s#/etc/agentowl/#$etc_dir/#g" \
		-e "s#^User=agentowl#User=$service_user#" \
		-e "s#^Group=agentowl#Group=$service_group#" "$src" >"$tmp/agentowl.service"
}

render_plist() {
	src=$here/launchd/dev.agentowl.agentowl.plist
	[ -f "$src" ] || die "no launchd/dev.agentowl.agentowl.plist beside install.sh ($here)"
	sed -e "s#<string>/usr/local/bin/agentowl</string>#<string>$bin</string>#" \
		-e "s#<string>/usr/local/var/agentowl</string>#<string>$data_dir</string>#" \
		-e "s#<string>/Library/Logs/agentowl.log</string>#<string>$log_file</string>#g" \
		-e "s#<key>RunAtLoad</key>#<key>UserName</key>\\
  <string>$service_user</string>\\
  <key>RunAtLoad</key>#" "$src" >"$tmp/dev.agentowl.agentowl.plist"
}

# AppArmor on Ubuntu 24.04 and later stops unprivileged user namespaces unless a profile allows
# them: bubblewrap (the agents' sandbox) needs one.
needs_apparmor_profile() {
	release=${INSTALL_OS_RELEASE:-/etc/os-release}
	[ "$os" = Linux ] && [ -r "$release" ] || return 1
	id=$(sed -n 's/^ID=//p' "$release" | tr -d '"')
	version=$(sed -n 's/^VERSION_ID=//p' "$release" | tr -d '"')
	[ "$id" = ubuntu ] || return 1
	major=${version%%.*}
	case "$major" in '' | *[!0-9]*) return 1 ;; esac
	[ "$major" -ge 24 ]
}

render_apparmor() {
	bwrap=$(command -v bwrap 2>/dev/null || echo /usr/bin/bwrap)
	cat >"$tmp/agentowl-bwrap" <<EOF
# Installed by agentowl's install.sh: lets bubblewrap (the agents' sandbox) create user
# namespaces, which Ubuntu 24.04 and later forbid by default.
abi <abi/4.0>,
include <tunables/global>

profile agentowl-bwrap $bwrap flags=(unconfined) {
  userns,
  include if exists <local/agentowl-bwrap>
}
EOF
}

# ---- the service manager ---------------------------------------------------------------------

service_enabled() {
	case "$init_system" in
	systemd) systemctl is-enabled --quiet agentowl.service 2>/dev/null ;;
	launchd) launchctl print system/dev.agentowl.agentowl >/dev/null 2>&1 ;;
	*) return 1 ;;
	esac
}
service_active() {
	case "$init_system" in
	systemd) systemctl is-active --quiet agentowl.service 2>/dev/null ;;
	launchd) launchctl print system/dev.agentowl.agentowl 2>/dev/null | grep -q 'state = running' ;;
	*) return 1 ;;
	esac
}

# ---- uninstall -------------------------------------------------------------------------------

if [ "$mode" = uninstall ]; then
	case "$init_system" in
	systemd)
		if service_active; then run systemctl stop agentowl.service; fi
		if service_enabled; then run systemctl disable agentowl.service; fi
		;;
	launchd)
		if service_enabled; then run launchctl bootout system/dev.agentowl.agentowl; fi
		;;
	none) skip "stopping and disabling the service: $skip_reason" ;;
	esac
	for f in "$unit" "$plist" "$bin" "$prev"; do
		if [ -e "$f" ]; then run rm -f "$f"; fi
	done
	if [ "$init_system" = systemd ]; then run systemctl daemon-reload; fi
	if [ -e "$apparmor_profile" ]; then
		if command -v apparmor_parser >/dev/null 2>&1; then run apparmor_parser -R "$apparmor_profile" || true; fi
		run rm -f "$apparmor_profile"
	fi
	if [ "$purge" -eq 1 ]; then
		for d in "$data_dir" "$etc_dir"; do
			if [ -e "$d" ]; then run rm -rf "$d"; fi
		done
		if [ "$service_user" != "$current_user" ] && [ "$service_user" != root ] && id "$service_user" >/dev/null 2>&1; then
			if [ "$os" = Darwin ]; then
				run dscl . -delete "/Users/$service_user"
				run dscl . -delete "/Groups/$service_user"
			else
				run userdel "$service_user"
			fi
		fi
	else
		[ ! -e "$data_dir" ] || ok "kept the data dir $data_dir (--purge removes it)"
		[ ! -e "$etc_dir" ] || ok "kept the settings and the master key in $etc_dir (--purge removes them)"
	fi
	[ "$changed" -gt 0 ] || echo "install.sh: nothing to change: agentowl is not installed"
	[ -z "$skipped" ] || printf 'install.sh: skipped:%s\n' "$skipped"
	exit 0
fi

# ---- install and upgrade ---------------------------------------------------------------------

[ -n "$binary" ] || binary=$here/agentowl
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then die "no agentowl binary at $binary: run install.sh from the unpacked tarball, or give --binary PATH"; fi
version=$("$binary" version --json 2>/dev/null) || die "$binary does not run on this machine ($(uname -sm)): is it the right target?"
echo "install.sh: agentowl $(echo "$version" | sed -n 's/.*"version":"\([^"]*\)".*"commit":"\([^"]*\)".*/\1 (commit \2)/p') into $bin, data in $data_dir ($init_system)"

# 1. The service user and its group.
if id "$service_user" >/dev/null 2>&1; then
	ok "service user $service_user"
elif [ "$os" = Darwin ]; then
	uid=$(dscl . -list /Users UniqueID | awk '$2 >= 300 && $2 < 400 { used[$2] = 1 } END { for (i = 300; i < 400; i++) if (!(i in used)) { print i; exit } }')
	[ -n "$uid" ] || die "no free system uid between 300 and 399 for $service_user"
	run dscl . -create "/Groups/$service_user" PrimaryGroupID "$uid"
	run dscl . -create "/Users/$service_user" UniqueID "$uid"
	run dscl . -create "/Users/$service_user" PrimaryGroupID "$uid"
	run dscl . -create "/Users/$service_user" UserShell /usr/bin/false
	run dscl . -create "/Users/$service_user" NFSHomeDirectory /var/empty
else
	run useradd --system --user-group --home-dir "$data_dir" --no-create-home --shell /usr/sbin/nologin "$service_user"
fi
if id "$service_user" >/dev/null 2>&1; then
	service_group=$(id -gn "$service_user")
else
	service_group=$service_user
fi

# 2. The data dir: private to the service user.
if [ -d "$data_dir" ]; then
	ok "data dir $data_dir"
else
	run mkdir -p "$data_dir"
fi
if [ "$dry_run" -eq 1 ] && [ ! -d "$data_dir" ]; then
	echo "would run: chmod 0700 $data_dir"
	echo "would run: chown $service_user:$service_group $data_dir"
elif [ -z "$(find "$data_dir" -prune -perm 700)" ]; then
	run chmod 0700 "$data_dir"
fi
if [ -d "$data_dir" ] && id "$service_user" >/dev/null 2>&1 && [ -z "$(find "$data_dir" -prune -user "$service_user")" ]; then
	run chown "$service_user:$service_group" "$data_dir"
fi

# 3. The binary; an upgrade keeps the one it replaces as agentowl.prev (the rollback's). With a
#    running service, an installed binary that has 'agentowl upgrade' does the swap in step 9:
#    it stops the service, copies the database, swaps, starts, waits, and rolls back by itself.
binary_changed=0
delegate_upgrade=0
if [ -f "$bin" ] && cmp -s "$binary" "$bin"; then
	ok "$bin (unchanged)"
elif [ -f "$bin" ] && [ "$mode" != upgrade ]; then
	die "another agentowl is installed at $bin ($("$bin" version 2>/dev/null || echo "version unknown")): use --upgrade to replace it"
elif [ -f "$bin" ] && [ "$dry_run" -eq 0 ] && [ "$init_system" != none ] && [ -f "$data_dir/agentowl.db" ] &&
	"$bin" upgrade --help >/dev/null 2>&1; then
	ok "$bin: replaced by 'agentowl upgrade' once the service is set up (step 9)"
	binary_changed=1
	delegate_upgrade=1
else
	if [ -f "$bin" ]; then run cp -p "$bin" "$prev"; fi
	install_file "$binary" "$bin" 0755 || true
	binary_changed=1
fi

# 4. The vault master key, root's, handed to the service as a systemd credential (so the data dir,
#    and its backups, never hold it). A key an earlier install left in the data dir is taken over.
if [ "$use_credential" -eq 0 ]; then
	ok "master key: $master_key, created by agentowl init (launchd has no credentials)"
elif [ -f "$master_key" ]; then
	ok "master key $master_key (kept)"
else
	run mkdir -p "$cred_dir"
	run chmod 0700 "$etc_dir" "$cred_dir"
	if [ -f "$data_dir/master.key" ]; then
		run cp -p "$data_dir/master.key" "$master_key"
		echo "note  the master key in $data_dir/master.key is now also in $master_key; keep one copy apart from the data dir's backups"
	fi
fi

# 5. The settings file for the service: created once, never overwritten.
if [ -f "$env_file" ]; then
	ok "settings $env_file (kept)"
else
	cat >"$tmp/agentowl.env" <<'EOF'
# AgentOwl settings for the service, one AGENTOWL_*=value a line; 'agentowl config show' lists
# them all. These override the unit's Environment= lines. Restart the service after a change.
#AGENTOWL_HTTP_LISTEN=0.0.0.0:8080
#AGENTOWL_SMTP_LISTEN=0.0.0.0:25
#AGENTOWL_MAIL_DOMAIN=agentowl.lan
EOF
	install_file "$tmp/agentowl.env" "$env_file" 0600 || true
fi

# The environment the service runs with: the data dir, the credential, the settings file.
service_env() {
	(
		# As the unit's and the plist's Environment: SMTP on port 25, unless the settings say otherwise.
		AGENTOWL_SMTP_LISTEN=0.0.0.0:25
		export AGENTOWL_SMTP_LISTEN
		# shellcheck disable=SC1090
		if [ -f "$env_file" ]; then set -a && . "$env_file" && set +a; fi
		if [ "$use_credential" -eq 1 ]; then
			CREDENTIALS_DIRECTORY=$cred_dir AGENTOWL_MASTER_KEY_FILE=$master_key
			export CREDENTIALS_DIRECTORY AGENTOWL_MASTER_KEY_FILE
		fi
		AGENTOWL_DATA_DIR=$data_dir "$@"
	)
}

# 6. agentowl init, on a data dir without a database: the master key, the TLS pair, the
#    database, and the first admin (console password and API token, printed this once).
if [ -f "$data_dir/agentowl.db" ]; then
	ok "agentowl init (the data dir has a database; 'agentowl serve' migrates it)"
elif [ "$dry_run" -eq 1 ]; then
	echo "would run: AGENTOWL_DATA_DIR=$data_dir $bin init   (prints the first admin's password once)"
	changed=$((changed + 1))
else
	echo "+ agentowl init"
	service_env "$bin" init || die "agentowl init failed"
	changed=$((changed + 1))
	if [ "$service_user" != "$current_user" ]; then run chown -R "$service_user:$service_group" "$data_dir"; fi
fi

# 7. The service definition.
service_changed=0
if [ "$os" = Linux ] && [ "$init_system" != launchd ]; then
	render_unit
	if install_file "$tmp/agentowl.service" "$unit" 0644; then service_changed=1; fi
fi
if [ "$os" = Darwin ] || [ "$init_system" = launchd ]; then
	render_plist
	if install_file "$tmp/dev.agentowl.agentowl.plist" "$plist" 0644; then service_changed=1; fi
fi

# 8. AppArmor (Ubuntu 24.04 and later): bubblewrap may create user namespaces.
if needs_apparmor_profile; then
	render_apparmor
	if install_file "$tmp/agentowl-bwrap" "$apparmor_profile" 0644; then
		if command -v apparmor_parser >/dev/null 2>&1; then
			run apparmor_parser -r "$apparmor_profile"
		else
			skip "loading the AppArmor profile: apparmor_parser is not installed (it loads at the next boot)"
		fi
	fi
fi

# The upgrade of a running service, by the installed binary: 'agentowl upgrade' stops it, copies
# the database to <data dir>/upgrade/, keeps agentowl.prev, swaps, starts, waits for /readyz, and
# puts the previous binary and database back by itself when the new one exits or is not ready.
upgrade_with_rollback() {
	changed=$((changed + 1))
	echo "+ $bin upgrade $binary"
	if service_env "$bin" upgrade "$binary" --bin "$bin" --init-system "$init_system" --ready-timeout "$ready_timeout"; then
		upgraded=1
	else
		die "the upgrade failed; 'agentowl upgrade' above says whether the previous version serves again"
	fi
}
# The binary swapped here after all (the service definition changed, so no running service to upgrade).
install_binary_now() {
	run cp -p "$bin" "$prev"
	install_file "$binary" "$bin" 0755 || true
	delegate_upgrade=0
}

# 9. Enabled, started (restarted when the binary or the unit changed).
started=0
upgraded=0
case "$init_system" in
systemd)
	if [ "$service_changed" -eq 1 ]; then run systemctl daemon-reload; fi
	if service_enabled; then ok "service enabled"; else run systemctl enable agentowl.service; fi
	if [ "$delegate_upgrade" -eq 1 ]; then
		upgrade_with_rollback
	elif ! service_active; then
		run systemctl start agentowl.service
		started=1
	elif [ "$service_changed" -eq 1 ] || [ "$binary_changed" -eq 1 ]; then
		run systemctl restart agentowl.service
		started=1
	else
		ok "service running"
	fi
	;;
launchd)
	if [ "$delegate_upgrade" -eq 1 ] && service_enabled && [ "$service_changed" -eq 0 ]; then
		upgrade_with_rollback
	elif ! service_enabled; then
		if [ "$delegate_upgrade" -eq 1 ]; then install_binary_now; fi
		run launchctl bootstrap system "$plist"
		started=1
	elif [ "$service_changed" -eq 1 ]; then
		if [ "$delegate_upgrade" -eq 1 ]; then install_binary_now; fi
		run launchctl bootout system/dev.agentowl.agentowl
		run launchctl bootstrap system "$plist"
		started=1
	elif [ "$binary_changed" -eq 1 ]; then
		run launchctl kickstart -k system/dev.agentowl.agentowl
		started=1
	else
		ok "service running"
	fi
	;;
none)
	skip "enabling and starting the service: $skip_reason"
	skip "waiting for /readyz: the service was not started"
	;;
esac

# 10. Ready: /readyz answers 200; then the addresses to use.
settings=""
config_bin=$bin
[ -x "$config_bin" ] || config_bin=$binary
settings=$(service_env "$config_bin" config show --json 2>/dev/null || true)
setting() { printf '%s\n' "$settings" | sed -n "s/^ *\"$1\": *\"\\{0,1\\}\\([^\",]*\\)\"\\{0,1\\},\\{0,1\\}\$/\\1/p" | head -1; }
http_listen=$(setting http_listen)
http_tls=$(setting http_tls)
smtp_listen=$(setting smtp_listen)
http_host=${http_listen%:*}
http_port=${http_listen##*:}
case "$http_tls" in
on) scheme=https ;;
off) scheme=http ;;
*) case "$http_host" in 127.* | localhost | "[::1]") scheme=http ;; *) scheme=https ;; esac ;;
esac
case "$http_host" in 0.0.0.0 | "[::]" | "") probe_host=127.0.0.1 ;; *) probe_host=$http_host ;; esac
probe_url=$scheme://$probe_host:$http_port/readyz

# not_ready: what happens when a started service does not get ready. After an upgrade that the
# installed binary could not do itself (it predates 'agentowl upgrade'), the previous binary is
# put back and started; the database is as the new binary left it.
not_ready() {
	if [ "$started" -eq 1 ] && [ "$binary_changed" -eq 1 ] && [ -f "$prev" ] && [ "$mode" = upgrade ]; then
		echo "install.sh: the new binary did not get ready: putting back $prev" >&2
		run cp -p "$prev" "$bin.new"
		run mv -f "$bin.new" "$bin"
		case "$init_system" in
		systemd) run systemctl restart agentowl.service ;;
		launchd) run launchctl kickstart -k system/dev.agentowl.agentowl ;;
		esac
		if wait_ready; then
			die "the upgrade was rolled back: the previous binary serves again at $probe_url (the database was not restored)"
		fi
		echo "install.sh: the previous binary did not get ready either" >&2
	fi
	case "$init_system" in
	systemd) echo "install.sh: see: journalctl -u agentowl -n 50" >&2 ;;
	launchd) echo "install.sh: see: tail -50 $log_file" >&2 ;;
	esac
	die "not ready within ${ready_timeout}s: $probe_url"
}

# wait_ready: 0 once /readyz answers 200 within --ready-timeout seconds.
wait_ready() {
	if command -v curl >/dev/null 2>&1; then
		probe() { curl -ksf -o /dev/null --max-time 2 "$probe_url"; }
	elif command -v wget >/dev/null 2>&1; then
		probe() { wget -q --no-check-certificate -O /dev/null -T 2 "$probe_url"; }
	else
		skip "waiting for /readyz: neither curl nor wget is installed"
		return 0
	fi
	i=0
	while [ "$i" -lt $((ready_timeout * 5)) ]; do
		if probe; then return 0; fi
		sleep 0.2 2>/dev/null || sleep 1
		i=$((i + 1))
	done
	return 1
}

if [ "$upgraded" -eq 1 ]; then
	ok "upgraded and ready: $probe_url answered 200"
elif [ "$init_system" != none ] && [ "$dry_run" -eq 0 ] && [ -n "$http_listen" ]; then
	if wait_ready; then
		ok "ready: $probe_url answered 200"
	else
		not_ready
	fi
elif [ "$init_system" != none ] && [ "$dry_run" -eq 1 ]; then
	echo "would wait for $probe_url to answer 200 (up to ${ready_timeout}s)"
fi

public_host=$http_host
case "$public_host" in 0.0.0.0 | "[::]" | "") public_host=$(hostname 2>/dev/null || echo localhost) ;; esac
smtp_host=${smtp_listen%:*}
case "$smtp_host" in 0.0.0.0 | "[::]" | "") smtp_host=$public_host ;; esac
if [ -n "$http_listen" ]; then
	echo
	echo "Console:  $scheme://$public_host:$http_port/console"
	echo "SMTP:     $smtp_host:${smtp_listen##*:}   (mail to agent@tenant.$(setting mail_domain))"
	echo "Data:     $data_dir   Settings: $env_file   Master key: $master_key (back it up apart)"
	case "$init_system" in
	systemd) echo "Logs:     journalctl -u agentowl" ;;
	launchd) echo "Logs:     $log_file" ;;
	esac
fi

echo
if [ "$changed" -eq 0 ]; then
	echo "install.sh: nothing to change: agentowl is installed as asked"
elif [ "$dry_run" -eq 1 ]; then
	echo "install.sh: dry run: $changed steps would change something; nothing was changed"
else
	echo "install.sh: done ($changed steps)"
fi
[ -z "$skipped" ] || printf 'install.sh: skipped:%s\n' "$skipped"
exit 0

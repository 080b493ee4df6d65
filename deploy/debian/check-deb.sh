#!/usr/bin/env bash
# Checks a built orchestrator .deb (CI, after scripts/package-deb.sh):
#   lintian          no error, no warning (overrides in deploy/debian/lintian-overrides, each with its reason)
#   file list        exactly the expected files, unpacked into a throwaway root (dpkg -x)
#   the unit         every path it names exists in that root; systemd-analyze verify passes on it
#   the binary       `orchestrator --version` runs from the unpacked tree
#   the config       the conffile is listed, and `check` refuses it until it is edited
#
#   bash deploy/debian/check-deb.sh target/debian/orchestrator_0.1.0_amd64.deb
set -euo pipefail
deb="$(realpath "$1")"
fail() { echo "check-deb: FAILED: $*" >&2; exit 1; }

echo "=== lintian ==="
lintian --fail-on error,warning --display-info --show-overrides "$deb" || fail "lintian"
echo "--> lintian: OK"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"

echo "=== file list ==="
got="$(cd "$root" && find . -path ./DEBIAN -prune -o \( -type f -o -type l \) -printf '/%P\n' | sort)"
printf '%s\n' "$got"
want="$(sort <<'LIST'
/etc/orchestrator/backups.toml
/lib/systemd/system/orchestrator.service
/usr/bin/orchestrator
/usr/share/bash-completion/completions/orchestrator
/usr/share/doc/orchestrator/changelog.gz
/usr/share/doc/orchestrator/copyright
/usr/share/fish/vendor_completions.d/orchestrator.fish
/usr/share/lintian/overrides/orchestrator
/usr/share/zsh/vendor-completions/_orchestrator
LIST
)"
# One man page per visible subcommand, as the packaged binary generates them.
"$root/usr/bin/orchestrator" generate --out-dir "$root/gen" >/dev/null
want="$( (printf '%s\n' "$want"; for page in "$root"/gen/man/*.1; do echo "/usr/share/man/man1/${page##*/}.gz"; done) | sort)"
[[ "$want" == *"/usr/share/man/man1/orchestrator.1.gz"* ]] || fail "no orchestrator.1 generated"
rm -rf "$root/gen"
[[ "$got" == "$want" ]] || fail "file list differs from the expected one: $(diff <(echo "$want") <(echo "$got") || true)"
[[ "$(cat "$root/DEBIAN/conffiles")" == "/etc/orchestrator/backups.toml" ]] || fail "conffiles"
echo "--> file list: OK"

echo "=== the binary ==="
"$root/usr/bin/orchestrator" --version || fail "--version from the unpacked tree"
if "$root/usr/bin/orchestrator" check --config "$root/etc/orchestrator/backups.toml" >"$root/check.out" 2>&1; then
    fail "check accepts the shipped config (it must refuse it until edited)"
fi
sed 's/^/  /' "$root/check.out"
echo "--> binary: OK (the shipped config is refused until edited)"

echo "=== the unit ==="
unit="$root/lib/systemd/system/orchestrator.service"
# Every absolute path the unit runs or reads that the package provides is in the package.
while read -r path; do
    [[ -e "$root$path" ]] || fail "the unit names $path, which the package does not ship"
    echo "  $path: shipped"
done < <(grep -v '^\s*#' "$unit" | grep -oE '/(usr|etc)/[A-Za-z0-9_./-]+' | sort -u)
# systemd-analyze verify, with the packaged binary at the path the unit names: a copy of the
# unit in which /usr/bin/orchestrator is the unpacked binary.
vdir="$(mktemp -d)"
trap 'rm -rf "$root" "$vdir"' EXIT
sed "s#/usr/bin/orchestrator#$root/usr/bin/orchestrator#g" "$unit" > "$vdir/orchestrator.service"
out="$(systemd-analyze verify --man=no "$vdir/orchestrator.service" 2>&1)" || fail "systemd-analyze verify: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
echo "--> unit: OK (systemd-analyze verify: no finding)"
echo "package checks passed: $(basename "$deb")"

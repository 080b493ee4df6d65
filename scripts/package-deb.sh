#!/usr/bin/env bash
# Builds target/debian/orchestrator_<version>_amd64.deb from the release binary, with plain
# dpkg-deb and a hand-laid tree (deploy/debian/ holds the maintainer scripts, changelog,
# lintian overrides). Installs what it needs (dpkg-dev, lintian, adduser; apt-get) on a fresh
# Debian machine. Prints the .deb's path last.
#
#   bash scripts/package-deb.sh            # cargo build --release --locked, then package
#   SKIP_BUILD=1 bash scripts/package-deb.sh   # package the release binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v fakeroot >/dev/null || need+=(fakeroot)
command -v lintian >/dev/null || need+=(lintian)
command -v gzip >/dev/null || need+=(gzip)
if (( ${#need[@]} )); then
    echo "installing ${need[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release --locked --bin orchestrator
BIN="$ROOT/target/release/orchestrator"
version="$("$BIN" --version | awk '{print $2}')"
arch="$(dpkg --print-architecture)"
out="$ROOT/target/debian"
pkg="$out/orchestrator_${version}_${arch}"
rm -rf "$pkg" "$pkg.deb"
mkdir -p "$pkg/DEBIAN"

# The tree. Binary: already stripped by the release profile (Cargo.toml).
install -D -m 0755 "$BIN" "$pkg/usr/bin/orchestrator"
# The unit, with the packaged binary's path.
install -d "$pkg/lib/systemd/system"
sed 's#/usr/local/bin/orchestrator#/usr/bin/orchestrator#g' deploy/systemd/orchestrator.service \
    > "$pkg/lib/systemd/system/orchestrator.service"
chmod 0644 "$pkg/lib/systemd/system/orchestrator.service"
# The config: the reference example, every line a comment, so that nothing fires until edited
# (`check`, the unit's ExecStartPre, fails on it: exit 78, no restart loop).
install -d -m 0755 "$pkg/etc/orchestrator"
{
    echo "# /etc/orchestrator/backups.toml: every line below is a comment, so the daemon refuses"
    echo "# to start (orchestrator check: exit 78) until you set state_machine_arn and add your"
    echo "# [[backup]] targets. Then: systemctl enable --now orchestrator"
    echo "#"
    sed -e 's/^\(.\)/# \1/' -e 's/^$/#/' config/backups.example.toml
} > "$pkg/etc/orchestrator/backups.toml"
# 0644 here; postinst makes it root:orchestrator 0640 with dpkg-statoverride (kept on upgrades).
chmod 0644 "$pkg/etc/orchestrator/backups.toml"
echo /etc/orchestrator/backups.toml > "$pkg/DEBIAN/conffiles"
# Man pages and completions, generated from the clap definitions by the binary itself.
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
"$BIN" generate --out-dir "$gen" >/dev/null
install -d "$pkg/usr/share/man/man1"
for page in "$gen"/man/*.1; do
    name="${page##*/}"
    gzip -9n < "$page" > "$pkg/usr/share/man/man1/$name.gz"
done
(cd "$gen/completions" && find . -type f) | while read -r rel; do
    install -D -m 0644 "$gen/completions/$rel" "$pkg/usr/share/$rel"
done
# Docs: copyright (DEP-5), changelog (a native package: changelog.gz), lintian overrides.
doc="$pkg/usr/share/doc/orchestrator"
install -d "$doc"
gzip -9n < deploy/debian/changelog > "$doc/changelog.gz"
{
    cat <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: orchestrator
Source: https://github.com/orchestrator/orchestrator

Files: *
Copyright: 2026 the orchestrator authors
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License. You may obtain a copy of
 the License at http://www.apache.org/licenses/LICENSE-2.0
 .
 On Debian systems, the complete text of the Apache License 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
Comment: /usr/bin/orchestrator statically links these Rust crates, each under
 the license it declares (from Cargo.lock, `cargo tree`):
COPYRIGHT
    cargo tree --locked --offline -e normal --prefix none --format '{p} {l}' \
        --target "$(rustc -vV | awk '/^host:/ {print $2}')" 2>/dev/null \
        | sed 's/ (\*)$//; s/ (proc-macro)//' | grep -v '^backup-orchestrator ' | sort -u | sed 's/^/ /'
} > "$doc/copyright"
install -D -m 0644 deploy/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/orchestrator"
for script in postinst prerm postrm; do
    install -m 0755 "deploy/debian/$script" "$pkg/DEBIAN/$script"
done

# control: shared-library dependencies from dpkg-shlibdeps (it wants a debian/control).
shl="$(mktemp -d)"
mkdir "$shl/debian"
printf 'Source: orchestrator\n\nPackage: orchestrator\nArchitecture: any\n' > "$shl/debian/control"
depends="$(cd "$shl" && dpkg-shlibdeps -O "$pkg/usr/bin/orchestrator" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$shl"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: orchestrator
Version: $version
Architecture: $arch
Maintainer: orchestrator maintainers <orchestrator@example.org>
Installed-Size: $size
Depends: adduser, $depends
Section: admin
Priority: optional
Homepage: https://github.com/orchestrator/orchestrator
Description: scheduled AWS Backup jobs through AWS Step Functions
 A daemon that starts one AWS Step Functions execution (one AWS Backup job)
 per EC2 instance on cron schedules, in each target's time zone, and never
 starts a slot twice: execution names are derived from the slot.
 .
 This package ships the daemon, its hardened systemd unit, the system user
 it runs as, the config /etc/orchestrator/backups.toml (all comments until
 edited: the daemon refuses to start before), man pages and shell
 completions.
CONTROL
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
find "$pkg" -type d -exec chmod 0755 {} +
fakeroot dpkg-deb --root-owner-group -Zxz --build "$pkg" "$pkg.deb" >/dev/null
echo "$pkg.deb"

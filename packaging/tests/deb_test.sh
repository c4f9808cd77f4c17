#!/usr/bin/env bash
# The .deb end to end, as root on Debian 12: cpack builds it; its files, metadata and
# maintainer scripts are what packaging/cpack.cmake promises; dpkg installs it; the
# installed agent runs from /usr/bin (version, `check` of the shipped config as root and as
# the service user, TLS through the installed compat libraries); systemd-analyze accepts
# the unit; dpkg -r and dpkg -P leave nothing behind. The package is purged on any exit.
#
#   usage: deb_test.sh
#   The package comes from a private build of the source tree under /tmp (prefix /usr, no
#   tests), so the shared build directory is neither rebuilt nor written while other tests
#   run its agent. PGPULSE_DEB_BUILD_DIR=DIR packages an existing build configured with
#   -DCMAKE_INSTALL_PREFIX=/usr instead (cpack first builds its "all" target).
#   Exit 77 (CTest SKIP_RETURN_CODE): not root, or not a dpkg system.
#
# The service is never started: a policy-rc.d that denies starts is in place while the
# package is installed (as tests/deps.sh does), so a running systemd does not start an
# agent on :9679 next to other tests.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)

passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; echo "$passed passed, 1 failed"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[[ $EUID -eq 0 ]] || skip "needs root for dpkg -i"
command -v dpkg >/dev/null && command -v dpkg-deb >/dev/null || skip "not a dpkg system"
for tool in cpack dpkg-shlibdeps dpkg-architecture systemd-analyze curl openssl setpriv flock; do
  command -v "$tool" >/dev/null || fail "$tool is missing (Debian packages: cmake dpkg-dev systemd curl openssl util-linux)"
done

# One run at a time on a machine: the package is installed system-wide.
exec 9>/run/lock/pgpulse-deb-test.lock
flock -w 900 9 || fail "another deb_test.sh holds /run/lock/pgpulse-deb-test.lock"

marker=/run/pgpulse-deb-test.installed   # says "the installed pgpulse is this test's"
status() { dpkg-query -W -f='${Status}' pgpulse 2>/dev/null || true; }
if [[ -n "$(status)" && "$(status)" != *not-installed* ]]; then
  if [[ -e $marker ]]; then
    echo "purging pgpulse left installed by an earlier run of this test"
    dpkg -P pgpulse >/dev/null
  else
    fail "a pgpulse package is installed ($(status)) and not by this test; not touching it"
  fi
fi
user_existed=no
getent passwd pgpulse >/dev/null && user_existed=yes
[[ $user_existed == no ]] || [[ -e $marker ]] ||
  fail "a user 'pgpulse' exists and purging the package would delete it; not touching it"

tmp=$(mktemp -d /tmp/pgpulse-deb-test-XXXXXX)
agent_pid=""
policy=/usr/sbin/policy-rc.d
policy_created=no
cleanup() {
  set +e
  [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  if [[ -e $marker ]]; then
    [[ -n "$(status)" && "$(status)" != *not-installed* ]] && dpkg -P pgpulse >/dev/null 2>&1
    if [[ $user_existed == no ]] && getent passwd pgpulse >/dev/null; then userdel pgpulse 2>/dev/null; fi
    if [[ $user_existed == no ]] && getent group pgpulse >/dev/null; then groupdel pgpulse 2>/dev/null; fi
    rm -f "$marker"
  fi
  [[ $policy_created == yes ]] && rm -f "$policy"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build the package -------------------------------------------------------------------
if [[ -n ${PGPULSE_DEB_BUILD_DIR:-} ]]; then
  pkgbuild=$(cd "$PGPULSE_DEB_BUILD_DIR" && pwd)
  grep -qx "CMAKE_INSTALL_PREFIX:PATH=/usr" "$pkgbuild/CMakeCache.txt" ||
    fail "$pkgbuild is not configured with -DCMAKE_INSTALL_PREFIX=/usr"
else
  pkgbuild=$tmp/build
  cmake -S "$src" -B "$pkgbuild" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPGPULSE_TESTS=OFF >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configure"; }
  cmake --build "$pkgbuild" -j "$(nproc)" >"$tmp/build.log" 2>&1 || { tail -50 "$tmp/build.log"; fail "build"; }
fi
[[ -f $pkgbuild/CPackConfig.cmake ]] ||
  fail "no CPackConfig.cmake in $pkgbuild: is include(packaging/cpack.cmake) in CMakeLists.txt?"
# -B: staging and output in $tmp, never in a build directory.
(cd "$tmp" && cpack -G DEB --config "$pkgbuild/CPackConfig.cmake" -B "$tmp/out") >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log"; fail "cpack -G DEB"; }
shopt -s nullglob
debs=("$tmp"/out/pgpulse_*.deb)
shopt -u nullglob
[[ ${#debs[@]} -eq 1 ]] || fail "expected one pgpulse_*.deb in $tmp/out, found ${#debs[@]}"
deb=${debs[0]}
ok "cpack -G DEB built $(basename "$deb")"

# --- what is in it -----------------------------------------------------------------------
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
version=$(sed -n 's/^project(pgpulse VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
dpkg-deb -c "$deb" >"$tmp/contents"
# Name of each entry (6th field on), without a symlink's target.
awk '{ $1=$2=$3=$4=$5=""; sub(/^ +/, ""); sub(/ -> .*/, ""); print }' "$tmp/contents" >"$tmp/paths"
expect=(
  ./usr/bin/pgpulse
  "./usr/lib/$multiarch/pgpulse/libpgpulse-libssl-compat.so"
  "./usr/lib/$multiarch/pgpulse/libpgpulse-libcrypto-compat.so"
  ./etc/pgpulse/pgpulse.yml
  ./etc/pgpulse/queries.d/
  ./etc/default/pgpulse
  ./lib/systemd/system/pgpulse.service
  ./usr/share/pgpulse/queries/METRICS.md
  ./usr/share/pgpulse/alerts/pgpulse-rules.yml
  ./usr/share/pgpulse/alerts/pgpulse-prometheusrule.yaml
  ./usr/share/pgpulse/alerts/runbooks.md
)
for f in "$src"/queries/*.yaml; do expect+=("./usr/share/pgpulse/queries/$(basename "$f")"); done
for f in "$src"/dashboards/*.json; do [[ -e $f ]] && expect+=("./usr/share/pgpulse/dashboards/$(basename "$f")"); done
for f in "$src"/packaging/grafana/provisioning/*/*.yaml; do
  [[ -e $f ]] && expect+=("./usr/share/pgpulse/grafana/provisioning/${f#"$src"/packaging/grafana/provisioning/}")
done
for path in "${expect[@]}"; do
  grep -qxF -- "$path" "$tmp/paths" || { cat "$tmp/paths"; fail "$(basename "$deb") lacks $path"; }
done
ok "dpkg-deb -c lists all ${#expect[@]} expected paths"
if grep -v '^\./$' "$tmp/paths" | grep -Ev '^\./(usr/?|usr/(bin|lib|share)(/.*)?|etc(/.*)?|lib/?|lib/systemd(/.*)?)$' >"$tmp/stray"; then
  cat "$tmp/stray"
  fail "files outside /usr/bin, /usr/lib, /usr/share, /etc, /lib/systemd"
fi
awk '$2 != "root/root" { print; bad=1 } END { exit bad }' "$tmp/contents" || fail "files not owned by root/root"
grep -E ' \./usr/bin/pgpulse$' "$tmp/contents" | grep -q '^-rwxr-xr-x' || fail "/usr/bin/pgpulse is not 0755"
ok "every file is root/root; /usr/bin/pgpulse is 0755"

field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == pgpulse ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version-1" ]] || fail "Version: $(field Version), expected $version-1"
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
for dep in adduser libc6 libstdc++6 libpq5 libpqxx- libyaml-cpp libcivetweb libssl3 libdeflate0 zlib1g; do
  [[ $depends == *"$dep"* ]] || fail "Depends lacks $dep (dpkg-shlibdeps): $depends"
done
ok "control: pgpulse $version-1 $(field Architecture); Depends from dpkg-shlibdeps: $depends"

# The container's runtime stage installs what dpkg-shlibdeps found (by name or Provides),
# except what every Debian image has.
runtime=$(awk '/^FROM /{stage++} stage==2' "$src/packaging/docker/Dockerfile" |
  sed -n '/--no-install-recommends/,/&&/p' | tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
  grep -vx -e apt-get -e install -e rm || true)
for dep in $(tr ',' '\n' <<<"$depends" | sed 's/[(|].*//; s/ //g'); do
  case $dep in adduser | libc6 | libgcc-s1 | libstdc++6) continue ;; esac
  found=no
  for pkg in $runtime; do
    if [[ $pkg == "$dep" ]] || dpkg-query -W -f='${Provides}\n' "$pkg" 2>/dev/null | tr ',' '\n' |
      sed 's/(.*//; s/ //g' | grep -qx -- "$dep"; then
      found=yes
      break
    fi
  done
  [[ $found == yes ]] || fail "packaging/docker/Dockerfile's runtime stage does not install $dep (a Depends of the .deb)"
done
ok "the Dockerfile's runtime stage installs every library the .deb depends on"

mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control"
diff <(sort "$tmp/control/conffiles") <(printf '/etc/default/pgpulse\n/etc/pgpulse/pgpulse.yml\n') ||
  fail "conffiles differ"
for script in postinst prerm postrm; do
  [[ -x $tmp/control/$script ]] || fail "maintainer script $script missing or not executable"
  sh -n "$tmp/control/$script" || fail "$script: sh syntax"
done
ok "conffiles: /etc/pgpulse/pgpulse.yml, /etc/default/pgpulse; postinst, prerm, postrm executable"

# --- install -----------------------------------------------------------------------------
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  policy_created=yes
fi
touch "$marker"
if ! dpkg -i "$deb" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log"
  fail "dpkg -i: are the Depends installed? ($depends)"
fi
[[ $(status) == "install ok installed" ]] || fail "after dpkg -i: status '$(status)'"
ok "dpkg -i installs it"

[[ $(/usr/bin/pgpulse --version) == "pgpulse $version "* ]] || fail "/usr/bin/pgpulse --version: $(/usr/bin/pgpulse --version)"
for f in /usr/bin/pgpulse "/usr/lib/$multiarch/pgpulse/"*.so; do
  ! ldd "$f" | grep 'not found' || fail "$f: unresolved libraries"
done
ok "/usr/bin/pgpulse --version: $(/usr/bin/pgpulse --version); ldd resolves everything"

getent passwd pgpulse >/dev/null || fail "postinst made no pgpulse user"
[[ $(stat -c '%U:%G %a' /etc/pgpulse/password) == "root:pgpulse 640" ]] ||
  fail "/etc/pgpulse/password is $(stat -c '%U:%G %a' /etc/pgpulse/password), expected root:pgpulse 640"
[[ $(head -n 1 /etc/pgpulse/password) =~ ^[A-Za-z0-9]{32}$ ]] || fail "/etc/pgpulse/password is not a 32-character password"
ok "postinst: system user pgpulse, /etc/pgpulse/password root:pgpulse 0640 with a random password"

/usr/bin/pgpulse check --config.file=/etc/pgpulse/pgpulse.yml >"$tmp/check.out" 2>&1 ||
  { cat "$tmp/check.out"; fail "pgpulse check rejects the shipped /etc/pgpulse/pgpulse.yml"; }
grep -q '^configuration ok: /etc/pgpulse/pgpulse.yml, 1 target(s)' "$tmp/check.out" || fail "check: $(cat "$tmp/check.out")"
as_service() { setpriv --reuid=pgpulse --regid=pgpulse --init-groups --inh-caps=-all -- "$@"; }
as_service /usr/bin/pgpulse check --config.file=/etc/pgpulse/pgpulse.yml >"$tmp/check.out" 2>&1 ||
  { cat "$tmp/check.out"; fail "pgpulse check as the pgpulse user (password file readable?)"; }
ok "pgpulse check accepts the shipped config, as root and as the service user"

[[ $(readlink /etc/systemd/system/multi-user.target.wants/pgpulse.service) == /lib/systemd/system/pgpulse.service ]] ||
  fail "postinst did not enable pgpulse.service"
systemd-analyze verify --man=no /lib/systemd/system/pgpulse.service >"$tmp/verify.out" 2>&1 ||
  { cat "$tmp/verify.out"; fail "systemd-analyze verify"; }
if grep -F 'pgpulse.service' "$tmp/verify.out"; then fail "systemd-analyze verify warns about the unit"; fi
# Exposure 0 (locked down) .. 10 (unprotected), --threshold in tenths: at most 2.0; the unit scores 1.4.
systemd-analyze security --offline=yes --threshold=20 /lib/systemd/system/pgpulse.service >"$tmp/security.out" 2>&1 ||
  { cat "$tmp/security.out"; fail "systemd-analyze security: exposure above 2"; }
ok "unit enabled; systemd-analyze verify clean; $(grep -o 'Overall exposure level.*' "$tmp/security.out")"

# TLS needs the compat libraries; the installed agent must load the installed ones.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
chmod 0755 "$tmp"
chmod 0644 "$tmp/tls.key" "$tmp/tls.crt"
printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\n' "$tmp/tls.crt" "$tmp/tls.key" >"$tmp/web.yml"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthz=""
for attempt in 1 2 3; do
  port=$((20000 + RANDOM % 20000))
  port_free "$port" || continue
  # setpriv execs the agent, so $! is the agent; it must not inherit the lock (fd 9).
  setpriv --reuid=pgpulse --regid=pgpulse --init-groups --inh-caps=-all -- /usr/bin/pgpulse \
    --config.file=/etc/pgpulse/pgpulse.yml --web.config.file="$tmp/web.yml" \
    --web.listen-address="127.0.0.1:$port" >"$tmp/agent.log" 2>&1 9>&- &
  agent_pid=$!
  for _ in $(seq 50); do
    healthz=$(curl -sk --max-time 2 "https://127.0.0.1:$port/healthz" || true)
    [[ -n $healthz ]] && break
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.2
  done
  [[ -n $healthz ]] && break
  kill "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
done
[[ $healthz == ok* ]] || { cat "$tmp/agent.log"; fail "installed agent with TLS: /healthz answered '$healthz'"; }
grep -q " /usr/lib/$multiarch/pgpulse/libpgpulse-libssl-compat.so$" "/proc/$agent_pid/maps" ||
  { grep -i compat "/proc/$agent_pid/maps" || true; fail "the installed agent did not load /usr/lib/$multiarch/pgpulse/libpgpulse-libssl-compat.so"; }
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=""
ok "installed agent serves https://127.0.0.1:$port/healthz with /usr/lib/$multiarch/pgpulse's compat libraries"

# Installing over itself (what an upgrade runs) keeps an edited conffile and the password.
password=$(cat /etc/pgpulse/password)
printf '# edited by the admin\n' >>/etc/pgpulse/pgpulse.yml
dpkg -i --force-confold "$deb" >"$tmp/reinstall.log" 2>&1 || { cat "$tmp/reinstall.log"; fail "dpkg -i over the installed package"; }
[[ $(status) == "install ok installed" ]] || fail "after reinstall: status '$(status)'"
[[ $(cat /etc/pgpulse/password) == "$password" ]] || fail "reinstall replaced /etc/pgpulse/password"
[[ $(tail -n 1 /etc/pgpulse/pgpulse.yml) == "# edited by the admin" ]] || fail "reinstall replaced the edited pgpulse.yml"
ok "reinstalling keeps the edited conffile and the password"

# --- remove and purge --------------------------------------------------------------------
dpkg -r pgpulse >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log"; fail "dpkg -r"; }
[[ $(status) == "deinstall ok config-files" ]] || fail "after dpkg -r: status '$(status)'"
for gone in /usr/bin/pgpulse /usr/lib/"$multiarch"/pgpulse /usr/share/pgpulse /lib/systemd/system/pgpulse.service; do
  [[ ! -e $gone ]] || fail "dpkg -r left $gone"
done
[[ -f /etc/pgpulse/pgpulse.yml && -f /etc/default/pgpulse ]] || fail "dpkg -r removed a conffile"
ok "dpkg -r removes the files and keeps the conffiles"

dpkg -P pgpulse >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg -P"; }
[[ -z "$(status)" || "$(status)" == *not-installed* ]] || fail "after dpkg -P: status '$(status)'"
for gone in /etc/pgpulse /etc/default/pgpulse; do
  [[ ! -e $gone ]] || fail "dpkg -P left $gone"
done
leftovers=$(find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
  -name 'pgpulse*' 2>/dev/null || true)
[[ -z $leftovers ]] || fail "dpkg -P left systemd state: $leftovers"
! getent passwd pgpulse >/dev/null || fail "dpkg -P left the pgpulse user"
! getent group pgpulse >/dev/null || fail "dpkg -P left the pgpulse group"
rm -f "$marker"
ok "dpkg -P removes conffiles, the password file, systemd state, the user and the group"

echo "$passed passed, 0 failed"

#!/usr/bin/env bash
# System libraries the project needs: OSMesa for offscreen MuJoCo rendering on CPU.
# Installs them with apt-get when running as root and they are missing; otherwise says what to install.
set -u
need=()
ldconfig -p 2>/dev/null | grep -q libOSMesa || need+=(libosmesa6)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; robot video previews need it"
else
  echo "note: install ${need[*]} (e.g. sudo apt-get install ${need[*]}) for offscreen robot previews"
fi
exit 0

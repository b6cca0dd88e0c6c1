#!/usr/bin/env bash
# Install the Debian packages rackflow's tests and benchmarks use, once.
set -euo pipefail
# openipmi (ipmi_sim), snmpd, openssh-server: real peers of the reboot lab.
packages=(postgresql iproute2 iptables golang-go golang-github-vmware-govmomi-dev
  openipmi snmpd openssh-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs what building and testing libflamingo needs on Debian 12 (run as
# root). Swift 6.3 and Python 3 are expected to be present already.
set -euo pipefail
packages=(libopenblas-dev ocl-icd-opencl-dev opencl-headers libjpeg-dev libpng-dev pocl-opencl-icd
          clinfo cmake pkg-config binutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check pytest numpy atheris==3.0.0 openai==3.63.0 "ray[data,serve]==2.60.0"

#!/usr/bin/env bash
# Installs the system libraries VLMKit links (Debian/Ubuntu): OpenBLAS, zstd, libpng, libjpeg-turbo,
# and Open MPI (the library, and mpirun for data-parallel `vlm train`).
set -euo pipefail
packages=(pkg-config libopenblas-dev libzstd-dev libpng-dev libturbojpeg0-dev libopenmpi-dev openmpi-bin)
if [ "$(id -u)" -eq 0 ]; then run=(); else run=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update
"${run[@]}" apt-get install -y "${packages[@]}"

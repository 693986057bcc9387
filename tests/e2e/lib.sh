# shellcheck shell=bash
# Shared by the e2e scripts (sourced): VM lifetime and console polling.

# Reads a file with QEMU's serial output as text: no CRs, no NULs.
console_text() { tr -d '\r\000' <"$1" 2>/dev/null || true; }

# Drops terminal control sequences (pvgrub2 draws a menu) for display.
strip_ansi() { sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }

# Starts QEMU in the background under a hard timeout (SIGTERM, then SIGKILL
# 5 s later); sets VM_PID. The caller's EXIT trap calls vm_kill. QEMU_SYSTEM
# picks the binary (default qemu-system-x86_64; qemu-system-i386 for a PC
# without long mode).
vm_start() { # TIMEOUT_SECS QEMU-ARGS...
  local t="$1"; shift
  timeout -k 5 "$t" "${QEMU_SYSTEM:-qemu-system-x86_64}" -accel tcg "$@" &
  VM_PID=$!
}

vm_kill() {
  if [ -n "${VM_PID:-}" ] && kill -0 "$VM_PID" 2>/dev/null; then
    kill "$VM_PID" 2>/dev/null || true
    wait "$VM_PID" 2>/dev/null || true
  fi
  VM_PID=
}

# Prints the first line of FILE that contains STRING.
first_match() { console_text "$1" | grep -a -m1 -F -- "$2" || true; }

# "PKG VERSION" lines for cache keys: one apt-cache call (fetch-debs does
# several per package, too slow for a cache hit).
pkg_versions() { apt-cache policy "$@" | awk '/^[^ ]/ { p = $1 } /Candidate:/ { print p, $2 }'; }

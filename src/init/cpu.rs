//! The 32-bit build's CPU floor. ring (rustls' crypto) and Rust's i686
//! target need SSE2, so on a Pentium III or older the first SSE2
//! instruction kills the process; as PID 1 that is a kernel panic
//! ("Attempted to kill init!") that tells the administrator nothing. This
//! check runs first in `main` and uses nothing but `cpuid` and write(2), so
//! the machine says why instead.

/// CPUID leaf 1, EDX bit 26: SSE2.
#[cfg(target_arch = "x86")]
const SSE2: u32 = 1 << 26;

#[cfg(target_arch = "x86")]
const NO_SSE2: &[u8] = b"\n\
p2xen: this CPU has no SSE2 (a Pentium III, Athlon XP or older).\n\
p2xen: the 32-bit live image needs a Pentium 4, Pentium M, Athlon 64, Core or later:\n\
p2xen: its TLS crypto (ring) and Rust's i686 code require SSE2.\n\
p2xen: migrate this server with `dd | ssh` from a rescue system, or move its disks\n\
p2xen: to a newer machine and boot p2xen there. Power the machine off now.\n";

/// Stops here, with a message on the console, when the CPU lacks SSE2. As
/// PID 1 it waits forever (exiting would panic the kernel and hide the
/// message); otherwise it exits with status 1.
#[cfg(target_arch = "x86")]
pub fn require_sse2() {
    // SAFETY: cpuid exists on every CPU Debian's 686 kernel runs on (i686
    // and later), and leaf 1 is always supported there.
    #[allow(unused_unsafe)]
    let edx = unsafe { core::arch::x86::__cpuid(1) }.edx;
    if edx & SSE2 != 0 {
        return;
    }
    let _ = nix::unistd::write(std::io::stderr(), NO_SSE2);
    if nix::unistd::getpid().as_raw() == 1 {
        loop {
            nix::unistd::pause();
        }
    }
    std::process::exit(1);
}

/// Every x86_64 CPU has SSE2.
#[cfg(not(target_arch = "x86"))]
pub fn require_sse2() {}

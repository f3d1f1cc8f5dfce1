//! Thin, checked wrappers over the few socket and thread syscalls the shard needs outside the
//! ring: listener setup, peer address lookup, outbound sockets, the wake eventfd and pinning.
//! None of them runs per message.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::IoError;

/// A socket address in the kernel's layout, ready for `bind`/`connect`.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl RawAddr {
    /// An all-zero address (family `AF_UNSPEC`).
    pub(crate) fn zeroed() -> Self {
        // SAFETY: sockaddr_storage is a plain C struct for which all-zero bytes are valid.
        let storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        RawAddr { storage, len: 0 }
    }

    /// Encodes `addr` in the kernel layout.
    pub(crate) fn from_std(addr: SocketAddr) -> Self {
        let mut raw = RawAddr::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
                unsafe {
                    (&raw mut raw.storage)
                        .cast::<libc::sockaddr_in>()
                        .write(sin)
                };
                raw.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
                unsafe {
                    (&raw mut raw.storage)
                        .cast::<libc::sockaddr_in6>()
                        .write(sin6)
                };
                raw.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    /// Decodes the address, or `None` for a family other than IPv4/IPv6.
    pub(crate) fn to_std(self) -> Option<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET if self.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6, and it is long enough.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// Pointer for the kernel.
    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.storage).cast()
    }
}

/// Maps a `-1` syscall return to the thread's errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn new_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setup<T>(what: &'static str, r: io::Result<T>) -> Result<T, IoError> {
    r.map_err(|source| IoError::Setup { what, source })
}

/// Opens a non-blocking TCP listener on `addr` with `SO_REUSEADDR`, `SO_REUSEPORT` and
/// `TCP_NODELAY` (inherited by accepted sockets). `[::]` is dual-stack. Returns the socket and
/// the address actually bound (the port is resolved when `addr` has port 0).
pub(crate) fn listen(addr: SocketAddr, backlog: i32) -> Result<(OwnedFd, SocketAddr), IoError> {
    let sock = setup("socket", new_socket(&addr))?;
    let fd = sock.as_raw_fd();
    setup(
        "SO_REUSEADDR",
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
    )?;
    setup(
        "SO_REUSEPORT",
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1),
    )?;
    setup(
        "TCP_NODELAY",
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1),
    )?;
    if let SocketAddr::V6(a) = addr
        && a.ip().is_unspecified()
    {
        setup(
            "IPV6_V6ONLY",
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0),
        )?;
    }
    let raw = RawAddr::from_std(addr);
    // SAFETY: `raw` holds a valid sockaddr of `raw.len` bytes.
    setup(
        "bind",
        cvt(unsafe { libc::bind(fd, raw.as_ptr(), raw.len) }),
    )?;
    // SAFETY: plain syscall on a socket we own.
    setup("listen", cvt(unsafe { libc::listen(fd, backlog) }))?;
    let local = setup("getsockname", local_addr(fd))?;
    Ok((sock, local))
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::zeroed();
    raw.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `raw.len` bytes into the storage and updates the length.
    cvt(unsafe { libc::getsockname(fd, (&raw mut raw.storage).cast(), &mut raw.len) })?;
    raw.to_std()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// The remote address of a connected socket.
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::zeroed();
    raw.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `raw.len` bytes into the storage and updates the length.
    cvt(unsafe { libc::getpeername(fd, (&raw mut raw.storage).cast(), &mut raw.len) })?;
    raw.to_std()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// A non-blocking TCP socket for an outbound connection to `addr`, with `TCP_NODELAY`, bound
/// to `local` first when given. With port 0 in `local`, `IP_BIND_ADDRESS_NO_PORT` defers the
/// port choice to `connect`, so ports are unique per 4-tuple rather than per local address.
/// With `delayed_ack`, `TCP_QUICKACK` is cleared before `connect`: the kernel then holds the
/// ACK of the SYN-ACK (up to its delayed-ACK maximum) and sends it with the first data.
pub(crate) fn stream_socket(
    addr: &SocketAddr,
    local: Option<&SocketAddr>,
    delayed_ack: bool,
) -> io::Result<RawFd> {
    let sock = new_socket(addr)?;
    let fd = sock.as_raw_fd();
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    if delayed_ack {
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0)?;
    }
    if let Some(local) = local {
        if local.port() == 0 {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
        }
        let raw = RawAddr::from_std(*local);
        // SAFETY: `raw` holds a valid sockaddr of `raw.len` bytes.
        cvt(unsafe { libc::bind(fd, raw.as_ptr(), raw.len) })?;
    }
    Ok(std::os::fd::IntoRawFd::into_raw_fd(sock))
}

/// Sets `SO_LINGER` {on, 0 s} on `fd`: its close then sends a reset and frees the connection
/// at once (no FIN, no `TIME_WAIT`), discarding anything unsent.
pub(crate) fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` outlives the call and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Closes a raw descriptor this module handed out (error ignored: nothing useful to do).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`, nanosecond resolution).
pub(crate) fn thread_cputime() -> io::Result<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into `ts`, which lives across the call.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) })?;
    Ok(std::time::Duration::new(
        ts.tv_sec as u64,
        ts.tv_nsec as u32,
    ))
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> Result<OwnedFd, IoError> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = setup(
        "eventfd",
        cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }),
    )?;
    // SAFETY: `fd` was just returned by eventfd(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to the eventfd counter, waking a read armed on it.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) already means "awake".
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

/// Pins the calling thread to `core`.
pub(crate) fn pin_to_core(core: usize) -> Result<(), IoError> {
    // SAFETY: cpu_set_t is a plain bit set; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { MaybeUninit::zeroed().assume_init() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(IoError::Config("core index beyond CPU_SETSIZE"));
    }
    // SAFETY: `core` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    setup(
        "sched_setaffinity",
        cvt(unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) }),
    )
    .map(drop)
}

/// Sets the process's file-size limit (RLIMIT_FSIZE soft limit; `None` = unlimited).
pub(crate) fn set_file_size_limit(bytes: Option<u64>) -> Result<(), IoError> {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid, initialised rlimit; setrlimit only reads it.
    setup(
        "setrlimit(RLIMIT_FSIZE)",
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }),
    )
    .map(drop)
}

/// The process's open-file limit (`RLIMIT_NOFILE`) as `(soft, hard)`; `u64::MAX` stands for
/// `RLIM_INFINITY`.
pub(crate) fn open_file_limit() -> Result<(u64, u64), IoError> {
    resource_limit(libc::RLIMIT_NOFILE, "getrlimit(RLIMIT_NOFILE)")
}

/// The process's locked-memory limit (`RLIMIT_MEMLOCK`, bytes) as `(soft, hard)`; `u64::MAX`
/// stands for `RLIM_INFINITY`. io_uring rings count against it for an unprivileged user.
pub(crate) fn locked_memory_limit() -> Result<(u64, u64), IoError> {
    resource_limit(libc::RLIMIT_MEMLOCK, "getrlimit(RLIMIT_MEMLOCK)")
}

fn resource_limit(
    resource: libc::__rlimit_resource_t,
    what: &'static str,
) -> Result<(u64, u64), IoError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the kernel fills in; it outlives the call.
    setup(what, cvt(unsafe { libc::getrlimit(resource, &mut limit) }))?;
    Ok((rlim_to_u64(limit.rlim_cur), rlim_to_u64(limit.rlim_max)))
}

/// Sets the process's open-file limit (`RLIMIT_NOFILE`); `u64::MAX` is `RLIM_INFINITY`. Raising
/// the soft limit up to the hard one needs no privilege; raising the hard one does, and
/// lowering the hard one cannot be undone without it.
pub(crate) fn set_open_file_limit(soft: u64, hard: u64) -> Result<(), IoError> {
    let limit = libc::rlimit {
        rlim_cur: u64_to_rlim(soft),
        rlim_max: u64_to_rlim(hard),
    };
    // SAFETY: `limit` is a valid, initialised rlimit; setrlimit only reads it.
    setup(
        "setrlimit(RLIMIT_NOFILE)",
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }),
    )
    .map(drop)
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // rlim_t is u64 on Linux
fn rlim_to_u64(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::try_from(v).unwrap_or(u64::MAX)
    }
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // rlim_t is u64 on Linux
fn u64_to_rlim(v: u64) -> libc::rlim_t {
    if v == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY)
    }
}

/// Ignores SIGXFSZ, so a write past the file-size limit fails with EFBIG instead of killing
/// the process.
pub(crate) fn ignore_file_size_signal() -> Result<(), IoError> {
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ; no handler code runs.
    let old = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if old == libc::SIG_ERR {
        return Err(IoError::Setup {
            what: "signal(SIGXFSZ)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> i32 {
        let mut value: i32 = -1;
        let mut len = mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `value` and `len` outlive the call; `len` is the size of `value`.
        let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
        assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    #[test]
    fn dial_sockets_clear_quickack_only_when_asked() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for delayed in [true, false] {
            let fd = stream_socket(&to, None, delayed).unwrap();
            // Linux reports TCP_QUICKACK as "not in delayed-ACK (pingpong) mode".
            let quick = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK);
            assert_eq!(quick, i32::from(!delayed), "delayed_ack = {delayed}");
            assert_eq!(getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
            close(fd);
        }
    }

    #[test]
    fn open_file_limit_reads_and_sets_back() {
        let (soft, hard) = open_file_limit().unwrap();
        assert!(soft <= hard, "{soft} > {hard}");
        // Setting the same values is always allowed and changes nothing.
        set_open_file_limit(soft, hard).unwrap();
        assert_eq!(open_file_limit().unwrap(), (soft, hard));
        // A soft limit above the hard one is refused.
        if hard != u64::MAX {
            assert!(set_open_file_limit(hard + 1, hard).is_err());
        }
    }

    #[test]
    fn raw_addr_round_trips() {
        for s in [
            "127.0.0.1:7075",
            "[::1]:54000",
            "[::ffff:10.0.0.1]:1",
            "0.0.0.0:0",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(RawAddr::from_std(a).to_std(), Some(a), "{s}");
        }
        assert_eq!(RawAddr::zeroed().to_std(), None);
    }

    #[test]
    fn listener_resolves_port_and_shares_it() {
        let (a, addr) = listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        assert_ne!(addr.port(), 0);
        let (b, addr2) = listen(addr, 16).unwrap();
        assert_eq!(addr, addr2);
        drop((a, b));
    }
}

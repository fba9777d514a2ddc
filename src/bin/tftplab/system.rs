//! What `serve` does for the system it runs under: take its listening
//! sockets from systemd (socket activation), tell systemd it is ready, and
//! give up root once port 69 is bound. Linux only; elsewhere each is an
//! error that says so, or nothing to do.

use std::net::UdpSocket;

/// The datagram sockets systemd handed over (`LISTEN_FDS` descriptors from
/// 3 on, for this process: `LISTEN_PID`), or `None` when not socket
/// activated. The variables are removed so a child does not take them for
/// its own.
#[cfg(target_os = "linux")]
pub fn listen_fds() -> Result<Option<Vec<UdpSocket>>, String> {
    use std::os::fd::FromRawFd;
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    // SAFETY: called from main before any other thread exists (the async
    // runtime is built after), so nothing reads the environment meanwhile.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let n: i32 = fds
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds} is not a number"))?;
    let mut sockets = Vec::new();
    for fd in 3..3 + n.clamp(0, 64) {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `fd` is ours (systemd passed it), and `kind`/`len` are a
        // valid int and its size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                &mut kind as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 || kind != libc::SOCK_DGRAM {
            return Err(format!(
                "descriptor {fd} from systemd is not a datagram socket; use ListenDatagram= in the \
                 .socket unit"
            ));
        }
        // SAFETY: systemd hands each descriptor over once, to this process,
        // and nothing else here owns it.
        let socket = unsafe { UdpSocket::from_raw_fd(fd) };
        // SAFETY: a valid descriptor; FD_CLOEXEC keeps it from children.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        sockets.push(socket);
    }
    if sockets.is_empty() {
        return Err("socket activated, but systemd passed no sockets (LISTEN_FDS=0)".into());
    }
    Ok(Some(sockets))
}

#[cfg(not(target_os = "linux"))]
pub fn listen_fds() -> Result<Option<Vec<UdpSocket>>, String> {
    Ok(None)
}

/// Tells the service manager `serve` is ready (`READY=1` on
/// `NOTIFY_SOCKET`, a path or `@abstract`), if one asked. Best effort: a
/// manager that is gone is not the server's failure.
#[cfg(target_os = "linux")]
pub fn notify_ready(status: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let addr = match path.to_str().and_then(|p| p.strip_prefix('@')) {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let message = format!("READY=1\nSTATUS={status}\n");
    if let (Ok(addr), Ok(socket)) = (addr, UnixDatagram::unbound()) {
        if let Err(e) = socket.send_to_addr(message.as_bytes(), &addr) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn notify_ready(_status: &str) {}

/// Runs as `user` (and `group`, or the user's own group) from now on: the
/// supplementary groups go, then the group, then the user, so nothing of
/// root is left. Called once every privileged socket is bound.
#[cfg(target_os = "linux")]
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    use std::ffi::CString;
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("`{s}` has a NUL byte"));
    let (uid, user_gid) = match user {
        Some(name) => {
            let c = cstr(name)?;
            // SAFETY: a valid C string; the result is read at once, at
            // start-up, before anything else looks users up.
            let pw = unsafe { libc::getpwnam(c.as_ptr()) };
            if pw.is_null() {
                return Err(format!("--user {name}: no such user"));
            }
            // SAFETY: non-null, as returned by getpwnam.
            unsafe { (Some((*pw).pw_uid), Some((*pw).pw_gid)) }
        }
        None => (None, None),
    };
    let gid = match group {
        Some(name) => {
            let c = cstr(name)?;
            // SAFETY: as for getpwnam above.
            let gr = unsafe { libc::getgrnam(c.as_ptr()) };
            if gr.is_null() {
                return Err(format!("--group {name}: no such group"));
            }
            // SAFETY: non-null, as returned by getgrnam.
            Some(unsafe { (*gr).gr_gid })
        }
        None => user_gid,
    };
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    if let Some(gid) = gid {
        // SAFETY: plain system calls with a valid (possibly empty) list.
        unsafe {
            if libc::setgroups(1, &gid) != 0 {
                return Err(os("setgroups"));
            }
            if libc::setgid(gid) != 0 {
                return Err(os("setgid"));
            }
        }
    }
    if let Some(uid) = uid {
        // SAFETY: a plain system call.
        if unsafe { libc::setuid(uid) } != 0 {
            return Err(os("setuid"));
        }
        // Root must be gone for good: setuid(0) has to fail now.
        // SAFETY: a plain system call.
        if uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err("could not give up root".into());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    if user.is_some() || group.is_some() {
        return Err("--user and --group work on Linux only".into());
    }
    Ok(())
}

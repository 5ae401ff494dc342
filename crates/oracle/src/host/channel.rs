//! The controller's link to one worker: a SOCK_SEQPACKET socket pair (a pipe
//! that keeps message boundaries and can carry a file descriptor), fixed-size
//! messages, and waits bounded by a deadline and by the interrupt flag.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Words in a message: an opcode and four arguments.
const WORDS: usize = 5;
/// Bytes in a message.
const MSG_BYTES: usize = WORDS * 8;

/// One message between controller and worker.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Msg {
    /// What to do, or what happened.
    pub op: u64,
    /// Arguments; their meaning depends on `op`.
    pub args: [u64; 4],
}

impl Msg {
    pub(crate) fn new(op: u64, args: [u64; 4]) -> Msg {
        Msg { op, args }
    }

    fn encode(&self) -> [u8; MSG_BYTES] {
        let mut out = [0u8; MSG_BYTES];
        let words = [self.op, self.args[0], self.args[1], self.args[2], self.args[3]];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8; MSG_BYTES]) -> Msg {
        let mut words = [0u64; WORDS];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Msg { op: words[0], args: [words[1], words[2], words[3], words[4]] }
    }
}

/// Why a receive returned without a message.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The other end closed (the worker exited).
    Closed,
    /// The deadline passed.
    Timeout,
    /// SIGINT/SIGTERM arrived (the signal number).
    Interrupted(i32),
    /// The socket failed or the message was malformed.
    Io(io::Error),
}

/// One end of a controller-worker link.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded, so both descriptors are open and ours.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Adopts an inherited descriptor (the worker's fd 3).
    pub(crate) fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// The raw descriptor (to hand to a child).
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends `msg`, with `pass` attached as SCM_RIGHTS when given.
    pub(crate) fn send(&self, msg: &Msg, pass: Option<RawFd>) -> io::Result<()> {
        let bytes = msg.encode();
        let mut iov =
            libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
        // Room for one descriptor, aligned as cmsghdr requires.
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if let Some(fd) = pass {
            // SAFETY: CMSG_SPACE only computes a size.
            let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
            if space > std::mem::size_of_val(&cbuf) {
                return Err(io::Error::other("control buffer too small"));
            }
            hdr.msg_control = cbuf.as_mut_ptr().cast();
            hdr.msg_controllen = space;
            // SAFETY: msg_control points at `space` valid, aligned, zeroed bytes,
            // so CMSG_FIRSTHDR returns a header inside it with room for one fd.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&hdr);
                if c.is_null() {
                    return Err(io::Error::other("no room for the control message"));
                }
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            }
        }
        loop {
            // SAFETY: hdr points at live buffers for the duration of the call.
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
            if n == MSG_BYTES as isize {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(if n < 0 { e } else { io::Error::other("short send") });
        }
    }

    /// Receives one message, waiting at most until `deadline` (forever when
    /// `None`); when `interrupt` is given it is polled every 50 ms and a
    /// non-zero value ends the wait.
    pub(crate) fn recv(
        &self,
        deadline: Option<Instant>,
        interrupt: Option<&dyn Fn() -> i32>,
    ) -> Result<(Msg, Option<OwnedFd>), RecvError> {
        loop {
            if let Some(check) = interrupt {
                let sig = check();
                if sig != 0 {
                    return Err(RecvError::Interrupted(sig));
                }
            }
            let slice = match deadline {
                None if interrupt.is_none() => -1,
                None => 50,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(RecvError::Timeout);
                    }
                    left.min(Duration::from_millis(50)).as_millis().max(1) as i32
                }
            };
            let mut pfd =
                libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, slice) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(RecvError::Io(e));
            }
            if r == 0 {
                continue;
            }
            return self.recv_ready();
        }
    }

    fn recv_ready(&self) -> Result<(Msg, Option<OwnedFd>), RecvError> {
        let mut bytes = [0u8; MSG_BYTES];
        let mut iov = libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: bytes.len() };
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = loop {
            // SAFETY: hdr points at live buffers for the duration of the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(RecvError::Io(e));
            }
            break n;
        };
        let mut passed = None;
        // SAFETY: recvmsg filled hdr's control area; the CMSG macros walk it
        // within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                    if fd >= 0 && passed.is_none() {
                        passed = Some(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        if n == 0 {
            return Err(RecvError::Closed);
        }
        if n != MSG_BYTES as isize {
            return Err(RecvError::Io(io::Error::other(format!("message of {n} bytes"))));
        }
        Ok((Msg::decode(&bytes), passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_cross() {
        let (a, b) = Channel::pair().expect("socketpair");
        let (c, _d) = Channel::pair().expect("socketpair");
        a.send(&Msg::new(7, [1, 2, 3, u64::MAX]), Some(c.raw())).expect("send");
        let (m, fd) = b.recv(Some(Instant::now() + Duration::from_secs(5)), None).expect("recv");
        assert_eq!(m, Msg::new(7, [1, 2, 3, u64::MAX]));
        assert!(fd.is_some());
        drop(a);
        assert!(matches!(
            b.recv(Some(Instant::now() + Duration::from_secs(5)), None),
            Err(RecvError::Closed)
        ));
    }

    #[test]
    fn waits_end_at_the_deadline_and_on_interrupt() {
        let (_a, b) = Channel::pair().expect("socketpair");
        let t = Instant::now();
        assert!(matches!(
            b.recv(Some(t + Duration::from_millis(60)), None),
            Err(RecvError::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(60));
        let sig = || 15;
        assert!(matches!(b.recv(None, Some(&sig)), Err(RecvError::Interrupted(15))));
    }
}

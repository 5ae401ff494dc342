//! The controller's link to one worker: a SOCK_SEQPACKET socket pair (a pipe
//! that keeps message boundaries and can carry a file descriptor), fixed-size
//! messages, and waits bounded by a deadline and by the interrupt flag.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg, socketpair,
};

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
        let (a, b) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
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

    /// The descriptor, to send to a worker or to check its kind.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Makes this channel's descriptor refer to `other`'s socket (dup2 onto
    /// the same number, close-on-exec cleared as dup2 does), so that the
    /// number a worker knows its channel by stays the same.
    pub(crate) fn replace_with(&mut self, other: OwnedFd) -> io::Result<()> {
        rustix::io::dup2(&other, &mut self.fd)?;
        Ok(())
    }

    /// Sends `msg`, with `pass` attached as SCM_RIGHTS when given.
    pub(crate) fn send(&self, msg: &Msg, pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = msg.encode();
        let fds: Vec<BorrowedFd<'_>> = pass.into_iter().collect();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the control message"));
        }
        loop {
            match sendmsg(&self.fd, &[IoSlice::new(&bytes)], &mut control, SendFlags::NOSIGNAL) {
                Ok(n) if n == MSG_BYTES => return Ok(()),
                Ok(_) => return Err(io::Error::other("short send")),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
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
                None if interrupt.is_none() => None,
                None => Some(Duration::from_millis(50)),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(RecvError::Timeout);
                    }
                    Some(left.min(Duration::from_millis(50)).max(Duration::from_millis(1)))
                }
            };
            let timeout = slice.map(|d| Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut pfd, timeout.as_ref()) {
                Ok(0) => continue,
                Ok(_) => return self.recv_ready(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(RecvError::Io(e.into())),
            }
        }
    }

    fn recv_ready(&self) -> Result<(Msg, Option<OwnedFd>), RecvError> {
        let mut bytes = [0u8; MSG_BYTES];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match recvmsg(
                &self.fd,
                &mut [IoSliceMut::new(&mut bytes)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) => break r,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(RecvError::Io(e.into())),
            }
        };
        let mut passed = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    if passed.is_none() {
                        passed = Some(fd);
                    }
                }
            }
        }
        if got.bytes == 0 {
            return Err(RecvError::Closed);
        }
        if got.bytes != MSG_BYTES {
            return Err(RecvError::Io(io::Error::other(format!("message of {} bytes", got.bytes))));
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
        a.send(&Msg::new(7, [1, 2, 3, u64::MAX]), Some(c.fd())).expect("send");
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

//! Partitions without root: every peer link of a cluster goes through a
//! forwarder on loopback that the test can cut. A cut link drops what is
//! sent on it, silently, as a network that loses packets does: the sender
//! sees no error, and nothing arrives. Healing closes the connections that
//! were cut (a stream that lost bytes cannot go on), and the sender dials
//! again.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One direction between two nodes: `from` dials `to` through it.
struct Link {
    cut: AtomicBool,
    /// Open connections, to close when the link heals.
    open: Mutex<Vec<TcpStream>>,
}

/// The forwarders of every directed link of a cluster.
pub struct Links {
    links: Vec<((u16, u16), Arc<Link>)>,
    /// The port node `from` dials to reach node `to`.
    ports: Vec<((u16, u16), u16)>,
    stop: Arc<AtomicBool>,
}

impl Links {
    /// Forwarders for every ordered pair of `peer_ports` (node `i + 1`
    /// listens on `peer_ports[i]`).
    pub fn start(peer_ports: &[u16]) -> Links {
        let stop = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        let mut ports = Vec::new();
        let n = u16::try_from(peer_ports.len()).expect("a few nodes");
        for from in 1..=n {
            for to in (1..=n).filter(|to| *to != from) {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a forwarder");
                let port = listener.local_addr().expect("addr").port();
                let link = Arc::new(Link {
                    cut: AtomicBool::new(false),
                    open: Mutex::new(Vec::new()),
                });
                let target = peer_ports[usize::from(to - 1)];
                let (l, s) = (link.clone(), stop.clone());
                std::thread::spawn(move || forward(listener, target, l, s));
                links.push(((from, to), link));
                ports.push(((from, to), port));
            }
        }
        Links { links, ports, stop }
    }

    /// The port `from` dials to reach `to`.
    pub fn port(&self, from: u16, to: u16) -> u16 {
        self.ports
            .iter()
            .find(|(pair, _)| *pair == (from, to))
            .map(|(_, p)| *p)
            .expect("a link between two members")
    }

    /// Cut every link to and from `node`.
    pub fn isolate(&self, node: u16) {
        self.set(|(from, to)| from == node || to == node, true);
    }

    /// Restore every link.
    pub fn heal(&self) {
        self.set(|_| true, false);
    }

    /// The links that are cut now.
    pub fn cut(&self) -> BTreeSet<(u16, u16)> {
        self.links
            .iter()
            .filter(|(_, l)| l.cut.load(Ordering::SeqCst))
            .map(|(pair, _)| *pair)
            .collect()
    }

    fn set(&self, which: impl Fn((u16, u16)) -> bool, cut: bool) {
        for (pair, link) in &self.links {
            if !which(*pair) {
                continue;
            }
            let was = link.cut.swap(cut, Ordering::SeqCst);
            if was && !cut {
                // Bytes were lost on these streams: end them.
                for s in link.open.lock().expect("links").drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for ((_, _), port) in &self.ports {
            // Wake the accept loops so that they see `stop`.
            let _ = TcpStream::connect(("127.0.0.1", *port));
        }
        for (_, link) in &self.links {
            for s in link.open.lock().expect("links").drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn forward(listener: TcpListener, target: u16, link: Arc<Link>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = conn else { continue };
        let _ = inbound.set_nodelay(true);
        if link.cut.load(Ordering::SeqCst) {
            // A cut link accepts the dial but carries nothing: to the
            // sender that looks like a dial whose packets are lost, and it
            // can be closed cleanly at the heal.
            if let Ok(clone) = inbound.try_clone() {
                link.open.lock().expect("links").push(clone);
            }
            std::thread::spawn(move || drain(inbound));
            continue;
        }
        // Node down: refuse, as its own port would.
        let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
            continue;
        };
        let _ = outbound.set_nodelay(true);
        for s in [&inbound, &outbound] {
            if let Ok(clone) = s.try_clone() {
                link.open.lock().expect("links").push(clone);
            }
        }
        let (a, b) = (
            inbound.try_clone().expect("clone"),
            outbound.try_clone().expect("clone"),
        );
        let l = link.clone();
        std::thread::spawn(move || pump(a, b, l));
        let l = link.clone();
        std::thread::spawn(move || pump(outbound, inbound, l));
    }
}

/// Copy `from` to `to` while the link is up; drop the bytes while it is
/// cut. Ends, closing both, when either side does.
fn pump(mut from: TcpStream, mut to: TcpStream, link: Arc<Link>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if link.cut.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn drain(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

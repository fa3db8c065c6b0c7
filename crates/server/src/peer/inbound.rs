//! Accept connections from peers; each must open with a hello from a
//! member, then carries that member's messages into the node loop.
//!
//! Anyone can reach the peer port, so nothing a stranger does may keep a
//! member out. A connection that has not said hello waits in a small pool
//! for at most `HELLO_TIMEOUT`; when the pool is full the oldest waiting
//! connection is dropped to make room, so a member, whose hello follows
//! its dial at once, always gets in. After its hello a connection holds
//! its member's one slot (a newer connection from the same member replaces
//! it), and every frame must come within `READ_TIMEOUT`: peers tick every
//! 50 ms when idle, so silence means a dead or half-open link.

use super::frame::{self, Body};
use super::{framed, Conn, FrameWriter, PeerEvent, PeerView};
use crate::metrics::Metrics;
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure_core::NodeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Connections that have not said hello yet, at once.
const MAX_WAITING_FOR_HELLO: usize = 16;
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest silence on a member's connection before it is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// The same complaint about the same address is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Who holds which inbound place: each connection gets a number, and a
/// stop signal its task obeys.
#[derive(Default)]
struct Places {
    next: u64,
    waiting: VecDeque<(u64, watch::Sender<bool>)>,
    members: BTreeMap<NodeId, (u64, watch::Sender<bool>)>,
    /// When each (complaint, address) was last logged.
    logged: BTreeMap<(&'static str, std::net::IpAddr), Instant>,
}

type Shared = Arc<Mutex<Places>>;

fn lock(places: &Shared) -> std::sync::MutexGuard<'_, Places> {
    places.lock().unwrap_or_else(|e| e.into_inner())
}

impl Places {
    /// A place in the hello pool for a new connection, evicting the
    /// oldest waiter when full.
    fn wait_for_hello(&mut self) -> (u64, watch::Receiver<bool>) {
        if self.waiting.len() >= MAX_WAITING_FOR_HELLO {
            if let Some((_, stop)) = self.waiting.pop_front() {
                let _ = stop.send(true);
            }
        }
        let (tx, rx) = watch::channel(false);
        self.next += 1;
        self.waiting.push_back((self.next, tx));
        (self.next, rx)
    }

    /// Connection `id` said hello as `member`: it leaves the pool and takes
    /// the member's place, closing the member's older connection.
    fn admit(&mut self, id: u64, member: NodeId) -> Option<()> {
        let at = self.waiting.iter().position(|(w, _)| *w == id)?;
        let (_, stop) = self.waiting.remove(at)?;
        if let Some((_, old)) = self.members.insert(member, (id, stop)) {
            let _ = old.send(true);
        }
        Some(())
    }

    fn leave(&mut self, id: u64, member: Option<NodeId>) {
        self.waiting.retain(|(w, _)| *w != id);
        if let Some(m) = member {
            if self.members.get(&m).is_some_and(|(held, _)| *held == id) {
                self.members.remove(&m);
            }
        }
    }

    /// Whether a complaint about `addr` should be logged now.
    fn should_log(&mut self, what: &'static str, addr: SocketAddr) -> bool {
        let now = Instant::now();
        let key = (what, addr.ip());
        match self.logged.get(&key) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                if self.logged.len() > 1_024 {
                    self.logged
                        .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
                }
                self.logged.insert(key, now);
                true
            }
        }
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    view: PeerView,
    events: mpsc::Sender<PeerEvent>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let places: Shared = Arc::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, usually: pause rather than spin.
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, evicted) = lock(&places).wait_for_hello();
        let (view, events, shutdown, places, metrics) = (
            view.clone(),
            events.clone(),
            shutdown.clone(),
            places.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let mut member = None;
            let result = connection(stream, &view, events, shutdown, evicted, |from| {
                let admitted = lock(&places).admit(id, from).is_some();
                if admitted {
                    member = Some(from);
                }
                admitted
            })
            .await;
            let mut places = lock(&places);
            places.leave(id, member);
            if let Err(refusal) = result {
                // Refusals of strangers and misconfigured members are worth
                // an operator's eye, once in a while; a member's link that
                // closed is routine.
                match refusal {
                    Refusal::Closed(why) => {
                        tracing::debug!(%addr, %why, "inbound peer connection closed")
                    }
                    Refusal::Refused(kind, why) => {
                        metrics.peer_refused(kind);
                        if places.should_log(kind, addr) {
                            tracing::warn!(%addr, "peer connection refused: {why}");
                        }
                    }
                    Refusal::Logged(kind) => metrics.peer_refused(kind),
                }
            }
        });
    }
}

/// Why an inbound connection ended.
enum Refusal {
    /// An ordinary end: closed, timed out, replaced.
    Closed(String),
    /// Refused for what it sent; the kind keys the log's rate limit and
    /// labels the count of refusals.
    Refused(&'static str, String),
    /// Refused and already logged (the drift bound, once per member).
    Logged(&'static str),
}

async fn connection(
    stream: TcpStream,
    view: &PeerView,
    events: mpsc::Sender<PeerEvent>,
    mut shutdown: watch::Receiver<bool>,
    mut evicted: watch::Receiver<bool>,
    admit: impl FnOnce(NodeId) -> bool,
) -> Result<(), Refusal> {
    let closed = |why: &str| Refusal::Closed(why.to_string());
    stream
        .set_nodelay(true)
        .map_err(|e| closed(&e.to_string()))?;
    let (conn, certificates): (Conn, _) = match &view.tls {
        None => (Box::new(stream), None),
        Some(tls) => {
            let secured = tokio::select! {
                s = tokio::time::timeout(HELLO_TIMEOUT, tls.acceptor().accept(stream)) => s,
                _ = evicted.changed() => return Err(closed("made room for a newer connection before its TLS handshake")),
                _ = shutdown.changed() => return Ok(()),
            };
            let secured = secured
                .map_err(|_| {
                    Refusal::Refused(
                        "no_hello",
                        format!("no TLS handshake within {HELLO_TIMEOUT:?}"),
                    )
                })?
                .map_err(|e| Refusal::Refused("tls_refused", format!("TLS refused: {e}")))?;
            let certificates = secured.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            (Box::new(secured), Some(certificates.unwrap_or_default()))
        }
    };
    let (mut frames, mut answers) = framed(conn);
    let hello = tokio::select! {
        hello = tokio::time::timeout(HELLO_TIMEOUT, frames.next()) => hello,
        _ = evicted.changed() => return Err(closed("made room for a newer connection before its hello")),
        _ = shutdown.changed() => return Ok(()),
    };
    let hello = hello
        .map_err(|_| Refusal::Refused("no_hello", format!("no hello within {HELLO_TIMEOUT:?}")))?
        .ok_or_else(|| closed("closed before hello"))?
        .map_err(|e| Refusal::Refused("unreadable_hello", format!("unreadable hello: {e}")))?;
    let hello =
        frame::decode(&hello).map_err(|e| Refusal::Refused("undecodable", e.to_string()))?;
    let from = hello.from;
    let Body::Hello {
        max_drift_ppm,
        identity,
        incarnation,
        boot,
    } = hello.body
    else {
        return Err(Refusal::Refused(
            "bad_hello",
            format!("the first frame from {from} is not a hello"),
        ));
    };
    if from == view.me {
        return Err(Refusal::Refused(
            "bad_hello",
            format!("a hello in this node's own name, {from}"),
        ));
    }
    let Some(link) = view.link(from) else {
        return Err(Refusal::Refused(
            "not_a_member",
            format!("{from} is not a member"),
        ));
    };
    // With TLS the certificate proves the id the hello claims. Without
    // (`--insecure-peers`) ids are taken on trust, and the peer network
    // must be private (docs/operations.md).
    if let (Some(tls), Some(certificates)) = (&view.tls, &certificates) {
        if let Err(why) = tls.proves(certificates, from) {
            let reason = format!("node {} refuses a hello as {from}: {why}", view.me.0);
            return Err(refuse(&mut answers, view, "not_certified", reason).await);
        }
    }
    if max_drift_ppm != view.max_drift_ppm {
        let reason = format!(
            "node {} runs with --max-drift-ppm {}, {from} with {max_drift_ppm}: every member \
             must judge leases by the same bound",
            view.me.0, view.max_drift_ppm
        );
        answer(&mut answers, view, Body::Refused { reason }).await;
        if link.refuse_once() {
            tracing::error!(
                "peer {from} runs with --max-drift-ppm {max_drift_ppm}, this node with {}: \
                 members that judge leases by different drift bounds could free one early; \
                 refusing its messages until every member runs with the same bound",
                view.max_drift_ppm
            );
        }
        return Err(Refusal::Logged("drift_bound"));
    }
    if *identity != *view.identity {
        let reason = format!(
            "node {} is of {}, and {from} says it is of {identity}: members must share \
             --cluster-id",
            view.me.0, view.identity
        );
        return Err(refuse(&mut answers, view, "another_cluster", reason).await);
    }
    if let Err((seen, _)) = link.admit_life(incarnation, boot) {
        let which = if incarnation == seen {
            "another process in the same incarnation".to_string()
        } else {
            format!("incarnation {seen}")
        };
        let reason = format!(
            "{from} says it is in incarnation {incarnation}, but node {} has seen {which} of \
             it: a second node with id {}, or node {} started on a fresh data directory, which \
             has forgotten what it promised",
            view.me.0, from.0, from.0
        );
        return Err(refuse(&mut answers, view, "incarnation_went_back", reason).await);
    }
    if !admit(from) {
        return Err(closed("made room for a newer connection"));
    }
    answer(&mut answers, view, Body::Welcome).await;
    // A new connection may come from a restarted process, whose clock
    // readings start afresh.
    view.rates.forget(from);
    loop {
        let bytes = tokio::select! {
            f = tokio::time::timeout(READ_TIMEOUT, frames.next()) => f,
            _ = evicted.changed() => return Err(closed("replaced by a newer connection")),
            _ = shutdown.changed() => return Ok(()),
        };
        let bytes = bytes
            .map_err(|_| closed(&format!("{from} sent nothing for {READ_TIMEOUT:?}")))?
            .ok_or_else(|| closed("closed"))?
            .map_err(|e| closed(&e.to_string()))?;
        let frame = frame::decode(&bytes)
            .map_err(|e| Refusal::Refused("undecodable", format!("from {from}: {e}")))?;
        if frame.from != from {
            return Err(Refusal::Refused(
                "bad_frame",
                format!("{from} sent a frame signed {}", frame.from),
            ));
        }
        link.heard();
        let echo = view
            .rates
            .sample(from, view.clock.now().as_micros(), frame.sent_at_us);
        link.set_echo(echo);
        view.rates.echo(from, frame.echo_offset_us);
        if let Body::Message(stamp, message) = frame.body {
            // Waiting here pushes back on the peer through TCP when the node
            // loop is busy, instead of buffering without bound.
            if events
                .send(PeerEvent {
                    from,
                    stamp,
                    message,
                })
                .await
                .is_err()
            {
                return Ok(()); // The node is stopping.
            }
        }
    }
}

/// Refuse a hello: tell the dialling node why, and log it (rate-limited).
async fn refuse(
    answers: &mut FrameWriter,
    view: &PeerView,
    kind: &'static str,
    reason: String,
) -> Refusal {
    let refused = Body::Refused {
        reason: reason.clone(),
    };
    answer(answers, view, refused).await;
    Refusal::Refused(kind, reason)
}

/// Answer a hello: the only frames this node writes on a connection a
/// peer dialled. Best effort, within `HELLO_TIMEOUT`: a peer that does not
/// read its answer learns nothing, and the link is judged as before.
async fn answer(answers: &mut FrameWriter, view: &PeerView, body: Body) {
    let frame = frame::Frame {
        version: frame::PROTOCOL_VERSION,
        from: view.me,
        sent_at_us: view.clock.now().as_micros(),
        echo_offset_us: None,
        body,
    };
    if let Ok(bytes) = frame::encode(&frame) {
        let _ = tokio::time::timeout(HELLO_TIMEOUT, answers.send(bytes)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::tests::STAMP;
    use super::*;
    use crate::clock::Clock;
    use crate::peer::frame::{Frame, PROTOCOL_VERSION};
    use crate::peer::rates::Rates;
    use crate::peer::LinkState;
    use bytes::Bytes;
    use futures_util::SinkExt;
    use tenure_core::{LeaseName, Message};
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::FramedWrite;

    /// Node 1's accept loop, with members 1 to 3; its events, its address.
    async fn node_one() -> (mpsc::Receiver<PeerEvent>, SocketAddr, watch::Sender<bool>) {
        node_one_with(None).await
    }

    async fn node_one_with(
        tls: Option<Arc<crate::tls::PeerTls>>,
    ) -> (mpsc::Receiver<PeerEvent>, SocketAddr, watch::Sender<bool>) {
        let (events, addr, stop, _) = node_one_counting(tls).await;
        (events, addr, stop)
    }

    /// Node 1's accept loop, and the metrics it counts refusals in.
    async fn node_one_counting(
        tls: Option<Arc<crate::tls::PeerTls>>,
    ) -> (
        mpsc::Receiver<PeerEvent>,
        SocketAddr,
        watch::Sender<bool>,
        Arc<Metrics>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let members: super::super::MemberLinks = (1..=3)
            .map(|i| {
                (
                    NodeId(i),
                    (format!("127.0.0.1:{i}"), Arc::new(LinkState::default())),
                )
            })
            .collect();
        let members = Arc::new(std::sync::RwLock::new(members));
        let view = PeerView {
            me: NodeId(1),
            members,
            max_drift_ppm: 1_000,
            identity: IDENTITY.into(),
            tls,
            rates: Arc::new(Rates::new(3, 1_000, true)),
            clock: Clock::new(),
        };
        let (events_tx, events) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        tokio::spawn(accept_loop(
            listener,
            view,
            events_tx,
            metrics.clone(),
            stop_rx,
        ));
        (events, addr, stop, metrics)
    }

    /// How many refusals for `reason` the metrics show.
    fn refusals(metrics: &Metrics, reason: &str) -> u64 {
        let line = format!("tenure_peer_refused_total{{reason=\"{reason}\"}} ");
        metrics
            .render("")
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map_or(0, |n| n.parse().expect("a count"))
    }

    fn frame(from: u16, body: Body) -> Bytes {
        frame::encode(&Frame {
            version: PROTOCOL_VERSION,
            from: NodeId(from),
            sent_at_us: 1,
            echo_offset_us: None,
            body,
        })
        .expect("encode")
    }

    const IDENTITY: &str = "cluster test, members 1,2,3";

    /// A member's hello, with this node's drift bound and identity.
    fn hello(from: u16) -> Bytes {
        hello_as(from, IDENTITY, 1)
    }

    fn hello_as(from: u16, identity: &str, incarnation: u32) -> Bytes {
        frame(
            from,
            Body::Hello {
                max_drift_ppm: 1_000,
                identity: identity.into(),
                incarnation,
                boot: 7,
            },
        )
    }

    /// A raw connection to `addr` that has sent `bytes`.
    async fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut stream, bytes)
            .await
            .expect("write");
        stream
    }

    /// The next frame the node answers on `stream`; `None` once it closed.
    async fn read_frame(stream: &mut TcpStream) -> Option<Body> {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(frame::decode(&body).expect("a frame").body)
    }

    /// Read until the node closes `stream`, within `within`; the frames it
    /// answered with.
    async fn until_closed(stream: &mut TcpStream, within: Duration) -> Vec<Body> {
        let read_all = async {
            let mut frames = Vec::new();
            while let Some(body) = read_frame(stream).await {
                frames.push(body);
            }
            frames
        };
        tokio::time::timeout(within, read_all)
            .await
            .unwrap_or_else(|_| panic!("not closed within {within:?}"))
    }

    /// A frame as the length-delimited codec puts it on the wire.
    fn on_the_wire(frame: &[u8]) -> Vec<u8> {
        let mut bytes = u32::try_from(frame.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        bytes.extend_from_slice(frame);
        bytes
    }

    fn peek() -> Body {
        Body::Message(
            STAMP,
            Message::Peek {
                name: LeaseName::new("x").expect("name"),
                id: 7,
            },
        )
    }

    async fn dial(
        addr: SocketAddr,
    ) -> FramedWrite<TcpStream, tokio_util::codec::LengthDelimitedCodec> {
        FramedWrite::new(
            TcpStream::connect(addr).await.expect("connect"),
            frame::codec(),
        )
    }

    #[tokio::test]
    async fn strangers_that_never_say_hello_cannot_keep_a_member_out() {
        let (mut events, addr, _stop) = node_one().await;
        let mut strangers = Vec::new();
        for _ in 0..100 {
            strangers.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let mut member = dial(addr).await;
        member.send(hello(2)).await.expect("hello");
        member.send(frame(2, peek())).await.expect("message");
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("the member's message arrives")
            .expect("event");
        assert_eq!(event.from, NodeId(2));
        drop(strangers);
    }

    #[tokio::test]
    async fn a_member_link_that_goes_silent_mid_frame_is_closed() {
        let (_events, addr, _stop) = node_one().await;
        let mut bytes = on_the_wire(&hello(2));
        // Then a frame cut in half, its length included.
        let next = on_the_wire(&frame(2, peek()));
        bytes.extend_from_slice(&next[..next.len() / 2]);
        let mut stream = connect_and_send(addr, &bytes).await;
        let started = Instant::now();
        let answers = until_closed(&mut stream, READ_TIMEOUT * 2).await;
        assert_eq!(answers, [Body::Welcome]);
        assert!(started.elapsed() >= READ_TIMEOUT - Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_newer_connection_of_a_member_replaces_the_older() {
        let (mut events, addr, _stop) = node_one().await;
        let mut old = connect_and_send(addr, &on_the_wire(&hello(3))).await;
        let mut new = dial(addr).await;
        new.send(hello(3)).await.expect("hello");
        new.send(frame(3, peek())).await.expect("message");
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("message")
            .expect("event");
        assert_eq!(event.from, NodeId(3));
        let answers = until_closed(&mut old, Duration::from_secs(2)).await;
        assert_eq!(answers, [Body::Welcome]);
    }

    /// A node of another cluster, or told other members, is told why and
    /// closed; nothing it sends reaches the node.
    #[tokio::test]
    async fn a_hello_of_another_cluster_is_refused_with_the_reason() {
        let (mut events, addr, _stop) = node_one().await;
        let mut bytes = on_the_wire(&hello_as(2, "cluster test, members 2", 1));
        bytes.extend(on_the_wire(&frame(2, peek())));
        let mut stream = connect_and_send(addr, &bytes).await;
        let answers = until_closed(&mut stream, Duration::from_secs(2)).await;
        let [Body::Refused { reason }] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert!(reason.contains("members 2"), "{reason}");
        assert!(
            events.try_recv().is_err(),
            "a refused link delivers nothing"
        );
    }

    /// Once a member's hello named incarnation 5, one that names 4 is a
    /// second node with its id, or the node on a fresh data directory.
    #[tokio::test]
    async fn a_member_whose_incarnation_goes_back_is_refused() {
        let (_events, addr, _stop) = node_one().await;
        let mut first = connect_and_send(addr, &on_the_wire(&hello_as(2, IDENTITY, 5))).await;
        // Its welcome: the node has taken incarnation 5.
        assert_eq!(read_frame(&mut first).await, Some(Body::Welcome));
        let mut stream = connect_and_send(addr, &on_the_wire(&hello_as(2, IDENTITY, 4))).await;
        let answers = until_closed(&mut stream, Duration::from_secs(2)).await;
        let [Body::Refused { reason }] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert!(reason.contains("fresh data directory"), "{reason}");
        drop(first);
    }

    mod tls {
        use super::*;
        use crate::peer::{framed, Conn, FrameReader, FrameWriter};
        use crate::tls::issue::Ca;
        use crate::tls::PeerTls;

        /// A CA in a fresh directory, and node `id`'s TLS under it.
        fn member(ca: &Ca, id: u16) -> Arc<PeerTls> {
            let files = ca.issue_node(NodeId(id), &[]).expect("issue");
            Arc::new(PeerTls::load(NodeId(id), files).expect("load"))
        }

        /// Dial node 1 as the holder of `tls`, and say hello as `claims`.
        async fn dial_as(
            addr: SocketAddr,
            tls: &PeerTls,
            claims: u16,
        ) -> (FrameReader, FrameWriter) {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let secured = tls.connect(NodeId(1), tcp).await.expect("TLS");
            let (answers, mut sink) = framed(Box::new(secured) as Conn);
            sink.send(hello(claims)).await.expect("hello");
            sink.send(frame(claims, peek())).await.expect("message");
            (answers, sink)
        }

        async fn answer(answers: &mut FrameReader) -> Option<Body> {
            let bytes = tokio::time::timeout(Duration::from_secs(2), answers.next())
                .await
                .expect("an answer or a close")?
                .ok()?;
            Some(frame::decode(&bytes).expect("a frame").body)
        }

        #[tokio::test]
        async fn a_member_proves_its_id_and_its_messages_arrive() {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca = Ca::open_or_create(dir.path()).expect("CA");
            let (mut events, addr, _stop) = node_one_with(Some(member(&ca, 1))).await;
            let (mut answers, _sink) = dial_as(addr, &member(&ca, 2), 2).await;
            assert_eq!(answer(&mut answers).await, Some(Body::Welcome));
            let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
                .await
                .expect("the member's message arrives")
                .expect("event");
            assert_eq!(event.from, NodeId(2));
        }

        /// Node 2's certificate does not make its holder node 3: the forged
        /// hello is refused with the reason, and nothing it sent arrives.
        #[tokio::test]
        async fn a_member_cannot_speak_in_another_members_name() {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca = Ca::open_or_create(dir.path()).expect("CA");
            let (mut events, addr, _stop) = node_one_with(Some(member(&ca, 1))).await;
            let (mut answers, _sink) = dial_as(addr, &member(&ca, 2), 3).await;
            let Some(Body::Refused { reason }) = answer(&mut answers).await else {
                panic!("not refused")
            };
            assert!(reason.contains("not node 3's"), "{reason}");
            assert_eq!(answer(&mut answers).await, None, "closed after the refusal");
            assert!(
                events.try_recv().is_err(),
                "a refused link delivers nothing"
            );
        }

        /// A hello in plain TCP, as a script forging peer frames sends it,
        /// never reaches the node.
        #[tokio::test]
        async fn a_plain_connection_delivers_nothing() {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca = Ca::open_or_create(dir.path()).expect("CA");
            let (mut events, addr, _stop, metrics) = node_one_counting(Some(member(&ca, 1))).await;
            let mut bytes = on_the_wire(&hello(2));
            bytes.extend(on_the_wire(&frame(2, peek())));
            let mut stream = connect_and_send(addr, &bytes).await;
            let mut rest = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "closed within the hello timeout");
            assert!(events.try_recv().is_err(), "nothing delivered");
            // Counted, once the task that refused it has ended.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while refusals(&metrics, "tls_refused") == 0 {
                assert!(std::time::Instant::now() < deadline, "not counted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(refusals(&metrics, "tls_refused"), 1);
        }

        /// A certificate for node 2 from another CA (another cluster, or a
        /// forger's own) does not get through the handshake.
        #[tokio::test]
        async fn a_certificate_from_another_ca_is_refused() {
            let (ours, theirs) = (
                tempfile::tempdir().expect("tempdir"),
                tempfile::tempdir().expect("tempdir"),
            );
            let ca = Ca::open_or_create(ours.path()).expect("CA");
            let forged = Ca::open_or_create(theirs.path())
                .expect("CA")
                .issue_node(NodeId(2), &[])
                .expect("issue");
            let (mut events, addr, _stop) = node_one_with(Some(member(&ca, 1))).await;
            // It trusts our CA, so it would accept node 1; node 1 must not
            // accept it.
            let dialler = crate::tls::TlsFiles {
                ca: ca.issue_node(NodeId(1), &[]).expect("issue").ca,
                ..forged
            };
            let client = client_config(&dialler);
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("node-1.tenure").expect("name");
            let delivered = async {
                let secured = tokio_rustls::TlsConnector::from(client)
                    .connect(name, tcp)
                    .await?;
                let (mut answers, mut sink) = framed(Box::new(secured) as Conn);
                sink.send(hello(2)).await?;
                sink.send(frame(2, peek())).await?;
                match answers.next().await {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e),
                    None => Err(std::io::ErrorKind::UnexpectedEof.into()),
                }
            };
            let outcome = tokio::time::timeout(Duration::from_secs(3), delivered)
                .await
                .expect("ends");
            assert!(outcome.is_err(), "the handshake or the link fails");
            assert!(events.try_recv().is_err(), "nothing delivered");
        }

        /// A client config that trusts `files.ca` and presents `files.cert`,
        /// with no check of its own certificate.
        fn client_config(files: &crate::tls::TlsFiles) -> Arc<rustls::ClientConfig> {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(&files.ca).expect("ca") {
                roots.add(ca.expect("pem")).expect("root");
            }
            let chain: Vec<_> = CertificateDer::pem_file_iter(&files.cert)
                .expect("cert")
                .map(|c| c.expect("pem"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, key)
                    .expect("client auth"),
            )
        }

        #[test]
        fn a_node_refuses_to_start_on_another_nodes_certificate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let ca = Ca::open_or_create(dir.path()).expect("CA");
            let files = ca.issue_node(NodeId(2), &[]).expect("issue");
            let error = PeerTls::load(NodeId(1), files)
                .expect_err("refused")
                .to_string();
            assert!(
                error.contains("node-1.tenure") && error.contains("node-2.pem"),
                "{error}"
            );
        }
    }
}

//! The link between the nodes of a multi-node run: node 0 listens on the `--master` address, every
//! other node connects to it, and a sum of f32 buffers is node 0 adding every node's buffer in
//! node order and sending the total back (a star; deterministic, so every node gets the same bits).
//!
//! Why not burn-collective's global all-reduce: in burn-collective 0.21 every global strategy ends
//! with `SyncService::sync`, which clears a *copy* of its list of synced peers instead of the list
//! itself, so the second global all-reduce of a process waits for ever (seen here with two nodes on
//! one machine: the first all-reduce completes, the second hangs). burn-collective still does the
//! all-reduce between the devices of one node; this link only carries each node's sum.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::parallel_error::ParallelError;
use crate::TrainError;

/// First bytes of every connection: protocol name and version.
const MAGIC: &[u8; 8] = b"ANCHDP02";

/// The hello: magic, rank (u32), recipe fingerprint (u64), shared-secret tag (u64), little-endian.
const HELLO_LEN: usize = 28;

/// How long node 0 waits for the other nodes, and they for node 0.
const RENDEZVOUS: Duration = Duration::from_secs(600);

/// How long node 0 waits for a new connection's hello before dropping it.
const HELLO: Duration = Duration::from_secs(5);

/// How long a collective waits for another node by default (a step of a large model with
/// gradient accumulation can take minutes; a stopped node must not make the others wait for ever).
const COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(1800);

type Pair = (BufReader<TcpStream>, BufWriter<TcpStream>);

/// What every node of a run must agree on besides the recipe, from the environment:
/// `ANCHORAGE_LINK_SECRET` (optional; connections without it are dropped as strays) and
/// `ANCHORAGE_LINK_TIMEOUT_S` (how long a collective waits for a node; default 1800).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOptions {
    pub secret_tag: u64,
    pub collective_timeout: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self { secret_tag: 0, collective_timeout: COLLECTIVE_TIMEOUT }
    }
}

impl LinkOptions {
    pub fn from_env() -> Result<Self, TrainError> {
        let mut options = Self::default();
        if let Ok(secret) = std::env::var("ANCHORAGE_LINK_SECRET") {
            options.secret_tag = secret_tag(&secret);
        }
        if let Ok(v) = std::env::var("ANCHORAGE_LINK_TIMEOUT_S") {
            let secs: u64 = v.trim().parse().ok().filter(|&s| s > 0).ok_or_else(|| -> TrainError {
                ParallelError::Link { message: format!("ANCHORAGE_LINK_TIMEOUT_S={v:?} is not a positive number of seconds") }.into()
            })?;
            options.collective_timeout = Duration::from_secs(secs);
        }
        Ok(options)
    }
}

/// A non-zero tag of the shared secret (never the secret itself on the wire).
fn secret_tag(secret: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("anchorage-link", secret).hash(&mut h);
    h.finish() | 1
}

/// One node's end of the link.
pub struct NodeLink {
    rank: u32,
    /// Node 0: one connection per other node, in node order. Others: the connection to node 0.
    peers: Vec<Pair>,
    /// How long a collective waits for a node before naming it as missing.
    timeout: Duration,
}

impl NodeLink {
    /// Joins the run: node 0 accepts `nodes - 1` connections on `master` (`HOST:PORT`, bound on
    /// every interface), the others connect to it (retrying until node 0 is up). `fingerprint`
    /// (recipe and plan) must match on every node.
    pub fn join(rank: u32, nodes: u32, master: &str, fingerprint: u64) -> Result<Self, TrainError> {
        Self::join_with(rank, nodes, master, fingerprint, &LinkOptions::from_env()?)
    }

    /// [`NodeLink::join`] with explicit options.
    pub fn join_with(rank: u32, nodes: u32, master: &str, fingerprint: u64, options: &LinkOptions) -> Result<Self, TrainError> {
        let err = |what: String| -> TrainError { ParallelError::Link { message: format!("({master}) {what}") }.into() };
        let deadline = Instant::now() + RENDEZVOUS;
        if rank == 0 {
            let port = master.rsplit(':').next().unwrap_or_default();
            let listener = TcpListener::bind(format!("0.0.0.0:{port}")).map_err(|e| err(format!("cannot listen on port {port}: {e}")))?;
            listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
            let mut joined: Vec<Option<Pair>> = (1..nodes).map(|_| None).collect();
            while joined.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((stream, from)) => {
                        // A connection that is not an anchorage node (a port scan, a health check) is
                        // dropped and the wait goes on; a node with the wrong recipe ends the run.
                        if let Some((peer_rank, mut pair)) = greet(stream, from, nodes, fingerprint, options, &joined).map_err(err)? {
                            pair.1.write_all(&[ACCEPTED]).and_then(|_| pair.1.flush()).map_err(|e| err(format!("node {peer_rank}: {e}")))?;
                            tracing::info!(node = peer_rank, %from, "node joined");
                            joined[peer_rank as usize - 1] = Some(pair);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> = joined.iter().enumerate().filter(|(_, j)| j.is_none()).map(|(i, _)| i + 1).collect();
                            return Err(err(format!("nodes {missing:?} did not join within {} s", RENDEZVOUS.as_secs())));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            Ok(Self { rank, peers: joined.into_iter().flatten().collect(), timeout: options.collective_timeout })
        } else {
            let mut last_report = Instant::now();
            let stream = loop {
                match TcpStream::connect(master) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => return Err(err(format!("cannot reach node 0 within {} s: {e}", RENDEZVOUS.as_secs()))),
                    Err(e) => {
                        if last_report.elapsed() >= Duration::from_secs(10) {
                            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                            tracing::warn!(%master, error = %e, "node 0 is not reachable yet; retrying for another {left} s");
                            last_report = Instant::now();
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            };
            stream.set_nodelay(true).ok();
            stream.set_read_timeout(Some(options.collective_timeout)).map_err(|e| err(e.to_string()))?;
            let mut writer = BufWriter::new(stream.try_clone().map_err(|e| err(e.to_string()))?);
            let mut hello = Vec::with_capacity(HELLO_LEN);
            hello.extend_from_slice(MAGIC);
            hello.extend_from_slice(&rank.to_le_bytes());
            hello.extend_from_slice(&fingerprint.to_le_bytes());
            hello.extend_from_slice(&options.secret_tag.to_le_bytes());
            writer.write_all(&hello).and_then(|_| writer.flush()).map_err(|e| err(e.to_string()))?;
            let mut reader = BufReader::new(stream);
            read_verdict(&mut reader).map_err(err)?;
            // The same reader from here on: node 0 may send more right behind its verdict (a
            // broadcast), which this reader may already hold in its buffer.
            Ok(Self { rank, peers: vec![(reader, writer)], timeout: options.collective_timeout })
        }
    }

    /// Sums `values` over every node; every node gets the same result. Every node must call this
    /// the same number of times with buffers of the same length.
    pub fn sum(&mut self, values: &mut [f32]) -> Result<(), TrainError> {
        let timeout = self.timeout;
        let err = |what: String| -> TrainError { ParallelError::Link { message: what }.into() };
        let io = |node: usize, e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "node {node} sent nothing for {} s: it stopped, or is far slower than the others (ANCHORAGE_LINK_TIMEOUT_S sets the limit)",
                timeout.as_secs()
            ),
            _ => format!("node {node}: {e}"),
        };
        if self.rank == 0 {
            let mut other = vec![0f32; values.len()];
            for (node, (reader, _)) in self.peers.iter_mut().enumerate() {
                let len = read_u64(reader).map_err(|e| err(io(node + 1, e)))?;
                if len != values.len() as u64 {
                    return Err(err(format!("node {} sent {len} values where node 0 has {}: the nodes are out of step", node + 1, values.len())));
                }
                read_f32s(reader, &mut other).map_err(|e| err(io(node + 1, e)))?;
                for (v, o) in values.iter_mut().zip(&other) {
                    *v += o;
                }
            }
            for (node, (_, writer)) in self.peers.iter_mut().enumerate() {
                write_f32s(writer, values).map_err(|e| err(format!("node {}: {e}", node + 1)))?;
            }
        } else {
            let (reader, writer) = &mut self.peers[0];
            write_f32s(writer, values).map_err(|e| err(format!("node 0: {e}")))?;
            let len = read_u64(reader).map_err(|e| err(io(0, e)))?;
            if len != values.len() as u64 {
                return Err(err(format!("node 0 sent {len} values, expected {}", values.len())));
            }
            read_f32s(reader, values).map_err(|e| err(io(0, e)))?;
        }
        Ok(())
    }
}

impl NodeLink {
    /// Node 0 gets every node's `bytes`, in node order (its own first); the other nodes send
    /// theirs and get `None`. Every node must call this at the same point of the run (ZeRO-1
    /// checkpoints: the optimizer shards of the other nodes).
    pub fn gather(&mut self, bytes: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, TrainError> {
        let err = |what: String| -> TrainError { ParallelError::Link { message: what }.into() };
        if self.rank != 0 {
            let (_, writer) = &mut self.peers[0];
            write_bytes(writer, &bytes).map_err(|e| err(format!("node 0: {e}")))?;
            return Ok(None);
        }
        let mut all = vec![bytes];
        for (node, (reader, _)) in self.peers.iter_mut().enumerate() {
            all.push(read_bytes(reader, u64::MAX).map_err(|e| err(format!("node {}: {e}", node + 1)))?);
        }
        Ok(Some(all))
    }

    /// Node 0's `bytes` on every node: node 0 passes `Some` and sends them, the others pass `None`
    /// and receive them (the NCCL unique id of a CUDA run). Every node must call this at the same
    /// point of the run.
    pub fn broadcast(&mut self, bytes: Option<Vec<u8>>) -> Result<Vec<u8>, TrainError> {
        let err = |what: String| -> TrainError { ParallelError::Link { message: what }.into() };
        if self.rank == 0 {
            let bytes = bytes.ok_or_else(|| err("node 0 has nothing to broadcast".into()))?;
            for (node, (_, writer)) in self.peers.iter_mut().enumerate() {
                write_bytes(writer, &bytes).map_err(|e| err(format!("node {}: {e}", node + 1)))?;
            }
            return Ok(bytes);
        }
        let (reader, _) = &mut self.peers[0];
        read_bytes(reader, MAX_BROADCAST).map_err(|e| err(format!("node 0: {e}")))
    }
}

/// Largest [`NodeLink::broadcast`] a node accepts (bytes).
const MAX_BROADCAST: u64 = 1 << 20;

/// Node 0 reads a new connection's hello: `Some((rank, connection))` for a node that may join,
/// `None` for a connection to drop (silent, or not speaking anchorage's protocol), or an error for
/// an anchorage node that cannot join (another recipe, a rank out of range or taken).
fn greet(stream: TcpStream, from: std::net::SocketAddr, nodes: u32, fingerprint: u64, options: &LinkOptions, joined: &[Option<Pair>]) -> Result<Option<(u32, Pair)>, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(HELLO)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut hello = [0u8; HELLO_LEN];
    if let Err(e) = reader.read_exact(&mut hello) {
        tracing::warn!(%from, error = %e, "dropping a connection that sent no anchorage hello");
        return Ok(None);
    }
    if &hello[..8] != MAGIC {
        tracing::warn!(%from, "dropping a connection that is not an anchorage node");
        return Ok(None);
    }
    let peer_rank = u32::from_le_bytes(hello[8..12].try_into().unwrap_or_default());
    let peer_print = u64::from_le_bytes(hello[12..20].try_into().unwrap_or_default());
    let peer_tag = u64::from_le_bytes(hello[20..28].try_into().unwrap_or_default());
    if peer_tag != options.secret_tag {
        tracing::warn!(%from, claimed_node = peer_rank, "dropping a connection without this run's shared secret (ANCHORAGE_LINK_SECRET)");
        return Ok(None);
    }
    stream.set_read_timeout(Some(options.collective_timeout)).map_err(|e| e.to_string())?;
    let refuse = |why: String| -> Result<Option<(u32, Pair)>, String> {
        let mut w = &stream;
        let mut verdict = vec![REFUSED];
        verdict.extend_from_slice(&(why.len() as u32).to_le_bytes());
        verdict.extend_from_slice(why.as_bytes());
        let _ = w.write_all(&verdict).and_then(|_| w.flush());
        Err(why)
    };
    if peer_rank == 0 || peer_rank >= nodes || joined[peer_rank as usize - 1].is_some() {
        return refuse(format!("{from} claims node rank {peer_rank}, which is out of range or taken (nodes = {nodes})"));
    }
    if peer_print != fingerprint {
        return refuse(format!("node {peer_rank} ({from}) runs a different recipe or plan than node 0"));
    }
    Ok(Some((peer_rank, (reader, BufWriter::new(stream)))))
}

/// Node 0's answer to a hello: accepted, or refused with its reason.
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

/// A node reads node 0's verdict on its hello.
fn read_verdict(r: &mut impl Read) -> Result<(), String> {
    let mut status = [0u8; 1];
    r.read_exact(&mut status).map_err(|e| {
        format!("node 0 closed the connection without accepting this node ({e}): another ANCHORAGE_LINK_SECRET, or not an anchorage node 0")
    })?;
    if status[0] == ACCEPTED {
        return Ok(());
    }
    let mut len = [0u8; 4];
    let why = r.read_exact(&mut len).ok().and_then(|()| {
        let mut text = vec![0u8; u32::from_le_bytes(len).min(4096) as usize];
        r.read_exact(&mut text).ok().map(|()| String::from_utf8_lossy(&text).into_owned())
    });
    Err(format!("node 0 refused this node: {}", why.unwrap_or_else(|| "no reason given".into())))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// One length-prefixed byte message (u64 little-endian length, then the bytes), flushed.
fn write_bytes(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&(bytes.len() as u64).to_le_bytes())?;
    w.write_all(bytes)?;
    w.flush()
}

/// The message [`write_bytes`] sent; an announced length above `limit` is refused unread.
fn read_bytes(r: &mut impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let len = read_u64(r)?;
    if len > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("announced {len} bytes (at most {limit})")));
    }
    let mut buf = Vec::new();
    let got = r.take(len).read_to_end(&mut buf)?;
    if got as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{got} of {len} bytes")));
    }
    Ok(buf)
}

fn read_f32s(r: &mut impl Read, out: &mut [f32]) -> std::io::Result<()> {
    let mut bytes = vec![0u8; out.len() * 4];
    r.read_exact(&mut bytes)?;
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

fn write_f32s(w: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    w.write_all(&(values.len() as u64).to_le_bytes())?;
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_sum_in_node_order_and_agree() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let handles: Vec<_> = (0..3u32)
            .map(|rank| {
                let master = master.clone();
                std::thread::spawn(move || {
                    let mut link = NodeLink::join(rank, 3, &master, 7).unwrap();
                    let mut out = Vec::new();
                    for round in 0..3 {
                        let mut v: Vec<f32> = (0..5).map(|i| (rank * 10 + i + round) as f32 + 0.25).collect();
                        link.sum(&mut v).unwrap();
                        out.push(v);
                    }
                    out
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for round in 0..3u32 {
            let expected: Vec<f32> = (0..5).map(|i| (0..3).map(|r| (r * 10 + i + round) as f32 + 0.25).sum()).collect();
            for r in &results {
                assert_eq!(r[round as usize], expected);
            }
        }
    }

    #[test]
    fn node_zeros_bytes_reach_every_node_and_sums_still_follow() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let id: Vec<u8> = (0..128u32).map(|i| (i * 37 % 256) as u8).collect();
        let handles: Vec<_> = (0..3u32)
            .map(|rank| {
                let (master, id) = (master.clone(), id.clone());
                std::thread::spawn(move || {
                    let mut link = NodeLink::join(rank, 3, &master, 7).unwrap();
                    // Only node 0's bytes count; the others' argument is ignored.
                    // Node 0 sends right behind its last verdict: what node 2 reads with its
                    // verdict must not be lost.
                    let got = link.broadcast((rank == 0).then_some(id)).unwrap();
                    let mut v = vec![rank as f32];
                    link.sum(&mut v).unwrap();
                    (got, v)
                })
            })
            .collect();
        for h in handles {
            let (got, v) = h.join().unwrap();
            assert_eq!(got, id);
            assert_eq!(v, vec![3.0]);
        }
        // Node 0 without bytes is an error, not a hang of the others.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let m = master.clone();
        let other = std::thread::spawn(move || NodeLink::join_with(1, 2, &m, 7, &LinkOptions { collective_timeout: Duration::from_millis(300), ..LinkOptions::default() }).and_then(|mut l| l.broadcast(None)));
        let mut link = NodeLink::join(0, 2, &master, 7).unwrap();
        let err = link.broadcast(None).unwrap_err().to_string();
        assert!(err.contains("nothing to broadcast"), "{err}");
        let err = other.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("node 0"), "{err}");
        drop(link);
    }

    #[test]
    fn stray_connections_are_dropped_and_the_nodes_still_join() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let m = master.clone();
        let node0 = std::thread::spawn(move || NodeLink::join(0, 2, &m, 7).map(|mut l| {
            let mut v = vec![1.0f32];
            l.sum(&mut v).map(|()| v)
        }));
        // A client that speaks HTTP, and one that sends nothing and hangs up.
        let connect = || loop {
            if let Ok(s) = TcpStream::connect(&master) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut http = connect();
        http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        drop(connect());
        let mut link = NodeLink::join(1, 2, &master, 7).unwrap();
        let mut v = vec![2.0f32];
        link.sum(&mut v).unwrap();
        assert_eq!(v, vec![3.0]);
        assert_eq!(node0.join().unwrap().unwrap().unwrap(), vec![3.0]);
    }

    #[test]
    fn a_node_without_the_secret_is_dropped_and_a_silent_node_is_named() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let with = LinkOptions { secret_tag: secret_tag("s3cret"), collective_timeout: Duration::from_millis(300) };
        let (m, o) = (master.clone(), with.clone());
        let node0 = std::thread::spawn(move || {
            let mut link = NodeLink::join_with(0, 2, &m, 7, &o)?;
            let mut v = vec![1.0f32];
            link.sum(&mut v)?;
            // The second sum: node 1 never sends.
            link.sum(&mut v).map(|()| v)
        });
        // Without the secret: dropped as a stray, node 0 keeps waiting.
        let stray = NodeLink::join_with(1, 2, &master, 7, &LinkOptions::default()).err().expect("dropped without the secret");
        assert!(stray.to_string().contains("ANCHORAGE_LINK_SECRET"), "{stray}");
        let mut link = NodeLink::join_with(1, 2, &master, 7, &with).unwrap();
        let mut v = vec![2.0f32];
        link.sum(&mut v).unwrap();
        assert_eq!(v, vec![3.0]);
        let err = node0.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("node 1 sent nothing for 0 s"), "{err}");
        drop(link);
    }

    #[test]
    fn a_node_with_another_recipe_is_refused() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = format!("127.0.0.1:{port}");
        let m = master.clone();
        let other = std::thread::spawn(move || NodeLink::join(1, 2, &m, 99));
        let err = NodeLink::join(0, 2, &master, 7).err().expect("fingerprints differ");
        assert!(err.to_string().contains("different recipe"), "{err}");
        // The refused node is told why, instead of a broken pipe later.
        let refused = other.join().unwrap().err().expect("node 1 is refused");
        assert!(refused.to_string().contains("node 0 refused this node") && refused.to_string().contains("different recipe"), "{refused}");
    }
}

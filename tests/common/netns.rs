//! Network namespaces for partition tests: each host of a test cluster (ZooKeeper, each
//! storage node, each gateway) gets its own namespace with one interface on a private
//! /24, all joined by a bridge in a "switch" namespace, and the test process reaches
//! them over one more veth into that switch. Partitions are packet filters (`iptables`
//! DROP rules) inside the hosts' namespaces, so a cut host keeps running and keeps
//! every connection it has open, exactly as on a real network that stops delivering.
//!
//! The bridge lives in its own namespace, not the test's: on a machine with Docker the
//! root namespace's FORWARD policy is DROP and bridged packets go through it
//! (`br_netfilter`); a fresh namespace forwards everything, and nothing global changes.
//!
//! Needs root (CI runs as root) and `ip`/`iptables` (Debian's `iproute2` and
//! `iptables`, which `scripts/test.sh` installs). Everything made is removed on drop.
//! Loss is an `iptables` `statistic` rule. The kernel of the CI machine has no
//! `sch_netem`, so delay is a userspace delay line instead ([`Net::delay`]): the switch
//! queues every packet it forwards to this process (`NFQUEUE`), which lets each one go
//! after the delay, in order.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The hosts of one test and what joins them.
pub struct Net {
    /// Third octet of the subnet `10.231.{octet}.0/24`, unique per live `Net`.
    octet: u8,
    hosts: Vec<String>,
    delay_line: Mutex<Option<DelayLine>>,
}

/// A thread in the switch's namespace holding each forwarded packet for a while.
struct DelayLine {
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts holding packets queued to `queue` in the namespace `ns` for `delay`; returns
    /// once the queue is bound (packets queued before pass unheld: the rule bypasses a
    /// queue no one listens on).
    fn start(ns: &str, queue: u16, delay: Duration) -> DelayLine {
        let (stop, forwarded) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = format!("/var/run/netns/{ns}");
        let (s, f) = (stop.clone(), forwarded.clone());
        let thread = std::thread::spawn(move || {
            let bound = bind_queue_in(&path, queue);
            let mut q = match bound {
                Ok(q) => {
                    let _ = ready_tx.send(Ok(()));
                    q
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
            loop {
                let stopping = s.load(Ordering::Relaxed);
                loop {
                    match q.recv() {
                        Ok(msg) => held.push_back((Instant::now() + delay, msg)),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("delay line: receiving from the queue: {e}"),
                    }
                }
                let now = Instant::now();
                while held.front().is_some_and(|(due, _)| stopping || *due <= now) {
                    let (_, mut msg) = held.pop_front().expect("front");
                    msg.set_verdict(nfq::Verdict::Accept);
                    q.verdict(msg).unwrap_or_else(|e| panic!("delay line: verdict: {e}"));
                    f.fetch_add(1, Ordering::Relaxed);
                }
                if stopping {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("delay line in {ns}: {e}"),
            Err(_) => panic!("delay line in {ns}: the thread ended before binding its queue"),
        }
        DelayLine { stop, forwarded, thread: Some(thread) }
    }

    /// Lets every held packet go and stops; how many it forwarded in all.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("delay line thread");
        }
        self.forwarded.load(Ordering::Relaxed)
    }
}

/// Moves this thread into the network namespace at `path` (netlink sockets belong to
/// the namespace they are made in) and binds NFQUEUE `queue` there, non-blocking.
fn bind_queue_in(path: &str, queue: u16) -> Result<nfq::Queue, String> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    use std::os::fd::AsFd;
    let ns = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| format!("setns {path}: {e}"))?;
    let mut q = nfq::Queue::open().map_err(|e| format!("open a netfilter queue socket: {e}"))?;
    q.bind(queue).map_err(|e| format!("bind queue {queue}: {e}"))?;
    // Metadata only: the verdict needs the packet id, not its bytes.
    q.set_copy_range(queue, 0).map_err(|e| format!("copy range: {e}"))?;
    q.set_queue_max_len(queue, 65_535).map_err(|e| format!("queue length: {e}"))?;
    q.set_nonblocking(true);
    Ok(q)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command, ignoring failure (clean-up of what may not exist).
fn try_run(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

impl Net {
    /// Namespaces for `hosts` (names of at most 8 characters), each with an address on
    /// the test's subnet and loopback up; reachable from the test process.
    pub fn new(hosts: &[&str]) -> Net {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        assert_eq!(
            uid.as_deref().unwrap_or(""),
            "0",
            "network-partition tests need root (ip netns, iptables), as CI runs them"
        );
        // Unique among this process's nets and, by the pid, most likely among others'.
        let n = std::process::id().wrapping_mul(7).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let octet = (n % 250 + 1) as u8;
        let net = Net { octet, hosts: hosts.iter().map(|h| (*h).to_owned()).collect(), delay_line: Mutex::new(None) };
        net.remove(); // what a killed earlier run with this octet left
        let sw = net.ns("sw");
        run(&["ip", "netns", "add", &sw]);
        run(&["ip", "netns", "exec", &sw, "ip", "link", "set", "lo", "up"]);
        run(&["ip", "netns", "exec", &sw, "ip", "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "netns", "exec", &sw, "ip", "link", "set", "br0", "up"]);
        // The test process's way in: a veth from this namespace into the switch.
        let (root_if, sw_if) = (net.root_if(), format!("fjp{octet}r"));
        run(&["ip", "link", "add", &root_if, "type", "veth", "peer", "name", &sw_if]);
        run(&["ip", "link", "set", &sw_if, "netns", &sw]);
        run(&["ip", "netns", "exec", &sw, "ip", "link", "set", &sw_if, "master", "br0", "up"]);
        run(&["ip", "addr", "add", &format!("10.231.{octet}.1/24"), "dev", &root_if]);
        run(&["ip", "link", "set", &root_if, "up"]);
        for (i, h) in hosts.iter().enumerate() {
            assert!(h.len() <= 8, "host name {h:?} too long");
            let ns = net.ns(h);
            let port = format!("h{i}");
            run(&["ip", "netns", "add", &ns]);
            run(&[
                "ip", "netns", "exec", &sw, "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            run(&["ip", "netns", "exec", &sw, "ip", "link", "set", &port, "master", "br0", "up"]);
            let addr = format!("{}/24", net.ip(h));
            run(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", "eth0"]);
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up"]);
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        net
    }

    fn root_if(&self) -> String {
        format!("fjv{}r", self.octet)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("fj{}-{host}", self.octet)
    }

    /// The address of `host`.
    pub fn ip(&self, host: &str) -> Ipv4Addr {
        let i = self.hosts.iter().position(|h| h == host).unwrap_or_else(|| panic!("no host {host:?}"));
        Ipv4Addr::new(10, 231, self.octet, 10 + i as u8)
    }

    fn iptables(&self, host: &str, rule: &[&str]) {
        let ns = self.ns(host);
        let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        args.extend_from_slice(rule);
        run(&args);
    }

    /// Packets from `from` no longer reach `to` (what `to` sends still reaches `from`,
    /// so TCP between them stalls both ways, but each side's view differs).
    pub fn cut_one_way(&self, from: &str, to: &str) {
        let src = self.ip(from).to_string();
        self.iptables(to, &["-A", "INPUT", "-s", &src, "-j", "DROP"]);
    }

    /// No packet passes between `a` and `b`, either way.
    pub fn cut(&self, a: &str, b: &str) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// `host` cut off from every other host (the test process still reaches it).
    pub fn isolate(&self, host: &str) {
        for other in self.hosts.iter().filter(|h| *h != host) {
            self.cut(host, other);
        }
    }

    /// Every host drops `percent`% of the packets it receives from the others, at
    /// random.
    pub fn loss(&self, percent: u32) {
        let p = format!("{:.4}", f64::from(percent) / 100.0);
        for h in &self.hosts {
            for other in self.hosts.iter().filter(|o| *o != h) {
                let src = self.ip(other).to_string();
                let rule = ["-A", "INPUT", "-s", &src, "-m", "statistic", "--mode", "random", "--probability", &p];
                self.iptables(h, &[&rule[..], &["-j", "DROP"]].concat());
            }
        }
    }

    /// Packets the cut and loss rules have dropped so far, over every host.
    pub fn dropped(&self) -> u64 {
        let mut n = 0;
        for h in &self.hosts {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns(h), "iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"])
                .output()
                .unwrap_or_else(|e| panic!("iptables -L in {h}: {e}"));
            // Rule lines start with the packet count; the two header lines do not.
            n += String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("DROP"))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        n
    }

    /// Every packet the switch forwards — between any two hosts, and between the test
    /// process and a host — is held `delay` first: each link's one-way latency grows by
    /// `delay` (a request and its answer by twice that), as `tc netem delay` on every
    /// link would. Until [`heal`](Self::heal).
    pub fn delay(&self, delay: Duration) {
        let sw = self.ns("sw");
        let queue = u16::from(self.octet).to_string();
        // Bridged packets go through the switch's iptables only with this (per namespace).
        run(&["ip", "netns", "exec", &sw, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]);
        let line = DelayLine::start(&sw, u16::from(self.octet), delay);
        let rule = ["-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"];
        run(&[&["ip", "netns", "exec", &sw, "iptables", "-w"][..], &rule[..]].concat());
        *self.delay_line.lock().expect("delay line") = Some(line);
    }

    /// Removes every cut, loss rule and delay; how many packets a delay held meanwhile.
    pub fn heal(&self) -> u64 {
        for h in &self.hosts {
            self.iptables(h, &["-F", "INPUT"]);
        }
        let line = self.delay_line.lock().expect("delay line").take();
        line.map_or(0, |line| {
            // No new packet is queued once the rule goes; then the held ones are let go.
            run(&["ip", "netns", "exec", &self.ns("sw"), "iptables", "-w", "-F", "FORWARD"]);
            line.stop()
        })
    }

    fn remove(&self) {
        try_run(&["ip", "link", "del", &self.root_if()]);
        for h in self.hosts.iter().map(String::as_str).chain(["sw"]) {
            try_run(&["ip", "netns", "del", &self.ns(h)]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(line) = self.delay_line.get_mut().ok().and_then(Option::take) {
            try_run(&["ip", "netns", "exec", &self.ns("sw"), "iptables", "-w", "-F", "FORWARD"]);
            line.stop();
        }
        self.remove();
    }
}

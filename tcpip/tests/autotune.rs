//! Buffer autotuning: a connection whose application keeps up asks for
//! larger queues, grows only by what its binding grants, and then fills a
//! path its first queues could not.

mod sim;

use capnet_tcpip::tcp::{Options, TcpId};
use sim::{Link, Net};
use std::time::Duration;

const KIB: usize = 1024;
const BYTES: usize = 16 << 20;

/// How the binding answers a connection's request for larger queues.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Binding {
    Grants,
    Ignores,
    Refuses,
}

struct Outcome {
    took: Duration,
    /// Final (send, receive) queue bounds of the sender and the receiver.
    sender: (usize, usize),
    receiver: (usize, usize),
}

/// 16 MiB one way over a 1 Gbit/s path with a 2 ms round trip, both ends
/// starting at 64 KiB queues with ceilings of 4 MiB.
fn transfer(binding: Binding) -> Outcome {
    let link = Link {
        delay: Duration::from_millis(1),
        ..Link::default()
    };
    let mut net = Net::new(2, link, 1);
    let opts = Options {
        send_buffer: 64 * KIB,
        recv_buffer: 64 * KIB,
        send_buffer_max: 4096 * KIB,
        recv_buffer_max: 4096 * KIB,
        ..Options::default()
    };
    let l = net.listen(1, 7000, opts);
    let to = net.addr(1, 7000);
    let a = net.connect(0, to, opts);
    let mut b: Option<TcpId> = None;
    let data: Vec<u8> = (0..BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::with_capacity(BYTES));
    let start = net.now;
    let answer = |c: &mut capnet_tcpip::tcp::Conn| {
        if let Some((send, recv)) = c.buffers_wanted() {
            match binding {
                Binding::Grants => c.grow_buffers(send, recv),
                Binding::Ignores => {}
                Binding::Refuses => c.stop_growing(),
            }
        }
    };
    let ok = net.run_until(Duration::from_secs(30), |net| {
        if b.is_none() {
            b = net.accept(1, l);
        }
        let now = net.now;
        net.hosts[0]
            .stack
            .tcp(now, a, |c| {
                if c.is_established() {
                    sent += c.write(&data[sent..]);
                }
                answer(c);
            })
            .unwrap();
        if let Some(b) = b {
            net.hosts[1]
                .stack
                .tcp(now, b, |c| {
                    sim::read_all(c, &mut got);
                    answer(c);
                })
                .unwrap();
        }
        net.drain_events(0);
        net.drain_events(1);
        got.len() == BYTES
    });
    assert!(ok, "{binding:?}: {} of {BYTES} bytes arrived", got.len());
    assert!(got == data, "{binding:?}: the bytes differ");
    let bounds = |net: &Net, h: usize, id: TcpId| {
        let c = net.hosts[h].stack.tcp.conn(id).unwrap();
        (c.send_buffer(), c.recv_buffer())
    };
    Outcome {
        took: net.now - start,
        sender: bounds(&net, 0, a),
        receiver: bounds(&net, 1, b.unwrap()),
    }
}

#[test]
fn queues_grow_only_as_granted_and_then_fill_the_path() {
    let ignored = transfer(Binding::Ignores);
    assert_eq!(ignored.sender.0, 64 * KIB, "nothing grows unasked");
    assert_eq!(ignored.receiver.1, 64 * KIB, "nothing grows unasked");
    let refused = transfer(Binding::Refuses);
    assert_eq!((refused.sender.0, refused.receiver.1), (64 * KIB, 64 * KIB));

    let granted = transfer(Binding::Grants);
    // 64 KiB a round trip of 2 ms is 32 MB/s; the path carries 125 MB/s
    // and needs 250 KB in flight, so both ends must have grown past that.
    assert!(
        granted.sender.0 >= 512 * KIB,
        "send queue {}",
        granted.sender.0
    );
    assert!(
        granted.receiver.1 >= 512 * KIB,
        "receive queue {}",
        granted.receiver.1
    );
    assert!(granted.sender.0 <= 4096 * KIB && granted.receiver.1 <= 4096 * KIB);
    assert!(
        granted.took * 2 < ignored.took,
        "grown: {:?}, fixed 64 KiB: {:?}",
        granted.took,
        ignored.took
    );
    println!(
        "16 MiB over 1 Gbit/s, 2 ms RTT: fixed 64 KiB {:?}, grown {:?} (queues {:?} / {:?})",
        ignored.took, granted.took, granted.sender, granted.receiver
    );
}

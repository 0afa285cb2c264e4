//! nicdrv started the way the supervisor starts it: inherited sockets for
//! capnp (`--rpc-fd`) and for the ring handoff (`--handoff-fd`).

use capnet_ring::{ChannelLayout, Duplex};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::nic_over;

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--name", "x"][..],
        &[
            "--name",
            "x",
            "--backend",
            "sim",
            "--wire",
            "/tmp/w",
            "--rpc-fd",
            "nope",
        ],
        &["--bogus"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: nicdrv"), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    // A descriptor that is not open is refused at start.
    let out = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
        .args([
            "--name",
            "x",
            "--backend",
            "sim",
            "--wire",
            "/tmp/w",
            "--rpc-fd",
            "999",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rpc-fd 999"));
}

#[test]
fn inherited_sockets_like_the_supervisor() {
    let dir = std::env::temp_dir().join(format!("nicdrv-fds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (rpc_here, rpc_child) = UnixStream::pair().unwrap();
    let (handoff_here, handoff_child) = UnixStream::pair().unwrap();
    capnet_ring::clear_cloexec(rpc_child.as_fd()).unwrap();
    capnet_ring::clear_cloexec(handoff_child.as_fd()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
        .args(["--name", "fd0", "--backend", "sim", "--wire"])
        .arg(dir.join("wire.sock"))
        .args(["--rpc-fd", &rpc_child.as_raw_fd().to_string()])
        .args(["--handoff-fd", &handoff_child.as_raw_fd().to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop((rpc_child, handoff_child));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let (nic, task) = nic_over(rpc_here);
        let info = nic.info_request().send().promise.await.unwrap();
        let info = info.get().unwrap().get_info().unwrap();
        assert_eq!(info.get_name().unwrap().to_str().unwrap(), "fd0");
        assert_eq!(info.get_backend().unwrap().to_str().unwrap(), "sim");
        let mac = info.get_mac().unwrap();
        assert_eq!(mac.len(), 6);
        assert_eq!(
            mac[0] & 3,
            2,
            "random MACs are unicast and locally administered"
        );
        assert!(info.get_checksum_offload());
        assert!(!info.get_link_up(), "no peer on the wire yet");

        let r = nic.open_rings_request().send().promise.await.unwrap();
        let g = r.get().unwrap().get_grant().unwrap();
        let token = capnet_ring::Token::from_slice(g.get_token().unwrap()).unwrap();
        let layout = ChannelLayout {
            buffers: g.get_buffer_count(),
            buf_size: g.get_buffer_size(),
        };
        assert_eq!(
            layout,
            ChannelLayout {
                buffers: 512,
                buf_size: 65600, // a merged frame (segmentation offload)
            }
        );
        let fds = capnet_ring::redeem(handoff_here.as_fd(), &token, 3).unwrap();
        let d = Duplex::attach(fds, layout).unwrap();
        assert!(!d.carrier(), "the port carrier mirrors the link");
        // The supervisor goes away: the driver stops by itself.
        task.abort();
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "nicdrv outlived its control connections"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! An application in another language: pycapnp drives `Net` with the plain
//! capnp methods (no shared memory) and exchanges data with a peer.

use capnet_tests::{echo_until_eof, two_hosts, Scratch};
use std::process::Command;

#[test]
fn python_client_through_plain_capnp_methods() {
    let scratch = Scratch::new("pycapnp");
    let (a, b) = two_hosts(&scratch, "");
    let nb = b.net().unwrap();
    let listener = nb.tcp_listen("0.0.0.0:7".parse().unwrap(), 4).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        echo_until_eof(&mut s).unwrap()
    });
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("py/net_client.py"))
        .arg(root.join("../schema"))
        .arg(&a.socket)
        .args(["10.0.0.2", "7", "300000"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pycapnp client failed (pip install pycapnp):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("300000 bytes echoed"));
    // And the 6 bytes of the read(max=0) check.
    assert_eq!(echo.join().unwrap(), 300_006);
}

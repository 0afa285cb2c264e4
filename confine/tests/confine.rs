//! A confined process, for real: a child of this test confines itself and
//! tries what a compromised service would.

#![cfg(target_os = "linux")]

use capnet_confine::{confine, Access, Policy, Service};
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "CAPNET_CONFINE_TEST_CHILD";

/// In the child: confine, then report what worked, one line each; end by
/// trying to exec, which must kill the process.
fn child(dir: &str) -> ! {
    let report = confine(&Policy::new(Service::Netsrv).allow(dir, Access::Write)).unwrap();
    println!("report {report}");
    let outside = std::fs::read("/etc/hostname").map(|_| ()).or_else(|e| {
        // Some machines have no /etc/hostname: any file outside will do.
        if e.kind() == ErrorKind::NotFound {
            std::fs::read("/etc/passwd").map(|_| ())
        } else {
            Err(e)
        }
    });
    println!("read outside: {:?}", outside.map_err(|e| e.kind()));
    let inside = std::fs::write(format!("{dir}/allowed"), b"x");
    println!("write inside: {:?}", inside.map_err(|e| e.kind()));
    // SAFETY: getpriority has no memory arguments; a syscall the list lacks.
    let r = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    println!("unlisted syscall: {r} {errno:?}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: a NUL-terminated path and argv; exec replaces this process
    // (it must not get that far).
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    println!("exec returned");
    std::process::exit(0);
}

#[test]
fn a_confined_service_reaches_only_what_its_policy_names() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(&dir);
    }
    let dir = std::env::temp_dir().join(format!("capnet-confine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_confined_service_reaches_only_what_its_policy_names",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .env_remove(capnet_confine::DISABLE_ENV)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        said.contains("report no_new_privs on, landlock enforced, seccomp on"),
        "{said}"
    );
    assert!(
        said.contains("read outside: Err(PermissionDenied)"),
        "{said}"
    );
    assert!(said.contains("write inside: Ok(())"), "{said}");
    assert!(
        said.contains(&format!("unlisted syscall: -1 Some({})", libc::EPERM)),
        "{said}"
    );
    assert!(!said.contains("exec returned"), "{said}");
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{said}");
}

const USER_CHILD: &str = "CAPNET_CONFINE_TEST_USER_CHILD";
const SERVICE_USER: capnet_confine::User = capnet_confine::User {
    uid: 0x7000_00f0,
    gid: 0x7000_00f0,
};

/// In the child (root): become the service's user, then try to get root
/// back and to read a file only root may read. Landlock and seccomp are off
/// (the kill-list would end the process at setuid): the drop alone holds.
fn user_child(secret: &str) -> ! {
    let policy = Policy::new(Service::Netsrv)
        .user(Some(SERVICE_USER))
        .allow(secret, Access::Read);
    let report = confine(&policy).unwrap();
    println!("report {report}");
    // SAFETY: set*id and get*id take and return integers only.
    let (back, uid, gid) = unsafe { (libc::setuid(0), libc::getuid(), libc::getgid()) };
    println!("setuid(0): {back}, uid {uid}, gid {gid}");
    let read = std::fs::read(secret).map(|_| ()).map_err(|e| e.kind());
    println!("read root's file: {read:?}");
    std::process::exit(0);
}

#[test]
fn a_service_started_as_root_becomes_its_user_for_good() {
    if let Ok(secret) = std::env::var(USER_CHILD) {
        user_child(&secret);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let secret = std::env::temp_dir().join(format!("capnet-confine-key-{}", std::process::id()));
    std::fs::write(&secret, b"key").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_service_started_as_root_becomes_its_user_for_good",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(USER_CHILD, &secret)
        .env(capnet_confine::DISABLE_ENV, "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&secret);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = SERVICE_USER.uid;
    assert!(
        said.contains(&format!("report uid {uid}, no_new_privs off")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "setuid(0): -1, uid {uid}, gid {}",
            SERVICE_USER.gid
        )),
        "{said}"
    );
    assert!(
        said.contains("read root's file: Err(PermissionDenied)"),
        "{said}"
    );
    assert!(out.status.success(), "{said}");
}

#[test]
fn user_ids_are_parsed_and_root_is_refused() {
    use capnet_confine::User;
    assert_eq!(
        User::parse("1879048192:1879048193"),
        Ok(User {
            uid: 1879048192,
            gid: 1879048193
        })
    );
    assert!(User::parse("0:5").unwrap_err().contains("root"));
    assert!(User::parse("5:0").unwrap_err().contains("root"));
    assert!(User::parse("5").unwrap_err().contains("UID:GID"));
    assert!(User::parse("a:b").unwrap_err().contains("UID:GID"));
}

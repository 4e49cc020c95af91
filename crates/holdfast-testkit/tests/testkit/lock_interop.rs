//! holdfast's kernel lock against the real Python libraries that use
//! flock(2) on the same path: filelock, phaselock, portalocker (from the
//! venv `scripts/test` creates). Each side must exclude the other, holdfast
//! must name the Python holder, and the holder record must not disturb them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use holdfast::{Error, Lock, RecordContent};
use holdfast_testkit::{Child, Dir, peer_python, peer_script};

const LONG: Duration = Duration::from_secs(60);
const LIBS: [&str; 3] = ["filelock", "phaselock", "portalocker"];

fn peer(python: &Path, lib: &str, lock: &Path, action: &str) -> Command {
    let mut c = Command::new(python);
    c.arg(peer_script("kernel_lock_peer.py"))
        .arg(lib)
        .arg(lock)
        .arg(action);
    c
}

fn peer_try(python: &Path, lib: &str, lock: &Path) -> String {
    let out = peer(python, lib, lock, "try").output().unwrap();
    assert!(
        out.status.success(),
        "{lib}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn python_peers_and_holdfast_exclude_each_other_both_ways() {
    let Some(python) = peer_python("python_peers_and_holdfast_exclude_each_other_both_ways") else {
        return;
    };
    for lib in LIBS {
        let d = Dir::new();
        let lock = d.join("app.lock");

        // holdfast holds (and writes its record): the peer is refused.
        let l = Lock::open(&lock).unwrap();
        let g = l.lock().unwrap();
        assert!(g.token().is_some());
        assert_eq!(
            peer_try(&python, lib, &lock),
            "busy",
            "{lib} got in while holdfast held"
        );
        drop(g);
        assert_eq!(
            peer_try(&python, lib, &lock),
            "acquired",
            "{lib} after release"
        );
        // The peer left the record alone.
        let content = RecordContent::classify(&std::fs::read(&lock).unwrap());
        assert!(
            matches!(content, RecordContent::Record(_)),
            "{lib}: {content:?}"
        );

        // The peer holds: holdfast is refused and names it.
        let mut p = Child::spawn(peer(&python, lib, &lock, "hold"));
        p.expect_line("locked", LONG);
        match l.try_lock() {
            Err(Error::WouldBlock { holders, .. }) => {
                let h = holders.first().expect("holder named");
                assert_eq!(h.pid, Some(p.pid()), "{lib}");
                let cmd = h.command.as_deref().unwrap_or_default();
                assert!(cmd.contains("kernel_lock_peer.py"), "{lib}: {cmd}");
            }
            other => panic!("{lib}: expected WouldBlock, got {other:?}"),
        }
        assert!(matches!(l.try_lock_shared(), Err(Error::WouldBlock { .. })));
        p.close_stdin();
        p.expect_line("released", LONG);
        drop(l.try_lock().unwrap());
    }
}

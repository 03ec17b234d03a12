//! Two processes on one database file: the second is told the database is in use (a
//! `storage_error` saying so and how a live database is backed up, not a generic I/O error);
//! once the first exits, it opens.
//!
//! The holder is this test binary run again (`--exact holder_process_body`) with
//! `ORGDB_HOLDER_PATH` naming the file: it opens the database, prints `READY`, and keeps it
//! open until its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use orgdb::{Actor, Db, NewOrganization, NewUser};

const HOLDER_ENV: &str = "ORGDB_HOLDER_PATH";

/// The holder's body; does nothing in a normal test run.
#[test]
fn holder_process_body() {
    let Ok(path) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let db = Db::open(&path).unwrap();
    let user = db
        .create_user(&NewUser {
            email: "holder@example.com".into(),
            name: "Holder".into(),
        })
        .unwrap();
    db.create_organization(
        &user.id,
        &NewOrganization {
            name: "Held".into(),
            ..Default::default()
        },
    )
    .unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(db);
    println!("CLOSED");
}

#[test]
fn a_second_process_is_told_the_database_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holder_process_body",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines of the holder's stdout, read on a thread so a stuck holder fails the test
    // instead of hanging it. (libtest prints `test holder_process_body ... ` before the
    // holder's own output, on the same line.)
    let out = BufReader::new(child.stdout.take().unwrap());
    let (lines, from_holder) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |marker: &str, child: &mut std::process::Child| {
        let mut seen = String::new();
        loop {
            match from_holder.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.trim_end().ends_with(marker) => return,
                Ok(line) => seen.push_str(&(line + "\n")),
                Err(e) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        let _ = stderr.read_to_string(&mut err);
                    }
                    panic!("no {marker} from the holder ({e}):\n{seen}\n{err}");
                }
            }
        }
    };
    wait_for("READY", &mut child);

    // The holder has the file: every open from here is refused, clearly.
    let journal = path.with_extension("redb.journal");
    let journal_before = std::fs::read(&journal).unwrap();
    for _ in 0..3 {
        let err = Db::open(&path).unwrap_err();
        assert_eq!(err.code(), "storage_error", "{err:?}");
        let message = err.message();
        assert!(message.contains("in use"), "{message}");
        assert!(message.contains("another process"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        // How to copy a live database: from inside its host.
        assert!(message.contains("Db::backup_to"), "{message}");
        assert_eq!(err.http_status(), 500, "{err:?}");
    }
    // Refused before anything was touched: the holder's journal is byte for byte as it was.
    assert!(std::fs::read(&journal).unwrap() == journal_before);

    // Closing the holder's stdin ends it; then the file opens, with the holder's data.
    drop(child.stdin.take());
    wait_for("CLOSED", &mut child);
    let status = child.wait().unwrap();
    assert!(status.success(), "holder: {status}");
    reader.join().unwrap();
    let db = Db::open(&path).unwrap();
    let org = db.get_organization_by_slug(&Actor::System, "held").unwrap();
    assert_eq!(org.organization.name, "Held");
    assert!(db.check().unwrap().is_ok());
}

//! A bare directory name (`kith join --dir node-1`) is staged and committed
//! relative to the working directory. Its own test binary: it changes the
//! process's working directory.

use std::fs;

use kith_nodedir::{Batch, CERT, KEY, KEY_MODE, PUBLIC_MODE};

#[test]
fn a_bare_directory_name_is_staged_in_the_working_directory() {
    let d = tempfile::tempdir().expect("tempdir");
    std::env::set_current_dir(d.path()).expect("cd");
    let b = Batch::new();
    b.stage_dir(
        std::path::Path::new("node-1"),
        &[(KEY, b"k", KEY_MODE), (CERT, b"c", PUBLIC_MODE)],
    )
    .expect("stage");
    b.commit().expect("commit");
    assert_eq!(
        fs::read(d.path().join("node-1").join(CERT)).expect("cert"),
        b"c"
    );
    let names: Vec<String> = fs::read_dir(d.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["node-1"], "no staging directory left");
}

//! `kith completions SHELL` judged by the shells themselves (`bash -n`,
//! `zsh -n` and `fish -n` where installed), and `kith man DIR`: a page for
//! every subcommand, rendered by `man`/`groff`.

mod common;

use std::path::Path;
use std::process::Command;

fn kith(args: &[&str]) -> std::process::Output {
    common::node().args(args).output().expect("run kith")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `SHELL -n` on the script `kith completions SHELL` prints.
fn syntax_ok(shell: &str) {
    let out = kith(&["completions", shell]);
    assert!(out.status.success(), "kith completions {shell} failed");
    let script = String::from_utf8(out.stdout).expect("UTF-8 script");
    // The real parser: subcommands and the flags added outside the derive.
    for word in ["rotate", "--config", "completions"] {
        assert!(script.contains(word), "{shell}: no {word:?} in the script");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join(format!("kith.{shell}"));
    std::fs::write(&file, &script).expect("write the script");
    let check = Command::new(shell)
        .arg("-n")
        .arg(&file)
        .output()
        .expect("run the shell");
    assert!(
        check.status.success(),
        "{shell} -n refused the completion script:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn bash_accepts_the_completion_script() {
    syntax_ok("bash");
}

#[test]
fn zsh_and_fish_accept_theirs_where_installed() {
    for shell in ["zsh", "fish"] {
        if have(shell) {
            syntax_ok(shell);
        } else {
            eprintln!("{shell} is not installed: its completion script is not checked");
        }
    }
}

#[test]
fn an_unknown_shell_is_refused() {
    let out = kith(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

/// The subcommands under `path`, read from `kith PATH --help`.
fn subcommands(path: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = kith(&args);
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let Some((_, list)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

/// Every command path, `kith` itself included, walked through `--help`.
fn command_paths() -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        for sc in subcommands(&path) {
            let mut p = path.clone();
            p.push(sc);
            out.push(p);
        }
        i += 1;
    }
    out
}

#[test]
fn man_writes_a_page_for_every_subcommand_and_man_renders_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("man1");
    let out = kith(&["man", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths = command_paths();
    assert!(paths.len() > 30, "too few commands found: {paths:?}");
    for path in &paths {
        let name = std::iter::once("kith".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = dir.join(format!("{name}.1"));
        assert!(page.is_file(), "no manual page {}", page.display());
    }
    render(&dir.join("kith-serve.1"), "--config");
    render(&dir.join("kith-ca-rotate.1"), "--intermediate");
}

/// Render `page` with `man -l` (else `groff -man`) and find `word` in it.
fn render(page: &Path, word: &str) {
    let out = if have("man") {
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
    } else if have("groff") {
        Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(page)
            .output()
    } else {
        eprintln!(
            "neither man nor groff is installed: {} is not rendered",
            page.display()
        );
        return;
    };
    let out = out.expect("run man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rendered text: hyphens may come out as U+2010, so look for the letters.
    let text = String::from_utf8_lossy(&out.stdout).replace('\u{2010}', "-");
    assert!(
        text.contains(word.trim_start_matches('-')),
        "{}:\n{text}",
        page.display()
    );
}

#[test]
fn man_into_a_place_that_cannot_hold_files_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let out = kith(&["man", file.join("man1").to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error[io-error]: cannot write manual pages"),
        "{stderr}"
    );
}

#[test]
fn man_replaces_a_planted_link_instead_of_writing_through_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("man1");
    std::fs::create_dir(&dir).expect("mkdir");
    // Another user's trap: a page's name linked to a file they want
    // overwritten (`sudo kith man /tmp/man`).
    let victim = tmp.path().join("shadow");
    std::fs::write(&victim, b"root:secret\n").expect("write the victim");
    std::os::unix::fs::symlink(&victim, dir.join("kith-serve.1")).expect("symlink");
    let out = kith(&["man", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&victim).expect("read the victim"),
        b"root:secret\n",
        "kith man wrote through the link"
    );
    let page = dir.join("kith-serve.1");
    let meta = std::fs::symlink_metadata(&page).expect("stat the page");
    assert!(meta.is_file(), "the link is still there");
    assert_eq!(
        meta.permissions().mode() & !0o644 & 0o777,
        0,
        "mode 0644 (less by the umask)"
    );
    render(&page, "--config");
    // No temporary file is left behind.
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .expect("list the pages")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".1"))
        .collect();
    assert!(stray.is_empty(), "left behind: {stray:?}");
}

//! Build, test and demo entry points for Handoff: `cargo xtask <command>`.
//!
//! - `cargo xtask demo`: builds the web assets (wasm widget, SDK, console) and starts the server
//!   on SQLite with demo data.
//! - `cargo xtask test`: everything CI runs: format and clippy checks, native tests, the short
//!   chaos run (two nodes, PostgreSQL, Redis, faults; about 2 minutes), the API contract test,
//!   the wasm32 build, wasm tests in headless Chromium, browser end-to-end tests and the
//!   realtime-js interop test. It installs what it needs on a fresh machine (wasm target,
//!   the pinned wasm-bindgen CLI, Chromium and ChromeDriver, npm packages, Schemathesis), or stops
//!   with one line saying what is missing.
//! - `cargo xtask web`: builds the web assets only, into `target/handoff-web/`.
//! - `cargo xtask web-test`: the browser suites only (wasm tests against a real server, SDK hooks,
//!   end-to-end tests).
//! - `cargo xtask e2e`: the end-to-end suites in `tests/e2e/` only (needs `cargo xtask web` first).
//! - `cargo xtask contract`: the API contract test only: Schemathesis (pinned, from the Python registry, in a
//!   virtualenv under the target directory) with all checks against `/api/openapi.json` of a
//!   debug `handoff-server`, for a visitor, an agent and the secret key, on SQLite and PostgreSQL.
//! - `cargo xtask bench`: runs the benchmarks and prints their figures, the full chaos run
//!   (100,000 messages) and the 10-node scale simulation included; the fan-out benchmark runs
//!   side by side with a Socket.IO 4 server (`tests/bench/socketio`, npm packages installed
//!   here).
//! - `cargo xtask chaos [--messages N --conversations N --duration SECONDS --nodes N --no-faults]`:
//!   the chaos run alone (debug build; the short run without arguments; `--nodes 10 --no-faults`
//!   is the capacity model's scale simulation, which `cargo xtask bench` runs too).

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

mod setup;
mod web;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("web") => web::build(&root()).map(|_| ()),
        Some("web-test") => web::browser_tests(&root()),
        Some("e2e") => web::e2e(&root()),
        Some("contract") => contract(),
        Some("bench") => bench(),
        Some("chaos") => chaos(&root(), "debug", &args[1..].iter().map(String::as_str).collect::<Vec<_>>()),
        Some("setup") => setup::all(&root()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|web|web-test|e2e|contract|bench|chaos|setup>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root (the workspace containing this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command in `dir`, failing with its command line when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result {
    run_env(dir, program, args, &[])
}

fn run_env(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Whether something listens at a `postgres://` URL's host and port (default 5432).
fn postgres_answers(url: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else { return false };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    let addr = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).is_ok())
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds everything, starts `handoff-server demo` and, once it serves, the example bot on the
/// demo project (so the widget's bot state answers until the visitor asks for a human).
fn demo(extra: &[String]) -> Result {
    let root = root();
    setup::wasm(&root)?;
    let web = web::build(&root)?;
    run(&root, &cargo(), &["build", "--release", "-p", "handoff-server", "-p", "handoff-example-bot"])?;
    let release = web::target_dir(&root).join("release");
    let mut server = Command::new(release.join("handoff-server"))
        .arg("demo")
        .arg("--static-dir")
        .arg(&web)
        // The demo bot listens on loopback.
        .arg("--allow-private-webhooks")
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start handoff-server: {e}"))?;
    let stdout = server.stdout.take().ok_or("no server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut home, mut secret) = (None, None);
    for line in lines.by_ref() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("home") => home = words.next().map(|u| u.trim_end_matches('/').to_owned()),
            Some("project") => secret = words.find_map(|w| w.strip_prefix("secret_key=")).map(str::to_owned),
            _ => {}
        }
        if home.is_some() && secret.is_some() {
            break;
        }
    }
    std::thread::spawn(move || lines.map_while(std::result::Result::ok).for_each(|l| println!("{l}")));
    let (Some(home), Some(secret)) = (home, secret) else {
        let status = server.wait().map_err(|e| e.to_string())?;
        return Err(format!("handoff-server demo stopped ({status})"));
    };
    let addr = home.trim_start_matches("http://").parse().map_err(|e| format!("{home}: {e}"))?;
    web::wait_healthy(addr)?;
    let bot = Command::new(release.join("handoff-example-bot"))
        .envs([("HANDOFF_URL", home.as_str()), ("HANDOFF_SECRET_KEY", &secret), ("BOT_ADDR", "127.0.0.1:0")])
        .env("RUST_LOG", "warn")
        .spawn();
    match &bot {
        Ok(_) => println!("  bot           examples/bot answers until the visitor asks for a human"),
        Err(e) => eprintln!("xtask: the demo bot did not start ({e}); conversations wait for a human"),
    }
    let status = server.wait().map_err(|e| e.to_string())?;
    if let Ok(mut bot) = bot {
        let _ = bot.kill();
        let _ = bot.wait();
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("handoff-server demo stopped ({status})"))
    }
}

fn test() -> Result {
    let root = root();
    let cargo = cargo();
    run(&root, &cargo, &["fmt", "--all", "--check"])?;
    run(&root, &cargo, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    setup::all(&root)?;
    run(&root, &cargo, &["build", "-p", "handoff-protocol", "--target", "wasm32-unknown-unknown"])?;
    run_env(
        &root,
        &cargo,
        &["doc", "-p", "handoff-protocol", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    let web = web::build(&root)?;
    web::check_sizes(&web)?;
    run(&root, &cargo, &["test", "--workspace"])?;
    chaos(&root, "debug", &[])?;
    contract()?;
    web::browser_tests(&root)?;
    Ok(())
}

/// Schemathesis against the OpenAPI document of a real server (`tests/contract/run.py`): the
/// document and the server must agree.
fn contract() -> Result {
    let root = root();
    let python = setup::schemathesis(&root)?;
    run(&root, &cargo(), &["build", "-p", "handoff-server"])?;
    let target = web::target_dir(&root);
    let server = target.join("debug/handoff-server");
    let reports = target.join("contract-reports");
    // Reports of an earlier run would mix with this one's.
    let _ = std::fs::remove_dir_all(&reports);
    run(
        &root,
        &python.to_string_lossy(),
        &[
            "tests/contract/run.py",
            "--server",
            &server.to_string_lossy(),
            "--reports",
            &reports.to_string_lossy(),
        ],
    )
}

/// The chaos run (`crates/handoff-server/examples/chaos.rs`) on the `profile` build: two server
/// nodes on PostgreSQL and a Redis of its own, with sockets dropped, a node and Redis killed and
/// a node's Redis path stalled. Without arguments, the short run (5,000 messages, about 2
/// minutes). Skipped with `HANDOFF_SKIP_PG`, since it needs PostgreSQL.
fn chaos(root: &Path, profile: &str, args: &[&str]) -> Result {
    if env::var_os("HANDOFF_SKIP_PG").is_some() {
        eprintln!("xtask: chaos run skipped (HANDOFF_SKIP_PG: it needs PostgreSQL)");
        return Ok(());
    }
    setup::redis_server()?;
    let mut build = vec!["build", "-p", "handoff-server", "--bins", "--example", "chaos"];
    if profile == "release" {
        build.push("--release");
    }
    run(root, &cargo(), &build)?;
    let driver = web::target_dir(root).join(profile).join("examples/chaos");
    run(root, &driver.to_string_lossy(), args)
}

fn bench() -> Result {
    let root = root();
    web::build(&root)?;
    // abuse_bench drives the release server binary in its own process.
    run(&root, &cargo(), &["build", "--release", "-p", "handoff-server"])?;
    // The fan-out side by side with a Socket.IO 4 server (pinned in its package-lock.json),
    // the same driver for both.
    let peer = root.join("tests/bench/socketio");
    setup::npm(&peer)?;
    let peer = peer.to_string_lossy();
    let fanout =
        ["run", "--release", "-p", "handoff-server", "--example", "fanout_bench", "--", "--socketio", &peer];
    run(&root, &cargo(), &fanout)?;
    for example in ["msg_bench", "abuse_bench"] {
        if root.join(format!("crates/handoff-server/examples/{example}.rs")).exists() {
            run(&root, &cargo(), &["run", "--release", "-p", "handoff-server", "--example", example])?;
        }
    }
    // Message throughput on PostgreSQL too, when one answers (the bench makes a fresh database
    // on it for the run): `HANDOFF_BENCH_PG_URL`, else the local one.
    let pg =
        env::var("HANDOFF_BENCH_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if postgres_answers(&pg) {
        let args = ["run", "--release", "-p", "handoff-server", "--example", "msg_bench", "--", pg.as_str()];
        run(&root, &cargo(), &args)?;
    } else {
        eprintln!("xtask: no PostgreSQL at {pg}: msg_bench ran on SQLite only");
    }
    // The full chaos run: 100,000 messages.
    chaos(&root, "release", &["--messages", "100000", "--conversations", "200", "--duration", "300"])?;
    // The capacity model's simulation (README, "Past one machine"): 10 nodes, no faults, about
    // 80 s. The same with `--nodes 2` is the comparison the README makes.
    let scale = ["--conversations", "150", "--messages", "6000", "--duration", "60"];
    chaos(&root, "release", &[&["--nodes", "10", "--no-faults"][..], &scale[..]].concat())?;
    // The widget's download size and its time to a visible launcher, in headless Chromium.
    let e2e = root.join("tests/e2e");
    setup::chromium()?;
    setup::npm(&e2e)?;
    run(&root, &cargo(), &["build", "--release", "-p", "handoff-server"])?;
    let bin = web::target_dir(&root).join("release/handoff-server");
    run_env(&e2e, "node", &["bench/widget-budget.mjs"], &[("HANDOFF_SERVER_BIN", &bin.to_string_lossy())])
}

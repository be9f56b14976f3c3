//! Idempotent installation of what the build and the tests need on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, Result};

/// The `wasm-bindgen` version of the workspace, which the CLI must equal.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Everything: wasm toolchain, browser, npm packages.
pub fn all(root: &Path) -> Result {
    wasm(root)?;
    chromium()?;
    npm(&root.join("tests/interop"))?;
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The wasm32 target and the `wasm-bindgen` CLI at exactly the crate's version.
pub fn wasm(root: &Path) -> Result {
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets.lines().any(|t| t.trim() == "wasm32-unknown-unknown") {
        run(root, "rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    let have = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if !have.contains(WASM_BINDGEN_VERSION) {
        // `--locked` fails here: a locked dependency is newer than the registry mirror has.
        run(root, "cargo", &["install", "wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION])?;
    }
    Ok(())
}

/// Debian's Chromium and ChromeDriver, for wasm-bindgen-test and the end-to-end tests.
pub fn chromium() -> Result {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    let root = Path::new("/");
    if output("id", &["-u"]).is_some_and(|u| u.trim() == "0") {
        run(root, "apt-get", &["update", "-qq"])?;
        run(root, "apt-get", &["install", "-y", "-qq", "chromium", "chromium-driver"])
    } else {
        Err("Chromium is missing: run `sudo apt-get install chromium chromium-driver`".to_owned())
    }
}

/// Debian's `redis-server`, which the chaos run starts (and kills) on a port of its own.
pub fn redis_server() -> Result {
    if output("redis-server", &["--version"]).is_some() {
        return Ok(());
    }
    let root = Path::new("/");
    if output("id", &["-u"]).is_some_and(|u| u.trim() == "0") {
        run(root, "apt-get", &["update", "-qq"])?;
        run(root, "apt-get", &["install", "-y", "-qq", "redis-server"])
    } else {
        Err("redis-server is missing: run `sudo apt-get install redis-server`".to_owned())
    }
}

/// `npm ci` in `dir` unless its `node_modules` is up to date with the lock file.
pub fn npm(dir: &Path) -> Result {
    if installed(dir) {
        Ok(())
    } else {
        run(dir, "npm", &["ci", "--no-audit", "--no-fund"])
    }
}

/// Whether `dir/node_modules` was installed after the last change of the lock file.
fn installed(dir: &Path) -> bool {
    let lock = dir.join("package-lock.json");
    let stamp = dir.join("node_modules/.package-lock.json");
    match (std::fs::metadata(&lock), std::fs::metadata(&stamp)) {
        (Ok(l), Ok(s)) => match (l.modified(), s.modified()) {
            (Ok(l), Ok(s)) => s >= l,
            _ => false,
        },
        _ => false,
    }
}

/// `npm ci` in `dir`, which depends on the package in the folder `local` (`file:`) installed as
/// a packed copy (`install-links` in its `.npmrc`), unless `node_modules` is up to date with the
/// lock file and holds `local` as it is now. npm records no integrity for a folder, so it never
/// notices that `local` changed: the integrity of `npm pack` (deterministic: npm fixes the
/// tarball's dates) is kept beside the copy and compared.
pub fn npm_with_local(dir: &Path, local: &Path) -> Result {
    let pack = Command::new("npm")
        .args(["pack", "--dry-run", "--json"])
        .current_dir(local)
        .output()
        .map_err(|e| format!("cannot run npm pack in {}: {e}", local.display()))?;
    let json = String::from_utf8_lossy(&pack.stdout);
    let integrity = json
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"integrity\": \""))
        .and_then(|v| v.split('"').next())
        .filter(|_| pack.status.success())
        .ok_or_else(|| format!("`npm pack --dry-run --json` in {} gave no integrity", local.display()))?;
    let stamp = dir.join("node_modules/.local-package-integrity");
    if installed(dir) && std::fs::read_to_string(&stamp).is_ok_and(|have| have == integrity) {
        return Ok(());
    }
    run(dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
    std::fs::write(&stamp, integrity).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// A virtualenv under the target directory with the contract test's pinned Python packages
/// (`tests/contract/requirements.txt`: Schemathesis); its Python. Reinstalled only when the
/// requirements change.
pub fn schemathesis(root: &Path) -> Result<PathBuf> {
    let requirements = root.join("tests/contract/requirements.txt");
    let venv = crate::web::target_dir(root).join("contract-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted) {
        return Ok(python);
    }
    let base = ["python3.11", "python3"]
        .into_iter()
        .find(|p| output(p, &["-c", "import sys, venv; assert sys.version_info >= (3, 10)"]).is_some())
        .ok_or(
            "Python 3.10 or later with venv is missing: run `sudo apt-get install python3 python3-venv`",
        )?;
    let dir = venv.to_string_lossy();
    run(root, base, &["-m", "venv", "--clear", &dir])?;
    let req = requirements.to_string_lossy();
    let py = python.to_string_lossy();
    run(root, &py, &["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", &req])?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

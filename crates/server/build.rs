//! Builds the web console (TypeScript in `web/`, by its own `npm run build`) into OUT_DIR so
//! the server embeds it. Needs Node.js and npm; without them the build stops with one message
//! saying what to install. `CARACAL_WEB_DIST=DIR` embeds an already built console instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("web");
    println!("cargo:rerun-if-env-changed=CARACAL_WEB_DIST");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    if let Ok(prebuilt) = std::env::var("CARACAL_WEB_DIST") {
        copy_dir(Path::new(&prebuilt), &out);
        return;
    }
    let npm = |args: &[&str]| {
        let status = Command::new("npm")
            .args(args)
            .current_dir(&web)
            .env("CARACAL_WEB_OUT", &out)
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => fail(&format!("`npm {}` in web/ failed ({status}); its output is above", args.join(" "))),
            Err(error) => fail(&format!(
                "the web console needs Node.js 20+ and npm to build, and `npm` could not run ({error}). Install them (Debian: apt-get install nodejs npm) and build again"
            )),
        }
    };
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    let stale = match (modified(&lock), modified(&installed)) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    };
    if stale {
        npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    }
    npm(&["run", "build", "--silent"]);
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", to.display())));
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|e| fail(&format!("CARACAL_WEB_DIST={}: {e}", from.display())));
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if let Err(e) = std::fs::copy(entry.path(), &target) {
            fail(&format!("cannot copy {}: {e}", entry.path().display()));
        }
    }
}

//! Lab tests on real namespaces (root only; they skip with a message elsewhere, and fail in CI).

mod kubernetes_docs;
mod policy_vs_kernel;
mod shop;

/// Whether this process may build labs; in CI a lab test must never skip.
pub fn can_build_labs(test: &str) -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok();
    if root && tools {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run lab tests as root with nftables and iproute2"
    );
    eprintln!("skipped {test}: needs root, iproute2 and nftables");
    false
}

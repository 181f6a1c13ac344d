//! The dependency rules the design sets: every HTTP client on rustls, never OpenSSL.

use sellerhub_tests::runtime_api::workspace_root;

fn locked_packages() -> Vec<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))
        .expect("Cargo.lock is committed");
    lock.lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .map(|name| name.trim_end_matches('"').to_owned())
        .collect()
}

#[test]
fn no_openssl_anywhere_in_the_lock_file() {
    let packages = locked_packages();
    assert!(
        packages.iter().any(|name| name == "rustls"),
        "rustls is the TLS stack"
    );
    for banned in [
        "openssl",
        "openssl-sys",
        "native-tls",
        "hyper-tls",
        "tokio-native-tls",
    ] {
        assert!(
            !packages.iter().any(|name| name == banned),
            "{banned} is in Cargo.lock"
        );
    }
}

//! The emulators the test command starts (moto, redis-server), found through the
//! environment. A suite that needs one fails — never skips — when it is not there.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The value of `variable`, after checking something accepts TCP connections at the
/// host and port of its URL. Panics naming the variable otherwise.
pub fn required(variable: &str, service: &str) -> String {
    let value = std::env::var(variable)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| {
            panic!("{variable} not set: run the README's test command (bash infra/test.sh), which starts {service}")
        });
    let uri: http::Uri = value
        .parse()
        .unwrap_or_else(|error| panic!("{variable}={value} is not a URL: {error}"));
    let host = uri
        .host()
        .unwrap_or_else(|| panic!("{variable}={value} has no host"));
    let port = uri.port_u16().unwrap_or(80);
    let answers = (host, port)
        .to_socket_addrs()
        .unwrap_or_else(|error| panic!("{variable}={value}: cannot resolve {host}: {error}"))
        .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    assert!(
        answers,
        "{service} does not answer at {variable}={value}: run the README's test command (bash infra/test.sh)"
    );
    value
}

//! The cold-start floor: a `lambda_http` function that answers every request with "hello",
//! on the same runtime, features and release profile as the functions, and nothing else (no
//! logging, configuration, AWS client or TLS). `infra/bench.sh` starts it under the same
//! Runtime API harness, in the same run, to print each function's init as a ratio of it.
//! Not a deployed function: no crate under functions/, no entry in template.yaml.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}

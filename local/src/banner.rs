//! What the runner prints for a person when it starts (logs in text): the URL to open,
//! the routes (as `sam local start-api` lists them), where its data and generated secrets
//! are, and whether Mercado Livre is the sandbox provider, and why.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use shared::config::{Config, QueueBackend, StoreBackend};
use shared::routes::{ROUTES, Trigger, WORKERS};

use crate::SANDBOX_PATH;
use crate::startup::absolute;

/// The origin to reach `address` at: loopback when it listens on every interface.
pub fn origin(address: SocketAddr) -> String {
    let host = if address.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        address.ip()
    };
    format!("http://{}", SocketAddr::new(host, address.port()))
}

pub struct Facts<'a> {
    pub address: SocketAddr,
    pub config: &'a Config,
    pub sandbox: bool,
    pub generated_secrets: &'a [&'static str],
}

pub fn text(facts: &Facts) -> String {
    let config = facts.config;
    let origin = origin(facts.address);
    let data_dir = absolute(&config.data_dir);
    let mut out = String::new();
    let mut line = |label: &str, text: &str| {
        let _ = writeln!(out, "{}", format!("  {label:<10}{text}").trim_end());
    };
    line("", "");
    line(
        "sellerhub",
        &format!(
            "{} - every function in one process on {origin}",
            config.version
        ),
    );
    line("", "");
    line("Open", &format!("{origin}/auth/login (sign in)"));
    line("", &format!("{origin}/health"));
    if facts.sandbox {
        line(
            "Sandbox",
            "on, because MERCADOLIVRE_API_URL is unset: Mercado Livre is played by this runner",
        );
        line(
            "",
            &format!("{origin}{SANDBOX_PATH}/console (act as a buyer, switch faults on)"),
        );
    } else {
        line(
            "Sandbox",
            &format!(
                "off, because MERCADOLIVRE_API_URL is set: {}",
                config.mercadolivre.api_url
            ),
        );
    }
    match &config.store {
        StoreBackend::Embedded => line(
            "Store",
            &format!(
                "embedded, {}",
                data_dir.join(shared::embedded_db::FILE_NAME).display()
            ),
        ),
        StoreBackend::DynamoDb { table } => line("Store", &format!("DynamoDB table {table}")),
    }
    match &config.queue {
        QueueBackend::Embedded { .. } => line("Queue", "embedded, in the store's file"),
        QueueBackend::Sqs { queue_url, .. } => line("Queue", &format!("SQS {queue_url}")),
    }
    if !facts.generated_secrets.is_empty() {
        line(
            "Secrets",
            &format!(
                "{} (generated, owner-only): {}",
                data_dir.join(crate::local_secrets::FILE).display(),
                facts.generated_secrets.join(", ")
            ),
        );
    }
    if config.local_workers {
        let workers: Vec<String> = WORKERS
            .iter()
            .map(|worker| match worker.trigger {
                Trigger::Every { minutes } => format!("{} every {minutes} min", worker.function),
                Trigger::WebhookQueue => format!("{} on the webhook queue", worker.function),
            })
            .collect();
        line("Workers", &workers.join(", "));
    } else {
        line("Workers", "off, because LOCAL_WORKERS=false");
    }
    line("", "");
    let width = ROUTES
        .iter()
        .map(|route| origin.len() + route.path.len())
        .max()
        .unwrap_or_default();
    for (index, route) in ROUTES.iter().enumerate() {
        line(
            if index == 0 { "Routes" } else { "" },
            &format!(
                "{:<7}{:<width$}  {}",
                route.method,
                format!("{origin}{}", route.path),
                route.function
            ),
        );
    }
    line("", "");
    line(
        "",
        "Ctrl-C stops, once the requests in flight are answered.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Profile;

    #[test]
    fn the_banner_says_where_to_go_and_where_things_are() {
        let config = Config::from_vars(Profile::Local, |name| {
            (name == "DATA_DIR").then(|| "some/data".to_owned())
        })
        .unwrap();
        let text = text(&Facts {
            address: "0.0.0.0:3000".parse().unwrap(),
            config: &config,
            sandbox: true,
            generated_secrets: &["SESSION_SIGNING_KEY"],
        });
        assert!(text.contains("http://127.0.0.1:3000/auth/login"), "{text}");
        assert!(text.contains("MERCADOLIVRE_API_URL is unset"), "{text}");
        let data = std::env::current_dir().unwrap().join("some/data");
        assert!(
            text.contains(&format!("{}", data.join("sellerhub.redb").display())),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{} (generated, owner-only): SESSION_SIGNING_KEY",
                data.join("local-secrets.json").display()
            )),
            "{text}"
        );
        for route in ROUTES {
            assert!(text.contains(route.path), "{}: {text}", route.path);
        }
    }
}

//! `grant` and `revoke-sessions`: one seller, named by their Mercado Livre user id.

use std::io::Write;

use shared::auth::grants::GrantInfos;
use shared::auth::tenants::Tenants;
use shared::auth::user_id;
use shared::cleanup::{Keep, end_sessions};
use shared::config::Config;
use shared::http::rfc3339;
use shared::services::Services;

use super::OpsResult;

/// The services over the configured adapters, with the runner's own secrets filled in
/// where none is configured (session tokens are revoked by their id: no key is used).
pub(super) async fn services(config: &Config) -> Result<Services, Box<dyn std::error::Error>> {
    let mut config = config.clone();
    crate::local_secrets::fill_in(&mut config)?;
    let adapters = crate::adapters::build(&config).await?;
    Ok(Services::new(config, adapters))
}

/// `grant`: the seller's tenant, their grant's public part (never its tokens) and how
/// many sessions they have live.
pub(super) async fn grant(config: &Config, seller_id: u64, out: &mut impl Write) -> OpsResult {
    let services = services(config).await?;
    let now = services.clock().now_secs();
    let user = user_id(seller_id);
    let Some(tenant) = Tenants::new(services.store()).find(seller_id).await? else {
        return Err(format!("seller {seller_id} never signed in (no tenant)").into());
    };
    writeln!(out, "seller: {seller_id} (user {user})")?;
    writeln!(out, "tenant: {tenant}")?;
    match GrantInfos::new(services.store()).get(&tenant).await? {
        None => writeln!(out, "grant: none")?,
        Some(grant) => {
            let status = serde_json::to_value(grant.status)?;
            writeln!(out, "grant: {}", status.as_str().unwrap_or("unknown"))?;
            writeln!(out, "nickname: {}", grant.nickname)?;
            writeln!(out, "scopes: {}", grant.scopes.join(" "))?;
            let expiry = if grant.expires_at > now {
                format!("in {}", duration(grant.expires_at - now))
            } else {
                format!("{} ago", duration(now - grant.expires_at))
            };
            writeln!(
                out,
                "access token expires: {} ({expiry})",
                rfc3339(grant.expires_at)
            )?;
            match grant.lease_until.filter(|until| *until > now) {
                Some(until) => writeln!(out, "refresh lease: held until {}", rfc3339(until))?,
                None => writeln!(out, "refresh lease: none")?,
            }
        }
    }
    let live = services.sessions()?.active(&user).await?;
    writeln!(out, "live sessions: {}", live.len())?;
    for session in live {
        writeln!(
            out,
            "  {} started {}, expires {}",
            session.sid,
            rfc3339(session.iat),
            rfc3339(session.exp)
        )?;
    }
    Ok(())
}

/// `revoke-sessions`: ends every live session of the seller, as a logout does.
pub(super) async fn revoke_sessions(
    config: &Config,
    seller_id: u64,
    out: &mut impl Write,
) -> OpsResult {
    let services = services(config).await?;
    let user = user_id(seller_id);
    let now = services.clock().now_secs();
    let ended = end_sessions(&services.sessions()?, &user, Keep::None, now).await?;
    writeln!(
        out,
        "revoke-sessions: ended {ended} sessions of seller {seller_id} (user {user}); their tokens are revoked"
    )?;
    Ok(())
}

/// `5h 59m`, `3m`, `12s`.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

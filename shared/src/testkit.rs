//! What tests of several crates set up the same way (feature `testkit`).

use crate::auth::grants::{GrantInfo, GrantStatus, GrantTokens};
use crate::auth::tenants::Tenants;
use crate::clock::{Clock, SystemClock};
use crate::services::Services;

/// Seller `seller_id` signed in: their tenant (returned) and a grant good for six hours
/// (access token `APP_USR-1`).
pub async fn connected_seller(services: &Services, seller_id: u64) -> String {
    let now = SystemClock.now_secs();
    let tenant = Tenants::new(services.store())
        .for_seller(seller_id, "LOJA", now)
        .await
        .unwrap();
    let info = GrantInfo {
        tenant: tenant.clone(),
        seller_id,
        nickname: "LOJA".into(),
        scopes: vec![],
        status: GrantStatus::Ok,
        expires_at: now + 21_600,
        lease_until: None,
        version: 0,
    };
    let tokens = GrantTokens {
        access_token: "APP_USR-1".into(),
        refresh_token: "TG-1".into(),
    };
    services
        .grants()
        .unwrap()
        .connect(info, &tokens)
        .await
        .unwrap();
    tenant
}

//! A seller's orders: `GET /orders/{id}` ("Manage sales"), read for what a seller's
//! notification shows. The documented examples disagree on details (the buyer's id is a
//! number in one and a string in another; `last_updated` was once `date_last_updated`),
//! so everything but the id and the status is optional.

use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use super::client::MercadoLivre;
use super::error::UpstreamError;
use super::wire;

/// An order as `GET /orders/{id}` returns it, reduced to what sellerhub shows.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Order {
    #[serde(deserialize_with = "wire::lenient_u64")]
    pub id: u64,
    /// `confirmed`, `payment_required`, `payment_in_process`, `partially_paid`, `paid`,
    /// `partially_refunded`, `pending_cancel`, `cancelled` or `invalid`.
    pub status: String,
    #[serde(default)]
    pub total_amount: Option<f64>,
    #[serde(default, deserialize_with = "wire::optional_text")]
    pub currency_id: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    pub date_created: Option<OffsetDateTime>,
    #[serde(
        default,
        alias = "date_last_updated",
        deserialize_with = "wire::optional_rfc3339"
    )]
    pub last_updated: Option<OffsetDateTime>,
    /// The cart the order belongs to; its post-sale conversation is the pack's.
    #[serde(default, deserialize_with = "wire::optional_u64")]
    pub pack_id: Option<u64>,
    #[serde(default)]
    pub buyer: Option<OrderBuyer>,
    #[serde(default, rename = "order_items")]
    pub items: Vec<OrderItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OrderBuyer {
    #[serde(deserialize_with = "wire::lenient_u64")]
    pub id: u64,
    #[serde(default, deserialize_with = "wire::optional_text")]
    pub nickname: Option<String>,
}

/// One line of an order (`order_items[]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "OrderItemWire")]
pub struct OrderItem {
    pub item_id: String,
    pub title: Option<String>,
    pub quantity: u32,
    pub unit_price: Option<f64>,
}

#[derive(Deserialize)]
struct OrderItemWire {
    item: ItemRef,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    unit_price: Option<f64>,
}

#[derive(Deserialize)]
struct ItemRef {
    #[serde(deserialize_with = "wire::id_text")]
    id: String,
    #[serde(default, deserialize_with = "wire::optional_text")]
    title: Option<String>,
}

fn one() -> u32 {
    1
}

impl From<OrderItemWire> for OrderItem {
    fn from(wire: OrderItemWire) -> Self {
        OrderItem {
            item_id: wire.item.id,
            title: wire.item.title,
            quantity: wire.quantity,
            unit_price: wire.unit_price,
        }
    }
}

impl MercadoLivre {
    /// `GET /orders/{id}`.
    pub async fn get_order(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        order_id: u64,
    ) -> Result<Order, UpstreamError> {
        let url = self.resource_url(&["orders", &order_id.to_string()], &[])?;
        self.call(&Self::get_call("GetOrder", access_token, seller_id, url))
            .await
    }
}

//! `purge-expired`: the cleanup sweep's purge (`shared::cleanup`) over the whole table
//! at once, from its start to its end, a page at a time with progress: expired items
//! DynamoDB's TTL has not deleted yet, and events older than their retention. The
//! worker's kept position is neither read nor moved.

use std::io::Write;

use shared::cleanup::{CleanupSettings, Report, Steps, Sweep};
use shared::config::Config;

use super::OpsResult;

pub(super) async fn purge_expired(config: &Config, out: &mut impl Write) -> OpsResult {
    let services = super::sellers::services(config).await?;
    let sweep = Sweep::new(
        services.store(),
        services.sessions()?,
        CleanupSettings::default(),
    );
    let now = services.clock().now_secs();
    let mut report = Report::default();
    let mut after = None;
    loop {
        let next = sweep
            .page(after, Steps::Purge, now, &mut report)
            .await
            .map_err(|_| "a page of the table could not be read (see the log)")?;
        writeln!(
            out,
            "purge-expired: page {}: {} items looked at, {} expired purged, {} events trimmed",
            report.pages, report.items_seen, report.expired_purged, report.events_trimmed
        )?;
        if report.failures > 0 {
            return Err("a delete failed after its retries (see the log); run it again".into());
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writeln!(
        out,
        "purge-expired: done, {} expired items purged and {} events trimmed of {} items",
        report.expired_purged, report.events_trimmed, report.items_seen
    )?;
    Ok(())
}

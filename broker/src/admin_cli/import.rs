//! `rocketry admin import`: an Apache RocketMQ broker's state into a Rocketry store
//! ([`broker::import`]), with what it did as a table.

use std::path::PathBuf;

use anyhow::Result;
use broker::config::Settings;
use clap::Args;

use super::{Answer, Table};

/// What `rocketry admin import` takes; its help is on `AdminCommand::Import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The Apache broker's storePathRootDir (the folder holding config/topics.json).
    #[arg(long)]
    from: PathBuf,
    /// The Rocketry store to write (storePathRootDir); default ~/store, as `standalone`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Add to a store that already has topics, groups, offsets or messages.
    #[arg(long)]
    force: bool,
}

pub fn run(args: ImportArgs) -> Result<Answer> {
    let to = args
        .data_dir
        .unwrap_or_else(|| Settings::default().store.store_path_root_dir);
    let imported = broker::import::import(&args.from, &to, args.force)?;
    let mut table = Table::new(["imported", "count", "which"]);
    let mut row = |what: &str, count: usize, which: String| {
        table.row([what.to_string(), count.to_string(), which]);
    };
    row("topics", imported.topics.len(), imported.topics.join(" "));
    row(
        "Apache's own topics, left out",
        imported.skipped_topics.len(),
        imported.skipped_topics.join(" "),
    );
    row("consumer groups", imported.groups, String::new());
    row(
        "committed offsets (topic@group)",
        imported.offset_tables,
        format!("{} queues", imported.offset_queues),
    );
    row(
        "offsets of left-out topics",
        imported.skipped_offsets.len(),
        imported.skipped_offsets.join(" "),
    );
    row(
        "delay levels read, not carried",
        imported.delay_levels,
        "their messages are not imported".into(),
    );
    row("messages", 0, "not imported: mirror them".into());
    Ok(Answer::rows(table))
}

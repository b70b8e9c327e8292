//! Topic names, topic filters and the subscription tree.

mod filter;
mod tree;

pub use filter::{filter_matches, FilterError, TopicFilter};
pub use tree::{Match, Pick, SubscriptionTree};

//! Operating the broker: `$SYS` topics, process statistics and reloads.
//! The admin HTTP API lives in `admin`.

pub mod numbers;
pub mod process;
pub mod reload;
pub mod store_failure;
pub mod sys_topics;

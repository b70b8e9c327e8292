//! Integration tests against the real `sluice` binary, by spec area.

mod harness;

mod connect;
mod persistence;
mod publish_qos;

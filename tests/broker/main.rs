//! Integration tests against the real `sluice` binary, by spec area.

mod harness;

mod access_control;
mod admin;
mod admin_websocket;
mod auth_files;
mod bridges;
mod bridges_budget;
mod bridges_identity;
mod bridges_kafka;
mod bridges_kafka_mock;
mod bridges_kafka_secure;
mod bridges_mqtt;
mod clients_mosquitto;
mod clients_rumqttc;
mod closing;
mod connect;
mod idle_parking;
mod kafka_fronts;
mod kafka_peer;
mod limits;
mod malformed;
mod mqtt_remote;
mod operations;
mod ownership;
mod persistence;
mod publish_qos;
mod retain;
mod showcase;
mod slow_peers;
mod soak;
mod subscribe;
mod transports;
mod v5_features;
mod will;
mod ws_client;

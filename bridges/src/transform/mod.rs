//! The per-message transform: decode the payload, run the bridge's jq rule,
//! render the destination and key.
//!
//! # The rule's input and output
//!
//! The rule sees one object per message, so it can use the message's
//! metadata as well as its payload:
//!
//! ```json
//! {
//!   "payload": <decoded payload>,
//!   "topic": "site/pump1/temp",
//!   "client_id": "pump1" | null,
//!   "username": "alice" | null,
//!   "qos": 0 | 1 | 2,
//!   "retain": false,
//!   "timestamp": 1700000000000,
//!   "user_properties": {"k": "v", ...}
//! }
//! ```
//!
//! `timestamp` is when the broker accepted the message, in milliseconds
//! since the Unix epoch. A user property name that occurs more than once
//! keeps its last value here (the record's headers keep them all).
//!
//! The rule's first output is the new payload, sent as compact JSON; the
//! rest are never computed. No output drops the message (`select(...)` is a
//! filter). A runtime error is [`TransformError::Runtime`], which the caller
//! dead-letters; so is a run past its [`Budget`] ([`TransformError::Budget`]:
//! steps, time, recursion depth, output size). A rule that exceeds its
//! budget on a sample message (an empty object payload) is refused when it
//! is compiled. Without a rule (`expression: None`) the payload goes out
//! unchanged: JSON and raw payloads byte for byte (JSON still has to decode,
//! within the nesting limit), CBOR and MessagePack converted to JSON.
//!
//! Templates see the payload after the rule (see [`template`]).

pub mod budget;
mod decode;
mod encode;
mod jq;
pub mod runner;
mod template;

use std::fmt;

use bytes::Bytes;
use jaq_json::{Map, Num, Val};
use serde::Deserialize;

use crate::record::{Input, Record, TOPIC_HEADER};

pub use budget::Budget;
pub use template::{Escape, Template, TemplateError};

/// Default for [`TransformConfig::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Largest accepted [`TransformConfig::max_depth`]: serde_json refuses
/// anything deeper on its own, so a larger limit would be a lie for JSON.
pub const MAX_SUPPORTED_DEPTH: usize = 127;

/// How a bridge decodes MQTT payloads before the rule sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    #[default]
    Json,
    Cbor,
    Msgpack,
    /// Not decoded: the rule sees the payload as a base64 string.
    Raw,
}

/// What to do with a payload that does not decode (or nests too deeply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDecodeError {
    /// [`Transform::apply`] returns [`TransformError::Decode`] so the caller
    /// writes the message to the dead letter file.
    #[default]
    DeadLetter,
    /// Forward the payload bytes unchanged, skipping the rule; payload
    /// placeholders in templates render empty.
    Pass,
    /// Drop the message.
    Drop,
}

/// A bridge's transform settings, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    /// jq rule; `None` forwards the payload unchanged.
    pub expression: Option<String>,
    pub payload_format: PayloadFormat,
    pub on_decode_error: OnDecodeError,
    /// Deepest array/object nesting accepted in a payload (a scalar is 0,
    /// `[1]` is 1), from 1 to [`MAX_SUPPORTED_DEPTH`].
    pub max_depth: usize,
    /// Template for the Kafka topic or HTTP URL.
    pub destination: String,
    /// [`Escape::Url`] for HTTP URLs, [`Escape::None`] for Kafka topics.
    pub destination_escape: Escape,
    /// Template for the Kafka key (never escaped).
    pub key: Option<String>,
    /// What one run of the rule may spend.
    pub budget: Budget,
    /// Carry the message's QoS and retain flag in the record's headers
    /// ([`MQTT_QOS_HEADER`], [`MQTT_RETAIN_HEADER`]): an MQTT bridge
    /// republishes with them; Kafka and HTTP consumers never see them.
    pub mqtt_flags: bool,
}

/// The record header holding the message's QoS (`0`, `1`, `2`: the
/// publisher's) when the transform keeps MQTT flags.
pub const MQTT_QOS_HEADER: &str = "mqtt-qos";

/// The record header present (`1`) when the message was published retained
/// and the transform keeps MQTT flags.
pub const MQTT_RETAIN_HEADER: &str = "mqtt-retain";

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig {
            expression: None,
            payload_format: PayloadFormat::default(),
            on_decode_error: OnDecodeError::default(),
            max_depth: DEFAULT_MAX_DEPTH,
            destination: String::new(),
            destination_escape: Escape::None,
            key: None,
            budget: Budget::default(),
            mqtt_flags: false,
        }
    }
}

/// Why a transform could not be built, or could not handle one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The jq rule does not compile; the message gives line and column.
    #[error("invalid jq rule: {0}")]
    Compile(String),
    /// A template does not parse; `field` is "destination" or "key".
    #[error("invalid {field} template: {source}")]
    Template {
        field: &'static str,
        source: TemplateError,
    },
    #[error("invalid transform config: {0}")]
    Config(String),
    /// The payload does not decode in the configured format.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The rule failed on this message, or its output is not JSON.
    #[error("jq rule failed: {0}")]
    Runtime(String),
    /// The rule went past its budget on this message (or, at compile
    /// time, on the sample message).
    #[error("jq rule stopped: {0}")]
    Budget(String),
    /// A template could not be rendered for this message.
    #[error("cannot render {field}: {reason}")]
    Render { field: &'static str, reason: String },
}

/// A compiled transform, built once per bridge and applied to every
/// message. `Send + Sync`; applying it takes `&self`.
pub struct Transform {
    expression: Option<String>,
    jq: Option<jq::Jq>,
    format: PayloadFormat,
    on_decode_error: OnDecodeError,
    max_depth: usize,
    destination: Template,
    key: Option<Template>,
    budget: Budget,
    mqtt_flags: bool,
    /// Whether a message's payload must be decoded: not when nothing would
    /// read the decoded value and a payload that fails to decode passes
    /// as it is anyway (JSON or raw, `on_decode_error = "pass"`, no rule,
    /// no template naming a payload field). Decoding (and formatting the
    /// error of) every binary payload took ~2.6% of the broker's CPU
    /// samples in a profile of a Kafka bridge under load.
    decodes: bool,
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Transform")
            .field("expression", &self.expression)
            .field("format", &self.format)
            .field("on_decode_error", &self.on_decode_error)
            .field("max_depth", &self.max_depth)
            .field("destination", &self.destination)
            .field("key", &self.key)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Transform {
    /// Compiles the rule (jq's standard library, without `env`/`$ENV`) and
    /// parses the templates.
    pub fn compile(config: &TransformConfig) -> Result<Transform, TransformError> {
        if !(1..=MAX_SUPPORTED_DEPTH).contains(&config.max_depth) {
            return Err(TransformError::Config(format!(
                "max_depth must be between 1 and {MAX_SUPPORTED_DEPTH}, not {}",
                config.max_depth
            )));
        }
        let jq = match &config.expression {
            Some(code) => Some(jq::Jq::compile(code).map_err(TransformError::Compile)?),
            None => None,
        };
        let destination =
            Template::parse(&config.destination, config.destination_escape).map_err(|source| {
                TransformError::Template {
                    field: "destination",
                    source,
                }
            })?;
        let key = match &config.key {
            Some(key) => Some(Template::parse(key, Escape::None).map_err(|source| {
                TransformError::Template {
                    field: "key",
                    source,
                }
            })?),
            None => None,
        };
        if config.budget.max_steps == 0 || config.budget.timeout.is_zero() {
            return Err(TransformError::Config(
                "the rule's step and time budgets must be above zero".into(),
            ));
        }
        let decodes = jq.is_some()
            || config.on_decode_error != OnDecodeError::Pass
            || !matches!(
                config.payload_format,
                PayloadFormat::Json | PayloadFormat::Raw
            )
            || destination.reads_payload()
            || key.as_ref().is_some_and(Template::reads_payload);
        let t = Transform {
            expression: config.expression.clone(),
            jq,
            format: config.payload_format,
            on_decode_error: config.on_decode_error,
            max_depth: config.max_depth,
            destination,
            key,
            budget: config.budget,
            mqtt_flags: config.mqtt_flags,
            decodes,
        };
        t.check_on_sample()?;
        Ok(t)
    }

    /// Runs the rule once on a sample message (empty object payload) so a
    /// rule that never ends, or recurses without bound, is refused at load
    /// rather than met on the first message.
    fn check_on_sample(&self) -> Result<(), TransformError> {
        if self.jq.is_none() {
            return Ok(());
        }
        let sample = Input {
            topic: "sample/topic".into(),
            payload: Bytes::from_static(b"{}"),
            qos: 1,
            retain: false,
            client_id: Some("sample-client".into()),
            username: Some("sample-user".into()),
            timestamp_ms: 0,
            user_properties: Vec::new(),
        };
        let outcome = budget::on_rule_thread(|| {
            self.run_rule(&sample, Val::obj(Map::default()))
                .map(|out| out.map(|(payload, _)| payload))
        })
        .map_err(|e| TransformError::Config(format!("cannot start a thread for the rule: {e}")))?;
        match outcome {
            Err(TransformError::Budget(why)) => Err(TransformError::Budget(format!(
                "{why} on a sample message (payload {{}}); the rule must finish within its budget"
            ))),
            _ => Ok(()),
        }
    }

    /// Runs the rule on `decoded` under the budget; `Some` is the output
    /// as JSON with the value templates see.
    fn run_rule(
        &self,
        input: &Input,
        decoded: Val,
    ) -> Result<Option<(Bytes, Val)>, TransformError> {
        let Some(jq) = &self.jq else {
            return Ok(None);
        };
        let run = budget::run(&self.budget, || -> Result<_, TransformError> {
            match jq
                .first(envelope(input, decoded))
                .map_err(TransformError::Runtime)?
            {
                None => Ok(None),
                Some(out) => {
                    let payload = to_json(&out)?;
                    if payload.len() > self.budget.max_output_bytes {
                        return Err(TransformError::Budget(format!(
                            "the rule's output of {} bytes exceeds {} bytes",
                            payload.len(),
                            self.budget.max_output_bytes
                        )));
                    }
                    Ok(Some((payload, out)))
                }
            }
        });
        run.map_err(TransformError::Budget)?
    }

    /// Transforms one message into record `id`. `Ok(None)` means the
    /// message is dropped (the rule produced nothing, or it did not decode
    /// and the bridge drops such payloads).
    ///
    /// The rule runs on a thread with a large stack: this one if it was
    /// started with [`budget::spawn_rule_thread`], else a new one per call.
    pub fn apply(&self, input: &Input, id: u64) -> Result<Option<Record>, TransformError> {
        // Without a rule nothing unbounded runs (decoding has its depth
        // limit, templates are linear): no rule thread.
        if self.jq.is_none() {
            return self.apply_here(input, id);
        }
        budget::on_rule_thread(|| self.apply_here(input, id)).map_err(|e| {
            TransformError::Runtime(format!("cannot start a thread for the rule: {e}"))
        })?
    }

    /// Whether a jq rule runs (else decoding and templates only).
    pub fn has_rule(&self) -> bool {
        self.jq.is_some()
    }

    fn apply_here(&self, input: &Input, id: u64) -> Result<Option<Record>, TransformError> {
        if !self.decodes {
            // What the record would be either way (see `decodes`).
            return self
                .record(input, id, input.payload.clone(), None)
                .map(Some);
        }
        let decoded = match decode::decode(&input.payload, self.format, self.max_depth) {
            Ok(v) => v,
            Err(reason) => {
                return match self.on_decode_error {
                    OnDecodeError::DeadLetter => Err(TransformError::Decode(reason)),
                    OnDecodeError::Drop => Ok(None),
                    OnDecodeError::Pass => self
                        .record(input, id, input.payload.clone(), None)
                        .map(Some),
                }
            }
        };
        if self.jq.is_none() {
            let payload = match self.format {
                PayloadFormat::Json | PayloadFormat::Raw => input.payload.clone(),
                PayloadFormat::Cbor | PayloadFormat::Msgpack => to_json(&decoded)?,
            };
            return self.record(input, id, payload, Some(&decoded)).map(Some);
        }
        match self.run_rule(input, decoded)? {
            None => Ok(None),
            Some((payload, out)) => self.record(input, id, payload, Some(&out)).map(Some),
        }
    }

    fn record(
        &self,
        input: &Input,
        id: u64,
        payload: Bytes,
        transformed: Option<&Val>,
    ) -> Result<Record, TransformError> {
        let fields = template::Fields {
            topic: &input.topic,
            client_id: input.client_id.as_deref(),
            username: input.username.as_deref(),
            payload: transformed,
        };
        let destination =
            self.destination
                .render(&fields)
                .map_err(|reason| TransformError::Render {
                    field: "destination",
                    reason,
                })?;
        let key = match &self.key {
            Some(key) => Some(Bytes::from(key.render(&fields).map_err(|reason| {
                TransformError::Render {
                    field: "key",
                    reason,
                }
            })?)),
            None => None,
        };
        let mut headers = Vec::with_capacity(3 + input.user_properties.len());
        headers.push((TOPIC_HEADER.to_owned(), Bytes::from(input.topic.clone())));
        if self.mqtt_flags {
            let qos = Bytes::from(input.qos.min(2).to_string());
            headers.push((MQTT_QOS_HEADER.to_owned(), qos));
            if input.retain {
                headers.push((MQTT_RETAIN_HEADER.to_owned(), Bytes::from_static(b"1")));
            }
        }
        headers.extend(
            input
                .user_properties
                .iter()
                .map(|(k, v)| (k.clone(), Bytes::from(v.clone()))),
        );
        Ok(Record {
            id,
            destination,
            key,
            payload,
            headers,
            timestamp_ms: input.timestamp_ms,
        })
    }
}

fn to_json(v: &Val) -> Result<Bytes, TransformError> {
    let mut out = Vec::new();
    encode::to_json(&mut out, v, encode::MAX_OUTPUT_DEPTH).map_err(TransformError::Runtime)?;
    Ok(Bytes::from(out))
}

/// The rule's input; see the module documentation.
fn envelope(input: &Input, payload: Val) -> Val {
    fn key(k: &'static str) -> Val {
        Val::utf8_str(Bytes::from_static(k.as_bytes()))
    }
    fn text(s: &str) -> Val {
        Val::utf8_str(Bytes::copy_from_slice(s.as_bytes()))
    }
    let opt = |s: &Option<String>| s.as_deref().map_or(Val::Null, text);
    let props: Map = input
        .user_properties
        .iter()
        .map(|(k, v)| (text(k), text(v)))
        .collect();
    let fields: Map = [
        (key("payload"), payload),
        (key("topic"), text(&input.topic)),
        (key("client_id"), opt(&input.client_id)),
        (key("username"), opt(&input.username)),
        (key("qos"), Val::Num(Num::from_integral(input.qos))),
        (key("retain"), Val::Bool(input.retain)),
        (
            key("timestamp"),
            Val::Num(Num::from_integral(input.timestamp_ms)),
        ),
        (key("user_properties"), Val::obj(props)),
    ]
    .into_iter()
    .collect();
    Val::obj(fields)
}

#[cfg(test)]
mod tests;

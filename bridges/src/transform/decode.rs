//! Payload bytes to a jq value, with a nesting limit.
//!
//! Every format is decoded straight into [`jaq_json::Val`] (no
//! intermediate `serde_json::Value`), so a message is walked once. The
//! nesting limit is enforced while decoding, before recursing, so a hostile
//! payload can neither exhaust the stack nor get past the limit: JSON and
//! MessagePack carry the limit in a [`DeserializeSeed`]; ciborium accepts no
//! seed, so CBOR uses its own recursion limit, set to the same value.
//!
//! Mapping to JSON, for the formats that are richer than JSON:
//! byte strings become standard base64 strings; integer, boolean and byte
//! map keys become strings (`1` -> `"1"`); other keys (arrays, maps, null)
//! are a decode error; CBOR tags are dropped, keeping the tagged value
//! (bignums become numbers); CBOR `undefined` becomes `null`.

use std::fmt;
use std::io::Cursor;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use jaq_json::{Map, Num, Val};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::PayloadFormat;

/// Decodes `payload` per `format`, rejecting documents nested deeper than
/// `max_depth` arrays/maps (a scalar is depth 0, `[1]` depth 1).
///
/// The error is a human-readable reason, destined for the dead letter file.
pub(crate) fn decode(
    payload: &[u8],
    format: PayloadFormat,
    max_depth: usize,
) -> Result<Val, String> {
    match format {
        PayloadFormat::Json => json(payload, max_depth),
        PayloadFormat::Cbor => cbor(payload, max_depth),
        PayloadFormat::Msgpack => msgpack(payload, max_depth),
        PayloadFormat::Raw => Ok(Val::utf8_str(STANDARD.encode(payload))),
    }
}

fn too_deep(max_depth: usize) -> String {
    format!("payload is nested deeper than max_depth {max_depth}")
}

fn json(payload: &[u8], max_depth: usize) -> Result<Val, String> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let val = Seed::new(max_depth)
        .deserialize(&mut de)
        .map_err(|e| format!("invalid JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(val)
}

fn msgpack(payload: &[u8], max_depth: usize) -> Result<Val, String> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(payload));
    // rmp-serde counts levels too, and trips one level before our seed would.
    de.set_max_depth(max_depth.saturating_add(1));
    let val = Seed::new(max_depth)
        .deserialize(&mut de)
        .map_err(|e| match e {
            rmp_serde::decode::Error::DepthLimitExceeded => too_deep(max_depth),
            e => format!("invalid MessagePack: {e}"),
        })?;
    let read = de.position();
    if read != payload.len() as u64 {
        return Err(format!(
            "invalid MessagePack: {} trailing bytes after the value",
            payload.len() as u64 - read
        ));
    }
    Ok(val)
}

fn cbor(payload: &[u8], max_depth: usize) -> Result<Val, String> {
    let mut rest = payload;
    let Unbounded(val) = ciborium::de::from_reader_with_recursion_limit(&mut rest, max_depth)
        .map_err(|e| match e {
            ciborium::de::Error::RecursionLimitExceeded => too_deep(max_depth),
            e => format!("invalid CBOR: {e}"),
        })?;
    if !rest.is_empty() {
        return Err(format!(
            "invalid CBOR: {} trailing bytes after the value",
            rest.len()
        ));
    }
    Ok(val)
}

/// A value decoded without a depth limit of its own, for deserializers that
/// enforce one themselves (ciborium).
struct Unbounded(Val);

impl<'de> de::Deserialize<'de> for Unbounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Seed {
            left: usize::MAX,
            max: usize::MAX,
        }
        .deserialize(d)
        .map(Unbounded)
    }
}

/// Builds a [`Val`], allowing `left` more levels of arrays/maps.
#[derive(Clone, Copy)]
struct Seed {
    left: usize,
    /// The configured limit, for the error message.
    max: usize,
}

impl Seed {
    fn new(max: usize) -> Self {
        Seed { left: max, max }
    }

    fn descend<E: de::Error>(self) -> Result<Seed, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Seed { left, ..self }),
            None => Err(E::custom(too_deep(self.max))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Val;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Val, E> {
        Ok(Val::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(v)))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(v)))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Val, E> {
        Ok(Val::Num(Num::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val::utf8_str(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn visit_string<E>(self, v: String) -> Result<Val, E> {
        Ok(Val::utf8_str(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Val, E> {
        Ok(Val::utf8_str(STANDARD.encode(v)))
    }

    fn visit_none<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let inner = self.descend()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(items.into_iter().collect())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let inner = self.descend()?;
        let mut obj = Map::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(inner)?;
            obj.insert(key, value);
        }
        Ok(Val::obj(obj))
    }

    /// ciborium presents a tagged item as an enum; keep the item, drop the tag.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Val, A::Error> {
        use de::VariantAccess;
        let (IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

/// Map keys: JSON wants strings, CBOR and MessagePack allow more.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Val;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, integer, boolean or byte string map key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Val, E> {
        Ok(Val::utf8_str(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Val, E> {
        Ok(Val::utf8_str(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Val, E> {
        Ok(Val::utf8_str(v.to_string()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Val, E> {
        Ok(Val::utf8_str(v.to_string()))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Val, E> {
        Ok(Val::utf8_str(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val::utf8_str(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn visit_string<E>(self, v: String) -> Result<Val, E> {
        Ok(Val::utf8_str(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Val, E> {
        Ok(Val::utf8_str(STANDARD.encode(v)))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        self.deserialize(d)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Val, A::Error> {
        use de::VariantAccess;
        let (IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

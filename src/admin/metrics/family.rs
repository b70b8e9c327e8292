//! Writing one metric family, and the value and label helpers every
//! family uses.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Label pairs of one series.
pub(super) type Labels<'a> = Vec<(&'a str, String)>;

/// A client id as a label value: cut to 64 characters, so a label stays
/// small whatever id a client chose (the protocol allows 65,535 bytes).
pub(super) fn client_label(id: &str) -> String {
    match id.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &id[..end]),
        None => id.to_owned(),
    }
}

/// Writes one metric family (a name, help, type and its labelled values).
pub(super) fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: &[(Labels, M)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, metric_type)?;
    if let [(labels, value)] = values {
        if labels.is_empty() {
            return value.encode(m);
        }
    }
    for (labels, value) in values {
        let owned: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        value.encode(m.encode_family(&owned)?)?;
    }
    Ok(())
}

pub(super) fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

pub(super) fn gauge(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn fgauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

pub(super) const QOS: [&str; 3] = ["0", "1", "2"];
pub(super) const PROTOCOL: [&str; 2] = ["3.1.1", "5.0"];

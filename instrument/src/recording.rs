//! An in-memory handler for tests: records every emission so a test can
//! assert which events an action produced and with what values.

use std::sync::{Arc, Mutex};

use crate::handler::{Handler, ResolvedHandler};
use crate::registry::Meta;
use crate::spec::EventSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub event: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub measurements: Vec<(&'static str, f64)>,
    /// Meta fields, rendered.
    pub meta: Vec<(&'static str, String)>,
}

impl Record {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn value(&self, key: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// Clone it before handing it to the registry; both see the same records.
#[derive(Clone, Default)]
pub struct RecordingHandler {
    records: Arc<Mutex<Vec<Record>>>,
}

impl RecordingHandler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Records of one event whose labels include all of `labels`.
    pub fn find(&self, event: &str, labels: &[(&str, &str)]) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.event == event)
            .filter(|r| labels.iter().all(|(k, v)| r.label(k) == Some(v)))
            .collect()
    }

    /// Sum of measurement `key` over [`RecordingHandler::find`].
    pub fn sum(&self, event: &str, labels: &[(&str, &str)], key: &str) -> f64 {
        self.find(event, labels)
            .iter()
            .filter_map(|r| r.value(key))
            .sum()
    }

    pub fn clear(&self) {
        if let Ok(mut r) = self.records.lock() {
            r.clear();
        }
    }
}

impl Handler for RecordingHandler {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn wants(&self, _: &EventSpec) -> bool {
        true
    }

    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>> {
        Some(Box::new(Resolved {
            event: spec.name,
            labels: spec
                .labels
                .iter()
                .copied()
                .zip(labels.iter().map(|l| l.to_string()))
                .collect(),
            records: self.records.clone(),
        }))
    }
}

struct Resolved {
    event: &'static str,
    labels: Vec<(&'static str, String)>,
    records: Arc<Mutex<Vec<Record>>>,
}

impl ResolvedHandler for Resolved {
    fn handle(&self, m: &[(&'static str, f64)], meta: &Meta<'_>) {
        let record = Record {
            event: self.event,
            labels: self.labels.clone(),
            measurements: m.to_vec(),
            meta: meta
                .fields()
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect(),
        };
        if let Ok(mut r) = self.records.lock() {
            r.push(record);
        }
    }
}

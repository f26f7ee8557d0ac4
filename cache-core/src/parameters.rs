//! Flow parameters: the arguments of a `#[flow]` function, by name.
//!
//! Parameters are what the `all_parameters` and `partial_parameters_only` validators
//! compare, and a source of values for templated targets. Each parameter keeps its
//! value as JSON (so it can be rendered and read back as any type) and the SHA-256
//! digest of its serde serialization (so equality does not depend on JSON details).

use crate::hash::{hash_input, HashError, InputDigest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One flow parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    value: serde_json::Value,
    digest: InputDigest,
}

impl Parameter {
    /// Records a value as a parameter.
    ///
    /// # Errors
    /// When the value's `Serialize` implementation fails, or it cannot be represented as
    /// JSON (for example a map whose keys are not strings).
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, ParameterError> {
        let digest = hash_input(value)?;
        let value = serde_json::to_value(value).map_err(|e| ParameterError::Json(e.to_string()))?;
        Ok(Parameter { value, digest })
    }

    /// A parameter read back from a persisted record.
    pub(crate) fn from_parts(value: serde_json::Value, digest: InputDigest) -> Self {
        Parameter { value, digest }
    }

    /// The value as JSON.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The digest of the value, what parameter validators compare.
    pub fn digest(&self) -> &InputDigest {
        &self.digest
    }

    /// The value as it appears in a rendered template: strings without quotes, other
    /// values as JSON.
    pub fn render(&self) -> String {
        match &self.value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Why a value could not become a flow parameter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParameterError {
    /// The value could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The value has no JSON form.
    #[error("a flow parameter must be representable as JSON (maps need string keys): {0}")]
    Json(String),
}

/// The parameters of a flow run, by name. Cheap to clone (shared).
#[derive(Clone, Default, PartialEq)]
pub struct Parameters(Option<Arc<BTreeMap<String, Parameter>>>);

impl Parameters {
    /// No parameters (a task run outside any flow).
    pub const fn none() -> Self {
        Parameters(None)
    }

    /// A shared empty set: what a call outside any flow run reads.
    pub(crate) fn none_ref() -> &'static Parameters {
        static NONE: Parameters = Parameters::none();
        &NONE
    }

    /// Parameters from `(name, parameter)` pairs.
    pub fn from_map(map: BTreeMap<String, Parameter>) -> Self {
        if map.is_empty() {
            Parameters(None)
        } else {
            Parameters(Some(Arc::new(map)))
        }
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Parameter> {
        self.0.as_ref()?.get(name)
    }

    /// The parameter called `name`, read back as `T`.
    ///
    /// Returns `None` when there is no such parameter or it is not a `T`.
    pub fn value<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_value(self.get(name)?.value.clone()).ok()
    }

    /// `(name, parameter)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Parameter)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parameters as one JSON object, keys in order (what a state store records).
    pub(crate) fn to_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .iter()
            .map(|(k, p)| (k.to_owned(), p.value().clone()))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// True when both hold the same names with equal digests (what `all_parameters` checks).
    pub fn same_as(&self, other: &Parameters) -> bool {
        if let (Some(a), Some(b)) = (&self.0, &other.0) {
            if Arc::ptr_eq(a, b) {
                return true;
            }
        }
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && va.digest == vb.digest)
    }
}

impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k, &v.value)))
            .finish()
    }
}

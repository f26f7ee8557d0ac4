//! Cache validators: which cached outputs may serve the current run.
//!
//! The same set as Prefect's `prefect.engine.cache_validators`. Every validator
//! rejects a candidate whose expiration has passed; a candidate with no expiration
//! (a target hit) never expires. The runtime checks the expiration before it asks a
//! validator, and prunes expired candidates, so a validator of your own
//! ([`CacheValidator::Custom`]) only decides on the rest.

use crate::parameters::Parameters;
use crate::state::{Cached, HashedInputs};
use chrono::{DateTime, Utc};

/// The signature of a validator function: the candidate's record, the current inputs
/// and the current flow parameters; true when the candidate may be used.
pub type ValidatorFn = fn(&Cached, &HashedInputs<'_>, &Parameters) -> bool;

/// How a task decides whether a cached output is still valid (`cache_validator = …`).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub enum CacheValidator {
    /// Never use a cached output.
    NeverUse,
    /// Use any cached output until it expires (the default).
    #[default]
    DurationOnly,
    /// Use a cached output only if every input is equal to the one it was made from.
    AllInputs,
    /// Use a cached output only if the flow's parameters are all equal.
    AllParameters,
    /// Use a cached output only if the named inputs are equal; an empty list checks
    /// nothing but the expiration.
    PartialInputsOnly(&'static [&'static str]),
    /// Use a cached output only if the named flow parameters are equal; an empty list
    /// checks nothing but the expiration.
    PartialParametersOnly(&'static [&'static str]),
    /// A function of your own with the [`ValidatorFn`] signature.
    Custom(ValidatorFn),
}

impl CacheValidator {
    /// Whether `candidate` may serve a run with `inputs` and `parameters` at `now`.
    pub fn is_valid(
        &self,
        candidate: &Cached,
        inputs: &HashedInputs<'_>,
        parameters: &Parameters,
        now: DateTime<Utc>,
    ) -> bool {
        !candidate.is_expired(now) && self.accepts(candidate, inputs, parameters)
    }

    /// Whether an unexpired `candidate` may serve a run with `inputs` and `parameters`.
    pub(crate) fn accepts(
        &self,
        candidate: &Cached,
        inputs: &HashedInputs<'_>,
        parameters: &Parameters,
    ) -> bool {
        match *self {
            CacheValidator::NeverUse => never_use(candidate, inputs, parameters),
            CacheValidator::DurationOnly => duration_only(candidate, inputs, parameters),
            CacheValidator::AllInputs => all_inputs(candidate, inputs, parameters),
            CacheValidator::AllParameters => all_parameters(candidate, inputs, parameters),
            CacheValidator::PartialInputsOnly(names) => {
                partial_inputs_only(names, candidate, inputs)
            }
            CacheValidator::PartialParametersOnly(names) => {
                partial_parameters_only(names, candidate, parameters)
            }
            CacheValidator::Custom(f) => f(candidate, inputs, parameters),
        }
    }

    /// True when the validator reads the current inputs, so they must be hashed before
    /// the cache is consulted.
    pub fn needs_inputs(&self) -> bool {
        matches!(
            self,
            CacheValidator::AllInputs
                | CacheValidator::PartialInputsOnly(_)
                | CacheValidator::Custom(_)
        )
    }

    /// True when only a candidate made from exactly these inputs can be valid, so the
    /// cache may look candidates up by their inputs instead of scanning them all.
    pub fn requires_equal_inputs(&self) -> bool {
        matches!(self, CacheValidator::AllInputs)
    }

    /// The name users write in `cache_validator = …`.
    pub fn name(&self) -> &'static str {
        match self {
            CacheValidator::NeverUse => "never_use",
            CacheValidator::DurationOnly => "duration_only",
            CacheValidator::AllInputs => "all_inputs",
            CacheValidator::AllParameters => "all_parameters",
            CacheValidator::PartialInputsOnly(_) => "partial_inputs_only",
            CacheValidator::PartialParametersOnly(_) => "partial_parameters_only",
            CacheValidator::Custom(_) => "custom",
        }
    }
}

/// Never valid.
pub fn never_use(_: &Cached, _: &HashedInputs<'_>, _: &Parameters) -> bool {
    false
}

/// Valid until the expiration (checked by the runtime before any validator).
pub fn duration_only(_: &Cached, _: &HashedInputs<'_>, _: &Parameters) -> bool {
    true
}

/// Valid when every current input hashes like the recorded one.
pub fn all_inputs(candidate: &Cached, inputs: &HashedInputs<'_>, _: &Parameters) -> bool {
    candidate.hashed_inputs.same_as(inputs)
}

/// Valid when the current flow parameters equal the recorded ones.
pub fn all_parameters(candidate: &Cached, _: &HashedInputs<'_>, parameters: &Parameters) -> bool {
    candidate.parameters.same_as(parameters)
}

/// Valid when each named input hashes like the recorded one (an input missing on both
/// sides counts as equal, as in Prefect).
pub fn partial_inputs_only(names: &[&str], candidate: &Cached, inputs: &HashedInputs<'_>) -> bool {
    names
        .iter()
        .all(|n| candidate.hashed_inputs.get(n) == inputs.get(n))
}

/// Valid when each named flow parameter equals the recorded one (a parameter missing on
/// both sides counts as equal, as in Prefect).
pub fn partial_parameters_only(
    names: &[&str],
    candidate: &Cached,
    parameters: &Parameters,
) -> bool {
    names.iter().all(|n| {
        candidate.parameters.get(n).map(|p| p.digest()) == parameters.get(n).map(|p| p.digest())
    })
}

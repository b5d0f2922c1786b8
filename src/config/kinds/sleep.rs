//! `sleep` steps: a pause (between a send and what should follow, or to pace a flow).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{At, StepKind};
use crate::config::build::Cx;
use crate::config::scenario::Action;
use crate::config::units::Dur;

/// `sleep: 2s`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SleepModel(pub Dur);

impl StepKind for SleepModel {
    fn build(&self, _: &At<'_>, _: &mut Cx) -> Option<Action> {
        Some(Action::Sleep(self.0 .0))
    }
}

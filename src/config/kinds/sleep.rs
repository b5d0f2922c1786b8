//! `sleep` steps: a pause (between a send and what should follow, or to pace a flow).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

use super::{At, StepKind};
use crate::config::build::Cx;
use crate::config::scenario::Action;
use crate::config::units::Dur;

/// `sleep: 2s`.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct SleepModel(pub Dur);

/// In the schema, a duration as written.
impl JsonSchema for SleepModel {
    fn inline_schema() -> bool {
        Dur::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        Dur::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        Dur::json_schema(generator)
    }
}

impl StepKind for SleepModel {
    fn build(&self, _: &At<'_>, _: &mut Cx) -> Option<Action> {
        Some(Action::Sleep(self.0 .0))
    }
}

//! The names sonde accepts from users — scenario names, regions, label names — checked the same
//! way wherever they are written (scenario files, agent settings, alert blocks, flags).

/// A scenario name: what the `scenario` label and the API's paths carry.
pub fn valid_scenario_name(n: &str) -> bool {
    (1..=128).contains(&n.chars().count())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
}

/// A region name, as `--region`, agent settings and scenarios' `regions:` lists write it.
pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `--replica`: one of several agents in a region that probe the same scenarios (HA pairs).
pub fn parse_replica(s: &str) -> Result<String, String> {
    if valid_region(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} — expected a replica name of a-z, 0-9, _ and -"
        ))
    }
}

/// `--region`: the same names scenarios' `regions:` lists accept, so every agent is selectable.
pub fn parse_region(s: &str) -> Result<String, String> {
    if valid_region(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} — expected a region name of a-z, 0-9, _ and - (as in scenarios' regions: lists)"
        ))
    }
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label name a user may set: valid, and not in the `__` namespace Prometheus keeps for itself.
pub fn valid_user_label_name(n: &str) -> bool {
    valid_label_name(n) && !n.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert!(valid_label_name("team_1") && valid_label_name("__x"));
        assert!(!valid_label_name("1x") && !valid_label_name("a-b") && !valid_label_name(""));
        assert!(valid_user_label_name("team") && !valid_user_label_name("__x"));
    }

    #[test]
    fn regions() {
        assert!(valid_region("eu-west_1"));
        assert!(!valid_region("EU") && !valid_region("") && !valid_region(&"a".repeat(65)));
        assert!(parse_region("x y")
            .unwrap_err()
            .contains("expected a region name"));
    }
}

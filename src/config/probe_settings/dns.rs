//! DNS checks as blackbox_exporter spells them — `valid_rcodes` and the `validate_*_rrs` lists —
//! compiled once for dns steps and dns modules. The rcode names are `sonde_probes`' table.

use std::str::FromStr;

use sonde_probes::dns::{DNSClass, DnsChecks, ResponseCode, RrChecks, RCODES};

use super::Dialect;
use crate::config::build::Cx;
use crate::config::locate::{index_path, key_path};
use crate::config::model::RrValidateModel;
use crate::config::suggest;

/// The DNS classes a query may name, for "did you mean" hints.
const DNS_CLASSES: [&str; 5] = ["IN", "CH", "HS", "NONE", "ANY"];

/// A `query_class` (at `at`): `lookup` is the name looked up (upper case), `written` what the
/// error shows.
pub fn query_class(lookup: &str, written: &str, at: &str, cx: &mut Cx) -> Option<DNSClass> {
    match DNSClass::from_str(lookup) {
        Ok(c) => Some(c),
        Err(_) => {
            cx.err_value(
                at,
                format!(
                    "unknown DNS class `{written}`{}",
                    suggest::hint(lookup, &DNS_CLASSES)
                ),
            );
            None
        }
    }
}

/// What a dns step or module checks in the answer; `path` is where the step or module is.
pub struct DnsCheckModels<'a> {
    pub valid_rcodes: Option<&'a Vec<String>>,
    pub answer: Option<&'a RrValidateModel>,
    pub authority: Option<&'a RrValidateModel>,
    pub additional: Option<&'a RrValidateModel>,
}

pub fn dns_checks(m: DnsCheckModels<'_>, path: &str, dialect: Dialect, cx: &mut Cx) -> DnsChecks {
    let p = |k: &str| key_path(path, k);
    DnsChecks {
        valid_rcodes: rcodes(m.valid_rcodes, &p("valid_rcodes"), dialect, cx),
        answer: rr_checks(m.answer, &p("validate_answer_rrs"), cx),
        authority: rr_checks(m.authority, &p("validate_authority_rrs"), cx),
        additional: rr_checks(m.additional, &p("validate_additional_rrs"), cx),
    }
}

/// `valid_rcodes` (at `path`), by miekg/dns names, any case. Scenarios forgive spaces around a
/// name; blackbox modules do not, as blackbox_exporter does not.
pub fn rcodes(
    list: Option<&Vec<String>>,
    path: &str,
    dialect: Dialect,
    cx: &mut Cx,
) -> Vec<ResponseCode> {
    let mut out = Vec::new();
    for (i, r) in list.into_iter().flatten().enumerate() {
        let name = match dialect {
            Dialect::Scenario => r.trim(),
            Dialect::Blackbox => r.as_str(),
        };
        match sonde_probes::dns::rcode_from_name(name) {
            Some(c) => out.push(c),
            None => {
                let names: Vec<&str> = RCODES.iter().map(|(n, _)| *n).collect();
                let hint = suggest::hint(&name.to_ascii_uppercase(), &names);
                let msg = match dialect {
                    Dialect::Scenario => format!("unknown DNS rcode `{r}`{hint}"),
                    Dialect::Blackbox => format!("invalid rcode `{r}`{hint}"),
                };
                cx.err_value(&index_path(path, i), msg);
            }
        }
    }
    out
}

/// blackbox's `validate_*_rrs` lists, compiled; scenario dns steps and blackbox dns modules spell
/// them the same way.
pub fn rr_checks(m: Option<&RrValidateModel>, path: &str, cx: &mut Cx) -> RrChecks {
    let Some(m) = m else {
        return RrChecks::default();
    };
    let p = |k: &str| key_path(path, k);
    RrChecks {
        fail_if_matches: cx.regexes(
            m.fail_if_matches_regexp.as_ref(),
            &p("fail_if_matches_regexp"),
        ),
        fail_if_all_match: cx.regexes(
            m.fail_if_all_match_regexp.as_ref(),
            &p("fail_if_all_match_regexp"),
        ),
        fail_if_not_matches: cx.regexes(
            m.fail_if_not_matches_regexp.as_ref(),
            &p("fail_if_not_matches_regexp"),
        ),
        fail_if_none_matches: cx.regexes(
            m.fail_if_none_matches_regexp.as_ref(),
            &p("fail_if_none_matches_regexp"),
        ),
    }
}

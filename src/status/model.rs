//! What the overview lists: every scenario's place (group), state and the filters and paging a
//! request asks for, from the scheduler's in-memory states (cheap for 10,000 scenarios); the
//! history is read only for the rows of the page shown.

use std::sync::Arc;

use crate::runtime::scheduler::ScenarioState;

/// How the overview groups scenarios (`?by=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// `group:`, else the first tag, else the region selectors.
    Group,
    Tag,
    Region,
}

impl GroupBy {
    pub fn parse(s: &str) -> GroupBy {
        match s {
            "tag" => GroupBy::Tag,
            "region" => GroupBy::Region,
            _ => GroupBy::Group,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Group => "group",
            GroupBy::Tag => "tag",
            GroupBy::Region => "region",
        }
    }
}

/// A scenario's state now, from its last run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Failing,
    Pending,
    Passing,
}

impl State {
    pub fn of(st: &ScenarioState) -> State {
        match st.last() {
            None => State::Pending,
            Some(r) if r.success() => State::Passing,
            Some(_) => State::Failing,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Failing => "failing",
            State::Pending => "pending",
            State::Passing => "passing",
        }
    }
}

/// The group `st` is listed under.
pub fn group_of(st: &ScenarioState, by: GroupBy) -> String {
    let sc = &st.scenario;
    let regions = || (!sc.regions.is_empty()).then(|| sc.regions.join(", "));
    let found = match by {
        GroupBy::Group => sc
            .group
            .clone()
            .or_else(|| sc.tags.first().cloned())
            .or_else(regions),
        GroupBy::Tag => sc.tags.first().cloned(),
        GroupBy::Region => regions(),
    };
    found.unwrap_or_else(|| "other".into())
}

/// The request's filters (`?q=&state=&group=&by=&page=`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub q: String,
    pub state: Option<State>,
    pub group: Option<String>,
    pub by: Option<GroupBy>,
    pub page: usize,
    pub span: String,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            // Bounded: a query string is hostile input too.
            let v: String = v.chars().take(200).collect();
            match k.as_ref() {
                "q" => q.q = v.trim().to_string(),
                "state" => {
                    q.state = match v.as_str() {
                        "failing" => Some(State::Failing),
                        "passing" => Some(State::Passing),
                        "pending" => Some(State::Pending),
                        _ => None,
                    }
                }
                "group" if !v.is_empty() => q.group = Some(v),
                "by" => q.by = Some(GroupBy::parse(&v)),
                "page" => q.page = v.parse::<usize>().unwrap_or(1).clamp(1, 100_000) - 1,
                "span" => q.span = v,
                _ => {}
            }
        }
        q
    }

    pub fn by(&self) -> GroupBy {
        self.by.unwrap_or(GroupBy::Group)
    }

    /// The query string for the same view on page `page` (1-based; 0 leaves it out).
    pub fn to_query(&self, page: usize) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            s.append_pair("q", &self.q);
        }
        if let Some(st) = self.state {
            s.append_pair("state", st.as_str());
        }
        if let Some(g) = &self.group {
            s.append_pair("group", g);
        }
        if let Some(b) = self.by {
            s.append_pair("by", b.as_str());
        }
        if !self.span.is_empty() {
            s.append_pair("span", &self.span);
        }
        if page > 1 {
            s.append_pair("page", &page.to_string());
        }
        s.finish()
    }

    fn matches(&self, st: &ScenarioState, group: &str, state: State) -> bool {
        if self.state.is_some_and(|s| s != state) {
            return false;
        }
        if self.group.as_deref().is_some_and(|g| g != group) {
            return false;
        }
        if self.q.is_empty() {
            return true;
        }
        let q = self.q.to_lowercase();
        let sc = &st.scenario;
        sc.name.to_lowercase().contains(&q)
            || group.to_lowercase().contains(&q)
            || sc.tags.iter().any(|t| t.to_lowercase().contains(&q))
    }
}

/// One listed scenario before the history is read.
pub struct Listed {
    pub st: Arc<ScenarioState>,
    pub group: String,
    pub state: State,
}

/// Counts over everything the viewer may see, whatever the filters.
#[derive(Default)]
pub struct Counts {
    pub total: usize,
    pub failing: usize,
    pub passing: usize,
    pub pending: usize,
    /// Every group with (scenarios, failing), sorted by name.
    pub groups: Vec<(String, usize, usize)>,
}

/// Scenarios per page: enough to scan, small enough that a page stays well under 1 MB.
pub const PER_PAGE: usize = 50;

/// The page of `states` that `query` asks for (sorted by group, failing first, then name), the
/// number of matches, and the counts.
pub fn select(
    states: Vec<Arc<ScenarioState>>,
    public: bool,
    query: &Query,
) -> (Vec<Listed>, usize, Counts) {
    let by = query.by();
    let mut counts = Counts::default();
    let mut groups: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut matched: Vec<Listed> = Vec::new();
    for st in states {
        if public && !st.scenario.public {
            continue;
        }
        let state = State::of(&st);
        let group = group_of(&st, by);
        counts.total += 1;
        match state {
            State::Failing => counts.failing += 1,
            State::Passing => counts.passing += 1,
            State::Pending => counts.pending += 1,
        }
        let g = groups.entry(group.clone()).or_default();
        g.0 += 1;
        g.1 += usize::from(state == State::Failing);
        if query.matches(&st, &group, state) {
            matched.push(Listed { st, group, state });
        }
    }
    counts.groups = groups.into_iter().map(|(k, (n, f))| (k, n, f)).collect();
    matched.sort_by(|a, b| {
        (&a.group, a.state, &a.st.scenario.name).cmp(&(&b.group, b.state, &b.st.scenario.name))
    });
    let n = matched.len();
    let page: Vec<Listed> = matched
        .into_iter()
        .skip(query.page * PER_PAGE)
        .take(PER_PAGE)
        .collect();
    (page, n, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_reads_back_what_it_writes_and_ignores_nonsense() {
        let q = Query::parse(Some(
            "q=%3Cx%3E&state=failing&group=a%26b&by=tag&page=3&span=7d&x=1",
        ));
        assert_eq!(q.q, "<x>");
        assert_eq!(q.state, Some(State::Failing));
        assert_eq!(q.group.as_deref(), Some("a&b"));
        assert_eq!(q.by(), GroupBy::Tag);
        assert_eq!(q.page, 2);
        let again = Query::parse(Some(&q.to_query(3)));
        assert_eq!((again.q, again.group, again.page), (q.q, q.group, 2));
        let junk = Query::parse(Some("state=on&page=-1&by=%00&page=99999999999999999999999"));
        assert_eq!(
            (junk.state, junk.by(), junk.page),
            (None, GroupBy::Group, 0)
        );
        let long = Query::parse(Some(&format!("q={}", "a".repeat(10_000))));
        assert_eq!(long.q.len(), 200);
    }
}

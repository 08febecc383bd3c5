//! Which line of a config file a field is on, so an error points at it (`manifold.toml:12:
//! tenants[0].plugin.memory: ...`). The file is parsed again with spans, only when there is an
//! error to place.

use toml::de::{DeTable, DeValue};

/// The line (from 1) of `field` (`tenants[1].plugin.memory`) in `text`; for a field the file
/// does not set, the line of the nearest enclosing table or array element that it does.
pub fn line_of(text: &str, field: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for step in steps(field)? {
        let next = match (step, table, value) {
            (Step::Key(k), Some(t), _) => t
                .iter()
                .find(|(name, _)| name.get_ref() == k)
                .map(|(_, v)| v),
            (Step::Index(i), _, Some(DeValue::Array(a))) => a.get(i),
            _ => None,
        };
        let Some(v) = next else { break };
        span = Some(v.span());
        value = Some(v.get_ref());
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    let start = span?.start.min(text.len());
    Some(text[..start].bytes().filter(|&b| b == b'\n').count() + 1)
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `tenants[1].plugin` → `tenants`, `1`, `plugin`; `None` for `-` (the whole file).
fn steps(field: &str) -> Option<Vec<Step<'_>>> {
    if field == "-" || field.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for part in field.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some((n, after)) = rest.split_once(']') {
            out.push(Step::Index(n.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_on_their_lines() {
        let text = "[server]\nlisten = [\"a\", \"b\"]\n\n[[tenants]]\nid = \"x\"\n\n[[tenants]]\nid = \"y\"\n[tenants.plugin]\nmemory = \"1 KiB\"\n";
        assert_eq!(line_of(text, "server.listen"), Some(2));
        assert_eq!(line_of(text, "server.listen[1]"), Some(2));
        assert_eq!(line_of(text, "tenants[1].id"), Some(8));
        assert_eq!(line_of(text, "tenants[1].plugin.memory"), Some(10));
        // not set: the nearest thing that is (the tenant's plugin table)
        assert_eq!(line_of(text, "tenants[1].plugin.file"), Some(9));
        assert_eq!(line_of(text, "-"), None);
        assert_eq!(line_of("not = [toml", "not"), None);
    }
}

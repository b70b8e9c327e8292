//! A minimal reader for the YAML of compose.yaml (there is no YAML crate
//! in the tree): block maps and lists of scalars, comments, quotes, flow
//! lists as one scalar and `>-` folded scalars. Anything else is refused, so the test cannot silently skip
//! what it does not understand.

/// A YAML node: what compose.yaml uses of YAML.
#[derive(Debug, Clone)]
pub(super) enum Yaml {
    Scalar(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub(super) fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(m) => m,
            _ => &[],
        }
    }

    pub(super) fn items(&self) -> Vec<String> {
        match self {
            Yaml::List(l) => l
                .iter()
                .filter_map(Yaml::scalar)
                .map(str::to_owned)
                .collect(),
            Yaml::Scalar(s) if s.starts_with('[') => s
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|i| unquote(i.trim()).to_owned())
                .filter(|i| !i.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn scalar(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

pub(super) fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

pub(super) fn parse_yaml(text: &str) -> Yaml {
    let lines: Vec<(usize, String)> = text
        .lines()
        .map(|l| {
            let content = match l.find(" #") {
                Some(i) if !l[..i].contains('"') => &l[..i],
                _ => l,
            };
            (
                content.len() - content.trim_start().len(),
                content.trim().to_owned(),
            )
        })
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut at = 0;
    let doc = parse_block(&lines, &mut at, 0);
    assert_eq!(
        at,
        lines.len(),
        "compose.yaml: cannot read {:?}",
        lines.get(at)
    );
    doc
}

fn parse_block(lines: &[(usize, String)], at: &mut usize, indent: usize) -> Yaml {
    let is_list = lines[*at].1.starts_with("- ");
    let mut map = Vec::new();
    let mut list = Vec::new();
    while *at < lines.len() && lines[*at].0 == indent {
        let line = &lines[*at].1;
        let value = line
            .strip_prefix("- ")
            .or_else(|| line.split_once(": ").map(|(_, v)| v))
            .unwrap_or("");
        for bad in ["&", "*", "<<", "|", "!"] {
            assert!(
                !value.starts_with(bad) && !line.starts_with(bad),
                "compose.yaml: unsupported {line:?}"
            );
        }
        assert!(
            !value.starts_with('>') || value == ">-",
            "compose.yaml: unsupported {line:?}"
        );
        *at += 1;
        if is_list {
            let item = line.strip_prefix("- ").expect("a list item");
            if item == ">-" {
                list.push(Yaml::Scalar(folded(lines, at, indent)));
            } else {
                assert!(
                    !item.contains(": ") || item.starts_with('"') || item.starts_with('['),
                    "compose.yaml: maps in lists are not supported: {line:?}"
                );
                list.push(Yaml::Scalar(unquote(item).to_owned()));
            }
        } else {
            let (key, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("compose.yaml: not a key: {line:?}"));
            let value = value.trim();
            let child = if value == ">-" {
                Yaml::Scalar(folded(lines, at, indent))
            } else if !value.is_empty() {
                Yaml::Scalar(unquote(value).to_owned())
            } else if *at < lines.len() && lines[*at].0 > indent {
                let deeper = lines[*at].0;
                parse_block(lines, at, deeper)
            } else {
                Yaml::Map(Vec::new())
            };
            map.push((unquote(key.trim()).to_owned(), child));
        }
    }
    assert!(
        *at >= lines.len() || lines[*at].0 < indent,
        "compose.yaml: bad indentation at {:?}",
        lines[*at]
    );
    if is_list {
        Yaml::List(list)
    } else {
        Yaml::Map(map)
    }
}

fn folded(lines: &[(usize, String)], at: &mut usize, indent: usize) -> String {
    let mut parts = Vec::new();
    while *at < lines.len() && lines[*at].0 > indent {
        parts.push(lines[*at].1.clone());
        *at += 1;
    }
    parts.join(" ")
}

#[test]
fn the_compose_reader_refuses_what_it_does_not_understand() {
    let ok = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - \"y:z\"\nd: [1, 2]\n");
    assert_eq!(ok.get("a").unwrap().get("b").unwrap().scalar(), Some("1"));
    assert_eq!(ok.get("a").unwrap().get("c").unwrap().items(), ["x", "y:z"]);
    assert_eq!(ok.get("d").unwrap().items(), ["1", "2"]);
    for bad in [
        "a:\n  - k: v\n",
        "a: &x\n  b: 1\n",
        "a:\n    b: 1\n  c: 2\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_yaml(bad)).is_err(),
            "{bad:?} was accepted"
        );
    }
}

//! Every key the configuration parser accepts is documented, in
//! `examples/sluice.toml` and in the README's tables, and nothing is
//! documented that the parser refuses.
//!
//! The accepted keys are asked of the parser itself, not listed here: every
//! table of the configuration refuses unknown keys (serde's
//! `deny_unknown_fields`), and the refusal names the keys it expected. So
//! each table is probed with an unknown key through the real loader
//! (`Config::load`), its keys collected, and each key is probed in turn as
//! a table and as an array of tables to find the nested ones. A table
//! whose `kind` picks its keys (`[bridges.sink]`) answers a probe without
//! `kind` with "missing field `kind`", and one with an unknown `kind` with
//! the kinds it knows; each kind is then probed on its own. A key added to
//! any table is thereby a key this test demands documentation for.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use sluice::config::Config;

/// The key no table has: its refusal lists the keys the table has.
const PROBE: &str = "zz_probe";

/// A table and which of its kinds (`kind = "http"`) a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Variant {
    /// The key that picks the kind (`kind`).
    tag: String,
    value: String,
}

/// One key of one table: `bridges.sink` + `kind = "mqtt"` + `client_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// Dotted path of the table, "" for the top level.
    table: String,
    /// The kind of the tagged table the key sits in or under, if any.
    variant: Option<Variant>,
    name: String,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.table.as_str() {
            "" => write!(f, "`{}`", self.name)?,
            t => write!(f, "`{t}.{}`", self.name)?,
        }
        if let Some(v) = &self.variant {
            write!(f, " (with {} = \"{}\")", v.tag, v.value)?;
        }
        Ok(())
    }
}

/// A table whose kind picks its keys, and the key that holds the kind:
/// (`bridges.sink`, `kind`).
type TaggedTable = (String, String);

/// One step of the path to a table: its name, whether it is an array of
/// tables, and the kind set in it (for tagged tables).
#[derive(Debug, Clone)]
struct Step {
    name: String,
    array: bool,
    kind: Option<Variant>,
}

/// What a probe found at a path.
enum Shape {
    /// A table with these keys.
    Table(Vec<String>),
    /// A table whose keys depend on `tag`, one of `values`.
    Tagged { tag: String, values: Vec<String> },
    /// A value (a number, a string, a list, a free-form map of strings).
    Value,
}

/// Loads configuration files through the broker's own loader.
struct Prober {
    dir: tempfile::TempDir,
}

impl Prober {
    fn new() -> Prober {
        Prober {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The loader's error for `body` placed in the table at `path` (with
    /// the tables leading to it), or None if the file loads.
    fn load(&self, path: &[Step], body: &str) -> Option<String> {
        let mut toml = String::new();
        for i in 0..path.len() {
            let dotted = dotted(&path[..=i]);
            if path[i].array {
                toml.push_str(&format!("[[{dotted}]]\n"));
            } else {
                toml.push_str(&format!("[{dotted}]\n"));
            }
            if let Some(v) = &path[i].kind {
                toml.push_str(&format!("{} = \"{}\"\n", v.tag, v.value));
            }
        }
        toml.push_str(body);
        toml.push('\n');
        let file = self.dir.path().join("probe.toml");
        std::fs::write(&file, &toml).unwrap();
        Config::load(Some(&file)).err().map(|e| e.to_string())
    }

    fn shape(&self, path: &[Step]) -> Shape {
        let Some(err) = self.load(path, &format!("{PROBE} = 1")) else {
            panic!(
                "`{}` accepts the unknown key `{PROBE}`: its struct needs \
                 #[serde(deny_unknown_fields)] for the keys to be checked",
                dotted(path)
            );
        };
        if let Some(keys) = listed_after(&err, &format!("unknown field `{PROBE}`")) {
            return Shape::Table(keys);
        }
        if let Some(tag) = missing_tag(&err) {
            let err = self
                .load(path, &format!("{tag} = \"{PROBE}\""))
                .unwrap_or_default();
            let Some(values) = listed_after(&err, &format!("unknown variant `{PROBE}`")) else {
                panic!(
                    "`{}` took the unknown key `{PROBE}` and asked for `{tag}`: \
                     its struct needs #[serde(deny_unknown_fields)]",
                    dotted(path)
                );
            };
            return Shape::Tagged { tag, values };
        }
        // Refused for its type (a number, a string, a list, an enum, a map
        // of strings given a number): not a table of keys.
        Shape::Value
    }

    /// Every key under `path` (whose shape is `shape`), into `keys`.
    fn walk(&self, path: &[Step], variant: Option<&Variant>, shape: Shape, keys: &mut Vec<Key>) {
        let table = dotted(path);
        match shape {
            Shape::Value => {}
            Shape::Table(names) => {
                for name in names {
                    keys.push(Key {
                        table: table.clone(),
                        variant: variant.cloned(),
                        name: name.clone(),
                    });
                    for array in [false, true] {
                        let mut child = path.to_vec();
                        child.push(Step {
                            name: name.clone(),
                            array,
                            kind: None,
                        });
                        match self.shape(&child) {
                            Shape::Value => continue,
                            nested => {
                                self.walk(&child, variant, nested, keys);
                                break;
                            }
                        }
                    }
                }
            }
            Shape::Tagged { tag, values } => {
                for value in values {
                    let v = Variant {
                        tag: tag.clone(),
                        value,
                    };
                    keys.push(Key {
                        table: table.clone(),
                        variant: Some(v.clone()),
                        name: tag.clone(),
                    });
                    let mut kinded = path.to_vec();
                    if let Some(last) = kinded.last_mut() {
                        last.kind = Some(v.clone());
                    }
                    let shape = self.shape(&kinded);
                    self.walk(&kinded, Some(&v), shape, keys);
                }
            }
        }
    }
}

fn dotted(path: &[Step]) -> String {
    path.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// The backquoted names serde lists after `lead` ("unknown field `x`,
/// expected one of `a`, `b`"), without the loader's " for key `...`".
fn listed_after(err: &str, lead: &str) -> Option<Vec<String>> {
    let rest = &err[err.find(lead)? + lead.len()..];
    let rest = rest.split(" for key `").next().unwrap_or(rest);
    Some(backquoted(rest))
}

/// The field a table without its tag misses: the loader says
/// `missing configuration field "bridges[0]sink.kind"`.
fn missing_tag(err: &str) -> Option<String> {
    let rest = err.split("missing configuration field \"").nth(1)?;
    let field = rest.split('"').next()?;
    Some(field.rsplit('.').next().unwrap_or(field).to_owned())
}

/// Every key the parser accepts, asked of the parser.
fn accepted_keys() -> Vec<Key> {
    let prober = Prober::new();
    let mut keys = Vec::new();
    let root = prober.shape(&[]);
    prober.walk(&[], None, root, &mut keys);
    keys.sort();
    keys
}

/// The tables whose kind picks their keys (`bridges.sink` → `kind`).
fn tags(accepted: &[Key]) -> Vec<TaggedTable> {
    let mut tags: Vec<TaggedTable> = accepted
        .iter()
        .filter_map(|k| {
            let v = k.variant.as_ref()?;
            (k.name == v.tag).then(|| (k.table.clone(), v.tag.clone()))
        })
        .collect();
    tags.dedup();
    tags
}

/// Where the kind set in a tagged table applies: in it and under it.
#[derive(Default)]
struct KindScope {
    current: Option<(String, Variant)>,
}

impl KindScope {
    /// A new table starts: it leaves the scope unless it is under the
    /// tagged table (a new `[bridges.sink]` is a new sink).
    fn enter(&mut self, table: &str) {
        if let Some((tagged, _)) = &self.current {
            if table == tagged || !within(table, tagged) {
                self.current = None;
            }
        }
    }

    fn variant(&self) -> Option<Variant> {
        self.current.as_ref().map(|(_, v)| v.clone())
    }
}

/// The keys `examples/sluice.toml` documents: key lines and table headers,
/// commented out or not, under the table they appear in.
fn example_keys(text: &str, tags: &[TaggedTable]) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    let mut scope = KindScope::default();
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
        if let Some(header) = table_header(line) {
            scope.enter(&header);
            let (parent, name) = header.rsplit_once('.').unwrap_or(("", &header));
            keys.insert(Key {
                table: parent.to_owned(),
                variant: scope.variant(),
                name: name.to_owned(),
            });
            table = header;
            continue;
        }
        let Some((name, value)) = key_line(line) else {
            continue;
        };
        if tags.iter().any(|(t, tag)| *t == table && tag == name) {
            let variant = Variant {
                tag: name.to_owned(),
                value: first_quoted(value),
            };
            scope.current = Some((table.clone(), variant));
        }
        keys.insert(Key {
            table: table.clone(),
            variant: scope.variant(),
            name: name.to_owned(),
        });
    }
    keys
}

/// Whether `table` is `outer` or a table under it.
fn within(table: &str, outer: &str) -> bool {
    table == outer || table.starts_with(&format!("{outer}."))
}

/// The string a TOML value starts with: `"mqtt"   # note` → `mqtt`.
fn first_quoted(value: &str) -> String {
    value.split('"').nth(1).unwrap_or_default().to_owned()
}

/// `[a.b]` or `[[a.b]]` at the start of a line → `a.b`.
fn table_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    let name = &inner[..end];
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    ok.then(|| name.to_owned())
}

/// `name = value` with a bare lower-case key → (name, value).
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (bare && !value.trim().is_empty()).then_some((name, value))
}

/// The keys the README's configuration section documents. Each table of
/// keys follows a bold line naming its TOML table (`**`[limits]`**`, and
/// for a kind `**`[bridges.sink]` with `kind = "http"`**`); the tables
/// before the first such line are top-level keys. A row's first cell holds
/// its keys, each in backquotes.
fn readme_keys(text: &str, tags: &[TaggedTable]) -> BTreeSet<Key> {
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Configure\n"))
        .expect("README has a `## Configure` section");
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    let mut variant = None;
    for line in section.lines() {
        if line.starts_with("**") {
            let quoted = backquoted(line);
            let Some(header) = quoted.iter().find_map(|q| table_header(q)) else {
                continue;
            };
            variant = quoted.iter().find_map(|q| {
                let (tag, value) = key_line(q)?;
                let tagged = tags.iter().any(|(t, g)| g == tag && within(&header, t));
                tagged.then(|| Variant {
                    tag: tag.to_owned(),
                    value: first_quoted(value),
                })
            });
            let (parent, name) = header.rsplit_once('.').unwrap_or(("", &header));
            let is_tagged_table = tags.iter().any(|(t, _)| *t == header);
            keys.insert(Key {
                table: parent.to_owned(),
                variant: variant.clone().filter(|_| !is_tagged_table),
                name: name.to_owned(),
            });
            table = header;
        } else if let Some(cell) = line.strip_prefix('|').and_then(|l| l.split('|').next()) {
            for name in backquoted(cell) {
                if key_line(&format!("{name} = x")).is_some() {
                    keys.insert(Key {
                        table: table.clone(),
                        variant: variant.clone(),
                        name,
                    });
                }
            }
        }
    }
    keys
}

/// The names between backquotes in `text`.
fn backquoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// What `documented` lacks of `accepted`, and what it documents beyond
/// (keys of tables the parser knows, which it does not accept), as lines.
fn differences(accepted: &[Key], documented: &BTreeSet<Key>) -> Vec<String> {
    let mut out: Vec<String> = accepted
        .iter()
        .filter(|k| !documented.contains(k))
        .map(|k| format!("not documented: {k}"))
        .collect();
    let tables: BTreeSet<(&str, Option<&Variant>)> = accepted
        .iter()
        .map(|k| (k.table.as_str(), k.variant.as_ref()))
        .collect();
    out.extend(
        documented
            .iter()
            .filter(|k| tables.contains(&(k.table.as_str(), k.variant.as_ref())))
            .filter(|k| !accepted.contains(k))
            .map(|k| format!("documented but not accepted: {k}")),
    );
    out
}

#[test]
fn the_probe_finds_every_table_of_the_configuration() {
    let accepted = accepted_keys();
    // Not a list to maintain: a check that the probing reached a table at
    // each level of nesting and each kind of sink, so the test below
    // cannot pass by finding nothing.
    for (table, variant, name) in [
        ("", None, "worker_threads"),
        ("listeners.tls", None, "cert"),
        ("bridges", None, "transform"),
        ("bridges.sink", Some("http"), "url"),
        ("bridges.sink", Some("kafka"), "bootstrap_servers"),
        ("bridges.sink.tls", Some("mqtt"), "ca_file"),
        ("bridges.sink.inbound", Some("mqtt"), "filter"),
    ] {
        let key = Key {
            table: table.to_owned(),
            variant: variant.map(|v| Variant {
                tag: "kind".to_owned(),
                value: v.to_owned(),
            }),
            name: name.to_owned(),
        };
        assert!(accepted.contains(&key), "{key} not found in {accepted:#?}");
    }
}

/// Fails with every difference between the keys the parser accepts and
/// those `read` finds in `file`; `rule` says what a key needs there.
fn assert_documented(file: &str, read: fn(&str, &[TaggedTable]) -> BTreeSet<Key>, rule: &str) {
    let accepted = accepted_keys();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let wrong = differences(&accepted, &read(&text, &tags(&accepted)));
    assert!(
        wrong.is_empty(),
        "{}: {rule}:\n{}",
        path.display(),
        wrong.join("\n")
    );
}

#[test]
fn the_example_configuration_documents_every_accepted_key() {
    assert_documented(
        "examples/sluice.toml",
        example_keys,
        "every key the parser accepts needs a line (commented out is fine) \
         under its table, with its default and meaning",
    );
}

#[test]
fn the_readme_tables_document_every_accepted_key() {
    assert_documented(
        "README.md",
        readme_keys,
        "every key the parser accepts needs a row in the table of its TOML \
         table (section Configure)",
    );
}

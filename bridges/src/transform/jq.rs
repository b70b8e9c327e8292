//! Compiling and running a jq rule with jaq.
//!
//! Rules get jq's core, jaq's standard library and the JSON functions, minus
//! what would let a rule reach outside the message:
//! - `env` and `$ENV` are absent, so a rule cannot read the process
//!   environment (secrets live there); using either is a compile error;
//! - `import` / `include` fail: the loader reads no files;
//! - `input` / `inputs` are absent (there is one input per run);
//! - `halt` / `halt_error` would exit the process through jaq's usual
//!   runner; we never call that runner and turn a halt into a runtime error.
//!
//! Every run is metered (see [`super::budget`]): the context jaq clones on
//! each function call counts a step, and `range` counts one per item.

use jaq_core::compile::Undefined;
use jaq_core::data::{DataT, HasLut};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{v, Fun};
use jaq_core::{Compiler, Ctx, Exn, Lut, Native, ValX, Vars};
use jaq_json::Val;

use super::budget;

/// jaq's data kind for rules: JSON values, and a context that meters.
pub(crate) struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = MeteredLut<'a>;
}

/// The compiled rule's lookup table; cloning it (jaq does on every call of
/// a function, and per output of a generator feeding one) is a step.
pub(crate) struct MeteredLut<'a>(&'a Lut<Metered>);

impl Clone for MeteredLut<'_> {
    fn clone(&self) -> Self {
        budget::tick();
        MeteredLut(self.0)
    }
}

impl<'a> HasLut<'a, Metered> for MeteredLut<'a> {
    fn lut(&self) -> &'a Lut<Metered> {
        self.0
    }
}

/// Native filters left out of the library, by name.
const DENIED: &[&str] = &["env"];

/// `range/3` as jaq-core has it, plus a step per item: its loop clones no
/// context, so `[range(1e12)]` would otherwise run unmetered.
fn metered_range() -> Fun<Metered> {
    (
        "range",
        v(3),
        Native::new(|mut cv| {
            use std::cmp::Ordering::{Equal, Greater, Less};
            let by = cv.0.pop_var();
            let to = cv.0.pop_var();
            let mut from: ValX<Val> = Ok(cv.0.pop_var());
            let zero: Val = 0isize.into();
            let cmp = by.partial_cmp(&zero).unwrap_or(Equal);
            Box::new(std::iter::from_fn(move || {
                budget::tick();
                match from.clone() {
                    Ok(x) => match cmp {
                        Greater => x < to,
                        Less => x > to,
                        Equal => x != to,
                    }
                    .then(|| std::mem::replace(&mut from, (x + by.clone()).map_err(Exn::from))),
                    e @ Err(_) => {
                        from = Ok(to.clone());
                        Some(e)
                    }
                }
            }))
        }),
    )
}

/// Longest runtime error message kept: jq errors can quote whole values.
const MAX_ERROR_LEN: usize = 512;

/// A compiled rule. Holds no jq values, so it is `Send + Sync`.
pub(crate) struct Jq(jaq_core::Filter<Metered>);

impl Jq {
    /// Compiles `code`; the error names each problem with its line and
    /// column (1-based, columns in characters).
    pub(crate) fn compile(code: &str) -> Result<Jq, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs::<Metered>()
            .filter(|(name, args, _)| !(*name == "range" && args.len() == 3))
            .chain([metered_range()])
            .chain(jaq_std::funs::<Metered>())
            .chain(jaq_json::funs::<Metered>())
            .filter(|(name, _, _)| !DENIED.contains(name));
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                let msgs = errs.into_iter().flat_map(|(_, e)| load_error(code, e));
                msgs.collect::<Vec<_>>().join("; ")
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                let msgs = errs.into_iter().flat_map(|(_, es)| es);
                let msgs = msgs.map(|(name, undef)| undefined(code, name, &undef));
                msgs.collect::<Vec<_>>().join("; ")
            })?;
        Ok(Jq(filter))
    }

    /// Runs the rule on `input` and returns its first output, if any.
    /// Later outputs are never computed. Call it under [`budget::run`].
    pub(crate) fn first(&self, input: Val) -> Result<Option<Val>, String> {
        let ctx = Ctx::<Metered>::new(MeteredLut(&self.0.lut), Vars::new([]));
        match self.0.id.run((ctx, input)).next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(exn)) => Err(match exn.get_err() {
                Ok(err) => truncate(err.to_string()),
                Err(exn) => match exn.get_halt() {
                    Ok(code) => format!("the rule called halt (exit code {code})"),
                    Err(_) => "jq control flow escaped the rule".to_owned(),
                },
            }),
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn load_error(code: &str, e: load::Error<&str>) -> Vec<String> {
    match e {
        load::Error::Io(errs) => errs
            .into_iter()
            .map(|(path, why)| format!("cannot load module {path:?}{}: {why}", at(code, path)))
            .collect(),
        load::Error::Lex(errs) => errs
            .into_iter()
            .map(|(expect, found)| {
                // An unclosed delimiter is best reported where it opens.
                let pos = match expect {
                    load::lex::Expect::Delim(open) => open,
                    _ => found,
                };
                format!(
                    "jq syntax error{}: expected {}, found {}",
                    at(code, pos),
                    expect.as_str(),
                    snippet(found)
                )
            })
            .collect(),
        load::Error::Parse(errs) => errs
            .into_iter()
            .map(|(expect, found)| {
                format!(
                    "jq syntax error{}: expected {}, found {}",
                    at(code, found),
                    expect.as_str(),
                    snippet(found)
                )
            })
            .collect(),
    }
}

fn undefined(code: &str, name: &str, undef: &Undefined) -> String {
    let what = match undef {
        Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
        other => format!("{} `{name}`", other.as_str()),
    };
    let why = if name == "env" || name == "$ENV" {
        " (rules cannot read the process environment)"
    } else {
        ""
    };
    format!("undefined {what}{}{why}", at(code, name))
}

/// " at line L, column C" if `part` lies within `code` (it may instead be
/// in the standard library's source), else "".
fn at(code: &str, part: &str) -> String {
    let (base, start) = (code.as_ptr() as usize, part.as_ptr() as usize);
    if start < base || start + part.len() > base + code.len() {
        return String::new();
    }
    let Some(before) = code.get(..start - base) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!(" at line {line}, column {column}")
}

/// The start of what the parser found, for the message.
fn snippet(found: &str) -> String {
    let first_line = found.lines().next().unwrap_or("");
    if first_line.is_empty() {
        return "end of input".to_owned();
    }
    let mut s: String = first_line.chars().take(20).collect();
    if s.len() < first_line.len() {
        s.push_str("...");
    }
    format!("`{s}`")
}

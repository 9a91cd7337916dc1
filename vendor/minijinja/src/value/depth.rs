//! How deep a value nests, measured where values are built.
//!
//! Printing, serializing, comparing and dropping a value each recurse once per
//! level, so a value nested without bound (`{% set ns.v = [ns.v] %}` in a loop)
//! overflows the stack of whatever thread touches it. The engine measures each
//! value a template builds (list and map literals, keyword arguments, what a
//! filter, function or method returns), each value stored in a namespace and
//! each argument a macro is called with, and refuses one deeper than
//! [`MAX_DEPTH`].
//!
//! Two kinds of value could hide depth from a walk that only looks at what a
//! value holds now:
//!
//! - Namespaces are the one mutable container: a list holding a namespace
//!   grows deeper when the namespace is later given a deeper value, without
//!   being built again. So a namespace may not hold a namespace, at any depth:
//!   every path down a value then passes at most one namespace.
//! - Lazy sequences (`items`, `batch`, `select`, …) hold their input and make
//!   their items when iterated. Where a value is kept for later (a namespace,
//!   a literal, a macro's argument) they are iterated and their items walked;
//!   a result passed straight on to the next filter is not, since iterating
//!   every step of a filter chain again would cost as much as the chain.
//!
//! Objects the embedder defines that are not sequences are leaves here: their
//! parts come from the embedder, not the template.

use crate::error::{Error, ErrorKind};
use crate::value::argtypes::KwargsValues;
use crate::value::merge_object::{MergeDict, MergeSeq};
use crate::value::namespace_object::Namespace;
use crate::value::{ObjectRepr, Value, ValueMap};

/// The deepest a value built by a template may nest: `[[1]]` is two deep.
pub const MAX_DEPTH: usize = 64;

/// How far a walk looks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A result handed to the next step: lazy sequences are leaves.
    Result,
    /// A value kept for later: lazy sequences are iterated.
    Kept,
    /// A namespace's attribute: kept, and holding no namespace.
    Stored,
}

/// Refuses a result deeper than [`MAX_DEPTH`].
pub(crate) fn check(value: &Value) -> Result<(), Error> {
    walk(value, 1, Mode::Result)
}

/// Refuses a value kept for later (a literal's item, a macro's argument)
/// deeper than [`MAX_DEPTH`], lazy sequences included.
pub(crate) fn check_kept(value: &Value) -> Result<(), Error> {
    walk(value, 1, Mode::Kept)
}

/// Refuses `value` as a namespace's attribute: too deep, or holding a namespace.
pub(crate) fn check_storable(value: &Value) -> Result<(), Error> {
    walk(value, 1, Mode::Stored)
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("value nested more than {MAX_DEPTH} levels deep"),
    )
}

/// Walks the parts of `value`, which sits `level` deep; the recursion stops
/// at [`MAX_DEPTH`], and scalars are never entered.
fn walk(value: &Value, level: usize, mode: Mode) -> Result<(), Error> {
    let Some(obj) = value.as_object() else {
        return Ok(());
    };
    // A value shared many times over (`[v, v]` doubled) is walked once per
    // path, so the walk answers to the render's deadline like any step.
    crate::guard::check(0)?;
    // A container at `level`: too deep past the limit, else its items sit one below.
    let parts = |items: &mut dyn Iterator<Item = &Value>| {
        if level > MAX_DEPTH {
            return Err(too_deep());
        }
        for item in items {
            if item.as_object().is_some() {
                walk(item, level + 1, mode)?;
            }
        }
        Ok(())
    };
    if let Some(seq) = obj.downcast_ref::<Vec<Value>>() {
        parts(&mut seq.iter())
    } else if let Some(map) = obj.downcast_ref::<ValueMap>() {
        parts(&mut map.iter().flat_map(|(k, v)| [k, v]))
    } else if let Some(pair) = obj.downcast_ref::<[Value; 2]>() {
        parts(&mut pair.iter())
    } else if let Some(kwargs) = obj.downcast_ref::<KwargsValues>() {
        parts(&mut kwargs.iter().map(|(_, v)| v))
    } else if let Some(merged) = obj.downcast_ref::<MergeSeq>() {
        // The joined sequences sit at this level, each a container of its own.
        merged.parts().iter().try_for_each(|p| walk(p, level, mode))
    } else if let Some(merged) = obj.downcast_ref::<MergeDict>() {
        merged.parts().iter().try_for_each(|p| walk(p, level, mode))
    } else if let Some(ns) = obj.downcast_ref::<Namespace>() {
        if mode == Mode::Stored {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a namespace cannot hold another namespace",
            ));
        }
        ns.values(|items| parts(items))
    } else if mode != Mode::Result && obj.repr() == ObjectRepr::Iterable {
        if level > MAX_DEPTH {
            return Err(too_deep());
        }
        for item in obj.try_iter().into_iter().flatten() {
            walk(&item, level + 1, mode)?;
        }
        Ok(())
    } else {
        Ok(())
    }
}

//! The marker a failed fetcher renders as, shared by the renderer (which
//! makes it) and the output filters (which pass it through).

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};

/// What a failed fetcher renders as: a short visible marker, empty when iterated, false when tested.
#[derive(Debug)]
pub(crate) struct Unavailable {
    /// The fetcher.
    pub(crate) name: String,
    /// Why, short.
    pub(crate) reason: String,
}

impl Object for Unavailable {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} unavailable: {}]", self.name, self.reason)
    }
}
